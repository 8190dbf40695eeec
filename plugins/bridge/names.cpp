// Deterministic names: from net::stable_hash64 (FNV-1a), so every process computes the same ones.
#include "names.h"

#include <cstdio>

#include "net/net.h"

namespace ferry::bridge {

uint64_t fnv1a64(std::string_view data) { return net::stable_hash64(data); }

std::string hex64(uint64_t v) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string host_veth_name(std::string_view network, std::string_view container_id, std::string_view ifname) {
  std::string key;
  key.append(network).append(container_id).append(ifname);
  return "ferry" + hex64(fnv1a64(key)).substr(0, 10);
}

std::string host_veth_alias(std::string_view network, std::string_view container_id, std::string_view ifname) {
  // Network names and container IDs cannot contain spaces (CNI name rules): ' ' separates.
  return "ferry " + std::string(network) + " " + std::string(container_id) + " " + std::string(ifname);
}

bool parse_host_veth_alias(std::string_view alias, VethAlias* out) {
  if (alias.substr(0, 6) != "ferry ") return false;
  std::string_view rest = alias.substr(6);
  size_t a = rest.find(' ');
  if (a == rest.npos) return false;
  size_t b = rest.find(' ', a + 1);
  if (b == rest.npos || rest.find(' ', b + 1) != rest.npos) return false;
  out->network = rest.substr(0, a);
  out->container_id = rest.substr(a + 1, b - a - 1);
  out->ifname = rest.substr(b + 1);
  return !out->network.empty() && !out->container_id.empty() && !out->ifname.empty();
}

std::string masq_chain_name(std::string_view network, std::string_view container_id) {
  std::string key;
  key.append(network).append(container_id);
  return "FERRY-MASQ-" + hex64(fnv1a64(key));
}

std::string masq_comment(std::string_view network, std::string_view container_id) {
  return "ferry: " + reference_masq_comment(network, container_id);
}

std::string reference_masq_comment(std::string_view network, std::string_view container_id) {
  return "name: \"" + std::string(network) + "\" id: \"" + std::string(container_id) + "\"";
}

std::string vlan_gateway_name(std::string_view bridge, int vlan) {
  return std::string(bridge) + "." + std::to_string(vlan);
}

std::string vlan_gateway_peer_name(std::string_view bridge, int vlan) {
  return "ferry" + hex64(fnv1a64("vlan-gateway " + std::string(bridge) + "." + std::to_string(vlan))).substr(0, 10);
}

std::string endpoint_file_name(std::string_view container_id, std::string_view ifname) {
  return std::string(container_id) + "-" + std::string(ifname) + ".json";
}

}  // namespace ferry::bridge
