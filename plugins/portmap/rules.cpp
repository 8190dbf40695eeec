#include "plugins/portmap/rules.h"

#include <algorithm>
#include <cstdio>

#include "net/net.h"

namespace ferry::portmap {
namespace {

constexpr size_t kMaxCommentBytes = 255;  // xt_comment keeps 256 bytes including the NUL
constexpr std::string_view kCommentPrefix = "ferry: hostport net=";

std::string quoted_comment(std::string_view comment) {
  return "-m comment --comment \"" + std::string(comment) + "\"";
}

// A token as iptables-restore reads it: quoted when it holds blanks or quotes.
std::string restore_token(const std::string& t) {
  bool plain = !t.empty() && t.find_first_of(" \t\"'\\") == std::string::npos;
  return plain ? t : net::iptables_quote(t);
}

std::string mark_value(int bit) {
  char buf[32];
  unsigned v = 1u << bit;
  std::snprintf(buf, sizeof buf, "%#x/%#x", v, v);
  return buf;
}

std::string host_ip_match(const cni::IPAddr& ip) {
  return "-d " + ip.str() + (ip.is_v4() ? "/32" : "/128");
}

std::string dnat_destination(const cni::IPAddr& ip, int port) {
  return ip.is_v4() ? ip.str() + ":" + std::to_string(port)
                    : "[" + ip.str() + "]:" + std::to_string(port);
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

bool jumps_to(std::string_view spec, std::string_view chain) {
  return ends_with(spec, "-j " + std::string(chain));
}

// The text of the first --comment "..." in a canonical rule.
std::optional<std::string> comment_of(std::string_view spec) {
  constexpr std::string_view kOpen = "--comment \"";
  size_t start = spec.find(kOpen);
  if (start == std::string_view::npos) return std::nullopt;
  start += kOpen.size();
  std::string out;
  for (size_t i = start; i < spec.size(); ++i) {
    if (spec[i] == '\\' && i + 1 < spec.size()) {
      out += spec[++i];
    } else if (spec[i] == '"') {
      return out;
    } else {
      out += spec[i];
    }
  }
  return std::nullopt;
}

}  // namespace

std::string_view family_name(Family f) { return f == Family::kV4 ? "IPv4" : "IPv6"; }

uint64_t fnv1a64(std::string_view data) { return net::stable_hash64(data); }

std::string container_chain(std::string_view network, std::string_view container_id) {
  std::string key = std::string(network) + std::string(container_id);
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(fnv1a64(key)));
  return std::string(kContainerChainPrefix) + hex;
}

std::string container_comment(std::string_view network, std::string_view container_id) {
  std::string c = std::string(kCommentPrefix) + std::string(network) + " id=" + std::string(container_id);
  if (c.size() > kMaxCommentBytes) c.resize(kMaxCommentBytes);
  return c;
}

ContainerRules render_container_rules(const Config& conf, std::string_view container_id,
                                      const cni::IPNet& container_addr) {
  const bool v6 = container_addr.addr.is_v6();
  ContainerRules out;
  out.chain = container_chain(conf.network, container_id);
  const std::string comment = quoted_comment(container_comment(conf.network, container_id));

  // Entries: one multiport rule per protocol (sorted, as the reference) and 15 ports.
  std::map<std::string, std::vector<int>> ports_by_proto;
  for (const auto& m : conf.mappings) {
    auto& ports = ports_by_proto[m.protocol];
    if (std::find(ports.begin(), ports.end(), m.host_port) == ports.end()) ports.push_back(m.host_port);
  }
  const std::vector<std::string>& conds = v6 ? conf.conditions_v6 : conf.conditions_v4;
  out.has_conditions = !conds.empty();
  for (const auto& [proto, ports] : ports_by_proto) {
    for (size_t i = 0; i < ports.size(); i += kMaxMultiportPorts) {
      std::string list;
      for (size_t j = i; j < std::min(ports.size(), i + kMaxMultiportPorts); ++j)
        list += (list.empty() ? "" : ",") + std::to_string(ports[j]);
      std::string spec = "-p " + proto + " " + comment + " -m multiport --dports " + list;
      for (const auto& t : conds) spec += " " + restore_token(t);
      spec += " -j " + out.chain;
      out.entries.push_back({std::string(kDnatChain), spec});
    }
  }

  const std::string mark_target = conf.external_set_mark_chain
                                      ? *conf.external_set_mark_chain
                                      : std::string(kSetMarkChain);
  const std::string container_net = container_addr.network().str();
  for (const auto& m : conf.mappings) {
    std::string dst;
    if (!m.host_ip.empty()) {
      auto host = cni::IPAddr::parse(m.host_ip);
      if (!host || host->is_v6() != v6) continue;  // the other family's mapping
      cni::IPAddr any;
      any.family = host->family;
      if (*host != any) dst = host_ip_match(*host) + " ";
    }
    const std::string match = dst + "-p " + m.protocol + " -m " + m.protocol + " --dport " +
                              std::to_string(m.host_port) + " " + comment;
    if (conf.snat) {
      // Hairpin (the pod, or with masqAll anyone, reaching the mapping) is masqueraded so
      // replies come back through the host; 0.0.0.0/0 is printed as no -s at all.
      std::string src = conf.masq_all ? "" : "-s " + container_net + " ";
      out.rules.push_back({out.chain, src + match + " -j " + mark_target});
      if (!v6 && !conf.masq_all)
        out.rules.push_back({out.chain, "-s 127.0.0.1/32 " + match + " -j " + mark_target});
    }
    out.rules.push_back({out.chain, match + " -j DNAT --to-destination " +
                                        dnat_destination(container_addr.addr, m.container_port)});
  }
  return out;
}

std::vector<SharedRule> shared_rules(const Config& conf) {
  const std::string to_dnat = quoted_comment("ferry: hostport dnat") +
                              " -m addrtype --dst-type LOCAL -j " + std::string(kDnatChain);
  std::vector<SharedRule> out = {
      {{"PREROUTING", to_dnat}, false},
      {{"OUTPUT", to_dnat}, false},
  };
  if (conf.snat && !conf.external_set_mark_chain) {
    const std::string mark = mark_value(conf.mark_masq_bit);
    out.push_back({{std::string(kSetMarkChain),
                    quoted_comment("ferry: hostport masquerade mark") + " -j MARK --set-xmark " + mark},
                   false});
    out.push_back({{std::string(kMasqChain), quoted_comment("ferry: hostport masquerade") +
                                                 " -m mark --mark " + mark + " -j MASQUERADE"},
                   false});
    out.push_back({{"POSTROUTING", quoted_comment("ferry: hostport masquerade marked traffic") +
                                       " -j " + std::string(kMasqChain)},
                   true});
  }
  return out;
}

std::vector<std::string> shared_chains(const Config& conf) {
  std::vector<std::string> out = {std::string(kDnatChain)};
  if (conf.snat && !conf.external_set_mark_chain) {
    out.emplace_back(kSetMarkChain);
    out.emplace_back(kMasqChain);
  }
  return out;
}

bool NatTable::has_chain(std::string_view chain) const { return chains.count(std::string(chain)) > 0; }

const std::vector<std::string>& NatTable::chain_rules(std::string_view chain) const {
  static const std::vector<std::string> kNone;
  auto it = rules.find(std::string(chain));
  return it == rules.end() ? kNone : it->second;
}

bool NatTable::has_rule(const Rule& r) const {
  const auto& specs = chain_rules(r.chain);
  return std::find(specs.begin(), specs.end(), r.spec) != specs.end();
}

NatTable parse_save(std::string_view text) {
  NatTable t;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    std::string_view line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.starts_with(":")) {
      std::string_view name = line.substr(1);
      t.chains.emplace(name.substr(0, name.find(' ')));
    } else if (line.starts_with("-A ")) {
      std::string_view rest = line.substr(3);
      size_t sp = rest.find(' ');
      std::string chain(rest.substr(0, sp));
      t.chains.insert(chain);
      t.rules[chain].emplace_back(sp == std::string_view::npos ? "" : rest.substr(sp + 1));
    }
  }
  return t;
}

