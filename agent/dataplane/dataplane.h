// agent/dataplane/dataplane.h — what the reconcile loop asks of a datapath backend (eBPF or
// iptables), and the pure diff between desired and installed endpoints.
//
// Backends never interpret Kubernetes objects: they get Endpoint values that the agent built
// from the endpoint registry. Errors: backends throw DataplaneError (with the kernel object and
// the cause in the message); the reconcile loop catches per endpoint, counts it and retries on the
// next pass. Nothing here is thread-safe: one reconcile thread owns the backend.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "net/net.h"

namespace ferry::dataplane {

class DataplaneError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A local pod interface as the datapath sees it. Backends must round-trip every field below
// through installed_endpoints(): whatever the kernel objects cannot hold (names, MACs) they
// encode in what they create (map values, rule comments), so that an agent restart finds
// installed == desired and writes nothing.
struct Endpoint {
  uint32_t endpoint_id = 0;  // stable, never 0; allocated by the agent's endpoint registry
  std::string host_veth;     // host-side veth name ("ferry" + 10 hex)
  int host_ifindex = 0;      // in the node's netns
  std::vector<net::Ip> ips;  // the pod's addresses on this interface, sorted
  net::Mac pod_mac{};        // the pod interface's MAC
  net::Mac host_mac{};       // source MAC for datapath delivery to the pod (the bridge's MAC)
  // false when installed state is partial or outdated (a program detached, an old program
  // version, a rule missing); desired endpoints are always complete.
  bool complete = true;

  bool operator==(const Endpoint&) const = default;
};

// The overlay as a datapath sees it (DESIGN.md "Overlay"): the node's VXLAN device and, for
// every other node, its pod CIDRs, underlay address and VTEP MAC. agent/overlay programs the
// kernel side (device, routes, neighbours, FDB) in both modes; a backend may add a direct path
// on top (eBPF: from-pod sends remote-pod traffic straight to the VXLAN device, and a program on
// the device delivers arriving traffic straight into the pod).
struct OverlayRoute {
  net::Prefix pod_cidr;  // a remote node's pod CIDR (network form)
  net::Ip node_ip;       // that node's underlay address (the VXLAN destination)
  net::Mac vtep_mac{};   // that node's VTEP MAC (derived from node_ip)
  bool operator==(const OverlayRoute&) const = default;
};

struct Overlay {
  std::string device;          // e.g. "ferry_vxlan"; empty = no overlay
  int ifindex = 0;             // in the node's netns
  net::Mac local_vtep_mac{};   // the device's own MAC
  std::vector<OverlayRoute> routes;  // sorted by pod_cidr (family, bytes, len)
  bool operator==(const Overlay&) const = default;
};

// One counter as Prometheus and ferryctl show it.
struct Counter {
  std::string name;     // "redirect_local", "to_stack", "drop_spoofed", ...
  bool drop = false;    // true for drop reasons
  uint64_t packets = 0;
  uint64_t bytes = 0;
};

// ---------------------------------------------------------------------------------------
// NetworkPolicy as a datapath sees it (DESIGN.md "Identities"): the compiler in policy/ turns
// Kubernetes objects into this; backends only install it. Every IP the node may talk to has an
// identity (ipcache, longest prefix wins); each local endpoint has allow entries per direction.

using Identity = uint32_t;
inline constexpr Identity kIdentityAny = 0;         // in a PolicyEntry: any peer
inline constexpr Identity kIdentityHost = 1;        // this node's own addresses
inline constexpr Identity kIdentityRemoteNode = 2;  // other nodes' addresses
inline constexpr Identity kIdentityWorld = 3;       // anything else (outside the cluster)
inline constexpr Identity kFirstAllocatedIdentity = 256;

enum class Direction : uint8_t {
  Ingress = 1,  // traffic to the endpoint; the peer is the source
  Egress = 2,   // traffic from the endpoint; the peer is the destination
};

// One allow entry. proto 0 = any protocol (then ports are 0..65535); ports are the destination
// port range, inclusive (0..65535 = any port of proto).
struct PolicyEntry {
  Identity peer = kIdentityAny;
  uint8_t proto = 0;  // 0 or IPPROTO_TCP / IPPROTO_UDP / IPPROTO_SCTP
  uint16_t port_first = 0;
  uint16_t port_last = 65535;
  auto operator<=>(const PolicyEntry&) const = default;
};

// The policy of one local endpoint. A direction that is not isolated allows everything (its
// entries are empty); an isolated one allows exactly its entries (none = deny all).
struct EndpointPolicy {
  bool ingress_isolated = false;
  bool egress_isolated = false;
  std::vector<PolicyEntry> ingress;  // sorted, deduplicated, overlapping ranges merged
  std::vector<PolicyEntry> egress;
  bool operator==(const EndpointPolicy&) const = default;
};

struct IpcacheEntry {
  net::Prefix prefix;  // network form; 0.0.0.0/0 and ::/0 are always present
  Identity identity = kIdentityWorld;
  bool operator==(const IpcacheEntry&) const = default;
};

struct PolicySet {
  bool enforce = true;  // false: the backend installs no policy and allows everything
  std::vector<IpcacheEntry> ipcache;                 // sorted by (family, bytes, len)
  std::map<uint32_t, EndpointPolicy> endpoints;      // endpoint_id -> policy; a programmed
                                                     // endpoint absent here is not isolated
  bool operator==(const PolicySet&) const = default;
};

// ---------------------------------------------------------------------------------------
// Services as a datapath sees them (DESIGN.md "Services"): agent/services builds this from
// Services and EndpointSlices with kube-proxy's semantics (see services.h for the rules);
// backends only install it.

// One per frontend (address, port, protocol), stable while the frontend exists: what a
// datapath's reverse-NAT, affinity and Maglev entries are keyed by.
using ServiceId = uint32_t;
// One per backend (address, port, protocol), shared by every frontend that names it; stable
// while any frontend names it: what conntrack entries remember.
using BackendId = uint32_t;

enum class FrontendKind : uint8_t { ClusterIP, NodePort, ExternalIP };
enum class TrafficPolicy : uint8_t { Cluster, Local };
enum class BackendState : uint8_t {
  Active,       // ready
  Terminating,  // not ready, serving and terminating: chosen only when no endpoint is ready
  NotServing,   // neither: never chosen, kept so that its established flows can finish
};
// What a frontend does with a new connection while `backends` is empty.
enum class WhenEmpty : uint8_t {
  Reject,  // the Service port has no usable endpoint anywhere: TCP RST / ICMP unreachable
  Drop,    // it has some, but none on this node and the frontend's policy is Local
};

struct ServiceFrontend {
  net::Ip address;
  uint16_t port = 0;
  uint8_t proto = 0;  // IPPROTO_TCP / IPPROTO_UDP / IPPROTO_SCTP
  FrontendKind kind = FrontendKind::ClusterIP;
  std::string service;    // "namespace/name", for ferryctl and logs
  std::string port_name;  // the Service port's name, "" when unnamed
  bool affinity = false;  // sessionAffinity ClientIP
  uint32_t affinity_timeout_seconds = 0;  // set when affinity
  // internalTrafficPolicy for ClusterIP, externalTrafficPolicy for NodePort and ExternalIP.
  TrafficPolicy traffic_policy = TrafficPolicy::Cluster;
  // What new connections choose among, sorted by (family, address bytes, port); may be empty.
  std::vector<BackendId> backends;
  // NodePort/ExternalIP with traffic_policy Local only: what new connections from pods and from
  // the node itself choose among (the cluster-wide choice); nullopt = use `backends`.
  std::optional<std::vector<BackendId>> pod_and_host_backends;
  WhenEmpty when_empty = WhenEmpty::Reject;
  // The port's other endpoints of this family (not ready, terminating while others are ready,
  // on other nodes under Local): never chosen for new connections, but established flows to
  // them keep going. Sorted like `backends`.
  std::vector<BackendId> other_backends;

