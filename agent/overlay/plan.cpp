// The overlay plan from Node objects (pure), VTEP MACs and the node's CNI conflist.
#include <algorithm>
#include <map>
#include <set>

#include <nlohmann/json.hpp>

#include "agent/model/model.h"
#include "agent/overlay/overlay.h"

namespace ferry::overlay {

namespace {

net::Ip to_ip(const cni::IPAddr& a) { return net::Ip{a.family, a.bytes}; }

net::Prefix to_prefix(const cni::IPNet& n) {
  net::Prefix p;
  p.ip = to_ip(n.addr);
  p.len = n.prefix;
  return p.network();
}

// First IPv4 InternalIP, else the first IPv6 one.
std::optional<net::Ip> underlay_of(const model::Node& node) {
  for (const cni::IPAddr& a : node.internal_ips)
    if (a.is_v4()) return to_ip(a);
  for (const cni::IPAddr& a : node.internal_ips)
    if (a.is_v6()) return to_ip(a);
  return std::nullopt;
}

std::vector<net::Prefix> cidrs_of(const model::Node& node) {
  std::vector<net::Prefix> out;
  for (const cni::IPNet& n : node.pod_cidrs)
    if (n.addr.is_v4() || n.addr.is_v6()) out.push_back(to_prefix(n));
  std::sort(out.begin(), out.end(), prefix_less);
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

bool prefix_less(const net::Prefix& a, const net::Prefix& b) {
  if (a.ip.family != b.ip.family) return a.ip.family < b.ip.family;
  if (a.ip.bytes != b.ip.bytes) return a.ip.bytes < b.ip.bytes;
  return a.len < b.len;
}

net::Mac vtep_mac(const net::Ip& underlay_ip) {
  const uint8_t* b = underlay_ip.bytes.data() + (underlay_ip.family == AF_INET6 ? 12 : 0);
  return {0x0e, 0xfe, b[0], b[1], b[2], b[3]};
}

OverlayPlan plan_overlay(const model::ClusterState& state, std::string_view self_node, const OverlayConfig& config) {
  OverlayPlan plan;
  plan.config = config;
  plan.self_node = std::string(self_node);
  if (const model::Node* self = state.node(self_node)) {
    plan.local_underlay_ip = underlay_of(*self);
    plan.local_pod_cidrs = cidrs_of(*self);
    if (!plan.local_underlay_ip) plan.skipped.push_back("node " + plan.self_node + " (this node): no InternalIP");
  } else {
    plan.skipped.push_back("node " + plan.self_node + " (this node): no Node object");
  }

  std::set<net::Prefix, decltype(&prefix_less)> taken(prefix_less);
  for (const net::Prefix& p : plan.local_pod_cidrs) taken.insert(p);
  std::vector<net::Ip> used_ips;
  if (plan.local_underlay_ip) used_ips.push_back(*plan.local_underlay_ip);
  for (const model::Node* node : state.nodes()) {  // sorted by name
    const std::string& name = node->meta.name;
    if (name == self_node) continue;
    auto ip = underlay_of(*node);
    std::vector<net::Prefix> cidrs = cidrs_of(*node);
    auto skip = [&](const std::string& why) { plan.skipped.push_back("node " + name + ": " + why); };
    if (!ip) {
      skip("no InternalIP");
      continue;
    }
    if (cidrs.empty()) {
      skip("no pod CIDR");
      continue;
    }
    if (plan.local_underlay_ip && ip->family != plan.local_underlay_ip->family) {
      skip("underlay address " + ip->str() + " is not of this node's underlay family");
      continue;
    }
    if (std::find(used_ips.begin(), used_ips.end(), *ip) != used_ips.end()) {
      skip("underlay address " + ip->str() + " is already another node's");
      continue;
    }
    RemoteNode remote;
    remote.name = name;
    remote.underlay_ip = *ip;
    remote.vtep_mac = vtep_mac(*ip);
    for (const net::Prefix& p : cidrs) {
      if (!taken.insert(p).second) skip("pod CIDR " + p.str() + " is already another node's");
      else remote.pod_cidrs.push_back(p);
    }
    if (remote.pod_cidrs.empty()) continue;
    used_ips.push_back(*ip);
    plan.remotes.push_back(std::move(remote));
  }
  plan.cluster_pod_cidrs.assign(taken.begin(), taken.end());
  return plan;
}

std::string render_conflist(const std::vector<net::Prefix>& pod_cidrs, const ConflistOptions& o) {
  if (pod_cidrs.empty()) return "";
  using nlohmann::json;
  json ranges = json::array();
  json routes = json::array();
  bool v4 = false, v6 = false;
  for (const net::Prefix& p : pod_cidrs) {
    json range = json::object({{"subnet", p.network().str()}});
    ranges.push_back(json::array({range}));  // one range set per CIDR
    (p.ip.family == AF_INET6 ? v6 : v4) = true;
  }
  if (v4) routes.push_back({{"dst", "0.0.0.0/0"}});
  if (v6) routes.push_back({{"dst", "::/0"}});
  json bridge = {{"type", "ferry-bridge"},
                 {"bridge", o.bridge},
                 {"isGateway", true},
                 {"ipMasq", false},
                 // A pod reaching itself through a Service: in iptables mode the DNATed packet
                 // goes back out the port it came in (kube-proxy needs the same; flannel's
                 // conflist sets it too). eBPF mode redirects it and needs nothing.
                 {"hairpinMode", true},
                 {"endpointDir", o.endpoint_dir},
                 {"agentSocket", o.agent_socket},
                 {"agentRequired", o.agent_required},
                 {"ipam", {{"type", "ferry-host-local"}, {"dataDir", o.ipam_dir}, {"ranges", ranges}, {"routes", routes}}}};
  if (o.mtu > 0) bridge["mtu"] = o.mtu;
  json conf = {{"cniVersion", "1.1.0"}, {"name", o.network}, {"plugins", json::array({bridge})}};
  return conf.dump(2) + "\n";
}

}  // namespace ferry::overlay
