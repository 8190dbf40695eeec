// Seeded random clusters, policies and packets (see random_cluster.h).
#include "tests/policy/random_cluster.h"

#include <netinet/in.h>

#include <algorithm>
#include <random>
#include <set>
#include <sstream>

#include "tests/policy/oracle.h"

namespace ferry::policy::testing {

namespace {

const std::vector<std::string> kPodKeys = {"app", "tier", "env"};
const std::vector<std::string> kPodValues = {"a", "b", "c"};
const std::vector<std::string> kNsKeys = {"kubernetes.io/metadata.name", "team", "env"};
const std::vector<std::string> kNsValues = {"ns0", "ns1", "ns2", "x", "y", "a", "b"};
const std::vector<std::string> kPortNames = {"http", "dns", "metrics", "serve-80-tcp"};
const std::vector<int> kPorts = {53, 80, 81, 83, 8080, 9090};
// Policy ports cluster around 80-84 so that ranges of one peer touch, overlap and leave gaps.
const std::vector<int> kPolicyPorts = {53, 80, 81, 82, 83, 84, 8080};
const model::Protocol kProtocols[] = {model::Protocol::TCP, model::Protocol::UDP, model::Protocol::SCTP};

class Rng {
 public:
  explicit Rng(uint64_t seed) : gen_(seed) {}
  int below(int n) { return n <= 0 ? 0 : std::uniform_int_distribution<int>(0, n - 1)(gen_); }
  int between(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen_); }
  bool chance(double p) { return std::bernoulli_distribution(p)(gen_); }
  template <typename T>
  const T& pick(const std::vector<T>& v) { return v[static_cast<size_t>(below(static_cast<int>(v.size())))]; }
  uint8_t byte() { return static_cast<uint8_t>(below(256)); }

 private:
  std::mt19937_64 gen_;
};

cni::IPAddr addr(const std::string& text) { return *cni::IPAddr::parse(text); }
net::Ip as_ip(const cni::IPAddr& a) { return net::Ip{a.family, a.bytes}; }

// `a` with every bit from `len` on random.
cni::IPAddr randomize_host_bits(Rng& rng, cni::IPAddr a, int len) {
  for (int bit = len; bit < a.bits(); ++bit) {
    auto& b = a.bytes[static_cast<size_t>(bit / 8)];
    uint8_t mask = static_cast<uint8_t>(0x80 >> (bit % 8));
    b = rng.chance(0.5) ? (b | mask) : (b & ~mask);
  }
  return a;
}

cni::IPAddr random_world(Rng& rng, bool v6) {
  cni::IPAddr a = addr(v6 ? "2001:db8::" : "203.0.113.0");
  return rng.chance(0.5) ? randomize_host_bits(rng, a, v6 ? 32 : 24) : randomize_host_bits(rng, a, 1);
}

model::Labels random_labels(Rng& rng, const std::vector<std::string>& keys, const std::vector<std::string>& values) {
  model::Labels l;
  for (const auto& k : keys)
    if (rng.chance(0.5)) l[k] = rng.pick(values);
  return l;
}

model::LabelSelector random_selector(Rng& rng, const std::vector<std::string>& keys,
                                     const std::vector<std::string>& values) {
  model::LabelSelector s;
  if (rng.chance(0.3)) return s;  // {}: everything
  for (int i = rng.below(3); i > 0; --i) s.match_labels[rng.pick(keys)] = rng.pick(values);
  for (int i = rng.below(3); i > 0; --i) {
    model::LabelSelectorRequirement r;
    r.key = rng.pick(keys);
    r.op = static_cast<model::LabelSelectorRequirement::Operator>(rng.below(4));
    using Op = model::LabelSelectorRequirement::Operator;
    if (r.op == Op::In || r.op == Op::NotIn)
      for (int v = rng.between(1, 2); v > 0; --v) r.values.push_back(rng.pick(values));
    s.match_expressions.push_back(r);
  }
  return s;
}

struct Builder {
  Rng rng;
  RandomCluster rc;
  std::vector<model::Object> objects;
  std::vector<model::Namespace> namespaces;
  std::vector<std::string> ns_names;  // incl. the object-less one
  std::vector<model::Node> nodes;
  std::vector<model::Pod> pods;
  std::vector<cni::IPAddr> pod_addrs;  // addresses ipBlocks are built around

