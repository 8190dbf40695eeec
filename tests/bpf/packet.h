// Crafted frames for BPF_PROG_TEST_RUN: Ethernet + IPv4/IPv6 + TCP/UDP/SCTP/ICMP/ICMPv6, built
// field by field in network byte order, so each test states exactly the bytes it feeds in.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace ferry::bpftest {

using Bytes = std::vector<uint8_t>;
using MacAddr = std::array<uint8_t, 6>;

// An IPv4 or IPv6 address as the datapath stores it: family + 16 bytes (IPv4 in the first 4).
struct Addr {
  uint8_t family = 0;  // AF_INET / AF_INET6
  std::array<uint8_t, 16> bytes{};
  static Addr parse(const std::string& text);  // "10.0.0.1" or "fd00::1"; throws on junk
  size_t size() const;                         // 4 or 16
  std::string str() const;
};

constexpr uint8_t kTcpFin = 0x01, kTcpSyn = 0x02, kTcpRst = 0x04, kTcpAck = 0x10;

// The L4 part of a packet (its header plus a payload).
struct L4 {
  uint8_t proto = 0;
  Bytes bytes;
};
L4 tcp(uint16_t sport, uint16_t dport, uint8_t flags, size_t payload = 0);
L4 udp(uint16_t sport, uint16_t dport, size_t payload = 0);
L4 sctp(uint16_t sport, uint16_t dport, size_t payload = 0);
// ICMP echo request/reply (IPv4 types 8/0); `v6` gives ICMPv6 echo (128/129).
L4 icmp_echo(bool v6, bool reply, uint16_t id, uint16_t seq = 1);
// Any other ICMP/ICMPv6 message with a 4-byte rest-of-header and `payload` bytes after it.
L4 icmp_other(bool v6, uint8_t type, uint8_t code, size_t payload = 28);
// An arbitrary protocol number with raw payload bytes.
L4 raw(uint8_t proto, size_t payload);

constexpr uint16_t kEthIp = 0x0800, kEthIpv6 = 0x86dd, kEthArp = 0x0806;

Bytes ethernet(const MacAddr& dst, const MacAddr& src, uint16_t ethertype, const Bytes& payload);
// IPv4 header (with `options`, a multiple of 4 bytes, making IHL > 5) + `l4`.
Bytes ipv4(const Addr& src, const Addr& dst, const L4& l4, const Bytes& options = {});
Bytes ipv6(const Addr& src, const Addr& dst, const L4& l4);
// IPv4 or IPv6 by the addresses' family, inside an Ethernet frame.
Bytes ip_frame(const MacAddr& dst, const MacAddr& src, const Addr& saddr, const Addr& daddr,
               const L4& l4);
// An ARP request "who has `target`? tell `sender`".
Bytes arp_request(const MacAddr& src, const Addr& sender, const Addr& target);

// Checksums of an Ethernet + IPv4/IPv6 frame, computed from scratch (RFC 1071 sums with the
// pseudo-header for TCP, UDP and ICMPv6; CRC32c for SCTP, RFC 9260 appendix A).
// with_checksums: the frame with its L4 checksum filled in (IPv4 UDP keeps 0 when `udp_zero`).
// checksum_errors: "" when the IPv4 header sum and the L4 checksum are right (IPv4 UDP 0 = none
// is right), else what is wrong.
Bytes with_checksums(Bytes frame, bool udp_zero = false);
std::string checksum_errors(const Bytes& frame);
uint32_t crc32c(const uint8_t* p, size_t n);

inline Bytes truncated(Bytes frame, size_t len) {
  frame.resize(len);
  return frame;
}

}  // namespace ferry::bpftest
