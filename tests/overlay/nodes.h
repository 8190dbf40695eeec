// Node objects for the overlay tests, in the shape the Kubernetes API returns them.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/model/model.h"

namespace ferry::overlay::test {

// A Node with spec.podCIDRs and InternalIP addresses (either may be empty).
inline nlohmann::json node_json(const std::string& name, const std::vector<std::string>& cidrs,
                                const std::vector<std::string>& internal_ips) {
  nlohmann::json n = {{"apiVersion", "v1"}, {"kind", "Node"}, {"metadata", {{"name", name}}}};
  n["spec"] = nlohmann::json::object();
  if (!cidrs.empty()) {
    n["spec"]["podCIDR"] = cidrs.front();
    n["spec"]["podCIDRs"] = cidrs;
  }
  nlohmann::json addresses = nlohmann::json::array();
  addresses.push_back({{"type", "Hostname"}, {"address", name}});
  for (const std::string& ip : internal_ips) addresses.push_back({{"type", "InternalIP"}, {"address", ip}});
  n["status"] = {{"addresses", addresses}};
  return n;
}

inline model::ClusterState state_of(const std::vector<nlohmann::json>& nodes) {
  std::vector<model::Object> objects;
  for (const nlohmann::json& j : nodes) {
    model::ObjectDecode d = model::decode_object(j);
    if (!d.object) throw std::runtime_error("bad test node: " + (d.error ? d.error->message : d.note));
    objects.push_back(*d.object);
  }
  model::ClusterState s;
  s.replace_all(std::move(objects));
  return s;
}

}  // namespace ferry::overlay::test
