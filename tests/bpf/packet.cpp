#include "packet.h"

#include <arpa/inet.h>
#include <sys/socket.h>

#include <stdexcept>

namespace ferry::bpftest {
namespace {

void put16(Bytes& b, uint16_t v) {
  b.push_back(static_cast<uint8_t>(v >> 8));
  b.push_back(static_cast<uint8_t>(v));
}
void put32(Bytes& b, uint32_t v) {
  put16(b, static_cast<uint16_t>(v >> 16));
  put16(b, static_cast<uint16_t>(v));
}
void append(Bytes& b, const uint8_t* p, size_t n) { b.insert(b.end(), p, p + n); }
void pad(Bytes& b, size_t n) {
  for (size_t i = 0; i < n; ++i) b.push_back(static_cast<uint8_t>(0xa0 + i % 16));
}

// RFC 1071 checksum; only the IPv4 header gets one (the datapath does not verify L4 sums).
uint16_t inet_checksum(const uint8_t* p, size_t n) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) sum += static_cast<uint32_t>(p[n - 1] << 8);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

uint32_t ones_sum(const uint8_t* p, size_t n, uint32_t sum = 0) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  if (n % 2) sum += static_cast<uint32_t>(p[n - 1] << 8);
  return sum;
}
uint16_t fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

// Where the frame's L3/L4 parts are, as the datapath parses them.
struct Layout {
  bool v6 = false;
  size_t l3 = 14, l4 = 0, end = 0;
  uint8_t proto = 0;
};
Layout layout_of(const Bytes& f) {
  Layout l;
  if (f.size() < 14 + 20) throw std::invalid_argument("frame too short");
  l.v6 = (f[12] << 8 | f[13]) == 0x86dd;
  if (l.v6) {
    l.l4 = 14 + 40;
    l.proto = f[14 + 6];
    l.end = l.l4 + static_cast<size_t>(f[14 + 4] << 8 | f[14 + 5]);
  } else {
    l.l4 = 14 + static_cast<size_t>(f[14] & 0x0f) * 4;
    l.proto = f[14 + 9];
    l.end = 14 + static_cast<size_t>(f[14 + 2] << 8 | f[14 + 3]);
  }
  if (l.end > f.size() || l.l4 > l.end) throw std::invalid_argument("frame shorter than its IP length");
  return l;
}
// Offset of the L4 checksum field, 0 for protocols without one we know.
size_t csum_field(const Layout& l) {
  switch (l.proto) {
    case IPPROTO_TCP: return l.l4 + 16;
    case IPPROTO_UDP: return l.l4 + 6;
    case IPPROTO_ICMP:
    case IPPROTO_ICMPV6: return l.l4 + 2;
    case IPPROTO_SCTP: return l.l4 + 8;
    default: return 0;
  }
}
// The RFC 1071 checksum the L4 part must carry (field taken as zero).
uint16_t l4_sum(Bytes f, const Layout& l) {
  const size_t field = csum_field(l);
  f[field] = f[field + 1] = 0;
  uint32_t sum = 0;
  const size_t len = l.end - l.l4;
  if (l.proto != IPPROTO_ICMP) {  // the pseudo-header
    sum = ones_sum(&f[l.v6 ? 14 + 8 : 14 + 12], l.v6 ? 32 : 8);
    sum += static_cast<uint32_t>(len >> 16) + static_cast<uint32_t>(len & 0xffff) + l.proto;
  }
  return fold(ones_sum(&f[l.l4], len, sum));
}
uint32_t sctp_crc(Bytes f, const Layout& l) {
  for (size_t i = 0; i < 4; ++i) f[l.l4 + 8 + i] = 0;
  return crc32c(&f[l.l4], l.end - l.l4);
}

}  // namespace

uint32_t crc32c(const uint8_t* p, size_t n) {
  uint32_t crc = 0xffffffff;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1)));
  }
  return ~crc;
}