  bool operator==(const ServiceFrontend&) const = default;
};

struct ServiceBackend {
  net::Ip address;
  uint16_t port = 0;
  uint8_t proto = 0;
  // When Services disagree about one address:port (they should not), the best state wins.
  BackendState state = BackendState::Active;
  std::string node;     // the endpoint's nodeName, "" when unknown
  bool local = false;   // node is this node

  bool operator==(const ServiceBackend&) const = default;
};

struct ServiceSet {
  std::map<ServiceId, ServiceFrontend> frontends;
  std::map<BackendId, ServiceBackend> backends;  // exactly those some frontend names

  bool operator==(const ServiceSet&) const = default;
};

struct MapFill {
  uint64_t entries = 0;
  uint64_t max_entries = 0;
};

struct Stats {
  std::vector<Counter> counters;         // empty where the backend has none
  std::map<std::string, MapFill> maps;   // eBPF: per pinned map
  // Programming writes since start: map updates/deletes, tc attach/detach, restores. Conntrack
  // GC is housekeeping and counted apart (counter "ct_gc_deleted").
  uint64_t kernel_writes = 0;
};

class Dataplane {
 public:
  virtual ~Dataplane() = default;
  virtual std::string name() const = 0;  // "ebpf" or "iptables"

  // Node-wide setup (pins, base chains, sysctls). Idempotent; must not disturb installed
  // endpoints, so that an agent restart keeps traffic flowing.
  virtual void start() = 0;
  // What the kernel holds now, reconstructed from kernel state only.
  virtual std::vector<Endpoint> installed_endpoints() = 0;
  // Create or update one endpoint; idempotent. Returns only when the endpoint is enforced.
  virtual void program_endpoint(const Endpoint& desired) = 0;
  // Remove one endpoint as returned by installed_endpoints(); absent pieces are not an error.
  virtual void remove_endpoint(const Endpoint& installed) = 0;
  // Desired overlay (whole set, idempotent; an empty device removes the backend's overlay
  // state). Writes only what differs from what is installed, so a restart writes nothing.
  // Default: the backend relies on the kernel's routes and FDB (iptables mode).
  virtual void program_overlay(const Overlay& desired) { (void)desired; }
  // Desired policy (whole set, idempotent): writes only what differs from what is installed,
  // so a restart with nothing changed writes nothing. When it returns, every endpoint in
  // `desired` is enforced as given, and flows whose verdict changed are re-judged on their
  // next packet (established flows that are still allowed keep going).
  virtual void program_policy(const PolicySet& desired) = 0;
  // Desired services (whole set, idempotent): writes only what differs from what is installed,
  // so a restart with nothing changed writes nothing. When it returns, new connections to every
  // frontend in `desired` choose among its backends as given; established flows to backends that
  // are still named (in any state) keep going; frontends absent here are no longer translated.
  virtual void program_services(const ServiceSet& desired) = 0;
  // Periodic housekeeping (conntrack GC); cheap when there is nothing to do.
  virtual void maintain() {}
  // Remove every trace of this backend from the node (datapath mode switch, uninstall).
  virtual void cleanup_all() = 0;
  virtual Stats stats() = 0;
};

// The reconcile diff: endpoints to (re)program and installed endpoints to remove, matched by
// endpoint_id. Pure; unit-tested.
struct EndpointDiff {
  std::vector<Endpoint> program;
  std::vector<Endpoint> remove;
};
EndpointDiff diff_endpoints(const std::vector<Endpoint>& desired, const std::vector<Endpoint>& installed);

}  // namespace ferry::dataplane
