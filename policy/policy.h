// policy/policy.h — Kubernetes NetworkPolicy compiled to what a datapath enforces
// (DESIGN.md "Identities"): security identities for label sets and ipBlock regions, the ipcache
// (IP/prefix -> identity, longest prefix wins) and per-endpoint allow entries
// (identity, protocol, port range, direction) as dataplane::PolicySet.
//
// Semantics are upstream's (networking.k8s.io/v1 API reference, the e2e suite):
//  - a pod is isolated in a direction when a policy of its namespace selects it and isolates that
//    direction (policyTypes, or the default: Ingress always, Egress when egress rules exist);
//    it then allows the union of the rules of every such policy;
//  - peers: podSelector (this namespace), namespaceSelector (+ podSelector), ipBlock with except
//    (matched against any address, pod IPs included, as the e2e CIDR cases require);
//  - ports: TCP/UDP/SCTP, numeric, named (ingress: the endpoint's own container ports; egress:
//    the destination pod's), endPort ranges; no ports = every protocol and port;
//  - traffic from the node itself to its pods is always allowed (kubelet probes), as Calico and
//    Cilium do by default.
//
// How identities stay exact: an identity is the class of addresses that no policy can tell apart:
// (kind, namespace, pod labels, namespace labels, named ports, the ipBlock regions the address is
// in). Pods with the same labels and ports share one; an ipBlock splits only the addresses it
// covers. So the datapath needs one LPM lookup per peer and a few exact lookups per flow,
// whatever the number of policies, pods or rules.
//
// Pure: no I/O, no kernel. Errors: never throws on cluster content (a policy that cannot apply,
// e.g. a named port no pod declares, simply allows nothing for that port); IdentityAllocator::load
// throws PolicyError on a malformed file. Not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/dataplane/dataplane.h"
#include "agent/model/model.h"
#include "net/net.h"

namespace ferry::policy {

using dataplane::Direction;
using dataplane::Identity;

class PolicyError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What one identity stands for. Its canonical key() names it: two addresses with equal keys
// are indistinguishable to every policy.
struct IdentityInfo {
  enum class Kind { Host, RemoteNode, World, Pod };
  struct NamedPort {
    std::string name;
    uint8_t proto = 0;  // IPPROTO_TCP/UDP/SCTP
    uint16_t port = 0;
    auto operator<=>(const NamedPort&) const = default;
  };
  Kind kind = Kind::World;
  std::string ns;                       // Pod: its namespace
  model::Labels labels;                 // Pod: its labels
  model::Labels ns_labels;              // Pod: its namespace's labels
  std::vector<NamedPort> named_ports;   // Pod: its named container ports, sorted
  std::vector<std::string> ip_blocks;   // the ipBlocks containing these addresses, each as
                                        // canonical_ip_block(), sorted
  std::string key() const;              // canonical JSON text
  nlohmann::json to_json() const;       // for identities.json and ferryctl
  static std::optional<IdentityInfo> from_json(const nlohmann::json& j);
  bool operator==(const IdentityInfo&) const = default;
};

std::string_view kind_name(IdentityInfo::Kind k);  // "host", "remote-node", "world", "pod"
// "10.0.0.0/16 except 10.0.1.0/24,10.0.2.0/24" (cidr and excepts in network form, excepts sorted).
std::string canonical_ip_block(const model::IPBlock& block);

// Numbers for identities, stable for as long as an identity is in use and across agent
// restarts (save/load), so that a change allocates only what is new and a restart rewrites
// nothing. Host, RemoteNode and World without ipBlocks have the reserved numbers 1, 2, 3.
class IdentityAllocator {
 public:
  Identity allocate(const IdentityInfo& info);  // existing number, or the lowest free >= 256
  // Frees every allocated identity not in `in_use` (called by compile() after each pass).
  void retain_only(const std::map<Identity, IdentityInfo>& in_use);
  const std::map<Identity, IdentityInfo>& identities() const { return by_id_; }
  nlohmann::json save() const;
  void load(const nlohmann::json& j);  // throws PolicyError; replaces the current content

 private:
  std::map<Identity, IdentityInfo> by_id_;
  std::map<std::string, Identity> by_key_;
};

// A pod interface on this node: the registry's endpoint plus the pod it belongs to (from the
// endpoint record's K8S_POD_NAMESPACE/K8S_POD_NAME, or found by IP when those are empty).
struct LocalEndpoint {
  uint32_t endpoint_id = 0;
  std::string pod_namespace;  // "" = unknown
  std::string pod_name;
  std::vector<net::Ip> ips;
};

struct CompileInput {
  const model::ClusterState* cluster = nullptr;
  std::string node;                     // this node's name
  std::vector<net::Ip> host_ips;        // every address of this node (Host identity), incl.
                                        // the bridge gateways; the Node object's InternalIPs
                                        // are added by compile()
  std::vector<LocalEndpoint> endpoints;
  bool enforce = true;
};

struct CompileResult {
  dataplane::PolicySet set;
  std::map<Identity, IdentityInfo> identities;  // every identity the ipcache or an entry names
  // endpoint_id -> "ns/name" of its pod (endpoints whose pod is unknown are absent: they are
  // not isolated)
  std::map<uint32_t, std::string> endpoint_pods;
  // endpoint_id -> "ns/policy" of the policies that select it, sorted (for ferryctl)
  std::map<uint32_t, std::vector<std::string>> endpoint_policies;
};

// Compiles the whole node. Deterministic for a given input and allocator state.
CompileResult compile(const CompileInput& in, IdentityAllocator& identities);

// The verdict of compiled rules for one packet direction, exactly as the datapath decides it:
// ipcache longest-prefix match of `peer`, then the endpoint's entries. An endpoint absent from
// set.endpoints (or set.enforce false) allows everything. Used by tests and ferryctl.
Identity lookup_identity(const dataplane::PolicySet& set, const net::Ip& ip);
bool allows(const dataplane::PolicySet& set, uint32_t endpoint_id, Direction dir, const net::Ip& peer,
            uint8_t proto, uint16_t port);

// A port range as the fewest (port, prefix length) pairs covering it exactly, e.g. 80-81 ->
// {(80, 15)}, 0-65535 -> {(0, 0)}. The eBPF backend's policy keys; tested here.
struct PortPrefix {
  uint16_t port = 0;
  int len = 16;
  auto operator<=>(const PortPrefix&) const = default;
};
std::vector<PortPrefix> port_range_prefixes(uint16_t first, uint16_t last);

}  // namespace ferry::policy