Bytes with_checksums(Bytes f, bool udp_zero) {
  const Layout l = layout_of(f);
  const size_t field = csum_field(l);
  if (!field) return f;
  if (l.proto == IPPROTO_SCTP) {
    const uint32_t crc = sctp_crc(f, l);
    for (size_t i = 0; i < 4; ++i) f[field + i] = static_cast<uint8_t>(crc >> (8 * i));  // little-endian
    return f;
  }
  uint16_t sum = l4_sum(f, l);
  if (l.proto == IPPROTO_UDP && udp_zero && !l.v6) sum = 0;
  else if (l.proto == IPPROTO_UDP && sum == 0) sum = 0xffff;
  f[field] = static_cast<uint8_t>(sum >> 8);
  f[field + 1] = static_cast<uint8_t>(sum);
  return f;
}

std::string checksum_errors(const Bytes& f) {
  const Layout l = layout_of(f);
  std::string errors;
  if (!l.v6 && fold(ones_sum(&f[14], l.l4 - 14)) != 0) errors += "IPv4 header checksum wrong; ";
  const size_t field = csum_field(l);
  if (!field) return errors;
  if (l.proto == IPPROTO_SCTP) {
    const uint32_t crc = sctp_crc(f, l);
    const uint32_t have = static_cast<uint32_t>(f[field] | f[field + 1] << 8 | f[field + 2] << 16) |
                          static_cast<uint32_t>(f[field + 3]) << 24;
    if (crc != have) errors += "SCTP CRC32c wrong; ";
    return errors;
  }
  const uint16_t have = static_cast<uint16_t>(f[field] << 8 | f[field + 1]);
  if (l.proto == IPPROTO_UDP && !l.v6 && have == 0) return errors;  // no checksum
  uint16_t want = l4_sum(f, l);
  if (l.proto == IPPROTO_UDP && want == 0) want = 0xffff;
  if (have != want) errors += "L4 checksum wrong; ";
  return errors;
}

Addr Addr::parse(const std::string& text) {
  Addr a;
  if (inet_pton(AF_INET, text.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET;
  } else if (inet_pton(AF_INET6, text.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET6;
  } else {
    throw std::invalid_argument("not an IP address: " + text);
  }
  return a;
}

size_t Addr::size() const { return family == AF_INET ? 4 : 16; }

std::string Addr::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes.data(), buf, sizeof(buf));
  return buf;
}

L4 tcp(uint16_t sport, uint16_t dport, uint8_t flags, size_t payload) {
  L4 l4{IPPROTO_TCP, {}};
  put16(l4.bytes, sport);
  put16(l4.bytes, dport);
  put32(l4.bytes, 1000);                 // seq
  put32(l4.bytes, flags & kTcpAck ? 2000 : 0);
  l4.bytes.push_back(5 << 4);            // data offset 5 words
  l4.bytes.push_back(flags);
  put16(l4.bytes, 64240);                // window
  put16(l4.bytes, 0);                    // checksum
  put16(l4.bytes, 0);                    // urgent
  pad(l4.bytes, payload);
  return l4;
}

L4 udp(uint16_t sport, uint16_t dport, size_t payload) {
  L4 l4{IPPROTO_UDP, {}};
  put16(l4.bytes, sport);
  put16(l4.bytes, dport);
  put16(l4.bytes, static_cast<uint16_t>(8 + payload));
  put16(l4.bytes, 0);
  pad(l4.bytes, payload);
  return l4;
}

L4 sctp(uint16_t sport, uint16_t dport, size_t payload) {
  L4 l4{IPPROTO_SCTP, {}};
  put16(l4.bytes, sport);
  put16(l4.bytes, dport);
  put32(l4.bytes, 0x01020304);  // verification tag
  put32(l4.bytes, 0);           // checksum
  pad(l4.bytes, payload);
  return l4;
}