  explicit Builder(uint64_t seed) : rng(seed) { rc.seed = seed; }

  void make_namespaces(int max) {
    int n = rng.between(1, max);
    for (int i = 0; i < n; ++i) {
      model::Namespace ns;
      ns.meta.name = "ns" + std::to_string(i);
      ns.meta.labels = random_labels(rng, {"team", "env"}, {"x", "y", "a", "b"});
      ns.meta.labels["kubernetes.io/metadata.name"] = ns.meta.name;
      namespaces.push_back(ns);
      ns_names.push_back(ns.meta.name);
    }
    if (rng.chance(0.2)) ns_names.push_back("ghost-ns");  // pods and policies, no Namespace
  }

  void make_nodes(int max) {
    int n = rng.between(1, max);
    for (int i = 0; i < n; ++i) {
      model::Node node;
      node.meta.name = "node-" + std::to_string(i);
      node.internal_ips.push_back(addr("192.168.0." + std::to_string(i + 1)));
      if (rng.chance(0.5)) node.internal_ips.push_back(addr("fd01::" + std::to_string(i + 1)));
      nodes.push_back(node);
    }
    rc.node = "node-0";
    rc.host_ips.push_back(*net::Ip::parse("10.0.0.1"));
    if (rng.chance(0.5)) rc.host_ips.push_back(*net::Ip::parse("fd00::1"));
  }

  void make_pods(int max) {
    int n = rng.between(1, max);
    for (int i = 0; i < n; ++i) {
      model::Pod pod;
      pod.meta.name = "p" + std::to_string(i);
      pod.meta.ns = rng.pick(ns_names);
      pod.meta.labels = random_labels(rng, kPodKeys, kPodValues);
      int node = rng.below(static_cast<int>(nodes.size()));
      pod.node_name = nodes[static_cast<size_t>(node)].meta.name;
      pod.phase = rng.chance(0.85) ? "Running" : rng.chance(0.5) ? "" : "Pending";
      std::string host = std::to_string(i + 2);
      int family = rng.below(10);  // 0-5 v4, 6-8 dual, 9 v6
      if (family <= 8) pod.pod_ips.push_back(addr("10." + std::to_string(node) + ".0." + host));
      if (family >= 6) pod.pod_ips.push_back(addr("fd00:" + std::to_string(node) + "::" + host));
      if (rng.chance(0.07)) {
        pod.host_network = true;
        pod.pod_ips = nodes[static_cast<size_t>(node)].internal_ips;
      } else if (rng.chance(0.07) && !pods.empty()) {
        pod.phase = rng.chance(0.5) ? "Succeeded" : "Failed";
        pod.pod_ips = pods[0].pod_ips;  // its address went to another pod
      }
      for (int p = rng.below(4); p > 0; --p) {
        model::ContainerPort cp;
        cp.container = "c";
        cp.name = rng.chance(0.8) ? rng.pick(kPortNames) : "";
        cp.protocol = kProtocols[rng.below(3)];
        cp.container_port = rng.pick(kPorts);
        pod.ports.push_back(cp);
      }
      for (const auto& a : pod.pod_ips) pod_addrs.push_back(a);
      pods.push_back(pod);
    }
  }

