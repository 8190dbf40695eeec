// Pure tests of ferry-probe's SCTP packet code: CRC32c against published vectors, and
// INIT / INIT-ACK / ABORT layouts as RFC 9260 defines them. No root, no sockets.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "probe.h"

namespace {

using namespace ferry::probe;

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

TEST(Crc32c, KnownVectors) {
  // The CRC-32C check value (Castagnoli; e.g. the "catalogue of CRC algorithms").
  EXPECT_EQ(crc32c(bytes("123456789")), 0xE3069283u);
  // RFC 3720 B.4: 32 bytes of zeros -> bytes aa 36 91 8a on the wire (value 0x8a9136aa).
  EXPECT_EQ(crc32c(std::vector<uint8_t>(32, 0x00)), 0x8A9136AAu);
  // RFC 3720 B.4: 32 bytes of 0xff -> 43 ab a8 62.
  EXPECT_EQ(crc32c(std::vector<uint8_t>(32, 0xFF)), 0x62A8AB43u);
  // RFC 3720 B.4: incrementing 0x00..0x1f -> 4e 79 dd 46.
  std::vector<uint8_t> inc(32);
  for (int i = 0; i < 32; ++i) inc[i] = uint8_t(i);
  EXPECT_EQ(crc32c(inc), 0x46DD794Eu);
  EXPECT_EQ(crc32c({}), 0u);
}

TEST(SctpPacket, InitLayout) {
  SctpInit init;
  init.initiate_tag = 0x01020304;
  init.a_rwnd = 0x10000;
  init.outbound_streams = 10;
  init.inbound_streams = 11;
  init.initial_tsn = 0xAABBCCDD;
  auto p = sctp_build_init(40000, 80, init);
  ASSERT_EQ(p.size(), 12u + 4u + 16u);
  EXPECT_EQ(p[0], 0x9C);  // 40000 = 0x9c40
  EXPECT_EQ(p[1], 0x40);
  EXPECT_EQ(p[2], 0);
  EXPECT_EQ(p[3], 80);
  for (int i = 4; i < 8; ++i) EXPECT_EQ(p[i], 0) << "INIT carries verification tag 0";
  EXPECT_EQ(p[12], 1) << "chunk type INIT";
  EXPECT_EQ(p[14], 0);
  EXPECT_EQ(p[15], 20) << "chunk length = header + body";
  EXPECT_EQ(p[16], 1);
  EXPECT_EQ(p[19], 4) << "initiate tag, network order";

  // The checksum field holds the CRC of the packet with the field zeroed, low byte first.
  auto zeroed = p;
  for (int i = 8; i < 12; ++i) zeroed[i] = 0;
  const uint32_t crc = crc32c(zeroed);
  EXPECT_EQ(p[8], uint8_t(crc));
  EXPECT_EQ(p[11], uint8_t(crc >> 24));

  auto parsed = sctp_parse(p);
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed->checksum_ok);
  EXPECT_EQ(parsed->src_port, 40000);
  EXPECT_EQ(parsed->dst_port, 80);
  EXPECT_EQ(parsed->verification_tag, 0u);
  EXPECT_EQ(parsed->type, SctpChunkType::kInit);
  ASSERT_TRUE(parsed->init);
  EXPECT_EQ(parsed->init->initiate_tag, 0x01020304u);
  EXPECT_EQ(parsed->init->a_rwnd, 0x10000u);
  EXPECT_EQ(parsed->init->outbound_streams, 10);
  EXPECT_EQ(parsed->init->inbound_streams, 11);
  EXPECT_EQ(parsed->init->initial_tsn, 0xAABBCCDDu);
  EXPECT_TRUE(parsed->cookie.empty());
}

TEST(SctpPacket, InitAckCarriesPeerTagAndPaddedCookie) {
  SctpInit ours;
  ours.initiate_tag = 0xCAFEF00D;
  const std::string cookie = "pod-a 10.244.1.5";  // 16 bytes + 4 header = 20: no padding
  const std::string odd_cookie = "pod-a 10.244.1.55";  // 17 bytes: padded to 24 in the chunk
  for (const std::string& c : {cookie, odd_cookie}) {
    auto cb = bytes(c);
    auto p = sctp_build_init_ack(80, 40000, 0x01020304, ours, cb);
    EXPECT_EQ(p.size() % 4, 0u) << "packets are padded to 4 bytes";
    auto parsed = sctp_parse(p);
    ASSERT_TRUE(parsed);
    EXPECT_TRUE(parsed->checksum_ok);
    EXPECT_EQ(parsed->type, SctpChunkType::kInitAck);
    EXPECT_EQ(parsed->verification_tag, 0x01020304u) << "tagged with the peer's initiate tag";
    ASSERT_TRUE(parsed->init);
    EXPECT_EQ(parsed->init->initiate_tag, 0xCAFEF00Du);
    EXPECT_EQ(std::string(parsed->cookie.begin(), parsed->cookie.end()), c);
    // Parameter header: type 7 (State Cookie), length 4 + cookie (without padding).
    EXPECT_EQ(p[32], 0);
    EXPECT_EQ(p[33], 7);
    EXPECT_EQ(size_t(p[34] << 8 | p[35]), 4 + c.size());
  }
}

TEST(SctpPacket, AbortAndCorruption) {
  auto p = sctp_build_abort(40000, 80, 0xDEADBEEF);
  auto parsed = sctp_parse(p);
  ASSERT_TRUE(parsed);
  EXPECT_TRUE(parsed->checksum_ok);
  EXPECT_EQ(parsed->type, SctpChunkType::kAbort);
  EXPECT_EQ(parsed->verification_tag, 0xDEADBEEFu);
  EXPECT_EQ(parsed->chunk_flags & 1, 0) << "T bit clear: the tag is the peer's";

  p[13] ^= 0xFF;  // flip the chunk flags
  auto corrupted = sctp_parse(p);
  ASSERT_TRUE(corrupted);
  EXPECT_FALSE(corrupted->checksum_ok);
}

TEST(SctpPacket, RejectsTruncatedAndMalformed) {
  SctpInit init;
  auto p = sctp_build_init(1, 2, init);
  EXPECT_FALSE(sctp_parse(std::span(p).first(10)));
  EXPECT_FALSE(sctp_parse(std::span(p).first(p.size() - 4))) << "chunk length beyond the packet";
  auto short_chunk = p;
  short_chunk[15] = 8;  // INIT chunk too short for its body
  EXPECT_FALSE(sctp_parse(short_chunk));
  auto ack = sctp_build_init_ack(1, 2, 3, init, bytes("x"));
  ack[35] = 200;  // cookie parameter length beyond the chunk
  EXPECT_FALSE(sctp_parse(ack));
}

}  // namespace
