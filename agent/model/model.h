// agent/model/model.h — the cluster state the agent acts on: plain value types for the
// Kubernetes objects it needs (Node, Namespace, Pod, Service, EndpointSlice, NetworkPolicy),
// their decoding from the exact JSON/YAML shapes the Kubernetes API and kubectl produce, and
// ClusterState, the keyed object store the sources fill and the reconcile loop reads.
//
// Error handling: decoding never throws and never crashes on any input: bad input is expected
// (hand-written manifests, a newer API server), so problems come back as values, one line each,
// that say where (file, document, object, field path) and what was wrong. A bad object is
// skipped; the other objects of the same file still decode. ClusterState never throws either.
// Nothing here does I/O or touches the kernel. Not thread-safe: one thread owns a ClusterState.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "cni/cni.h"

namespace ferry::model {

using Labels = std::map<std::string, std::string>;

// ---------------------------------------------------------------------------------------
// Common pieces

struct ObjectMeta {
  std::string name;
  std::string ns;  // metadata.namespace; "default" when a namespaced object omits it,
                   // always empty for cluster-scoped kinds (Node, Namespace)
  std::string uid;
  std::string resource_version;  // not content: ClusterState ignores it when detecting changes
  Labels labels;
  std::map<std::string, std::string> annotations;
  bool deleting = false;  // metadata.deletionTimestamp is set (graceful deletion under way)

  bool operator==(const ObjectMeta&) const = default;
};

enum class Protocol { TCP, UDP, SCTP };
std::string_view protocol_name(Protocol p);  // "TCP", "UDP", "SCTP"
uint8_t ip_protocol(Protocol p);             // IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP

// A Kubernetes IntOrString used for ports: a number (1-65535) or a port name.
using IntOrString = std::variant<int, std::string>;

// metav1.LabelSelector. An empty selector ({}) selects everything.
struct LabelSelectorRequirement {
  enum class Operator { In, NotIn, Exists, DoesNotExist };
  std::string key;
  Operator op = Operator::Exists;
  std::vector<std::string> values;  // In/NotIn: non-empty; Exists/DoesNotExist: empty

  bool operator==(const LabelSelectorRequirement&) const = default;
};

struct LabelSelector {
  Labels match_labels;
  std::vector<LabelSelectorRequirement> match_expressions;

  bool empty() const { return match_labels.empty() && match_expressions.empty(); }
  // Kubernetes semantics: every matchLabels pair and every expression must hold
  // (NotIn and DoesNotExist hold when the key is absent).
  bool matches(const Labels& labels) const;
  bool operator==(const LabelSelector&) const = default;
};

// ---------------------------------------------------------------------------------------
// The objects

struct Node {
  ObjectMeta meta;
  std::vector<cni::IPNet> pod_cidrs;     // spec.podCIDR + spec.podCIDRs, deduplicated, network form
  std::vector<cni::IPAddr> internal_ips;  // status.addresses of type InternalIP, in order

  bool operator==(const Node&) const = default;
};

struct Namespace {
  ObjectMeta meta;  // labels are what namespaceSelectors match

  bool operator==(const Namespace&) const = default;
};

struct ContainerPort {
  std::string container;  // name of the container declaring it
  std::string name;       // "" when unnamed; otherwise an IANA service name (named ports)
  int container_port = 0;
  Protocol protocol = Protocol::TCP;

  bool operator==(const ContainerPort&) const = default;
};

struct Pod {
  ObjectMeta meta;
  std::string node_name;  // spec.nodeName; "" while unscheduled
  bool host_network = false;
  std::string phase;  // status.phase: Pending, Running, Succeeded, Failed, Unknown, or ""
  // status.conditions[type=Ready]: status "True" -> true, anything else -> false; unset when
  // the object has no Ready condition (a hand-written manifest often has none).
  std::optional<bool> ready_condition;
  std::vector<cni::IPAddr> pod_ips;  // status.podIP + status.podIPs, deduplicated, in order
  std::vector<ContainerPort> ports;  // spec.containers[*].ports[*], in order

