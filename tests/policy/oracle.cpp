// The oracle: a direct reading of the NetworkPolicy objects (see oracle.h).
#include "tests/policy/oracle.h"

#include <netinet/in.h>

#include <algorithm>

namespace ferry::policy::testing {

namespace {

cni::IPAddr as_addr(const net::Ip& ip) { return cni::IPAddr{ip.family, ip.bytes}; }


bool is_node_address(const model::ClusterState& cluster, const std::vector<net::Ip>& host_ips,
                     const cni::IPAddr& addr) {
  for (const auto& ip : host_ips)
    if (as_addr(ip) == addr) return true;
  for (const auto* node : cluster.nodes())
    for (const auto& ip : node->internal_ips)
      if (ip == addr) return true;
  return false;
}

bool is_this_node(const model::ClusterState& cluster, const std::string& node, const std::vector<net::Ip>& host_ips,
                  const cni::IPAddr& addr) {
  for (const auto& ip : host_ips)
    if (as_addr(ip) == addr) return true;
  if (const auto* self = cluster.node(node))
    for (const auto& ip : self->internal_ips)
      if (ip == addr) return true;
  return false;
}

const model::Pod* pod_with_ip(const model::ClusterState& cluster, const std::vector<net::Ip>& host_ips,
                              const cni::IPAddr& addr) {
  if (is_node_address(cluster, host_ips, addr)) return nullptr;
  for (const auto* pod : cluster.pods()) {
    if (pod->host_network || pod->phase == "Succeeded" || pod->phase == "Failed") continue;
    if (std::find(pod->pod_ips.begin(), pod->pod_ips.end(), addr) != pod->pod_ips.end()) return pod;
  }
  return nullptr;
}

model::Labels namespace_labels(const model::ClusterState& cluster, const std::string& ns) {
  const auto* n = cluster.namespace_named(ns);
  return n ? n->meta.labels : model::Labels{};
}

bool peer_matches(const model::ClusterState& cluster, const model::NetworkPolicy& policy,
                  const model::NetworkPolicyPeer& peer, const cni::IPAddr& addr, const model::Pod* peer_pod) {
  if (peer.ip_block) {
    if (!peer.ip_block->cidr.contains(addr)) return false;
    for (const auto& e : peer.ip_block->except)
      if (e.contains(addr)) return false;
    return true;
  }
  if (!peer.pod_selector && !peer.namespace_selector) return false;
  if (!peer_pod) return false;
  if (peer.namespace_selector) {
    if (!peer.namespace_selector->matches(namespace_labels(cluster, peer_pod->meta.ns))) return false;
  } else if (peer_pod->meta.ns != policy.meta.ns) {
    return false;
  }
  return !peer.pod_selector || peer.pod_selector->matches(peer_pod->meta.labels);
}

bool port_matches(const model::NetworkPolicyPort& p, const model::Pod* dest_pod, uint8_t proto, uint16_t port) {
  if (model::ip_protocol(p.protocol) != proto) return false;
  if (!p.port) return true;
  if (const int* number = std::get_if<int>(&*p.port)) return *number <= port && port <= p.end_port.value_or(*number);
  const auto& name = std::get<std::string>(*p.port);
  if (!dest_pod) return false;
  for (const auto& cp : dest_pod->ports)
    if (cp.name == name && cp.protocol == p.protocol && cp.container_port == port) return true;
  return false;
}

}  // namespace

bool oracle_allows(const model::ClusterState& cluster, const std::string& node, const std::vector<net::Ip>& host_ips,
                   const model::Pod* endpoint_pod, Direction dir, const net::Ip& peer, uint8_t proto,
                   uint16_t port) {
  if (!endpoint_pod) return true;
  bool ingress = dir == Direction::Ingress;
  cni::IPAddr addr = as_addr(peer);
  const model::Pod* peer_pod = pod_with_ip(cluster, host_ips, addr);
  bool isolated = false;
  for (const auto* policy : cluster.network_policies()) {
    if (policy->meta.ns != endpoint_pod->meta.ns || !policy->pod_selector.matches(endpoint_pod->meta.labels)) continue;
    if (!(ingress ? policy->isolates_ingress() : policy->isolates_egress())) continue;
    isolated = true;
    for (const auto& rule : ingress ? policy->ingress : policy->egress) {
      bool peer_ok = rule.peers.empty() || std::any_of(rule.peers.begin(), rule.peers.end(), [&](const auto& p) {
                       return peer_matches(cluster, *policy, p, addr, peer_pod);
                     });
      const model::Pod* dest_pod = ingress ? endpoint_pod : peer_pod;
      bool port_ok = rule.ports.empty() || std::any_of(rule.ports.begin(), rule.ports.end(), [&](const auto& p) {
                       return port_matches(p, dest_pod, proto, port);
                     });
      if (peer_ok && port_ok) return true;
    }
  }
  if (!isolated) return true;
  return ingress && is_this_node(cluster, node, host_ips, addr);
}

}  // namespace ferry::policy::testing
