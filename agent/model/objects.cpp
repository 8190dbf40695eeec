// Kubernetes objects (the API's JSON shape) -> model values, with Kubernetes' own defaulting
// and the validation the API server would have done, so a hand-written manifest that the API
// would reject is rejected here too, with the field that is wrong.
#include <algorithm>

#include "agent/model/fields.h"

namespace ferry::model {

using namespace fields;

namespace {

template <typename T>
void push_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

ObjectMeta decode_meta(const json& obj, Kind kind) {
  const json* m = find(obj, "metadata");
  if (!m) fail("metadata.name", "required");
  const std::string path = "metadata";
  as_object(*m, path);
  ObjectMeta meta;
  meta.name = required_string(*m, path, "name");
  if (auto bad = kind == Kind::Namespace ? check_dns_label(meta.name) : check_dns_subdomain(meta.name);
      !bad.empty())
    fail("metadata.name", "invalid name " + describe(meta.name) + ": " + bad);
  if (namespaced(kind)) {
    meta.ns = string_field(*m, path, "namespace");
    if (meta.ns.empty()) meta.ns = "default";  // what kubectl apply does
    if (auto bad = check_dns_label(meta.ns); !bad.empty())
      fail("metadata.namespace", "invalid namespace " + describe(meta.ns) + ": " + bad);
  }
  meta.uid = string_field(*m, path, "uid");
  meta.resource_version = string_field(*m, path, "resourceVersion");
  meta.labels = labels_field(*m, path, "labels");
  meta.annotations = string_map(*m, path, "annotations");
  meta.deleting = find(*m, "deletionTimestamp") != nullptr;
  return meta;
}

const json& section(const json& obj, std::string_view key) {
  static const json kEmpty = json::object();
  const json* v = find(obj, key);
  if (!v) return kEmpty;
  return as_object(*v, std::string(key));
}

// ---------------------------------------------------------------------------------------

Node decode_node(const json& obj) {
  Node node;
  node.meta = decode_meta(obj, Kind::Node);
  const json& spec = section(obj, "spec");
  if (const json* one = find(spec, "podCIDR"); one && !(one->is_string() && one->get_ref<const std::string&>().empty()))
    node.pod_cidrs.push_back(cidr_value(*one, "spec.podCIDR"));
  auto cidrs = array_field(spec, "spec", "podCIDRs");
  for (std::size_t i = 0; i < cidrs.size(); ++i) push_unique(node.pod_cidrs, cidr_value(*cidrs[i], item("spec.podCIDRs", i)));

  const json& status = section(obj, "status");
  auto addresses = array_field(status, "status", "addresses");
  for (std::size_t i = 0; i < addresses.size(); ++i) {
    std::string here = item("status.addresses", i);
    as_object(*addresses[i], here);
    if (string_field(*addresses[i], here, "type") != "InternalIP") continue;
    const json* addr = find(*addresses[i], "address");
    if (!addr) fail(child(here, "address"), "required");
    push_unique(node.internal_ips, ip_value(*addr, child(here, "address")));
  }
  return node;
}

Namespace decode_namespace(const json& obj) { return Namespace{decode_meta(obj, Kind::Namespace)}; }

Pod decode_pod(const json& obj) {
  Pod pod;
  pod.meta = decode_meta(obj, Kind::Pod);
  const json& spec = section(obj, "spec");
  pod.node_name = string_field(spec, "spec", "nodeName");
  if (!pod.node_name.empty())
    if (auto bad = check_dns_subdomain(pod.node_name); !bad.empty())
      fail("spec.nodeName", "invalid node name " + describe(pod.node_name) + ": " + bad);
  pod.host_network = bool_field(spec, "spec", "hostNetwork", false);

  auto containers = array_field(spec, "spec", "containers");
  for (std::size_t c = 0; c < containers.size(); ++c) {
    std::string cpath = item("spec.containers", c);
    as_object(*containers[c], cpath);
    std::string container = string_field(*containers[c], cpath, "name");
    auto ports = array_field(*containers[c], cpath, "ports");
    for (std::size_t p = 0; p < ports.size(); ++p) {
      std::string ppath = item(child(cpath, "ports"), p);
      as_object(*ports[p], ppath);
      ContainerPort port;
      port.container = container;
      port.name = string_field(*ports[p], ppath, "name");
      if (!port.name.empty())
        if (auto bad = check_port_name(port.name); !bad.empty())
          fail(child(ppath, "name"), "invalid port name " + describe(port.name) + ": " + bad);
      const json* number = find(*ports[p], "containerPort");
      if (!number) fail(child(ppath, "containerPort"), "required");
      port.container_port = integer(*number, child(ppath, "containerPort"), 1, 65535);
      port.protocol = protocol_field(*ports[p], ppath);
      pod.ports.push_back(std::move(port));
    }
  }

  const json& status = section(obj, "status");
  pod.phase = string_field(status, "status", "phase");
  auto conditions = array_field(status, "status", "conditions");
  for (std::size_t i = 0; i < conditions.size(); ++i) {
    std::string here = item("status.conditions", i);
    as_object(*conditions[i], here);
    if (string_field(*conditions[i], here, "type") == "Ready")
      pod.ready_condition = string_field(*conditions[i], here, "status") == "True";
  }
  if (const json* ip = find(status, "podIP"); ip && !(ip->is_string() && ip->get_ref<const std::string&>().empty()))
    pod.pod_ips.push_back(ip_value(*ip, "status.podIP"));
  auto ips = array_field(status, "status", "podIPs");
  for (std::size_t i = 0; i < ips.size(); ++i) {
    std::string here = item("status.podIPs", i);
    as_object(*ips[i], here);
    const json* ip = find(*ips[i], "ip");
    if (!ip) fail(child(here, "ip"), "required");
    push_unique(pod.pod_ips, ip_value(*ip, child(here, "ip")));
  }
  return pod;
}

// clusterIP / clusterIPs entries: "" (not allocated), "None" (headless) or an address.
void add_cluster_ip(Service& svc, const json& v, const std::string& path) {
  if (v.is_string()) {
    const auto& s = v.get_ref<const std::string&>();
    if (s.empty()) return;
    if (s == "None") {
      svc.headless = true;
      return;
    }
  }
  if (svc.headless) fail(path, "a headless service (clusterIP None) has no other cluster IPs, got " + describe(v));
  push_unique(svc.cluster_ips, ip_value(v, path));
}

Service decode_service(const json& obj) {
  Service svc;
  svc.meta = decode_meta(obj, Kind::Service);
  const json& spec = section(obj, "spec");

  std::string type = one_of(spec, "spec", "type", {"ClusterIP", "NodePort", "LoadBalancer", "ExternalName"}, "ClusterIP");
  svc.type = type == "NodePort"       ? Service::Type::NodePort
             : type == "LoadBalancer" ? Service::Type::LoadBalancer
             : type == "ExternalName" ? Service::Type::ExternalName
                                      : Service::Type::ClusterIP;
  svc.external_name = string_field(spec, "spec", "externalName");
  if (svc.type == Service::Type::ExternalName && svc.external_name.empty())
    fail("spec.externalName", "required for type ExternalName");

  const json* cluster_ip = find(spec, "clusterIP");
  if (cluster_ip) add_cluster_ip(svc, *cluster_ip, "spec.clusterIP");
  auto cluster_ips = array_field(spec, "spec", "clusterIPs");
  for (std::size_t i = 0; i < cluster_ips.size(); ++i) {
    std::string here = item("spec.clusterIPs", i);
    // The API keeps clusterIP == clusterIPs[0]; a manifest that disagrees is ambiguous.
    if (i == 0 && cluster_ip && *cluster_ip != *cluster_ips[0] && !(cluster_ip->is_string() && cluster_ip->get_ref<const std::string&>().empty()))
      fail(here, "must equal spec.clusterIP (" + describe(*cluster_ip) + "), got " + describe(*cluster_ips[0]));
    add_cluster_ip(svc, *cluster_ips[i], here);
  }

  auto families = array_field(spec, "spec", "ipFamilies");
  for (std::size_t i = 0; i < families.size(); ++i) {
    const json& f = *families[i];
    if (f == "IPv4") push_unique(svc.ip_families, IPFamily::IPv4);
    else if (f == "IPv6") push_unique(svc.ip_families, IPFamily::IPv6);
    else fail(item("spec.ipFamilies", i), "expected one of IPv4, IPv6, got " + describe(f));
  }
  auto external_ips = array_field(spec, "spec", "externalIPs");
  for (std::size_t i = 0; i < external_ips.size(); ++i)
    push_unique(svc.external_ips, ip_value(*external_ips[i], item("spec.externalIPs", i)));

  auto ports = array_field(spec, "spec", "ports");
  for (std::size_t i = 0; i < ports.size(); ++i) {
    std::string here = item("spec.ports", i);
    as_object(*ports[i], here);
    ServicePort port;
    port.name = string_field(*ports[i], here, "name");
    if (!port.name.empty())
      if (auto bad = check_dns_label(port.name); !bad.empty())
        fail(child(here, "name"), "invalid port name " + describe(port.name) + ": " + bad);
    if (ports.size() > 1 && port.name.empty()) fail(child(here, "name"), "required when a service has several ports");
    port.protocol = protocol_field(*ports[i], here);
    const json* number = find(*ports[i], "port");
    if (!number) fail(child(here, "port"), "required");
    port.port = integer(*number, child(here, "port"), 1, 65535);
    port.target_port = port.port;
    if (const json* target = find(*ports[i], "targetPort");
        target && !((target->is_number_integer() || target->is_number_unsigned()) && *target == 0))
      port.target_port = port_value(*target, child(here, "targetPort"));
    if (auto node_port = optional_int(*ports[i], here, "nodePort", 0, 65535); node_port && *node_port != 0)
      port.node_port = node_port;
    svc.ports.push_back(std::move(port));
  }

  svc.selector = labels_field(spec, "spec", "selector");
  svc.session_affinity = one_of(spec, "spec", "sessionAffinity", {"None", "ClientIP"}, "None") == "ClientIP"
                             ? Service::SessionAffinity::ClientIP
                             : Service::SessionAffinity::None;
  if (const json* config = find(spec, "sessionAffinityConfig")) {
    as_object(*config, "spec.sessionAffinityConfig");
    if (const json* client_ip = find(*config, "clientIP")) {
      as_object(*client_ip, "spec.sessionAffinityConfig.clientIP");
      if (auto t = optional_int(*client_ip, "spec.sessionAffinityConfig.clientIP", "timeoutSeconds", 1, 86400))
        svc.session_affinity_timeout_seconds = *t;
    }
  }
  auto policy = [&](std::string_view key) {
    return one_of(spec, "spec", key, {"Cluster", "Local"}, "Cluster") == "Local" ? Service::TrafficPolicy::Local
                                                                                : Service::TrafficPolicy::Cluster;
  };
  svc.external_traffic_policy = policy("externalTrafficPolicy");
  svc.internal_traffic_policy = policy("internalTrafficPolicy");
  return svc;
}

EndpointSlice decode_endpoint_slice(const json& obj) {
  EndpointSlice slice;
  slice.meta = decode_meta(obj, Kind::EndpointSlice);
  if (auto it = slice.meta.labels.find("kubernetes.io/service-name"); it != slice.meta.labels.end())
    slice.service_name = it->second;
  if (!find(obj, "addressType")) fail("addressType", "required");
  std::string type = one_of(obj, "", "addressType", {"IPv4", "IPv6", "FQDN"}, "");
  slice.address_type = type == "IPv6"   ? EndpointSlice::AddressType::IPv6
                       : type == "FQDN" ? EndpointSlice::AddressType::FQDN
                                        : EndpointSlice::AddressType::IPv4;

  auto endpoints = array_field(obj, "", "endpoints");
  for (std::size_t i = 0; i < endpoints.size(); ++i) {
    std::string here = item("endpoints", i);
    as_object(*endpoints[i], here);
    const json& e = *endpoints[i];
    EndpointSlice::Endpoint ep;
    auto addresses = array_field(e, here, "addresses");
    if (addresses.empty()) fail(child(here, "addresses"), "must contain at least one address");
    for (std::size_t a = 0; a < addresses.size(); ++a) {
      std::string apath = item(child(here, "addresses"), a);
      if (slice.address_type == EndpointSlice::AddressType::FQDN) {
        if (!addresses[a]->is_string()) fail(apath, "expected a string, got " + describe(*addresses[a]));
        ep.fqdns.push_back(addresses[a]->get<std::string>());
        continue;
      }
      cni::IPAddr ip = ip_value(*addresses[a], apath);
      bool want_v4 = slice.address_type == EndpointSlice::AddressType::IPv4;
      if (ip.is_v4() != want_v4)
        fail(apath, std::string("expected an ") + (want_v4 ? "IPv4" : "IPv6") + " address (addressType " + type +
                        "), got " + describe(*addresses[a]));
      ep.addresses.push_back(ip);
    }
    if (const json* conditions = find(e, "conditions")) {
      std::string cpath = child(here, "conditions");
      as_object(*conditions, cpath);
      ep.ready = optional_bool(*conditions, cpath, "ready");
      ep.serving = optional_bool(*conditions, cpath, "serving");
      ep.terminating = optional_bool(*conditions, cpath, "terminating");
    }
    ep.node_name = string_field(e, here, "nodeName");
    ep.zone = string_field(e, here, "zone");
    ep.hostname = string_field(e, here, "hostname");
    if (const json* ref = find(e, "targetRef")) {
      std::string rpath = child(here, "targetRef");
      as_object(*ref, rpath);
      ep.target_ref = EndpointSlice::ObjectRef{string_field(*ref, rpath, "kind"), string_field(*ref, rpath, "namespace"),
                                               string_field(*ref, rpath, "name")};
    }
    slice.endpoints.push_back(std::move(ep));
  }

  auto ports = array_field(obj, "", "ports");
  for (std::size_t i = 0; i < ports.size(); ++i) {
    std::string here = item("ports", i);
    as_object(*ports[i], here);
    EndpointSlice::Port port;
    port.name = string_field(*ports[i], here, "name");
    port.protocol = protocol_field(*ports[i], here);
    port.port = optional_int(*ports[i], here, "port", 1, 65535);
    slice.ports.push_back(std::move(port));
  }
  return slice;
}

LabelSelector decode_selector(const json& v, const std::string& path) {
  as_object(v, path);
  LabelSelector sel;
  sel.match_labels = labels_field(v, path, "matchLabels");
  auto expressions = array_field(v, path, "matchExpressions");
  for (std::size_t i = 0; i < expressions.size(); ++i) {
    std::string here = item(child(path, "matchExpressions"), i);
    as_object(*expressions[i], here);
    LabelSelectorRequirement req;
    req.key = required_string(*expressions[i], here, "key");
    if (auto bad = check_label_key(req.key); !bad.empty())
      fail(child(here, "key"), "invalid label key " + describe(req.key) + ": " + bad);
    if (!find(*expressions[i], "operator")) fail(child(here, "operator"), "required");
    std::string op = one_of(*expressions[i], here, "operator", {"In", "NotIn", "Exists", "DoesNotExist"}, "");
    using Op = LabelSelectorRequirement::Operator;
    req.op = op == "In" ? Op::In : op == "NotIn" ? Op::NotIn : op == "Exists" ? Op::Exists : Op::DoesNotExist;
    auto values = array_field(*expressions[i], here, "values");
    for (std::size_t k = 0; k < values.size(); ++k) {
      std::string vpath = item(child(here, "values"), k);
      if (!values[k]->is_string()) fail(vpath, "expected a string, got " + describe(*values[k]));
      const auto& value = values[k]->get_ref<const std::string&>();
      if (auto bad = check_label_value(value); !bad.empty())
        fail(vpath, "invalid label value " + describe(*values[k]) + ": " + bad);
      req.values.push_back(value);
    }
    bool set_op = req.op == Op::In || req.op == Op::NotIn;
    if (set_op && req.values.empty()) fail(child(here, "values"), "must be non-empty for operator " + op);
    if (!set_op && !req.values.empty()) fail(child(here, "values"), "must be empty for operator " + op);
    sel.match_expressions.push_back(std::move(req));
  }
  return sel;
}

IPBlock decode_ip_block(const json& v, const std::string& path) {
  as_object(v, path);
  IPBlock block;
  const json* cidr = find(v, "cidr");
  if (!cidr) fail(child(path, "cidr"), "required");
  block.cidr = cidr_value(*cidr, child(path, "cidr"));
  auto excepts = array_field(v, path, "except");
  for (std::size_t i = 0; i < excepts.size(); ++i) {
    std::string here = item(child(path, "except"), i);
    cni::IPNet e = cidr_value(*excepts[i], here);
    if (e.addr.family != block.cidr.addr.family || e.prefix <= block.cidr.prefix || !block.cidr.contains(e.addr))
      fail(here, "must be a strict subset of cidr " + block.cidr.str() + ", got " + describe(*excepts[i]));
    block.except.push_back(e);
  }
  return block;
}

NetworkPolicyPeer decode_peer(const json& v, const std::string& path) {
  as_object(v, path);
  NetworkPolicyPeer peer;
  if (const json* s = find(v, "podSelector")) peer.pod_selector = decode_selector(*s, child(path, "podSelector"));
  if (const json* s = find(v, "namespaceSelector"))
    peer.namespace_selector = decode_selector(*s, child(path, "namespaceSelector"));
  if (const json* b = find(v, "ipBlock")) peer.ip_block = decode_ip_block(*b, child(path, "ipBlock"));
  if (peer.ip_block && (peer.pod_selector || peer.namespace_selector))
    fail(path, "ipBlock cannot be combined with podSelector or namespaceSelector");
  if (!peer.ip_block && !peer.pod_selector && !peer.namespace_selector)
    fail(path, "must specify podSelector, namespaceSelector or ipBlock");
  return peer;
}

NetworkPolicyPort decode_policy_port(const json& v, const std::string& path) {
  as_object(v, path);
  NetworkPolicyPort port;
  port.protocol = protocol_field(v, path);
  if (const json* p = find(v, "port")) port.port = port_value(*p, child(path, "port"));
  port.end_port = optional_int(v, path, "endPort", 1, 65535);
  if (port.end_port) {
    const int* start = port.port ? std::get_if<int>(&*port.port) : nullptr;
    if (!start) fail(child(path, "endPort"), "requires a numeric port");
    if (*port.end_port < *start)
      fail(child(path, "endPort"), "must be greater than or equal to port (" + std::to_string(*start) + "), got " +
                                       std::to_string(*port.end_port));
  }
  return port;
}

std::vector<NetworkPolicyRule> decode_rules(const json& spec, std::string_view direction, std::string_view peers_key) {
  std::vector<NetworkPolicyRule> rules;
  auto items = array_field(spec, "spec", direction);
  for (std::size_t i = 0; i < items.size(); ++i) {
    std::string here = item(child("spec", direction), i);
    as_object(*items[i], here);
    NetworkPolicyRule rule;
    auto peers = array_field(*items[i], here, peers_key);
    for (std::size_t k = 0; k < peers.size(); ++k) rule.peers.push_back(decode_peer(*peers[k], item(child(here, peers_key), k)));
    auto ports = array_field(*items[i], here, "ports");
    for (std::size_t k = 0; k < ports.size(); ++k) rule.ports.push_back(decode_policy_port(*ports[k], item(child(here, "ports"), k)));
    rules.push_back(std::move(rule));
  }
  return rules;
}

NetworkPolicy decode_network_policy(const json& obj) {
  NetworkPolicy np;
  np.meta = decode_meta(obj, Kind::NetworkPolicy);
  const json& spec = section(obj, "spec");
  if (const json* s = find(spec, "podSelector")) np.pod_selector = decode_selector(*s, "spec.podSelector");
  auto types = array_field(spec, "spec", "policyTypes");
  for (std::size_t i = 0; i < types.size(); ++i) {
    const json& t = *types[i];
    if (t == "Ingress") push_unique(np.policy_types, NetworkPolicy::PolicyType::Ingress);
    else if (t == "Egress") push_unique(np.policy_types, NetworkPolicy::PolicyType::Egress);
    else fail(item("spec.policyTypes", i), "expected one of Ingress, Egress, got " + describe(t));
  }
  np.policy_types_given = !np.policy_types.empty();  // the API defaults an empty list like a missing one
  np.ingress = decode_rules(spec, "ingress", "from");
  np.egress = decode_rules(spec, "egress", "to");
  return np;
}

Object decode_kind(Kind kind, const json& obj) {
  switch (kind) {
    case Kind::Node: return decode_node(obj);
    case Kind::Namespace: return decode_namespace(obj);
    case Kind::Pod: return decode_pod(obj);
    case Kind::Service: return decode_service(obj);
    case Kind::EndpointSlice: return decode_endpoint_slice(obj);
    case Kind::NetworkPolicy: return decode_network_policy(obj);
  }
  fail("kind", "unsupported");
}

std::string loose_string(const json& obj, std::string_view key) {
  const json* v = find(obj, key);
  return v && v->is_string() ? v->get<std::string>() : std::string();
}

}  // namespace

namespace fields {

Outcome decode_outcome(const json& j, std::optional<Kind> kind_hint) {
  Outcome out;
  auto problem = [&](const std::string& path, const std::string& what) {
    out.detail = path.empty() ? what : path + ": " + what;
    return out;
  };
  try {
    if (!j.is_object()) return problem("", "expected an object, got " + describe(j));
    // What the object says it is, read leniently first so that every message can name it.
    std::string kind_text = loose_string(j, "kind");
    std::string api_version = loose_string(j, "apiVersion");
    std::string name, ns;
    if (const json* meta = find(j, "metadata"); meta && meta->is_object()) {
      name = loose_string(*meta, "name");
      ns = loose_string(*meta, "namespace");
    }
    std::optional<Kind> kind = kind_from_name(kind_text);
    if (!find(j, "kind") && kind_hint) kind = kind_hint;
    if (kind) {
      if (!namespaced(*kind)) ns.clear();
      else if (ns.empty()) ns = "default";
    }
    out.label = kind ? std::string(kind_name(*kind)) : kind_text;
    if (!out.label.empty() && !name.empty()) out.label += " " + (ns.empty() ? name : ns + "/" + name);
    if (kind && !name.empty()) out.key = ObjectKey{*kind, ns, name};

    if (const json* k = find(j, "kind"); k && !k->is_string()) return problem("kind", "expected a string, got " + describe(*k));
    if (!kind && kind_text.empty()) return problem("kind", "required");
    if (!kind) {
      out.note = "skipped " + out.label + (api_version.empty() ? "" : " (" + api_version + ")") + ": kind not used by ferry";
      return out;
    }
    if (kind_hint && *kind != *kind_hint)
      return problem("kind", "expected " + std::string(kind_name(*kind_hint)) + ", got " + describe(kind_text));
    const json* version = find(j, "apiVersion");
    if (!version && !(kind_hint && !find(j, "kind"))) return problem("apiVersion", "required");
    if (version && *version != api_version_of(*kind))
      return problem("apiVersion", "expected \"" + std::string(api_version_of(*kind)) + "\" for " +
                                       std::string(kind_name(*kind)) + ", got " + describe(*version));
    out.object = decode_kind(*kind, j);
  } catch (const FieldError& e) {
    return problem(e.path, e.what);
  } catch (const std::exception& e) {  // a bug or out of memory: still never escapes
    return problem("", std::string("internal decoding error: ") + e.what());
  }
  return out;
}

}  // namespace fields

ObjectDecode decode_object(const json& j, std::optional<Kind> kind_hint) {
  ObjectDecode out;
  try {
    Outcome o = decode_outcome(j, kind_hint);
    out.object = std::move(o.object);
    out.note = std::move(o.note);
    if (!o.detail.empty())
      out.error = DecodeProblem{o.label.empty() ? o.detail : o.label + ": " + o.detail, std::move(o.key)};
  } catch (const std::exception& e) {
    out = ObjectDecode{};
    out.error = DecodeProblem{std::string("internal decoding error: ") + e.what(), std::nullopt};
  }
  return out;
}

}  // namespace ferry::model