  bool deleting() const { return meta.deleting; }
  // Ready as the endpoints controllers see it: the Ready condition, or phase Running when the
  // object has no Ready condition.
  bool ready() const { return ready_condition.value_or(phase == "Running"); }
  bool operator==(const Pod&) const = default;
};

struct ServicePort {
  std::string name;
  Protocol protocol = Protocol::TCP;
  int port = 0;
  IntOrString target_port = 0;  // absent in the object = the same number as port
  std::optional<int> node_port;

  bool operator==(const ServicePort&) const = default;
};

enum class IPFamily { IPv4, IPv6 };

struct Service {
  enum class Type { ClusterIP, NodePort, LoadBalancer, ExternalName };
  enum class TrafficPolicy { Cluster, Local };
  enum class SessionAffinity { None, ClientIP };

  ObjectMeta meta;
  Type type = Type::ClusterIP;
  bool headless = false;                  // clusterIP "None"
  std::vector<cni::IPAddr> cluster_ips;   // spec.clusterIP + spec.clusterIPs; empty if headless/unset
  std::vector<IPFamily> ip_families;
  std::vector<cni::IPAddr> external_ips;  // spec.externalIPs
  std::string external_name;              // type ExternalName only
  std::vector<ServicePort> ports;
  Labels selector;  // empty: endpoints are managed by hand (no selector)
  SessionAffinity session_affinity = SessionAffinity::None;
  int session_affinity_timeout_seconds = 10800;  // sessionAffinityConfig.clientIP.timeoutSeconds
  TrafficPolicy external_traffic_policy = TrafficPolicy::Cluster;
  TrafficPolicy internal_traffic_policy = TrafficPolicy::Cluster;

  bool operator==(const Service&) const = default;
};

struct EndpointSlice {
  enum class AddressType { IPv4, IPv6, FQDN };
  struct ObjectRef {
    std::string kind;
    std::string ns;
    std::string name;
    bool operator==(const ObjectRef&) const = default;
  };
  struct Endpoint {
    std::vector<cni::IPAddr> addresses;  // IPv4/IPv6 slices
    std::vector<std::string> fqdns;      // FQDN slices (addresses are names there)
    std::optional<bool> ready, serving, terminating;  // conditions; unset = unknown
    std::string node_name;
    std::string zone;
    std::string hostname;
    std::optional<ObjectRef> target_ref;
    bool operator==(const Endpoint&) const = default;
  };
  struct Port {
    std::string name;
    Protocol protocol = Protocol::TCP;
    std::optional<int> port;  // unset: all ports
    bool operator==(const Port&) const = default;
  };

  ObjectMeta meta;
  std::string service_name;  // label kubernetes.io/service-name; "" if not owned by a Service
  AddressType address_type = AddressType::IPv4;
  std::vector<Endpoint> endpoints;
  std::vector<Port> ports;

  bool operator==(const EndpointSlice&) const = default;
};

struct IPBlock {
  cni::IPNet cidr;                 // network form (host bits cleared)
  std::vector<cni::IPNet> except;  // each a strict subset of cidr, network form

  bool operator==(const IPBlock&) const = default;
};

// One entry of from/to. Absent selectors (nullopt) and empty ones ({}: everything) differ:
// {podSelector: {}} = all pods of the policy's namespace, {namespaceSelector: {}} = all pods
// of all namespaces. ip_block never comes with a selector; at least one field is set.
struct NetworkPolicyPeer {
  std::optional<LabelSelector> pod_selector;
  std::optional<LabelSelector> namespace_selector;
  std::optional<IPBlock> ip_block;

  bool operator==(const NetworkPolicyPeer&) const = default;
};

struct NetworkPolicyPort {
  Protocol protocol = Protocol::TCP;
  std::optional<IntOrString> port;  // unset: all ports of the protocol
  std::optional<int> end_port;      // only with a numeric port; >= port