  model::IPBlock random_ip_block() {
    bool v6 = rng.chance(0.3);
    std::vector<cni::IPAddr> bases;
    for (const auto& a : pod_addrs)
      if (a.is_v6() == v6) bases.push_back(a);
    for (const auto& n : nodes)
      for (const auto& a : n.internal_ips)
        if (a.is_v6() == v6) bases.push_back(a);
    cni::IPAddr base = !bases.empty() && rng.chance(0.8) ? rng.pick(bases) : random_world(rng, v6);
    int bits = base.bits();
    static const std::vector<int> kV4Lens = {0, 1, 8, 16, 24, 28, 30, 31, 32};
    static const std::vector<int> kV6Lens = {0, 1, 16, 32, 64, 112, 120, 127, 128};
    int len = rng.chance(0.8) ? rng.pick(v6 ? kV6Lens : kV4Lens) : rng.between(0, bits);
    model::IPBlock block;
    block.cidr = cni::IPNet{base, len}.network();
    if (len == bits) return block;
    for (int e = rng.below(3); e > 0; --e) {
      std::vector<cni::IPAddr> inside;
      for (const auto& a : bases)
        if (block.cidr.contains(a)) inside.push_back(a);
      cni::IPAddr at = !inside.empty() && rng.chance(0.7) ? rng.pick(inside)
                                                           : randomize_host_bits(rng, block.cidr.addr, len);
      int elen = rng.chance(0.5) ? bits : rng.between(len + 1, bits);
      block.except.push_back(cni::IPNet{at, elen}.network());
    }
    return block;
  }

  model::NetworkPolicyPeer random_peer(const std::string& policy_ns) {
    (void)policy_ns;
    model::NetworkPolicyPeer peer;
    switch (rng.below(4)) {
      case 0: peer.pod_selector = random_selector(rng, kPodKeys, kPodValues); break;
      case 1: peer.namespace_selector = random_selector(rng, kNsKeys, kNsValues); break;
      case 2:
        peer.pod_selector = random_selector(rng, kPodKeys, kPodValues);
        peer.namespace_selector = random_selector(rng, kNsKeys, kNsValues);
        break;
      default: peer.ip_block = random_ip_block();
    }
    return peer;
  }

  model::NetworkPolicyPort random_port() {
    model::NetworkPolicyPort p;
    p.protocol = kProtocols[rng.below(3)];
    int kind = rng.below(20);
    if (kind < 5) return p;  // every port of the protocol
    if (kind < 13) {
      int port = rng.chance(0.8) ? rng.pick(kPolicyPorts) : rng.between(1, 65535);
      p.port = port;
      if (rng.chance(0.4)) p.end_port = std::min(65535, port + (rng.chance(0.5) ? rng.below(3) : rng.below(20000)));
    } else {
      p.port = rng.chance(0.9) ? rng.pick(kPortNames) : std::string("nope");
    }
    return p;
  }

  model::NetworkPolicyRule random_rule(const std::string& ns) {
    model::NetworkPolicyRule rule;
    if (rng.chance(0.7))
      for (int i = rng.between(1, 2); i > 0; --i) rule.peers.push_back(random_peer(ns));
    if (rng.chance(0.7))
      for (int i = rng.between(1, 3); i > 0; --i) rule.ports.push_back(random_port());
    return rule;
  }

  void make_policies(int max) {
    int n = rng.below(max + 1);
    for (int i = 0; i < n; ++i) {
      model::NetworkPolicy p;
      p.meta.name = "pol" + std::to_string(i);
      p.meta.ns = rng.pick(ns_names);
      p.pod_selector = random_selector(rng, kPodKeys, kPodValues);
      using T = model::NetworkPolicy::PolicyType;
      switch (rng.below(5)) {
        case 0: case 1: break;  // policyTypes absent: defaulting
        case 2: p.policy_types = {T::Ingress}; break;
        case 3: p.policy_types = {T::Egress}; break;
        default: p.policy_types = {T::Ingress, T::Egress};
      }
      p.policy_types_given = !p.policy_types.empty();
      for (int r = rng.below(3); r > 0; --r) p.ingress.push_back(random_rule(p.meta.ns));
      for (int r = rng.below(3); r > 0; --r) p.egress.push_back(random_rule(p.meta.ns));
      objects.push_back(p);
    }
  }

