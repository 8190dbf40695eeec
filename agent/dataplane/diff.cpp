#include "agent/dataplane/dataplane.h"

#include <unordered_map>

namespace ferry::dataplane {

EndpointDiff diff_endpoints(const std::vector<Endpoint>& desired, const std::vector<Endpoint>& installed) {
  std::unordered_map<uint32_t, const Endpoint*> have;
  for (const Endpoint& ep : installed) have.emplace(ep.endpoint_id, &ep);
  EndpointDiff diff;
  for (const Endpoint& want : desired) {
    auto it = have.find(want.endpoint_id);
    if (it == have.end()) {
      diff.program.push_back(want);
      continue;
    }
    // Same id on another interface (pod recreated with a reused id): remove the old one first.
    if (it->second->host_ifindex != want.host_ifindex) diff.remove.push_back(*it->second);
    if (!(*it->second == want)) diff.program.push_back(want);
    have.erase(it);
  }
  for (const Endpoint& ep : installed)
    if (have.count(ep.endpoint_id)) diff.remove.push_back(ep);
  return diff;
}

}  // namespace ferry::dataplane
