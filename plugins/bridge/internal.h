// Private to plugins/bridge: helpers shared by bridge.cpp (ADD/DEL/GC/STATUS) and check.cpp.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <string>

#include "cni/cni.h"
#include "config.h"
#include "masq.h"
#include "net/net.h"

namespace ferry::bridge::detail {

inline net::Ip to_ip(const cni::IPAddr& a) {
  net::Ip ip;
  ip.family = a.family;
  ip.bytes = a.bytes;
  return ip;
}

inline net::Prefix to_prefix(const cni::IPNet& n) { return net::Prefix{to_ip(n.addr), n.prefix}; }

// Which masquerade backend to use: the configured one, else iptables unless only nft exists.
inline MasqBackend resolve_backend(const BridgeConf& c) {
  if (c.ip_masq_backend != MasqBackend::kDefault) return c.ip_masq_backend;
  if (!iptables_available() && nft_available()) return MasqBackend::kNftables;
  return MasqBackend::kIptables;
}

// True when the link's MAC was set explicitly (addr_assign_type 3, NET_ADDR_SET): a bridge's
// MAC then no longer follows its ports as they come and go.
inline bool mac_pinned(const std::string& link) {
  int fd = ::open(("/sys/class/net/" + link + "/addr_assign_type").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char c = 0;
  ssize_t n = ::read(fd, &c, 1);
  ::close(fd);
  return n == 1 && c == '3';
}

// A kernel-layer failure as the CNI error of the step that failed.
[[noreturn]] inline void fail(const std::exception& e, const std::string& step) {
  if (auto* ce = dynamic_cast<const cni::Error*>(&e)) throw *ce;
  throw cni::Error(cni::kInternal, step + ": " + e.what());
}

}  // namespace ferry::bridge::detail