  void make_endpoints() {
    uint32_t id = 1;
    for (const auto& pod : pods) {
      if (pod.node_name != rc.node || pod.host_network || pod.phase == "Succeeded" || pod.phase == "Failed" ||
          pod.pod_ips.empty())
        continue;
      LocalEndpoint ep;
      ep.endpoint_id = id++;
      if (rng.chance(0.8)) {
        ep.pod_namespace = pod.meta.ns;
        ep.pod_name = pod.meta.name;
      }
      for (const auto& a : pod.pod_ips) ep.ips.push_back(as_ip(a));
      rc.endpoint_pod[ep.endpoint_id] = pod.meta.ns + "/" + pod.meta.name;
      rc.endpoints.push_back(ep);
    }
    LocalEndpoint ghost;  // a pod interface whose Pod object is not there (yet)
    ghost.endpoint_id = id;
    ghost.pod_namespace = ns_names[0];
    ghost.pod_name = "ghost-pod";
    ghost.ips.push_back(*net::Ip::parse("10.0.0.250"));
    rc.endpoints.push_back(ghost);
  }

  RandomCluster build(const RandomClusterOptions& o) {
    make_namespaces(o.max_namespaces);
    make_nodes(o.max_nodes);
    make_pods(o.max_pods);
    make_policies(o.max_policies);
    make_endpoints();
    for (auto& x : namespaces) objects.push_back(x);
    for (auto& x : nodes) objects.push_back(x);
    for (auto& x : pods) objects.push_back(x);
    rc.cluster.replace_all(std::move(objects));
    return std::move(rc);
  }
};

std::string labels_str(const model::Labels& l) {
  std::string out = "{";
  for (const auto& [k, v] : l) out += (out.size() > 1 ? "," : "") + k + "=" + v;
  return out + "}";
}

std::string join_addrs(const std::vector<cni::IPAddr>& v) {
  std::string out;
  for (const auto& a : v) out += (out.empty() ? "" : ",") + a.str();
  return out;
}

std::string proto_str(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_SCTP: return "sctp";
    case 0: return "any";
  }
  return "proto" + std::to_string(proto);
}

std::string peer_str(const model::NetworkPolicyPeer& p) {
  if (p.ip_block) return "ipBlock(" + canonical_ip_block(*p.ip_block) + ")";
  std::string out;
  if (p.namespace_selector) out += "ns" + selector_str(*p.namespace_selector);
  if (p.pod_selector) out += std::string(out.empty() ? "" : "+") + "pod" + selector_str(*p.pod_selector);
  return out;
}

std::string rule_str(const model::NetworkPolicyRule& r) {
  std::string out = "{peers:[";
  for (size_t i = 0; i < r.peers.size(); ++i) out += (i ? " " : "") + peer_str(r.peers[i]);
  out += "] ports:[";
  for (size_t i = 0; i < r.ports.size(); ++i) {
    const auto& p = r.ports[i];
    out += (i ? " " : "") + std::string(model::protocol_name(p.protocol));
    if (p.port) out += "/" + std::visit([](const auto& v) { std::ostringstream s; s << v; return s.str(); }, *p.port);
    if (p.end_port) out += "-" + std::to_string(*p.end_port);
  }
  return out + "]}";
}

}  // namespace

std::string selector_str(const model::LabelSelector& s) {
  std::string out = labels_str(s.match_labels);
  static const char* kOps[] = {"In", "NotIn", "Exists", "DoesNotExist"};
  for (const auto& r : s.match_expressions) {
    out += "&" + r.key + " " + kOps[static_cast<int>(r.op)];
    if (!r.values.empty()) {
      out += "(";
      for (size_t i = 0; i < r.values.size(); ++i) out += (i ? "," : "") + r.values[i];
      out += ")";
    }
  }
  return out;
}

std::string policy_str(const model::NetworkPolicy& p) {
  std::string out = "policy " + p.meta.ns + "/" + p.meta.name + " select" + selector_str(p.pod_selector) + " types=";
  if (!p.policy_types_given) out += "(absent)";
  for (auto t : p.policy_types) out += t == model::NetworkPolicy::PolicyType::Ingress ? "I" : "E";
  out += " ingress=[";
  for (const auto& r : p.ingress) out += rule_str(r);
  out += "] egress=[";
  for (const auto& r : p.egress) out += rule_str(r);
  return out + "]";
}

CompileInput RandomCluster::input(bool enforce) const {
  CompileInput in;
  in.cluster = &cluster;
  in.node = node;
  in.host_ips = host_ips;
  in.endpoints = endpoints;
  in.enforce = enforce;
  return in;
}

