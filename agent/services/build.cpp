// build_services: Services + EndpointSlices -> ServiceSet, kube-proxy's rules (services.h).
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <map>
#include <tuple>

#include "agent/model/model.h"
#include "agent/services/services.h"

namespace ferry::services {
namespace {

net::Ip to_ip(const cni::IPAddr& a) { return net::Ip{a.family, a.bytes}; }


TrafficPolicy policy_of(model::Service::TrafficPolicy p) {
  return p == model::Service::TrafficPolicy::Local ? TrafficPolicy::Local : TrafficPolicy::Cluster;
}

// One endpoint of one Service port, as kube-proxy's endpointInfo.
struct Endpoint {
  net::Ip ip;
  uint16_t port = 0;
  bool ready = true, serving = true, terminating = false;
  std::string node;
  bool local = false;

  bool serving_terminating() const { return serving && terminating; }
  BackendState state() const {
    if (ready) return BackendState::Active;
    return serving_terminating() ? BackendState::Terminating : BackendState::NotServing;
  }
};

using EndpointKey = std::tuple<int, std::array<uint8_t, 16>, uint16_t>;  // family, bytes, port

// The endpoints of Service port `sp` over all the Service's slices (sorted by slice name),
// deduplicated by address:port, sorted by (family, address, port).
std::vector<Endpoint> endpoints_of(const std::vector<const model::EndpointSlice*>& slices,
                                   const model::ServicePort& sp, std::string_view node) {
  std::map<EndpointKey, Endpoint> by_key;
  for (const model::EndpointSlice* slice : slices) {
    if (slice->address_type == model::EndpointSlice::AddressType::FQDN) continue;
    for (const model::EndpointSlice::Port& p : slice->ports) {
      if (p.name != sp.name || p.protocol != sp.protocol) continue;
      if (!p.port || *p.port <= 0 || *p.port > 65535) continue;  // kube-proxy ignores these too
      for (const model::EndpointSlice::Endpoint& e : slice->endpoints) {
        if (e.addresses.empty()) continue;
        Endpoint ep;
        ep.ip = to_ip(e.addresses.front());
        ep.port = static_cast<uint16_t>(*p.port);
        ep.ready = e.ready.value_or(true);
        ep.serving = e.serving.value_or(true);
        ep.terminating = e.terminating.value_or(false);
        ep.node = e.node_name;
        ep.local = !node.empty() && e.node_name == node;
        EndpointKey key{ep.ip.family, ep.ip.bytes, ep.port};
        auto it = by_key.find(key);
        if (it == by_key.end()) by_key.emplace(key, std::move(ep));
        else if (ep.local) it->second = std::move(ep);
      }
    }
  }
  std::vector<Endpoint> out;
  for (auto& [key, ep] : by_key) out.push_back(std::move(ep));
  return out;
}

// kube-proxy's CategorizeEndpoints over one family's endpoints (indices into `eps`).
struct Categories {
  std::vector<size_t> cluster;  // ready, else serving+terminating
  std::vector<size_t> local;    // the same, among this node's endpoints only
  bool any_usable = false;      // some endpoint anywhere is ready or serving+terminating
};

Categories categorize(const std::vector<const Endpoint*>& eps) {
  auto pick = [&](bool local_only) {
    std::vector<size_t> out;
    for (size_t i = 0; i < eps.size(); ++i)
      if (eps[i]->ready && (!local_only || eps[i]->local)) out.push_back(i);
    if (!out.empty()) return out;
    for (size_t i = 0; i < eps.size(); ++i)
      if (eps[i]->serving_terminating() && (!local_only || eps[i]->local)) out.push_back(i);
    return out;
  };
  Categories c;
  c.cluster = pick(false);
  c.local = pick(true);
  c.any_usable = !c.cluster.empty();
  return c;
}

struct Claim {
  std::string service;
  std::string port_name;
};

class Builder {
 public:
  Builder(std::string_view node, const std::vector<net::Ip>& node_addresses, ServiceIds& ids)
      : node_(node), ids_(ids) {
    for (const net::Ip& a : node_addresses)
      if (std::find(node_addresses_.begin(), node_addresses_.end(), a) == node_addresses_.end())
        node_addresses_.push_back(a);
  }

  void add_service(const model::Service& svc, const std::vector<const model::EndpointSlice*>& slices) {
    if (svc.type == model::Service::Type::ExternalName || svc.headless || svc.cluster_ips.empty()) return;
    std::vector<net::Ip> cluster_ips;  // the first clusterIP of each family
    for (const cni::IPAddr& a : svc.cluster_ips) {
      net::Ip ip = to_ip(a);
      if (std::none_of(cluster_ips.begin(), cluster_ips.end(), [&](const net::Ip& c) { return c.family == ip.family; }))
        cluster_ips.push_back(ip);
    }
    for (const model::ServicePort& sp : svc.ports) {
      std::vector<Endpoint> eps = endpoints_of(slices, sp, node_);
      for (const net::Ip& cluster_ip : cluster_ips) add_port(svc, sp, cluster_ip, eps);
    }
  }

  BuildResult finish() {
    const ServiceSet& set = result_.set;
    ids_.frontends.retain_if([&](uint32_t id) { return set.frontends.count(id) > 0; });
    ids_.backends.retain_if([&](uint32_t id) { return set.backends.count(id) > 0; });
    return std::move(result_);
  }

 private:
  // One Service port in one family: its endpoints of that family and how they categorise.
  struct PortContext {
    const model::Service& svc;
    const model::ServicePort& sp;
    const std::vector<const Endpoint*>& eps;
    const Categories& cat;
    std::vector<BackendId> ids;  // per endpoint, 0 until a frontend names it
  };

