// policy/internal.h — helpers shared by the policy/ sources (not part of the public API).
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <optional>
#include <string_view>

#include "agent/model/model.h"
#include "net/net.h"
#include "policy/policy.h"

namespace ferry::policy::detail {

inline net::Ip to_ip(const cni::IPAddr& a) { return net::Ip{a.family, a.bytes}; }
inline net::Prefix to_prefix(const cni::IPNet& n) { return net::Prefix{to_ip(n.addr), n.prefix}.network(); }
inline net::Prefix host_prefix(const net::Ip& ip) { return net::Prefix{ip, ip.size() * 8}; }

// inner ⊆ outer (same family, at least as long, same leading bits).
inline bool prefix_within(const net::Prefix& inner, const net::Prefix& outer) {
  return inner.ip.family == outer.ip.family && inner.len >= outer.len && outer.contains(inner.ip);
}

// The IR's ipcache order: family, bytes, length.
struct PrefixLess {
  bool operator()(const net::Prefix& a, const net::Prefix& b) const {
    if (a.ip.family != b.ip.family) return a.ip.family < b.ip.family;
    if (a.ip.bytes != b.ip.bytes) return a.ip.bytes < b.ip.bytes;
    return a.len < b.len;
  }
};

// An identity of `kind` with every other field empty.
inline IdentityInfo plain_identity(IdentityInfo::Kind kind) {
  IdentityInfo info;
  info.kind = kind;
  return info;
}


}  // namespace ferry::policy::detail
