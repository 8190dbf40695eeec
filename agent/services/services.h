// agent/services/services.h — Kubernetes Services as a datapath sees them (DESIGN.md "Services"):
// frontends (address, port, protocol) with the ordered backends new connections choose among,
// built from Services and EndpointSlices with kube-proxy's semantics; stable numeric ids for
// frontends and backends; Maglev tables (maglev.h).
//
// The IR (ServiceFrontend, ServiceBackend, ServiceSet, in agent/dataplane/dataplane.h) holds no
// model types: it is what the eBPF and iptables backends diff and install, as PolicySet is for
// policy.
//
// Semantics are kube-proxy's (pkg/proxy: servicechangetracker.go, endpointslicecache.go,
// topology.go CategorizeEndpoints, iptables/proxier.go), per Service port:
//  - skipped: ExternalName Services, headless Services (clusterIP None) and Services without a
//    clusterIP. A family is served only when the Service has a clusterIP of that family; its
//    frontends get endpoints of that family only (dual-stack: one set per family).
//  - frontends: each clusterIP:port (ClusterIP); for type NodePort and LoadBalancer with a
//    nodePort, each given node address of the family:nodePort (NodePort); each spec.externalIPs
//    entry of the family:port (ExternalIP). Protocols TCP, UDP, SCTP.
//  - endpoints: from every EndpointSlice labelled with the Service's name (IPv4/IPv6 slices;
//    FQDN slices are ignored), through the slice port whose name and protocol equal the
//    Service port's: the backend port is that slice port's number (this is how a named
//    targetPort is resolved per endpoint; the endpointslice controller writes one slice per
//    distinct number), so an endpoint whose slice lacks the port name is not a backend of that
//    port; slice ports without a number (or 0) are ignored. An endpoint is its first address;
//    the same address:port in several slices counts once (the first slice by name wins, unless a
//    later copy is on this node).
//  - conditions: ready and serving default to true when unset, terminating to false. New
//    connections go to ready endpoints; when there is none, to endpoints that are serving and
//    terminating (KEP-1669: lets a rolling update or scale-down finish connections instead of
//    failing them). Cluster and Local policies fall back independently.
//  - traffic policies: a ClusterIP frontend uses internalTrafficPolicy, the others
//    externalTrafficPolicy. Local = only endpoints on this node (with the same fallback); for an
//    external frontend with Local, traffic from pods and from the node itself still goes to
//    every cluster endpoint (kube-proxy's short-circuit: as if it went out to a load balancer and
//    came back), given as pod_and_host_backends.
//  - no backend: if the Service port has no usable endpoint anywhere, new connections are
//    rejected (TCP RST / ICMP unreachable, kube-proxy's REJECT); if it has some but none on this
//    node under a Local policy, they are dropped (kube-proxy's DROP).
//  - sessionAffinity ClientIP: every frontend of the port carries it with its timeout.
//  - a frontend claimed by two Services (same address, port and protocol) goes to the first by
//    namespace/name; the other is reported as a problem.
//
// Pure: no I/O, no kernel. Errors: build_services never throws on cluster content (problems come
// back as lines); IdAllocator throws ServicesError when its id range is exhausted (build_services
// passes that on) or load() gets a malformed file. Not thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/dataplane/dataplane.h"
#include "agent/services/maglev.h"
#include "net/net.h"

namespace ferry::model {
class ClusterState;
}

namespace ferry::services {

class ServicesError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------
// The IR lives in agent/dataplane/dataplane.h (backends include only that header); these names
// keep it reachable as services::ServiceFrontend and so on.
using dataplane::BackendId;
using dataplane::BackendState;
using dataplane::FrontendKind;
using dataplane::ServiceBackend;
using dataplane::ServiceFrontend;
using dataplane::ServiceId;
using dataplane::ServiceSet;
using dataplane::TrafficPolicy;
using dataplane::WhenEmpty;

// Canonical names, also the allocators' keys: "10.96.0.10:53/UDP", "[fd00::10]:80/TCP".
std::string frontend_key(const ServiceFrontend& f);
std::string backend_key(const ServiceBackend& b);
std::string_view kind_name(FrontendKind k);      // "ClusterIP", "NodePort", "ExternalIP"
std::string_view state_name(BackendState s);     // "active", "terminating", "not-serving"
std::string_view proto_name(uint8_t proto);      // "TCP", "UDP", "SCTP", "?"

// For ferryctl and the agent's debug endpoint: {"frontends": [{"id", "address", "port",
// "protocol", "kind", "service", "port_name", ..., "backends": [{"id", "address", "port",
// "state", "node", "local"}]}]}, frontends in id order.
nlohmann::json to_json(const ServiceSet& set);

// The Maglev table of one frontend (new connections from outside the node: `backends`), keyed
// by backend_key so that every node builds the same assignment.
std::vector<BackendId> maglev_table_for(const ServiceSet& set, const ServiceFrontend& frontend,
                                        uint32_t table_size = kMaglevDefaultTableSize);

// ---------------------------------------------------------------------------------------
// Ids

// Numbers for string keys, stable while a key is in use and across agent restarts
// (save/load), so that a change allocates only what is new. A freed number is not handed out
// again until the range wraps around: conntrack entries may still name it for a while.
class IdAllocator {
 public:
  explicit IdAllocator(uint32_t first = 1, uint32_t last = UINT32_MAX);

  uint32_t allocate(const std::string& key);  // throws ServicesError when the range is full
  std::optional<uint32_t> find(const std::string& key) const;
  void retain_only(const std::set<std::string>& keys);  // frees every other key's number
  void retain_if(const std::function<bool(uint32_t id)>& in_use);  // frees the others
  const std::map<std::string, uint32_t>& ids() const { return by_key_; }

  nlohmann::json save() const;         // {"next": N, "ids": {"key": id, ...}}
  void load(const nlohmann::json& j);  // throws ServicesError; replaces the content

 private:
  uint32_t first_, last_, next_;
  std::map<std::string, uint32_t> by_key_;
  std::map<uint32_t, std::string> by_id_;
};

// The two allocators build_services uses; saved as one file (services-ids.json).
struct ServiceIds {
  IdAllocator frontends;
  IdAllocator backends;

  nlohmann::json save() const;         // {"version": 1, "frontends": ..., "backends": ...}
  void load(const nlohmann::json& j);  // throws ServicesError
};

// ---------------------------------------------------------------------------------------
// Building

struct BuildResult {
  ServiceSet set;
  std::vector<std::string> problems;  // "Service b/web port http: frontend 10.96.0.5:80/TCP
                                      // is already Service a/api's", one line each
};

// The whole node's services. `node_addresses` are the addresses NodePorts listen on (kube-proxy's
// --nodeport-addresses). Allocates ids for what is new and frees those no longer used.
// Deterministic for a given input and allocator state.
BuildResult build_services(const model::ClusterState& cluster, std::string_view node,
                           const std::vector<net::Ip>& node_addresses, ServiceIds& ids);

}  // namespace ferry::services
