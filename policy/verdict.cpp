// The verdict of compiled rules, evaluated the way the datapath does (ipcache LPM, then the
// endpoint's entries). Linear scans: this is for tests and ferryctl, not the packet path.
#include "policy/internal.h"
#include "policy/policy.h"

namespace ferry::policy {

Identity lookup_identity(const dataplane::PolicySet& set, const net::Ip& ip) {
  Identity best = dataplane::kIdentityWorld;
  int best_len = -1;
  for (const auto& e : set.ipcache) {
    if (e.prefix.len > best_len && e.prefix.contains(ip)) {
      best = e.identity;
      best_len = e.prefix.len;
    }
  }
  return best;
}

bool allows(const dataplane::PolicySet& set, uint32_t endpoint_id, Direction dir, const net::Ip& peer, uint8_t proto,
            uint16_t port) {
  if (!set.enforce) return true;
  auto it = set.endpoints.find(endpoint_id);
  if (it == set.endpoints.end()) return true;
  const auto& ep = it->second;
  bool ingress = dir == Direction::Ingress;
  if (!(ingress ? ep.ingress_isolated : ep.egress_isolated)) return true;
  Identity id = lookup_identity(set, peer);
  for (const auto& e : ingress ? ep.ingress : ep.egress) {
    if ((e.peer == id || e.peer == dataplane::kIdentityAny) && (e.proto == proto || e.proto == 0) &&
        e.port_first <= port && port <= e.port_last)
      return true;
  }
  return false;
}

}  // namespace ferry::policy