  void add_port(const model::Service& svc, const model::ServicePort& sp, const net::Ip& cluster_ip,
                const std::vector<Endpoint>& all) {
    std::vector<const Endpoint*> eps;
    for (const Endpoint& e : all)
      if (e.ip.family == cluster_ip.family) eps.push_back(&e);
    Categories cat = categorize(eps);
    PortContext ctx{svc, sp, eps, cat, std::vector<BackendId>(eps.size(), 0)};

    add_frontend(ctx, FrontendKind::ClusterIP, cluster_ip, sp.port, policy_of(svc.internal_traffic_policy));
    TrafficPolicy external = policy_of(svc.external_traffic_policy);
    bool has_node_port = svc.type == model::Service::Type::NodePort || svc.type == model::Service::Type::LoadBalancer;
    if (has_node_port && sp.node_port)
      for (const net::Ip& a : node_addresses_)
        if (a.family == cluster_ip.family) add_frontend(ctx, FrontendKind::NodePort, a, *sp.node_port, external);
    for (const cni::IPAddr& e : svc.external_ips)
      if (to_ip(e).family == cluster_ip.family) add_frontend(ctx, FrontendKind::ExternalIP, to_ip(e), sp.port, external);
  }

  void add_frontend(PortContext& ctx, FrontendKind kind, const net::Ip& address, int port,
                    TrafficPolicy policy) {
    ServiceFrontend f;
    f.address = address;
    f.port = static_cast<uint16_t>(port);
    f.proto = model::ip_protocol(ctx.sp.protocol);
    f.kind = kind;
    f.service = ctx.svc.meta.ns + "/" + ctx.svc.meta.name;
    f.port_name = ctx.sp.name;
    f.affinity = ctx.svc.session_affinity == model::Service::SessionAffinity::ClientIP;
    f.affinity_timeout_seconds = f.affinity ? static_cast<uint32_t>(ctx.svc.session_affinity_timeout_seconds) : 0;
    f.traffic_policy = policy;

    std::string key = frontend_key(f);
    auto [claim, fresh] = claims_.emplace(key, Claim{f.service, f.port_name});
    if (!fresh) {
      if (claim->second.service != f.service || claim->second.port_name != f.port_name)
        result_.problems.push_back("Service " + f.service + " port " + port_label(ctx.sp) + ": frontend " + key +
                                   " is already Service " + claim->second.service + "'s");
      return;
    }

    bool local = policy == TrafficPolicy::Local;
    const std::vector<size_t>& chosen = local ? ctx.cat.local : ctx.cat.cluster;
    std::vector<bool> named(ctx.eps.size(), false);
    f.backends = backend_ids(ctx, chosen, named);
    if (local && kind != FrontendKind::ClusterIP) f.pod_and_host_backends = backend_ids(ctx, ctx.cat.cluster, named);
    f.when_empty = ctx.cat.any_usable ? WhenEmpty::Drop : WhenEmpty::Reject;
    std::vector<size_t> rest;
    for (size_t i = 0; i < ctx.eps.size(); ++i)
      if (!named[i]) rest.push_back(i);
    f.other_backends = backend_ids(ctx, rest, named);

    result_.set.frontends[ids_.frontends.allocate(key)] = std::move(f);
  }

  std::vector<BackendId> backend_ids(PortContext& ctx, const std::vector<size_t>& which, std::vector<bool>& named) {
    std::vector<BackendId> out;
    for (size_t i : which) {
      named[i] = true;
      if (ctx.ids[i]) {
        out.push_back(ctx.ids[i]);
        continue;
      }
      const Endpoint& e = *ctx.eps[i];
      ServiceBackend b;
      b.address = e.ip;
      b.port = e.port;
      b.proto = model::ip_protocol(ctx.sp.protocol);
      b.state = e.state();
      b.node = e.node;
      b.local = e.local;
      BackendId id = ids_.backends.allocate(backend_key(b));
      auto [it, fresh] = result_.set.backends.emplace(id, b);
      if (!fresh) {  // named by another Service port too: the best of what they say
        it->second.state = std::min(it->second.state, b.state);
        it->second.local = it->second.local || b.local;
        if (it->second.node.empty()) it->second.node = b.node;
      }
      ctx.ids[i] = id;
      out.push_back(id);
    }
    return out;
  }

  static std::string port_label(const model::ServicePort& sp) {
    return sp.name.empty() ? std::to_string(sp.port) + "/" + std::string(model::protocol_name(sp.protocol)) : sp.name;
  }

  std::string node_;
  std::vector<net::Ip> node_addresses_;
  ServiceIds& ids_;
  BuildResult result_;
  std::map<std::string, Claim> claims_;
};

}  // namespace

BuildResult build_services(const model::ClusterState& cluster, std::string_view node,
                           const std::vector<net::Ip>& node_addresses, ServiceIds& ids) {
  // Slices grouped once (endpoint_slices_of per Service would be quadratic at 10,000 Services).
  std::map<std::pair<std::string_view, std::string_view>, std::vector<const model::EndpointSlice*>> slices;
  for (const model::EndpointSlice* s : cluster.endpoint_slices())
    if (!s->service_name.empty()) slices[{s->meta.ns, s->service_name}].push_back(s);
  static const std::vector<const model::EndpointSlice*> kNone;
  Builder b(node, node_addresses, ids);
  for (const model::Service* svc : cluster.services()) {
    auto it = slices.find({svc->meta.ns, svc->meta.name});
    b.add_service(*svc, it == slices.end() ? kNone : it->second);
  }
  return b.finish();
}

}  // namespace ferry::services
