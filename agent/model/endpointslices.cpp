// derive_endpoint_slices: what Kubernetes' endpointslice controller would write, for a cluster
// state that has no controller (model.h says which rules are followed).
#include <algorithm>
#include <set>
#include <tuple>

#include "agent/model/model.h"

namespace ferry::model {

namespace {

// A resolved Service port as the slice carries it: (name, protocol, number).
using PortKey = std::vector<std::tuple<std::string, Protocol, int>>;

bool selector_matches(const Labels& selector, const Labels& labels) {
  return std::all_of(selector.begin(), selector.end(), [&](const auto& kv) {
    auto it = labels.find(kv.first);
    return it != labels.end() && it->second == kv.second;
  });
}

// podutil.FindPort: a number is itself; a name is the pod's container port of that name and
// the Service port's protocol. nullopt: the pod does not have it.
std::optional<int> resolve_port(const Pod& pod, const ServicePort& sp) {
  if (const int* n = std::get_if<int>(&sp.target_port)) return *n;
  const std::string& name = std::get<std::string>(sp.target_port);
  for (const ContainerPort& cp : pod.ports)
    if (cp.name == name && cp.protocol == sp.protocol) return cp.container_port;
  return std::nullopt;
}

PortKey ports_of(const Pod& pod, const Service& svc) {
  PortKey key;
  for (const ServicePort& sp : svc.ports)
    if (auto n = resolve_port(pod, sp)) key.emplace_back(sp.name, sp.protocol, *n);
  return key;
}

std::vector<IPFamily> families_of(const Service& svc) {
  std::vector<IPFamily> out = svc.ip_families;
  for (const cni::IPAddr& a : svc.cluster_ips) {
    IPFamily f = a.is_v6() ? IPFamily::IPv6 : IPFamily::IPv4;
    if (std::find(out.begin(), out.end(), f) == out.end()) out.push_back(f);
  }
  if (out.empty()) out.push_back(IPFamily::IPv4);
  return out;
}

// The pod's first IP of the family (getEndpointAddresses), or nullopt.
std::optional<cni::IPAddr> ip_of_family(const Pod& pod, IPFamily f) {
  for (const cni::IPAddr& a : pod.pod_ips)
    if (a.is_v6() == (f == IPFamily::IPv6)) return a;
  return std::nullopt;
}

EndpointSlice::Endpoint endpoint_of(const Pod& pod, const cni::IPAddr& ip) {
  EndpointSlice::Endpoint e;
  e.addresses = {ip};
  const bool serving = pod.ready();
  const bool terminating = pod.deleting();
  e.ready = serving && !terminating;  // upstream: never ready while terminating
  e.serving = serving;
  e.terminating = terminating;
  e.node_name = pod.node_name;
  e.target_ref = EndpointSlice::ObjectRef{"Pod", pod.meta.ns, pod.meta.name};
  return e;
}

void derive_for(const Service& svc, const std::vector<const Pod*>& pods, std::vector<EndpointSlice>& out) {
  std::vector<const Pod*> selected;
  for (const Pod* p : pods)
    if (p->phase != "Succeeded" && p->phase != "Failed" && selector_matches(svc.selector, p->meta.labels))
      selected.push_back(p);
  for (IPFamily family : families_of(svc)) {
    // One slice per distinct resolved port set; std::map keeps names stable for a given input.
    std::map<PortKey, EndpointSlice> by_ports;
    for (const Pod* p : selected) {
      auto ip = ip_of_family(*p, family);
      if (!ip) continue;
      EndpointSlice& slice = by_ports[ports_of(*p, svc)];
      slice.endpoints.push_back(endpoint_of(*p, *ip));
    }
    const char* fname = family == IPFamily::IPv6 ? "ipv6" : "ipv4";
    size_t n = 0;
    for (auto& [ports, slice] : by_ports) {
      slice.meta.name = svc.meta.name + "-ferry-" + fname + "-" + std::to_string(n++);
      slice.meta.ns = svc.meta.ns;
      slice.meta.labels = {{"kubernetes.io/service-name", svc.meta.name},
                           {"endpointslice.kubernetes.io/managed-by", kDerivedSliceManager}};
      slice.service_name = svc.meta.name;
      slice.address_type = family == IPFamily::IPv6 ? EndpointSlice::AddressType::IPv6 : EndpointSlice::AddressType::IPv4;
      for (const auto& [name, proto, number] : ports) slice.ports.push_back({name, proto, number});
      out.push_back(std::move(slice));
    }
  }
}

}  // namespace

std::vector<EndpointSlice> derive_endpoint_slices(const ClusterState& state) {
  std::set<std::pair<std::string, std::string>> explicit_slices;  // (namespace, service)
  for (const EndpointSlice* s : state.endpoint_slices())
    if (!s->service_name.empty()) explicit_slices.emplace(s->meta.ns, s->service_name);
  std::map<std::string, std::vector<const Pod*>> pods_by_ns;  // pods() is sorted by ns, name
  for (const Pod* p : state.pods()) pods_by_ns[p->meta.ns].push_back(p);

  static const std::vector<const Pod*> kNoPods;
  std::vector<EndpointSlice> out;
  for (const Service* svc : state.services()) {
    if (svc->selector.empty() || svc->type == Service::Type::ExternalName) continue;
    if (explicit_slices.count({svc->meta.ns, svc->meta.name})) continue;
    auto it = pods_by_ns.find(svc->meta.ns);
    derive_for(*svc, it == pods_by_ns.end() ? kNoPods : it->second, out);
  }
  return out;
}

}  // namespace ferry::model