const model::Pod* RandomCluster::pod_of(uint32_t endpoint_id) const {
  auto it = endpoint_pod.find(endpoint_id);
  if (it == endpoint_pod.end()) return nullptr;
  auto slash = it->second.find('/');
  return cluster.pod(it->second.substr(0, slash), it->second.substr(slash + 1));
}

std::string RandomCluster::describe() const {
  std::ostringstream out;
  out << "seed " << seed << ", local node " << node << ", host_ips";
  for (const auto& ip : host_ips) out << " " << ip.str();
  out << "\n";
  for (const auto* ns : cluster.namespaces()) out << "namespace " << ns->meta.name << " " << labels_str(ns->meta.labels) << "\n";
  for (const auto* n : cluster.nodes()) out << "node " << n->meta.name << " " << join_addrs(n->internal_ips) << "\n";
  for (const auto* p : cluster.pods()) {
    out << "pod " << p->meta.ns << "/" << p->meta.name << " on " << p->node_name << " ips=" << join_addrs(p->pod_ips)
        << " labels=" << labels_str(p->meta.labels) << " phase=" << p->phase << (p->host_network ? " hostNetwork" : "")
        << " ports=";
    for (const auto& cp : p->ports)
      out << cp.name << ":" << model::protocol_name(cp.protocol) << "/" << cp.container_port << " ";
    out << "\n";
  }
  for (const auto* p : cluster.network_policies()) out << policy_str(*p) << "\n";
  for (const auto& ep : endpoints) {
    out << "endpoint " << ep.endpoint_id << " pod=" << (ep.pod_namespace.empty() ? "(by ip)" : ep.pod_namespace + "/" + ep.pod_name);
    for (const auto& ip : ep.ips) out << " " << ip.str();
    out << "\n";
  }
  return out.str();
}

RandomCluster random_cluster(uint64_t seed, const RandomClusterOptions& options) {
  return Builder(seed).build(options);
}

std::string Packet::str() const {
  return "ep " + std::to_string(endpoint_id) + (dir == Direction::Ingress ? " ingress" : " egress") + " peer " +
         peer.str() + " " + proto_str(proto) + "/" + std::to_string(port);
}