  bool operator==(const NetworkPolicyPort&) const = default;
};

// An ingress rule (peers = from) or an egress rule (peers = to). Empty peers: any peer; empty
// ports: any port (Kubernetes treats absent and [] alike here).
struct NetworkPolicyRule {
  std::vector<NetworkPolicyPeer> peers;
  std::vector<NetworkPolicyPort> ports;

  bool operator==(const NetworkPolicyRule&) const = default;
};

struct NetworkPolicy {
  enum class PolicyType { Ingress, Egress };

  ObjectMeta meta;
  LabelSelector pod_selector;  // absent = {} = every pod of the namespace
  std::vector<PolicyType> policy_types;
  bool policy_types_given = false;  // spec.policyTypes present in the object
  std::vector<NetworkPolicyRule> ingress;
  std::vector<NetworkPolicyRule> egress;

  // Kubernetes defaulting: without policyTypes a policy always isolates ingress and isolates
  // egress only when it has egress rules.
  bool isolates_ingress() const;
  bool isolates_egress() const;
  bool operator==(const NetworkPolicy&) const = default;
};

using Object = std::variant<Node, Namespace, Pod, Service, EndpointSlice, NetworkPolicy>;

// ---------------------------------------------------------------------------------------
// Kinds and keys

// In the order of the Object variant's alternatives.
enum class Kind { Node, Namespace, Pod, Service, EndpointSlice, NetworkPolicy };
inline constexpr Kind kAllKinds[] = {Kind::Node,    Kind::Namespace,     Kind::Pod,
                                     Kind::Service, Kind::EndpointSlice, Kind::NetworkPolicy};

std::string_view kind_name(Kind k);                          // "Pod"
std::optional<Kind> kind_from_name(std::string_view name);   // "Pod" -> Kind::Pod
std::string_view api_version_of(Kind k);                     // "v1", "networking.k8s.io/v1", ...
bool namespaced(Kind k);                                     // false for Node, Namespace

struct ObjectKey {
  Kind kind = Kind::Pod;
  std::string ns;  // empty for cluster-scoped kinds
  std::string name;

  std::string str() const;  // "Pod x/a", "Node n1"
  auto operator<=>(const ObjectKey&) const = default;
};

Kind kind_of(const Object& o);
const ObjectMeta& meta_of(const Object& o);
ObjectKey key_of(const Object& o);

// ---------------------------------------------------------------------------------------
// Decoding

// One problem with one object (or with a whole file). `message` is the full line, e.g.
//   pods.yaml: document 2 (Pod x/a): spec.containers[0].ports[0].containerPort: expected an
//   integer 1-65535, got "eighty"
// `key` is set when the object's kind and name were readable, so a caller can keep that
// object's last good version.
struct DecodeProblem {
  std::string message;
  std::optional<ObjectKey> key;

  bool operator==(const DecodeProblem&) const = default;
};

// One object. Exactly one of object / error is set, or neither when the kind is not one the
// agent models (note says so: "skipped Deployment shop/web (apps/v1): kind not used by ferry").
struct ObjectDecode {
  std::optional<Object> object;
  std::optional<DecodeProblem> error;  // message is "Pod x/a: <field path>: <what>"
  std::string note;
};

// Decodes one object as the API returns it. apiVersion and kind must match a modelled kind;
// items of a typed list (PodList) come without them: pass the list's item kind as kind_hint,
// then missing apiVersion/kind are accepted. List objects are not accepted here.
ObjectDecode decode_object(const nlohmann::json& j, std::optional<Kind> kind_hint = std::nullopt);

// The objects of one manifest file.
struct ManifestDecode {
  std::vector<Object> objects;          // in file order (duplicates kept; later ones win in
                                        // ClusterState::replace_all)
  std::vector<DecodeProblem> errors;    // each bad object (skipped), or the one syntax error
  std::vector<std::string> notes;       // unknown kinds skipped, prefixed like errors
  bool syntax_error = false;            // the text did not parse: objects is empty

