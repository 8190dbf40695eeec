// tests/policy/fixture.h — a hand-built cluster for the truth-table tests: namespaces and pods
// from short helper calls, policies from YAML exactly as kubectl would take them. Every verdict
// asked through allowed() is checked against the oracle too, so each truth table tests both.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>

#include <string>
#include <vector>

#include "tests/policy/oracle.h"

namespace ferry::policy::testing {

inline net::Ip ip(const std::string& text) {
  auto v = net::Ip::parse(text);
  if (!v) throw std::invalid_argument("bad ip " + text);
  return *v;
}

class PolicyWorld {
 public:
  static constexpr const char* kNode = "node-0";
  std::vector<net::Ip> host_ips = {ip("10.0.0.1")};
  model::ClusterState cluster;
  IdentityAllocator allocator;
  std::vector<LocalEndpoint> endpoints;

  PolicyWorld() {
    model::Node self, other;
    self.meta.name = kNode;
    self.internal_ips = {*cni::IPAddr::parse("192.168.0.1")};
    other.meta.name = "node-1";
    other.internal_ips = {*cni::IPAddr::parse("192.168.0.2")};
    cluster.upsert(self);
    cluster.upsert(other);
  }

  void ns(const std::string& name, model::Labels labels = {}) {
    model::Namespace n;
    n.meta.name = name;
    labels["kubernetes.io/metadata.name"] = name;
    n.meta.labels = labels;
    cluster.upsert(n);
  }

  // A pod; on this node (an endpoint, id = order of creation from 1) unless node says otherwise.
  // ports: "name:TCP:80" each ("" name for unnamed).
  void pod(const std::string& ns_name, const std::vector<std::string>& ips, model::Labels labels = {},
                  const std::vector<std::string>& ports = {}, const std::string& node = kNode) {
    model::Pod p;
    auto slash = ns_name.find('/');
    p.meta.ns = ns_name.substr(0, slash);
    p.meta.name = ns_name.substr(slash + 1);
    p.meta.labels = std::move(labels);
    p.node_name = node;
    p.phase = "Running";
    for (const auto& a : ips) p.pod_ips.push_back(*cni::IPAddr::parse(a));
    for (const auto& spec : ports) {
      auto c1 = spec.find(':'), c2 = spec.rfind(':');
      model::ContainerPort cp;
      cp.name = spec.substr(0, c1);
      std::string proto = spec.substr(c1 + 1, c2 - c1 - 1);
      cp.protocol = proto == "UDP" ? model::Protocol::UDP : proto == "SCTP" ? model::Protocol::SCTP : model::Protocol::TCP;
      cp.container_port = std::stoi(spec.substr(c2 + 1));
      p.ports.push_back(cp);
    }
    cluster.upsert(p);
    if (node == kNode) {
      LocalEndpoint ep;
      ep.endpoint_id = static_cast<uint32_t>(endpoints.size() + 1);
      ep.pod_namespace = p.meta.ns;
      ep.pod_name = p.meta.name;
      for (const auto& a : ips) ep.ips.push_back(ip(a));
      endpoints.push_back(ep);
    }
    dirty_ = true;
  }

  // Policies (or any objects) from YAML; fails the test on a decoding error.
  void apply(const std::string& yaml) {
    auto decoded = model::decode_manifest("policy.yaml", yaml);
    for (const auto& e : decoded.errors) ADD_FAILURE() << e.message;
    for (auto& o : decoded.objects) cluster.upsert(std::move(o));
    dirty_ = true;
  }

  const CompileResult& compiled() {
    if (dirty_ || cluster.revision() != compiled_revision_) {
      CompileInput in;
      in.cluster = &cluster;
      in.node = kNode;
      in.host_ips = host_ips;
      in.endpoints = endpoints;
      result_ = compile(in, allocator);
      compiled_revision_ = cluster.revision();
      dirty_ = false;
    }
    return result_;
  }

  uint32_t endpoint_of(const std::string& ns_name) const {
    for (const auto& ep : endpoints)
      if (ep.pod_namespace + "/" + ep.pod_name == ns_name) return ep.endpoint_id;
    throw std::invalid_argument("no local endpoint " + ns_name);
  }

  // The compiled verdict; the oracle must agree.
  bool allowed(const std::string& pod, Direction dir, const std::string& peer, uint8_t proto = IPPROTO_TCP,
               uint16_t port = 80) {
    uint32_t id = endpoint_of(pod);
    bool got = allows(compiled().set, id, dir, ip(peer), proto, port);
    auto slash = pod.find('/');
    bool want = oracle_allows(cluster, kNode, host_ips, cluster.pod(pod.substr(0, slash), pod.substr(slash + 1)), dir,
                              ip(peer), proto, port);
    EXPECT_EQ(got, want) << "compiled and oracle disagree on " << pod << " peer " << peer << " port " << port;
    return got;
  }
  bool ingress(const std::string& pod, const std::string& from, uint8_t proto = IPPROTO_TCP, uint16_t port = 80) {
    return allowed(pod, Direction::Ingress, from, proto, port);
  }
  bool egress(const std::string& pod, const std::string& to, uint8_t proto = IPPROTO_TCP, uint16_t port = 80) {
    return allowed(pod, Direction::Egress, to, proto, port);
  }

 private:
  bool dirty_ = true;
  uint64_t compiled_revision_ = 0;
  CompileResult result_;
};

}  // namespace ferry::policy::testing