std::vector<Packet> random_packets(const RandomCluster& rc, uint64_t seed, size_t count) {
  Rng rng(seed ^ 0x9e3779b97f4a7c15ull);
  std::vector<cni::IPAddr> pod_ips, node_ips, edges;
  std::vector<cni::IPNet> cidrs;
  std::set<int> ports = {0, 1, 65535, 65534};
  for (const auto* pod : rc.cluster.pods()) {
    pod_ips.insert(pod_ips.end(), pod->pod_ips.begin(), pod->pod_ips.end());
    for (const auto& cp : pod->ports) ports.insert(cp.container_port);
  }
  for (const auto* n : rc.cluster.nodes()) node_ips.insert(node_ips.end(), n->internal_ips.begin(), n->internal_ips.end());
  for (const auto& ip : rc.host_ips) node_ips.push_back(cni::IPAddr{ip.family, ip.bytes});
  auto add_edges = [&](const cni::IPNet& n) {
    cidrs.push_back(n);
    for (auto a : {n.network().addr, n.broadcast()}) {
      edges.push_back(a);
      edges.push_back(a.next());
      edges.push_back(a.prev());
    }
  };
  for (const auto* p : rc.cluster.network_policies()) {
    for (const auto* rules : {&p->ingress, &p->egress}) {
      for (const auto& r : *rules) {
        for (const auto& peer : r.peers) {
          if (!peer.ip_block) continue;
          add_edges(peer.ip_block->cidr);
          for (const auto& e : peer.ip_block->except) add_edges(e);
        }
        for (const auto& port : r.ports) {
          if (const int* n = port.port ? std::get_if<int>(&*port.port) : nullptr) {
            for (int d : {-1, 0, 1}) ports.insert(*n + d);
            if (port.end_port)
              for (int d : {-1, 0, 1}) ports.insert(*port.end_port + d);
          }
        }
      }
    }
  }
  std::vector<int> port_list;
  for (int p : ports)
    if (p >= 0 && p <= 65535) port_list.push_back(p);

  // Mostly endpoints some policy selects: the others allow everything.
  std::vector<uint32_t> all_ids, selected_ids;
  for (const auto& ep : rc.endpoints) {
    all_ids.push_back(ep.endpoint_id);
    const model::Pod* pod = rc.pod_of(ep.endpoint_id);
    for (const auto* pol : rc.cluster.network_policies()) {
      if (pod && pol->meta.ns == pod->meta.ns && pol->pod_selector.matches(pod->meta.labels)) {
        selected_ids.push_back(ep.endpoint_id);
        break;
      }
    }
  }

  std::vector<Packet> out;
  for (size_t i = 0; i < count; ++i) {
    Packet p;
    p.endpoint_id = !selected_ids.empty() && rng.chance(0.85) ? rng.pick(selected_ids) : rng.pick(all_ids);
    p.dir = rng.chance(0.5) ? Direction::Ingress : Direction::Egress;
    int kind = rng.below(100);
    cni::IPAddr peer;
    if (kind < 40 && !pod_ips.empty()) peer = rng.pick(pod_ips);
    else if (kind < 55) peer = rng.pick(node_ips);
    else if (kind < 75 && !edges.empty()) peer = rng.pick(edges);
    else if (kind < 90 && !cidrs.empty()) {
      const auto& c = rng.pick(cidrs);
      peer = randomize_host_bits(rng, c.network().addr, c.prefix);
    } else peer = random_world(rng, rng.chance(0.4));
    p.peer = as_ip(peer);
    int proto = rng.below(20);
    p.proto = proto == 0 ? IPPROTO_ICMP : proto < 9 ? IPPROTO_TCP : proto < 15 ? IPPROTO_UDP : IPPROTO_SCTP;
    p.port = static_cast<uint16_t>(p.proto == IPPROTO_ICMP ? 0 : rng.chance(0.9) ? rng.pick(port_list) : rng.between(0, 65535));
    out.push_back(p);
  }
  return out;
}

bool oracle_allows(const RandomCluster& rc, const Packet& p) {
  return oracle_allows(rc.cluster, rc.node, rc.host_ips, rc.pod_of(p.endpoint_id), p.dir, p.peer, p.proto, p.port);
}

std::string explain(const RandomCluster& rc, const Packet& p, const CompileResult& compiled) {
  std::ostringstream out;
  out << "seed " << rc.seed << ": " << p.str() << "\n";
  const model::Pod* pod = rc.pod_of(p.endpoint_id);
  if (!pod) {
    out << "  endpoint pod: unknown\n";
  } else {
    out << "  endpoint pod " << pod->meta.ns << "/" << pod->meta.name << " labels=" << labels_str(pod->meta.labels)
        << " ports=";
    for (const auto& cp : pod->ports) out << cp.name << ":" << model::protocol_name(cp.protocol) << "/" << cp.container_port << " ";
    out << "\n";
    for (const auto* pol : rc.cluster.network_policies())
      if (pol->meta.ns == pod->meta.ns && pol->pod_selector.matches(pod->meta.labels)) out << "  selected by " << policy_str(*pol) << "\n";
  }
  Identity id = lookup_identity(compiled.set, p.peer);
  auto info = compiled.identities.find(id);
  out << "  peer identity " << id << " " << (info == compiled.identities.end() ? "?" : info->second.key()) << "\n";
  if (auto ep = compiled.set.endpoints.find(p.endpoint_id); ep != compiled.set.endpoints.end()) {
    bool ingress = p.dir == Direction::Ingress;
    out << "  compiled: isolated=" << (ingress ? ep->second.ingress_isolated : ep->second.egress_isolated) << " entries:";
    for (const auto& e : ingress ? ep->second.ingress : ep->second.egress)
      out << " (" << e.peer << " " << proto_str(e.proto) << " " << e.port_first << "-" << e.port_last << ")";
    out << "\n";
  } else {
    out << "  compiled: endpoint absent\n";
  }
  return out.str();
}

}  // namespace ferry::policy::testing
