// SCTP packet building and parsing (RFC 9260 §3): common header, INIT / INIT-ACK / ABORT
// chunks and the State Cookie parameter. Pure code: no sockets.
#include <array>
#include <cstring>

#include "probe.h"

namespace ferry::probe {
namespace {

constexpr size_t kCommonHeader = 12;   // ports, verification tag, checksum
constexpr size_t kChunkHeader = 4;     // type, flags, length
constexpr size_t kInitBody = 16;       // tag, a_rwnd, streams, TSN
constexpr uint16_t kParamStateCookie = 7;

constexpr std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr auto kCrc32cTable = make_crc32c_table();

void put16(std::vector<uint8_t>& b, size_t at, uint16_t v) {
  b[at] = uint8_t(v >> 8);
  b[at + 1] = uint8_t(v);
}
void put32(std::vector<uint8_t>& b, size_t at, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[at + i] = uint8_t(v >> (24 - 8 * i));
}
uint16_t get16(std::span<const uint8_t> b, size_t at) { return uint16_t(b[at] << 8 | b[at + 1]); }
uint32_t get32(std::span<const uint8_t> b, size_t at) {
  return uint32_t(b[at]) << 24 | uint32_t(b[at + 1]) << 16 | uint32_t(b[at + 2]) << 8 | b[at + 3];
}
size_t pad4(size_t n) { return (n + 3) & ~size_t(3); }

std::vector<uint8_t> common_header(uint16_t src_port, uint16_t dst_port, uint32_t tag) {
  std::vector<uint8_t> b(kCommonHeader, 0);
  put16(b, 0, src_port);
  put16(b, 2, dst_port);
  put32(b, 4, tag);
  return b;
}

// Appends a chunk header + body (padded to 4 bytes; the length field excludes the padding).
void append_chunk(std::vector<uint8_t>& b, SctpChunkType type, uint8_t flags,
                  const std::vector<uint8_t>& body) {
  const size_t at = b.size();
  b.resize(at + kChunkHeader);
  b[at] = uint8_t(type);
  b[at + 1] = flags;
  put16(b, at + 2, uint16_t(kChunkHeader + body.size()));
  b.insert(b.end(), body.begin(), body.end());
  b.resize(pad4(b.size()), 0);
}

std::vector<uint8_t> init_body(const SctpInit& init) {
  std::vector<uint8_t> body(kInitBody, 0);
  put32(body, 0, init.initiate_tag);
  put32(body, 4, init.a_rwnd);
  put16(body, 8, init.outbound_streams);
  put16(body, 10, init.inbound_streams);
  put32(body, 12, init.initial_tsn);
  return body;
}

// The checksum is the CRC32c of the whole packet with the field zeroed, stored so that the
// CRC's low byte comes first (RFC 9260 Appendix A; Linux: cpu_to_le32 of the CRC).
void seal(std::vector<uint8_t>& b) {
  std::memset(b.data() + 8, 0, 4);
  const uint32_t crc = crc32c(b);
  for (int i = 0; i < 4; ++i) b[8 + i] = uint8_t(crc >> (8 * i));
}

}  // namespace

uint32_t crc32c(std::span<const uint8_t> data) {
  uint32_t crc = 0xFFFFFFFFu;
  for (uint8_t byte : data) crc = kCrc32cTable[(crc ^ byte) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

std::vector<uint8_t> sctp_build_init(uint16_t src_port, uint16_t dst_port, const SctpInit& init) {
  auto b = common_header(src_port, dst_port, 0);
  append_chunk(b, SctpChunkType::kInit, 0, init_body(init));
  seal(b);
  return b;
}

std::vector<uint8_t> sctp_build_init_ack(uint16_t src_port, uint16_t dst_port, uint32_t peer_tag,
                                         const SctpInit& ours, std::span<const uint8_t> cookie) {
  auto b = common_header(src_port, dst_port, peer_tag);
  auto body = init_body(ours);
  const size_t at = body.size();
  body.resize(at + 4);
  put16(body, at, kParamStateCookie);
  put16(body, at + 2, uint16_t(4 + cookie.size()));
  body.insert(body.end(), cookie.begin(), cookie.end());
  body.resize(pad4(body.size()), 0);  // parameters are padded inside the chunk
  append_chunk(b, SctpChunkType::kInitAck, 0, body);
  seal(b);
  return b;
}

std::vector<uint8_t> sctp_build_abort(uint16_t src_port, uint16_t dst_port, uint32_t peer_tag) {
  auto b = common_header(src_port, dst_port, peer_tag);
  append_chunk(b, SctpChunkType::kAbort, 0, {});
  seal(b);
  return b;
}

std::optional<SctpPacket> sctp_parse(std::span<const uint8_t> bytes) {
  if (bytes.size() < kCommonHeader + kChunkHeader) return std::nullopt;
  SctpPacket p;
  p.src_port = get16(bytes, 0);
  p.dst_port = get16(bytes, 2);
  p.verification_tag = get32(bytes, 4);
  const uint32_t stored = uint32_t(bytes[8]) | uint32_t(bytes[9]) << 8 |
                          uint32_t(bytes[10]) << 16 | uint32_t(bytes[11]) << 24;
  std::vector<uint8_t> copy(bytes.begin(), bytes.end());
  std::memset(copy.data() + 8, 0, 4);
  p.checksum_ok = crc32c(copy) == stored;

  const auto chunk = bytes.subspan(kCommonHeader);
  p.type = SctpChunkType(chunk[0]);
  p.chunk_flags = chunk[1];
  const size_t chunk_len = get16(chunk, 2);
  if (chunk_len < kChunkHeader || chunk_len > chunk.size()) return std::nullopt;
  if (p.type != SctpChunkType::kInit && p.type != SctpChunkType::kInitAck) return p;

  if (chunk_len < kChunkHeader + kInitBody) return std::nullopt;
  const auto body = chunk.subspan(kChunkHeader, chunk_len - kChunkHeader);
  SctpInit init;
  init.initiate_tag = get32(body, 0);
  init.a_rwnd = get32(body, 4);
  init.outbound_streams = get16(body, 8);
  init.inbound_streams = get16(body, 10);
  init.initial_tsn = get32(body, 12);
  p.init = init;
  // Optional / variable parameters: walk them, keep the State Cookie.
  size_t at = kInitBody;
  while (at + 4 <= body.size()) {
    const uint16_t type = get16(body, at);
    const uint16_t len = get16(body, at + 2);
    if (len < 4 || at + len > body.size()) return std::nullopt;
    if (type == kParamStateCookie) p.cookie.assign(body.begin() + at + 4, body.begin() + at + len);
    at += pad4(len);
  }
  return p;
}

}  // namespace ferry::probe