L4 icmp_echo(bool v6, bool reply, uint16_t id, uint16_t seq) {
  L4 l4{static_cast<uint8_t>(v6 ? int{IPPROTO_ICMPV6} : int{IPPROTO_ICMP}), {}};
  l4.bytes.push_back(v6 ? (reply ? 129 : 128) : (reply ? 0 : 8));
  l4.bytes.push_back(0);
  put16(l4.bytes, 0);
  put16(l4.bytes, id);
  put16(l4.bytes, seq);
  pad(l4.bytes, 32);
  return l4;
}

L4 icmp_other(bool v6, uint8_t type, uint8_t code, size_t payload) {
  L4 l4{static_cast<uint8_t>(v6 ? int{IPPROTO_ICMPV6} : int{IPPROTO_ICMP}), {}};
  l4.bytes.push_back(type);
  l4.bytes.push_back(code);
  put16(l4.bytes, 0);
  put32(l4.bytes, 0);
  pad(l4.bytes, payload);
  return l4;
}

L4 raw(uint8_t proto, size_t payload) {
  L4 l4{proto, {}};
  pad(l4.bytes, payload);
  return l4;
}

Bytes ethernet(const MacAddr& dst, const MacAddr& src, uint16_t ethertype, const Bytes& payload) {
  Bytes b;
  append(b, dst.data(), dst.size());
  append(b, src.data(), src.size());
  put16(b, ethertype);
  b.insert(b.end(), payload.begin(), payload.end());
  return b;
}

Bytes ipv4(const Addr& src, const Addr& dst, const L4& l4, const Bytes& options) {
  if (src.family != AF_INET || dst.family != AF_INET || options.size() % 4 != 0)
    throw std::invalid_argument("ipv4(): IPv4 addresses and 4-byte-aligned options only");
  const size_t hdr = 20 + options.size();
  Bytes b;
  b.push_back(static_cast<uint8_t>(0x40 | hdr / 4));
  b.push_back(0);
  put16(b, static_cast<uint16_t>(hdr + l4.bytes.size()));
  put16(b, 0x1234);  // id
  put16(b, 0x4000);  // DF, offset 0
  b.push_back(64);
  b.push_back(l4.proto);
  put16(b, 0);
  append(b, src.bytes.data(), 4);
  append(b, dst.bytes.data(), 4);
  b.insert(b.end(), options.begin(), options.end());
  const uint16_t sum = inet_checksum(b.data(), hdr);
  b[10] = static_cast<uint8_t>(sum >> 8);
  b[11] = static_cast<uint8_t>(sum);
  b.insert(b.end(), l4.bytes.begin(), l4.bytes.end());
  return b;
}

Bytes ipv6(const Addr& src, const Addr& dst, const L4& l4) {
  if (src.family != AF_INET6 || dst.family != AF_INET6)
    throw std::invalid_argument("ipv6(): IPv6 addresses only");
  Bytes b;
  put32(b, 0x60000000);
  put16(b, static_cast<uint16_t>(l4.bytes.size()));
  b.push_back(l4.proto);
  b.push_back(64);
  append(b, src.bytes.data(), 16);
  append(b, dst.bytes.data(), 16);
  b.insert(b.end(), l4.bytes.begin(), l4.bytes.end());
  return b;
}

Bytes ip_frame(const MacAddr& dst, const MacAddr& src, const Addr& saddr, const Addr& daddr,
               const L4& l4) {
  if (saddr.family == AF_INET) return ethernet(dst, src, kEthIp, ipv4(saddr, daddr, l4));
  return ethernet(dst, src, kEthIpv6, ipv6(saddr, daddr, l4));
}

Bytes arp_request(const MacAddr& src, const Addr& sender, const Addr& target) {
  Bytes b;
  put16(b, 1);       // Ethernet
  put16(b, kEthIp);  // IPv4
  b.push_back(6);
  b.push_back(4);
  put16(b, 1);       // request
  append(b, src.data(), 6);
  append(b, sender.bytes.data(), 4);
  pad(b, 0);
  for (int i = 0; i < 6; ++i) b.push_back(0);
  append(b, target.bytes.data(), 4);
  const MacAddr broadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  return ethernet(broadcast, src, kEthArp, b);
}

}  // namespace ferry::bpftest