std::string render_add(const NatTable& current, const std::vector<SharedRule>& shared,
                       const std::vector<std::string>& chains, const ContainerRules& c) {
  std::string out = "*nat\n";
  for (const auto& chain : chains)
    if (!current.has_chain(chain)) out += ":" + chain + " - [0:0]\n";
  // Declaring the container chain creates it, or flushes what an earlier ADD left there.
  out += ":" + c.chain + " - [0:0]\n";
  for (const auto& spec : current.chain_rules(kDnatChain))
    if (jumps_to(spec, c.chain)) out += "-D " + std::string(kDnatChain) + " " + spec + "\n";
  for (const auto& s : shared) {
    if (current.has_rule(s.rule)) continue;
    out += (s.prepend ? "-I " + s.rule.chain + " 1 " : "-A " + s.rule.chain + " ") + s.rule.spec + "\n";
  }
  for (const auto& r : c.rules) out += "-A " + r.chain + " " + r.spec + "\n";
  // Prepended, so the newest container using a host port wins (last writer wins, as the
  // reference); inserted last-to-first to keep their own order.
  for (auto it = c.entries.rbegin(); it != c.entries.rend(); ++it)
    out += "-I " + it->chain + " 1 " + it->spec + "\n";
  out += "COMMIT\n";
  return out;
}

