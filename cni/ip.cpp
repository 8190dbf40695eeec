// IPv4/IPv6 addresses and prefixes: parsing and printing through inet_pton/inet_ntop, and
// the byte arithmetic IPAM needs (next/prev, network/broadcast, containment).
#include <arpa/inet.h>
#include <sys/socket.h>

#include <charconv>

#include "cni/cni.h"

namespace ferry::cni {

static_assert(AF_INET == 2 && AF_INET6 == 10, "IPAddr::is_v4/is_v6 assume Linux AF_* values");

namespace {

size_t byte_len(const IPAddr& a) { return a.is_v4() ? 4 : 16; }

// The address with the low (bits - prefix) bits cleared (set = false) or set (set = true).
IPAddr apply_host_bits(const IPAddr& a, int prefix, bool set) {
  IPAddr out = a;
  size_t len = byte_len(a);
  for (size_t i = 0; i < len; ++i) {
    int first_bit = static_cast<int>(i) * 8;
    int keep = std::clamp(prefix - first_bit, 0, 8);  // network bits in this byte
    uint8_t host_mask = static_cast<uint8_t>(keep == 8 ? 0 : (0xff >> keep));
    out.bytes[i] = set ? (out.bytes[i] | host_mask) : (out.bytes[i] & ~host_mask);
  }
  return out;
}

}  // namespace

std::optional<IPAddr> IPAddr::parse(std::string_view text) {
  // inet_pton wants a NUL-terminated string; an embedded NUL must not truncate the input.
  if (text.empty() || text.size() > INET6_ADDRSTRLEN || text.find('\0') != text.npos)
    return std::nullopt;
  std::string s(text);
  IPAddr a;
  if (s.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
    a.family = AF_INET;
  } else {
    if (inet_pton(AF_INET6, s.c_str(), a.bytes.data()) != 1) return std::nullopt;
    a.family = AF_INET6;
  }
  return a;
}

std::string IPAddr::str() const {
  if (family != AF_INET && family != AF_INET6) return "";
  char buf[INET6_ADDRSTRLEN] = {};
  inet_ntop(family, bytes.data(), buf, sizeof buf);
  return buf;
}

IPAddr IPAddr::next() const {
  IPAddr out = *this;
  for (size_t i = byte_len(*this); i-- > 0;)
    if (++out.bytes[i] != 0) break;  // no carry out of this byte
  return out;
}

IPAddr IPAddr::prev() const {
  IPAddr out = *this;
  for (size_t i = byte_len(*this); i-- > 0;)
    if (out.bytes[i]-- != 0) break;  // no borrow from the next byte
  return out;
}

std::optional<IPNet> IPNet::parse(std::string_view cidr) {
  size_t slash = cidr.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto addr = IPAddr::parse(cidr.substr(0, slash));
  if (!addr) return std::nullopt;
  std::string_view len = cidr.substr(slash + 1);
  int prefix = -1;
  auto [end, ec] = std::from_chars(len.data(), len.data() + len.size(), prefix);
  if (len.empty() || len.size() > 3 || ec != std::errc() || end != len.data() + len.size() ||
      prefix < 0 || prefix > addr->bits())
    return std::nullopt;
  return IPNet{*addr, prefix};
}

std::string IPNet::str() const { return addr.str() + "/" + std::to_string(prefix); }

IPNet IPNet::network() const { return IPNet{apply_host_bits(addr, prefix, false), prefix}; }

IPAddr IPNet::broadcast() const { return apply_host_bits(addr, prefix, true); }

bool IPNet::contains(const IPAddr& a) const {
  if (a.family != addr.family) return false;
  return apply_host_bits(a, prefix, false) == network().addr;
}

bool IPNet::overlaps(const IPNet& other) const {
  if (other.addr.family != addr.family) return false;
  return contains(other.network().addr) || other.contains(network().addr);
}

}  // namespace ferry::cni
