// Ip / Prefix / Mac value types.
#include <arpa/inet.h>
#include <sys/random.h>

#include <charconv>
#include <cstdio>

#include "net/net.h"

namespace ferry::net {

std::optional<Ip> Ip::parse(std::string_view text) {
  std::string s(text);
  Ip ip;
  if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) == 1) {
    ip.family = AF_INET;
    return ip;
  }
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) == 1) {
    ip.family = AF_INET6;
    return ip;
  }
  return std::nullopt;
}

std::string Ip::str() const {
  char buf[INET6_ADDRSTRLEN] = {};
  if (family != AF_INET && family != AF_INET6) return "<none>";
  inet_ntop(family, bytes.data(), buf, sizeof buf);
  return buf;
}

std::optional<Prefix> Prefix::parse(std::string_view cidr) {
  size_t slash = cidr.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  auto ip = Ip::parse(cidr.substr(0, slash));
  if (!ip) return std::nullopt;
  std::string_view len_text = cidr.substr(slash + 1);
  int len = -1;
  auto [end, ec] = std::from_chars(len_text.data(), len_text.data() + len_text.size(), len);
  if (ec != std::errc() || end != len_text.data() + len_text.size()) return std::nullopt;
  if (len < 0 || len > ip->size() * 8) return std::nullopt;
  return Prefix{*ip, len};
}

std::string Prefix::str() const { return ip.str() + "/" + std::to_string(len); }

Prefix Prefix::network() const {
  Prefix p = *this;
  for (int i = 0; i < ip.size(); ++i) {
    int keep = len - i * 8;
    if (keep >= 8) continue;
    p.ip.bytes[static_cast<size_t>(i)] &= keep <= 0 ? 0 : static_cast<uint8_t>(0xff << (8 - keep));
  }
  return p;
}

bool Prefix::contains(const Ip& a) const {
  if (a.family != ip.family) return false;
  Prefix other{a, len};
  return other.network().ip == network().ip;
}

std::optional<Mac> parse_mac(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  Mac mac{};
  for (size_t i = 0; i < 6; ++i) {
    size_t at = i * 3;
    if (i > 0 && text[at - 1] != ':' && text[at - 1] != '-') return std::nullopt;
    unsigned v = 0;
    auto [end, ec] = std::from_chars(text.data() + at, text.data() + at + 2, v, 16);
    if (ec != std::errc() || end != text.data() + at + 2) return std::nullopt;
    mac[i] = static_cast<uint8_t>(v);
  }
  return mac;
}

std::string mac_str(const Mac& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                mac[4], mac[5]);
  return buf;
}

Mac random_mac() {
  Mac mac{};
  if (getrandom(mac.data(), mac.size(), 0) != static_cast<ssize_t>(mac.size()))
    throw Error("getrandom failed for a MAC address", errno);
  mac[0] = static_cast<uint8_t>((mac[0] & 0xfe) | 0x02);  // unicast, locally administered
  return mac;
}

}  // namespace ferry::net
