// NetworkPolicy in the iptables datapath as pure text: the identity ipsets a PolicySet needs
// (longest-prefix semantics through `nomatch`), ipset save parsing and restore diffs, and the
// per-endpoint policy chains. No kernel access here.
#include <netinet/in.h>

#include <algorithm>
#include <set>

#include "agent/iptables/internal.h"
#include "agent/iptables/iptables.h"

namespace ferry::iptables {

using dataplane::DataplaneError;
using dataplane::Direction;
using dataplane::EndpointPolicy;
using dataplane::Identity;
using dataplane::PolicyEntry;
using dataplane::PolicySet;
using detail::with_comment;

namespace {

constexpr std::string_view kDenyIngressComment = "ferry: policy-deny ingress";
constexpr std::string_view kDenyEgressComment = "ferry: policy-deny egress";
// hash:net sizes itself as it fills; maxelem only caps it. The world set holds, as nomatch,
// every pod IP of the cluster.
constexpr const char* kSetCreateOptions = " maxelem 1048576";

Family family_of(const net::Prefix& p) { return p.ip.family == AF_INET6 ? Family::kV6 : Family::kV4; }

bool prefix_contains(const net::Prefix& outer, const net::Prefix& inner) {
  return outer.ip.family == inner.ip.family && outer.len <= inner.len && outer.contains(inner.ip);
}

// Sort order of the ipcache: family, address bytes, length. A prefix's descendants follow it
// directly, which is what the stack walk in identity_sets() needs.
bool ipcache_less(const dataplane::IpcacheEntry& a, const dataplane::IpcacheEntry& b) {
  if (a.prefix.ip.family != b.prefix.ip.family) return a.prefix.ip.family < b.prefix.ip.family;
  if (a.prefix.ip.bytes != b.prefix.ip.bytes) return a.prefix.ip.bytes < b.prefix.ip.bytes;
  return a.prefix.len < b.prefix.len;
}

// The two halves of a /0 (hash:net cannot hold a zero-length prefix).
std::vector<net::Prefix> halves_of_everything(Family f) {
  net::Prefix low = *net::Prefix::parse(f == Family::kV4 ? "0.0.0.0/1" : "::/1");
  net::Prefix high = *net::Prefix::parse(f == Family::kV4 ? "128.0.0.0/1" : "8000::/1");
  return {low, high};
}

using detail::proto_name;

std::set<Identity> referenced_identities(const PolicySet& set) {
  std::set<Identity> ids;
  for (const auto& [id, pol] : set.endpoints) {
    if (pol.ingress_isolated)
      for (const PolicyEntry& e : pol.ingress) ids.insert(e.peer);
    if (pol.egress_isolated)
      for (const PolicyEntry& e : pol.egress) ids.insert(e.peer);
  }
  ids.erase(dataplane::kIdentityAny);
  return ids;
}

std::string entry_rule(Family family, Direction dir, const PolicyEntry& e) {
  std::string spec, what;
  if (e.proto != 0) {
    const char* name = proto_name(e.proto);
    if (!name)
      throw DataplaneError("cannot render an iptables policy rule for protocol " + std::to_string(e.proto) +
                           " (only TCP, UDP, SCTP or any)");
    spec += std::string("-p ") + name + " ";
    what += std::string(" ") + name;
  }
  if (e.peer != dataplane::kIdentityAny) {
    spec += "-m set --match-set " + identity_set_name(e.peer, family) + (dir == Direction::Ingress ? " src " : " dst ");
    what = " " + std::to_string(e.peer) + what;
  } else {
    what = " any" + what;
  }
  if (e.proto != 0 && (e.port_first != 0 || e.port_last != 65535)) {
    std::string ports = std::to_string(e.port_first);
    if (e.port_last != e.port_first) ports += ":" + std::to_string(e.port_last);
    spec += std::string("-m ") + proto_name(e.proto) + " --dport " + ports + " ";
    what += " " + ports;
  }
  return spec + with_comment("ferry: allow" + what) + " -j RETURN";
}

}  // namespace

std::string policy_chain(Direction dir, std::string_view host_veth) {
  return std::string(dir == Direction::Ingress ? kPolicyIngressChainPrefix : kPolicyEgressChainPrefix) +
         chain_suffix(host_veth);
}

bool is_policy_chain(std::string_view chain) {
  return chain.starts_with(kPolicyIngressChainPrefix) || chain.starts_with(kPolicyEgressChainPrefix);
}

std::string identity_set_name(Identity id, Family family) {
  return std::string(kIdentitySetPrefix) + std::to_string(id) + (family == Family::kV4 ? "-4" : "-6");
}

// ---------------------------------------------------------------------------------------
// Sets

IdentitySets identity_sets(const PolicySet& desired) {
  IdentitySets sets;
  if (!desired.enforce) return sets;
  const std::set<Identity> wanted = referenced_identities(desired);
  if (wanted.empty()) return sets;

  std::vector<dataplane::IpcacheEntry> cache = desired.ipcache;
  for (auto& e : cache) e.prefix = e.prefix.network();
  std::sort(cache.begin(), cache.end(), ipcache_less);
  std::set<std::string> exact;  // every ipcache prefix, to keep /0 halves from shadowing one
  for (const auto& e : cache) exact.insert(e.prefix.str());

  auto member = [&](Identity id, const net::Prefix& p, bool nomatch) {
    if (!wanted.count(id)) return;
    IdentitySet& s = sets[identity_set_name(id, family_of(p))];
    s.family = family_of(p);
    s.members[p.str()] = nomatch;
  };
  // Walk the containment tree: `open` holds the chain of ancestors of the current prefix.
  std::vector<const dataplane::IpcacheEntry*> open;
  for (const auto& e : cache) {
    while (!open.empty() && !prefix_contains(open.back()->prefix, e.prefix)) open.pop_back();
    if (!open.empty() && open.back()->prefix == e.prefix) continue;  // a duplicate: first wins
    if (e.prefix.len == 0) {
      for (const net::Prefix& half : halves_of_everything(family_of(e.prefix)))
        if (!exact.count(half.str())) member(e.identity, half, false);
    } else {
      member(e.identity, e.prefix, false);
    }
    // Inside the parent's region but not its identity: the parent's set must not match here.
    if (!open.empty() && open.back()->identity != e.identity) member(open.back()->identity, e.prefix, true);
    open.push_back(&e);
  }
  return sets;
}

IdentitySets parse_ipset_save(std::string_view save_text) {
  IdentitySets sets;
  for (std::string_view line : detail::lines_of(save_text)) {
    std::vector<std::string> tok = net::split_iptables_save_line(line);
    if (tok.size() < 3 || !tok[1].starts_with(kIdentitySetPrefix)) continue;
    if (tok[0] == "create") {
      IdentitySet& s = sets[tok[1]];
      for (size_t i = 2; i + 1 < tok.size(); ++i)
        if (tok[i] == "family") s.family = tok[i + 1] == "inet6" ? Family::kV6 : Family::kV4;
    } else if (tok[0] == "add") {
      std::string text = tok[2];
      // ipset prints host entries without their length.
      if (text.find('/') == std::string::npos) text += text.find(':') == std::string::npos ? "/32" : "/128";
      auto p = net::Prefix::parse(text);
      if (!p) continue;
      const bool nomatch = std::find(tok.begin() + 3, tok.end(), "nomatch") != tok.end();
      sets[tok[1]].members[p->network().str()] = nomatch;
    }
  }
  return sets;
}

std::string render_set_update(const IdentitySets& desired, const IdentitySets& current) {
  std::string text;
  for (const auto& [name, want] : desired) {
    auto have = current.find(name);
    if (have == current.end())
      text += "create " + name + " hash:net family " + (want.family == Family::kV4 ? "inet" : "inet6") +
              kSetCreateOptions + "\n";
    // Deletions first: a member whose nomatch flag changes is deleted and added again.
    if (have != current.end())
      for (const auto& [prefix, nomatch] : have->second.members) {
        auto w = want.members.find(prefix);
        if (w == want.members.end() || w->second != nomatch) text += "del " + name + " " + prefix + "\n";
      }
    for (const auto& [prefix, nomatch] : want.members) {
      if (have != current.end()) {
        auto h = have->second.members.find(prefix);
        if (h != have->second.members.end() && h->second == nomatch) continue;
      }
      text += "add " + name + " " + prefix + (nomatch ? " nomatch" : "") + "\n";
    }
  }
  return text;
}

std::string render_set_destroy(const IdentitySets& desired, const IdentitySets& current) {
  std::string text;
  for (const auto& [name, set] : current)
    if (!desired.count(name)) text += "destroy " + name + "\n";
  return text;
}

// ---------------------------------------------------------------------------------------
// Chains

std::map<uint32_t, std::string> endpoint_veths(const FilterTable& current) {
  std::map<uint32_t, std::string> out;
  for (const Rule* r : current.rules_of(kForwardChain))
    if (auto ep = parse_endpoint_comment(r->comment); ep && r->target == from_chain(ep->host_veth))
      out.emplace(ep->endpoint_id, ep->host_veth);
  return out;
}

std::vector<std::string> policy_chain_rules(Family family, Direction dir, const EndpointPolicy* policy,
                                            const IdentitySets& sets) {
  if (!policy) return {};
  const bool ingress = dir == Direction::Ingress;
  if (!(ingress ? policy->ingress_isolated : policy->egress_isolated)) return {};
  std::vector<std::string> rules = {"-m conntrack --ctdir REPLY " + with_comment("ferry: policy reply") + " -j RETURN"};
  // Router/neighbour solicitation and advertisement, redirect: IPv6's ARP is not policy's.
  if (family == Family::kV6)
    for (int type = 133; type <= 137; ++type)
      rules.push_back("-p ipv6-icmp -m icmp6 --icmpv6-type " + std::to_string(type) + " " +
                      with_comment("ferry: neighbour discovery") + " -j RETURN");
  for (const PolicyEntry& e : ingress ? policy->ingress : policy->egress) {
    if (e.peer != dataplane::kIdentityAny && !sets.count(identity_set_name(e.peer, family))) continue;
    rules.push_back(entry_rule(family, dir, e));
  }
  rules.push_back(with_comment(ingress ? kDenyIngressComment : kDenyEgressComment) + " -j DROP");
  return rules;
}

std::string render_policy(Family family, const PolicySet& desired, const std::map<uint32_t, std::string>& veths,
                          const IdentitySets& sets, const FilterTable& current) {
  // One pass over the table instead of one per chain: a node has thousands of chains.
  std::map<std::string_view, std::vector<std::string_view>> have;
  const std::set<std::string_view> chains(current.chains.begin(), current.chains.end());
  for (const Rule& r : current.rules)
    if (is_policy_chain(r.chain)) have[r.chain].push_back(r.spec);
  detail::Script s;
  for (const auto& [id, veth] : veths) {
    auto it = desired.endpoints.find(id);
    const EndpointPolicy* policy = desired.enforce && it != desired.endpoints.end() ? &it->second : nullptr;
    for (Direction dir : {Direction::Ingress, Direction::Egress}) {
      const std::string chain = policy_chain(dir, veth);
      const std::vector<std::string> want = policy_chain_rules(family, dir, policy, sets);
      auto h = have.find(chain);
      const std::vector<std::string_view> empty;
      const std::vector<std::string_view>& installed = h == have.end() ? empty : h->second;
      if (chains.count(chain) && std::equal(want.begin(), want.end(), installed.begin(), installed.end()))
        continue;
      s.declare.push_back(chain);  // declaring flushes it
      for (const std::string& spec : want) s.add.push_back("-A " + chain + " " + spec);
    }
  }
  return s.text();
}

dataplane::Counter drop_policy_counter(const FilterTable& table) {
  dataplane::Counter c;
  c.name = "drop_policy";
  c.drop = true;
  for (const Rule& r : table.rules)
    if (is_policy_chain(r.chain) && (r.comment == kDenyIngressComment || r.comment == kDenyEgressComment)) {
      c.packets += r.packets;
      c.bytes += r.bytes;
    }
  return c;
}

}  // namespace ferry::iptables