  bool ok() const { return errors.empty(); }
};

// Decodes a manifest file's text: YAML (1.2 core schema: only true/false are booleans,
// "80" quoted is a string, 80 an integer), possibly several documents separated by `---`, or
// JSON (chosen when file_name ends in ".json"). Each document is one object or a List
// (kind: List or any *List) with items. Empty documents are skipped. file_name is used only in
// messages and to choose the format.
ManifestDecode decode_manifest(std::string_view file_name, std::string_view text);

// ---------------------------------------------------------------------------------------
// ClusterState

struct KindCount {
  Kind kind;
  std::size_t count = 0;
};

class ClusterState {
 public:
  // Replaces the whole content (a manifest-directory snapshot or a Kubernetes relist). Of two
  // objects with the same key, the later one wins. Returns whether anything changed.
  bool replace_all(std::vector<Object> objects);
  // Adds or replaces one object (a watch ADDED/MODIFIED event). Returns whether it changed.
  bool upsert(Object object);
  // Removes one object (a watch DELETED event). Returns whether it was there.
  bool erase(const ObjectKey& key);

  // Lookups. Pointers stay valid until the next replace_all/upsert/erase.
  const Object* find(const ObjectKey& key) const;
  const Node* node(std::string_view name) const;
  const Namespace* namespace_named(std::string_view name) const;
  const Pod* pod(std::string_view ns, std::string_view name) const;
  const Service* service(std::string_view ns, std::string_view name) const;
  std::vector<const Node*> nodes() const;  // each list sorted by namespace, then name
  std::vector<const Namespace*> namespaces() const;
  std::vector<const Pod*> pods() const;
  std::vector<const Pod*> pods_on_node(std::string_view node_name) const;
  std::vector<const Service*> services() const;
  std::vector<const EndpointSlice*> endpoint_slices() const;
  std::vector<const EndpointSlice*> endpoint_slices_of(std::string_view ns,
                                                       std::string_view service_name) const;
  std::vector<const NetworkPolicy*> network_policies() const;
  std::vector<Object> objects() const;  // all, sorted by key

  std::size_t size() const { return objects_.size(); }
  std::vector<KindCount> counts() const;  // every kind, in kAllKinds order, zeros included
  // Starts at 0 and grows by one with every call that changed content. Content excludes
  // metadata.resourceVersion: an object re-sent with only a new resourceVersion is stored
  // but does not count as a change.
  uint64_t revision() const { return revision_; }

 private:
  template <typename T>
  const T* typed(Kind kind, std::string_view ns, std::string_view name) const;
  template <typename T>
  std::vector<const T*> all_of(Kind kind) const;

  std::map<ObjectKey, Object> objects_;
  uint64_t revision_ = 0;
};

// ---------------------------------------------------------------------------------------
// EndpointSlices for a cluster state without Kubernetes' endpointslice controller (a manifest
// directory): for every Service with a selector (not ExternalName) and NO EndpointSlice
// labelled kubernetes.io/service-name=<name> in its namespace, the slices that controller would
// write (pkg/controller/endpointslice, podToEndpoint / getEndpointPorts):
//  - pods of the Service's namespace whose labels match the selector, not terminal (phase
//    Succeeded/Failed), with an IP of the slice's family (one slice family per Service family:
//    spec.ipFamilies, else the clusterIPs' families, else IPv4);
//  - conditions: serving = Pod::ready(), terminating = deletionTimestamp set, ready = serving
//    and not terminating; nodeName; targetRef Pod ns/name;
//  - ports: per Service port (name, protocol), the targetPort number, or a named targetPort
//    resolved to the pod's container port of that name and protocol (a pod without it lacks
//    that port); pods with different resolved ports go to different slices, as upstream.
// Slices are named "<service>-ferry-<ipv4|ipv6>-<n>", labelled kubernetes.io/service-name and
// endpointslice.kubernetes.io/managed-by=ferry-agent; endpoints sorted by pod name. Explicit
// slices always win (none is derived for that Service). Pure, deterministic, never throws.
inline constexpr const char* kDerivedSliceManager = "ferry-agent";
std::vector<EndpointSlice> derive_endpoint_slices(const ClusterState& state);

}  // namespace ferry::model