std::optional<std::string> render_del(const NatTable& current, const std::vector<std::string>& chains) {
  std::string declare, jumps, remove;
  for (const auto& chain : chains) {
    for (const auto& spec : current.chain_rules(kDnatChain))
      if (jumps_to(spec, chain)) jumps += "-D " + std::string(kDnatChain) + " " + spec + "\n";
    if (current.has_chain(chain)) {
      declare += ":" + chain + " - [0:0]\n";  // flushes it, so -X finds it empty
      remove += "-X " + chain + "\n";
    }
  }
  if (declare.empty() && jumps.empty()) return std::nullopt;
  return "*nat\n" + declare + jumps + remove + "COMMIT\n";
}

std::vector<std::string> check_rules(const NatTable& current, const std::vector<SharedRule>& shared,
                                     const ContainerRules& c) {
  std::vector<std::string> missing;
  for (const auto& s : shared)
    if (!current.has_rule(s.rule)) missing.push_back("missing rule in " + s.rule.chain + ": " + s.rule.spec);

  for (const auto& e : c.entries) {
    if (!c.has_conditions) {
      if (!current.has_rule(e)) missing.push_back("missing rule in " + e.chain + ": " + e.spec);
      continue;
    }
    // With conditions: the same comment, ports and target, conditions wherever iptables put them.
    size_t ports_at = e.spec.find("--dports ");
    std::string ports = e.spec.substr(ports_at, e.spec.find(' ', ports_at + 9) - ports_at) + " ";
    std::string proto = e.spec.substr(0, e.spec.find(' ', 3)) + " ";  // "-p tcp "
    auto comment = comment_of(e.spec);
    bool found = false;
    for (const auto& spec : current.chain_rules(e.chain))
      found = found || (jumps_to(spec, c.chain) && comment_of(spec) == comment &&
                        spec.find(ports) != std::string::npos && spec.find(proto) != std::string::npos);
    if (!found) missing.push_back("missing rule in " + e.chain + ": " + e.spec);
  }

  if (!current.has_chain(c.chain)) {
    missing.push_back("missing chain " + c.chain);
    return missing;
  }
  for (const auto& r : c.rules)
    if (!current.has_rule(r)) missing.push_back("missing rule in " + r.chain + ": " + r.spec);
  for (const auto& spec : current.chain_rules(c.chain))
    if (std::find(c.rules.begin(), c.rules.end(), Rule{c.chain, spec}) == c.rules.end())
      missing.push_back("unexpected rule in " + c.chain + ": " + spec);
  return missing;
}

std::optional<Owner> rule_owner(std::string_view spec) {
  auto comment = comment_of(spec);
  if (!comment || !comment->starts_with(kCommentPrefix)) return std::nullopt;
  std::string_view rest = std::string_view(*comment).substr(kCommentPrefix.size());
  size_t id_at = rest.find(" id=");
  if (id_at == std::string_view::npos) return std::nullopt;
  Owner o{std::string(rest.substr(0, id_at)), std::string(rest.substr(id_at + 4))};
  if (o.network.empty() || o.container_id.empty()) return std::nullopt;
  return o;
}

std::vector<std::string> orphan_chains(const NatTable& current, std::string_view network,
                                       const std::set<std::string>& valid_ids) {
  // Owners from the chain's own rules and from the entries that jump to it.
  std::map<std::string, Owner> owners;
  auto attribute = [&](const std::string& chain, const std::string& spec) {
    if (!chain.starts_with(kContainerChainPrefix) || owners.count(chain)) return;
    auto o = rule_owner(spec);
    if (o && container_chain(o->network, o->container_id) == chain) owners.emplace(chain, *o);
  };
  for (const auto& chain : current.chains)
    for (const auto& spec : current.chain_rules(chain)) attribute(chain, spec);
  for (const auto& spec : current.chain_rules(kDnatChain)) {
    size_t j = spec.rfind("-j ");
    if (j != std::string::npos) attribute(spec.substr(j + 3), spec);
  }
  std::vector<std::string> out;
  for (const auto& [chain, o] : owners)
    if (o.network == network && !valid_ids.count(o.container_id)) out.push_back(chain);
  return out;
}

}  // namespace ferry::portmap
