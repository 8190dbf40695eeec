// plugins/bridge/names.h — the deterministic names and labels ferry-bridge gives kernel
// objects, so DEL and GC find them from the attachment identity alone (network, container
// ID, ifname), without live addresses or the pod's namespace.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ferry::bridge {

// 64-bit FNV-1a (net::stable_hash64): stable across builds and machines.
uint64_t fnv1a64(std::string_view data);
std::string hex64(uint64_t v);  // 16 lower-case hex digits

// "ferry" + first 10 hex digits of fnv1a64(network + containerID + ifname): 15 characters.
std::string host_veth_name(std::string_view network, std::string_view container_id, std::string_view ifname);
// IFLA_IFALIAS on the host veth: lets GC recognise veths of this network.
std::string host_veth_alias(std::string_view network, std::string_view container_id, std::string_view ifname);
struct VethAlias {
  std::string network, container_id, ifname;
};
bool parse_host_veth_alias(std::string_view alias, VethAlias* out);

// iptables nat chain for one container's masquerade rules: "FERRY-MASQ-" + 16 hex digits of
// fnv1a64(network + containerID) (27 characters; iptables allows 28).
std::string masq_chain_name(std::string_view network, std::string_view container_id);
// Comment on every masquerade rule: ferry: name: "<network>" id: "<containerID>"
std::string masq_comment(std::string_view network, std::string_view container_id);
// The reference bridge's comment, so DEL also removes rules a reference ADD left behind.
std::string reference_masq_comment(std::string_view network, std::string_view container_id);

// The VLAN gateway link "<bridge>.<vlan>" and its bridge-side peer.
std::string vlan_gateway_name(std::string_view bridge, int vlan);
std::string vlan_gateway_peer_name(std::string_view bridge, int vlan);

// The endpoint record's file name: "<containerID>-<ifname>.json".
std::string endpoint_file_name(std::string_view container_id, std::string_view ifname);

}  // namespace ferry::bridge
