// compile(): cluster objects -> identities, ipcache and per-endpoint allow entries.
//
// Order of work: (1) every address class the node can tell apart becomes an ipcache prefix
// with its IdentityInfo; (2) identities are numbered; (3) for each local endpoint, the
// policies of its namespace that select it contribute their rules, peers resolved to
// identities once per policy and cached; (4) entries are normalised.
#include <algorithm>
#include <set>

#include "policy/internal.h"
#include "policy/policy.h"

namespace ferry::policy {

namespace {

using detail::PrefixLess;
using dataplane::PolicyEntry;
using Kind = IdentityInfo::Kind;

struct Block {
  std::string name;  // canonical_ip_block
  net::Prefix cidr;
  std::vector<net::Prefix> except;
};

// Pods whose IPs are theirs alone: hostNetwork pods use the node's address and finished pods
// have given theirs back.
bool pod_owns_ips(const model::Pod& pod) {
  return !pod.host_network && pod.phase != "Succeeded" && pod.phase != "Failed";
}

std::vector<IdentityInfo::NamedPort> named_ports_of(const model::Pod& pod) {
  std::vector<IdentityInfo::NamedPort> out;
  for (const auto& p : pod.ports) {
    if (p.name.empty() || p.container_port < 0 || p.container_port > 65535) continue;
    out.push_back({p.name, model::ip_protocol(p.protocol), static_cast<uint16_t>(p.container_port)});
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

template <typename Fn>
void for_each_peer(const model::NetworkPolicy& policy, Fn&& fn) {
  for (const auto* rules : {&policy.ingress, &policy.egress})
    for (const auto& rule : *rules)
      for (const auto& peer : rule.peers) fn(peer);
}

// The ipBlocks that contain every address of `p` (exact under longest-prefix match because
// every cidr and except is itself an ipcache prefix).
std::vector<std::string> blocks_containing(const net::Prefix& p, const std::vector<Block>& blocks) {
  std::vector<std::string> out;
  for (const auto& b : blocks) {
    if (!detail::prefix_within(p, b.cidr)) continue;
    bool excepted = std::any_of(b.except.begin(), b.except.end(),
                                [&](const net::Prefix& e) { return detail::prefix_within(p, e); });
    if (!excepted) out.push_back(b.name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

// A rule's port after parsing: numeric range, or a name to resolve against a pod's ports.
struct PortSpec {
  uint8_t proto = 0;
  uint16_t first = 0, last = 65535;
  std::string name;  // non-empty: named port
};

std::vector<PortSpec> port_specs(const model::NetworkPolicyRule& rule) {
  std::vector<PortSpec> out;
  for (const auto& p : rule.ports) {
    PortSpec s;
    s.proto = model::ip_protocol(p.protocol);
    if (!p.port) {
      out.push_back(s);
    } else if (const auto* name = std::get_if<std::string>(&*p.port)) {
      s.name = *name;
      out.push_back(s);
    } else {
      int first = std::get<int>(*p.port);
      int last = p.end_port.value_or(first);
      if (first < 0 || last > 65535 || last < first) continue;  // invalid: allows nothing
      s.first = static_cast<uint16_t>(first);
      s.last = static_cast<uint16_t>(last);
      out.push_back(s);
    }
  }
  return out;
}

void add_named(std::vector<PolicyEntry>& out, Identity peer, const PortSpec& spec,
               const std::vector<IdentityInfo::NamedPort>& ports) {
  for (const auto& np : ports)
    if (np.name == spec.name && np.proto == spec.proto) out.push_back({peer, spec.proto, np.port, np.port});
}

// Sorted, deduplicated, ranges of one (peer, proto) merged; entries another entry already
// covers ((peer, any proto), (any peer, a covering range), (any, any)) dropped.
std::vector<PolicyEntry> normalize(std::vector<PolicyEntry> in) {
  for (auto& e : in)
    if (e.proto == 0) e.port_first = 0, e.port_last = 65535;
  std::sort(in.begin(), in.end());
  std::vector<PolicyEntry> merged;
  for (const auto& e : in) {
    if (!merged.empty()) {
      auto& last = merged.back();
      if (last.peer == e.peer && last.proto == e.proto && int(e.port_first) <= int(last.port_last) + 1) {
        last.port_last = std::max(last.port_last, e.port_last);
        continue;
      }
    }
    merged.push_back(e);
  }
  std::set<Identity> any_proto;
  for (const auto& e : merged)
    if (e.proto == 0) any_proto.insert(e.peer);
  if (any_proto.count(dataplane::kIdentityAny)) return {PolicyEntry{}};
  auto covered_by_any_peer = [&](const PolicyEntry& e) {
    // merged is sorted: any-peer entries (peer 0) come first, ranges maximal.
    for (const auto& a : merged) {
      if (a.peer != dataplane::kIdentityAny) break;
      if (a.proto == e.proto && a.port_first <= e.port_first && e.port_last <= a.port_last) return true;
    }
    return false;
  };
  std::vector<PolicyEntry> out;
  for (const auto& e : merged) {
    if (e.proto != 0 && any_proto.count(e.peer)) continue;
    if (e.peer != dataplane::kIdentityAny && covered_by_any_peer(e)) continue;
    out.push_back(e);
  }
  return out;
}

class Compiler {
 public:
  Compiler(const CompileInput& in, IdentityAllocator& alloc) : in_(in), alloc_(alloc) {
    static const model::ClusterState kEmpty;
    cluster_ = in.cluster ? in.cluster : &kEmpty;
  }

  CompileResult run() {
    out_.set.enforce = in_.enforce;
    for (const auto* ns : cluster_->namespaces()) ns_labels_[ns->meta.name] = ns->meta.labels;
    policies_ = cluster_->network_policies();
    for (size_t i = 0; i < policies_.size(); ++i) policies_by_ns_[policies_[i]->meta.ns].push_back(i);
    build_ipcache();
    index_identities();
    for (const auto& ep : in_.endpoints) compile_endpoint(ep);
    alloc_.retain_only(out_.identities);
    return std::move(out_);
  }

 private:
  // (1) + (2): the address classes and their numbers.
  void build_ipcache() {
    std::vector<Block> blocks;
    std::set<std::string> seen_blocks;
    for (const auto* policy : policies_) {
      for_each_peer(*policy, [&](const model::NetworkPolicyPeer& peer) {
        if (!peer.ip_block) return;
        std::string name = canonical_ip_block(*peer.ip_block);
        if (!seen_blocks.insert(name).second) return;
        Block b{name, detail::to_prefix(peer.ip_block->cidr), {}};
        for (const auto& e : peer.ip_block->except) b.except.push_back(detail::to_prefix(e));
        blocks.push_back(std::move(b));
      });
    }

    // First claim of a prefix wins: this node, other nodes, pods, then ipBlock regions.
    std::map<net::Prefix, IdentityInfo, PrefixLess> classes;
    auto claim = [&](const net::Ip& ip, const IdentityInfo& info) {
      if (ip.family == AF_INET || ip.family == AF_INET6) classes.emplace(detail::host_prefix(ip), info);
    };
    for (const auto& ip : in_.host_ips) claim(ip, detail::plain_identity(Kind::Host));
    if (const auto* self = cluster_->node(in_.node))
      for (const auto& a : self->internal_ips) claim(detail::to_ip(a), detail::plain_identity(Kind::Host));
    for (const auto* node : cluster_->nodes())
      for (const auto& a : node->internal_ips) claim(detail::to_ip(a), detail::plain_identity(Kind::RemoteNode));
    for (const auto* pod : cluster_->pods()) {
      if (!pod_owns_ips(*pod) || pod->pod_ips.empty()) continue;
      IdentityInfo info = detail::plain_identity(Kind::Pod);
      info.ns = pod->meta.ns;
      info.labels = pod->meta.labels;
      info.ns_labels = ns_labels_of(pod->meta.ns);
      info.named_ports = named_ports_of(*pod);
      for (const auto& a : pod->pod_ips) {
        net::Ip ip = detail::to_ip(a);
        if (classes.emplace(detail::host_prefix(ip), info).second) pod_by_ip_.emplace(detail::host_prefix(ip), pod);
      }
    }
    for (const auto& b : blocks) {
      classes.emplace(b.cidr, IdentityInfo{});
      for (const auto& e : b.except) classes.emplace(e, IdentityInfo{});
    }
    classes.emplace(*net::Prefix::parse("0.0.0.0/0"), IdentityInfo{});
    classes.emplace(*net::Prefix::parse("::/0"), IdentityInfo{});

    for (auto& [prefix, info] : classes) {
      if (!blocks.empty()) info.ip_blocks = blocks_containing(prefix, blocks);
      Identity id = alloc_.allocate(info);
      out_.set.ipcache.push_back({prefix, id});
      out_.identities.emplace(id, std::move(info));
    }
  }

  void index_identities() {
    for (const auto& [id, info] : out_.identities) {
      if (info.kind == Kind::Pod) {
        pod_ids_.push_back(id);
        pod_ids_by_ns_[info.ns].push_back(id);
      }
      if (info.kind == Kind::Host) host_ids_.push_back(id);
      for (const auto& block : info.ip_blocks) ids_by_block_[block].push_back(id);
    }
  }

  const model::Labels& ns_labels_of(const std::string& ns) const {
    static const model::Labels kNone;
    auto it = ns_labels_.find(ns);
    return it == ns_labels_.end() ? kNone : it->second;
  }

  const model::Pod* pod_of(const LocalEndpoint& ep) const {
    if (!ep.pod_namespace.empty() && !ep.pod_name.empty()) return cluster_->pod(ep.pod_namespace, ep.pod_name);
    for (const auto& ip : ep.ips)
      if (auto it = pod_by_ip_.find(detail::host_prefix(ip)); it != pod_by_ip_.end()) return it->second;
    return nullptr;
  }

  // The identities one peer of a policy matches.
  void match_peer(const model::NetworkPolicy& policy, const model::NetworkPolicyPeer& peer,
                  std::vector<Identity>& out) const {
    if (peer.ip_block) {
      auto it = ids_by_block_.find(canonical_ip_block(*peer.ip_block));
      if (it != ids_by_block_.end()) out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
    if (!peer.pod_selector && !peer.namespace_selector) return;  // invalid peer: matches nothing
    const std::vector<Identity>* candidates = &pod_ids_;
    if (!peer.namespace_selector) {
      static const std::vector<Identity> kNone;
      auto it = pod_ids_by_ns_.find(policy.meta.ns);
      candidates = it == pod_ids_by_ns_.end() ? &kNone : &it->second;
    }
    for (Identity id : *candidates) {
      const auto& info = out_.identities.at(id);
      if (peer.namespace_selector && !peer.namespace_selector->matches(info.ns_labels)) continue;
      if (peer.pod_selector && !peer.pod_selector->matches(info.labels)) continue;
      out.push_back(id);
    }
  }

  // What one policy contributes in one direction. Ingress named ports depend on the endpoint's
  // own pod, so they are kept apart and resolved per endpoint.
  struct Contribution {
    std::vector<PolicyEntry> entries;
    struct Named {
      PortSpec spec;
      std::vector<Identity> peers;  // {0} = any peer
    };
    std::vector<Named> ingress_named;
  };

  const Contribution& contribution(size_t index, Direction dir) {
    auto key = std::make_pair(index, dir);
    if (auto it = contributions_.find(key); it != contributions_.end()) return it->second;
    const auto& policy = *policies_[index];
    Contribution c;
    for (const auto& rule : dir == Direction::Ingress ? policy.ingress : policy.egress) {
      std::vector<Identity> peers;
      if (rule.peers.empty()) {
        peers.push_back(dataplane::kIdentityAny);
      } else {
        for (const auto& peer : rule.peers) match_peer(policy, peer, peers);
        std::sort(peers.begin(), peers.end());
        peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
      }
      if (rule.ports.empty()) {
        for (Identity p : peers) c.entries.push_back({p, 0, 0, 65535});
        continue;
      }
      for (const auto& spec : port_specs(rule)) {
        if (spec.name.empty()) {
          for (Identity p : peers) c.entries.push_back({p, spec.proto, spec.first, spec.last});
        } else if (dir == Direction::Ingress) {
          c.ingress_named.push_back({spec, peers});
        } else {
          // Egress: the destination pod's port; any peer = every pod identity declaring it.
          const auto& dests = peers.size() == 1 && peers[0] == dataplane::kIdentityAny ? pod_ids_ : peers;
          for (Identity p : dests) add_named(c.entries, p, spec, out_.identities.at(p).named_ports);
        }
      }
    }
    return contributions_.emplace(key, std::move(c)).first->second;
  }

  void compile_endpoint(const LocalEndpoint& ep) {
    const model::Pod* pod = pod_of(ep);
    if (!pod) return;  // unknown pod: not isolated
    out_.endpoint_pods[ep.endpoint_id] = pod->meta.ns + "/" + pod->meta.name;
    dataplane::EndpointPolicy result;
    std::vector<PolicyEntry> ingress, egress;
    std::vector<IdentityInfo::NamedPort> own_ports;
    bool own_ports_known = false;
    std::vector<std::string> names;
    auto selecting = policies_by_ns_.find(pod->meta.ns);
    if (selecting == policies_by_ns_.end()) {
      out_.set.endpoints[ep.endpoint_id] = result;  // known pod, no policy: not isolated
      return;
    }
    for (size_t index : selecting->second) {
      const auto& policy = *policies_[index];
      if (!policy.pod_selector.matches(pod->meta.labels)) continue;
      names.push_back(policy.meta.ns + "/" + policy.meta.name);
      if (policy.isolates_ingress()) {
        result.ingress_isolated = true;
        const auto& c = contribution(index, Direction::Ingress);
        ingress.insert(ingress.end(), c.entries.begin(), c.entries.end());
        if (!c.ingress_named.empty() && !own_ports_known) {
          own_ports = named_ports_of(*pod);
          own_ports_known = true;
        }
        for (const auto& n : c.ingress_named)
          for (Identity p : n.peers) add_named(ingress, p, n.spec, own_ports);
      }
      if (policy.isolates_egress()) {
        result.egress_isolated = true;
        const auto& c = contribution(index, Direction::Egress);
        egress.insert(egress.end(), c.entries.begin(), c.entries.end());
      }
    }
    if (result.ingress_isolated)
      for (Identity h : host_ids_) ingress.push_back({h, 0, 0, 65535});
    result.ingress = normalize(std::move(ingress));
    result.egress = normalize(std::move(egress));
    std::sort(names.begin(), names.end());
    if (!names.empty()) out_.endpoint_policies[ep.endpoint_id] = std::move(names);
    out_.set.endpoints[ep.endpoint_id] = std::move(result);
  }

  const CompileInput& in_;
  IdentityAllocator& alloc_;
  const model::ClusterState* cluster_;
  CompileResult out_;
  std::map<std::string, model::Labels> ns_labels_;
  std::vector<const model::NetworkPolicy*> policies_;
  std::map<std::string, std::vector<size_t>> policies_by_ns_;
  std::map<net::Prefix, const model::Pod*, PrefixLess> pod_by_ip_;
  std::vector<Identity> pod_ids_, host_ids_;
  std::map<std::string, std::vector<Identity>> pod_ids_by_ns_;
  std::map<std::string, std::vector<Identity>> ids_by_block_;
  std::map<std::pair<size_t, Direction>, Contribution> contributions_;
};

}  // namespace

CompileResult compile(const CompileInput& in, IdentityAllocator& identities) {
  return Compiler(in, identities).run();
}

}  // namespace ferry::policy
