// The iptables layout as pure text: chain names, rule text, restore scripts, and the parsing
// of iptables-save output back into endpoints. No kernel access here.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <map>
#include <set>
#include <unordered_map>
#include <unordered_set>

#include "agent/iptables/internal.h"
#include "agent/iptables/iptables.h"

namespace ferry::iptables {

using dataplane::DataplaneError;
using dataplane::Endpoint;
using detail::Script;
using detail::with_comment;

namespace detail {

std::vector<std::string_view> lines_of(std::string_view text) {
  std::vector<std::string_view> lines;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == text.npos ? text.npos : nl - pos);
    pos = nl == text.npos ? text.size() : nl + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.remove_suffix(1);
    lines.push_back(line);
  }
  return lines;
}

}  // namespace detail

namespace {

constexpr std::string_view kJumpComment = "ferry: endpoint datapath";
constexpr std::string_view kDescriptorPrefix = "ferry: endpoint ";
constexpr size_t kMaxCommentLength = 255;  // XT_MAX_COMMENT_LEN (256) minus the NUL

Rule make_rule(std::string chain, std::string spec) {
  Rule r;
  r.chain = std::move(chain);
  r.spec = std::move(spec);
  auto tok = net::split_iptables_save_line(r.spec);
  for (size_t i = 0; i + 1 < tok.size(); ++i) {
    if (tok[i] == "--comment") r.comment = tok[i + 1];
    if (tok[i] == "-j" || tok[i] == "-g") r.target = tok[i + 1];
  }
  return r;
}

// The lines of the *filter section(s) of save or restore text, without blank lines, comments
// and COMMIT.
std::vector<std::string_view> filter_lines(std::string_view text) {
  std::vector<std::string_view> out;
  bool in_filter = false;
  for (std::string_view line : detail::lines_of(text)) {
    if (line.starts_with("*")) {
      in_filter = line == "*filter";
      continue;
    }
    if (!in_filter || line.empty() || line.starts_with("#")) continue;
    if (line == "COMMIT") {
      in_filter = false;
      continue;
    }
    out.push_back(line);
  }
  return out;
}

// "CHAIN rest" → {"CHAIN", "rest"}
std::pair<std::string, std::string> split_chain(std::string_view s) {
  size_t sp = s.find(' ');
  if (sp == s.npos) return {std::string(s), ""};
  return {std::string(s.substr(0, sp)), std::string(s.substr(sp + 1))};
}

bool veth_name_ok(std::string_view name) {
  if (name.empty() || name.size() > 15) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.';
  });
}

bool is_v6(const net::Ip& ip) { return ip.family == AF_INET6; }

// ---- the rules of one endpoint in one family, exactly as iptables-save prints them ----

struct EndpointRules {
  std::vector<std::string> from;              // FERRY-FROM-x
  std::vector<std::string> to;                // FERRY-TO-x
  std::vector<std::string> forward_dispatch;  // in FERRY-FORWARD
  std::vector<std::string> input_dispatch;    // in FERRY-INPUT
};

EndpointRules endpoint_rules(Family family, const Endpoint& ep) {
  if (!veth_name_ok(ep.host_veth))
    throw DataplaneError("cannot render iptables rules for endpoint " + std::to_string(ep.endpoint_id) +
                         ": host veth name \"" + ep.host_veth + "\" is not a valid interface name");
  const bool v6 = family == Family::kV6;
  EndpointRules r;
  // Goto, not jump: the policy chain's RETURN (allowed) returns to FERRY-FORWARD/INPUT, which
  // goes on to the destination endpoint's TO chain.
  const std::string egress = policy_chain(dataplane::Direction::Egress, ep.host_veth);
  for (const net::Ip& ip : ep.ips)
    if (is_v6(ip) == v6)
      r.from.push_back("-s " + ip.str() + (v6 ? "/128 " : "/32 ") + with_comment("ferry: endpoint address") +
                       " -g " + egress);
  // Sources that carry no identity pass unchecked, as in the eBPF datapath: IPv6 link-local
  // (NDP, router solicitation) and the unspecified address (DAD, DHCP).
  if (v6) r.from.push_back("-s fe80::/10 " + with_comment("ferry: link-local source") + " -j RETURN");
  r.from.push_back(std::string(v6 ? "-s ::/128 " : "-s 0.0.0.0/32 ") + with_comment("ferry: unspecified source") +
                   " -j RETURN");
  r.from.push_back(with_comment(kDropSpoofedComment) + " -j DROP");
  r.to.push_back(with_comment("ferry: ingress policy") + " -g " + policy_chain(dataplane::Direction::Ingress, ep.host_veth));

  const std::string comment = with_comment(endpoint_comment(ep));
  const std::string from = from_chain(ep.host_veth), to = to_chain(ep.host_veth);
  const std::string in_match = "-m physdev --physdev-in " + ep.host_veth + " ";
  r.forward_dispatch = {in_match + comment + " -j " + from,
                        "-m physdev --physdev-out " + ep.host_veth + " --physdev-is-bridged " + comment + " -j " + to};
  // Traffic routed into the bridge (from the overlay device or any other interface, also a
  // pod's own traffic routed via the gateway) passes FORWARD once with the bridge as output
  // device and no bridge port known yet: only its destination address tells the endpoint.
  // `! --physdev-is-bridged` keeps bridged packets, judged by the rule above, from being
  // judged twice (it also matches packets br_netfilter never saw).
  for (const net::Ip& ip : ep.ips)
    if (is_v6(ip) == v6)
      r.forward_dispatch.push_back("-d " + ip.str() + (v6 ? "/128" : "/32") + " -m physdev ! --physdev-is-bridged " +
                                   comment + " -j " + to);
  r.input_dispatch = {in_match + comment + " -j " + from};
  return r;
}

std::string jump_spec(std::string_view base) { return with_comment(kJumpComment) + " -j " + std::string(base); }

std::vector<std::string> specs_of(const std::vector<const Rule*>& rules) {
  std::vector<std::string> out;
  for (const Rule* r : rules) out.push_back(r->spec);
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// Base chains and jumps. `at_top`: the jump must be the first rule of the built-in chain
// (start()); otherwise present once anywhere is enough (program_endpoint()).
void ensure_base(Script& s, const FilterTable& t, bool at_top) {
  for (auto [builtin, base] : {std::pair<std::string_view, std::string_view>{"FORWARD", kForwardChain},
                               {"INPUT", kInputChain}}) {
    if (!t.has_chain(base)) s.declare.emplace_back(base);
    const std::string want = jump_spec(base);
    std::vector<const Rule*> all = t.rules_of(builtin), jumps;
    for (const Rule* r : all)
      if (r->target == base) jumps.push_back(r);
    bool ok = jumps.size() == 1 && jumps[0]->spec == want && (!at_top || all.front() == jumps[0]);
    if (ok) continue;
    for (const Rule* r : jumps) s.remove.push_back("-D " + std::string(builtin) + " " + r->spec);
    s.add.push_back("-I " + std::string(builtin) + " 1 " + want);
  }
}

bool jumps_present(const FilterTable& t) {
  for (auto [builtin, base] : {std::pair<std::string_view, std::string_view>{"FORWARD", kForwardChain},
                               {"INPUT", kInputChain}}) {
    if (!t.has_chain(base)) return false;
    int n = 0;
    bool exact = false;
    for (const Rule* r : t.rules_of(builtin))
      if (r->target == base) {
        ++n;
        exact = r->spec == jump_spec(base);
      }
    if (n != 1 || !exact) return false;
  }
  return true;
}

// "FERRY-FROM-x" / "FERRY-TO-x" → "x"; "" for other targets.
std::string endpoint_chain_suffix_of(std::string_view chain) {
  if (chain.starts_with(kFromChainPrefix)) return std::string(chain.substr(kFromChainPrefix.size()));
  if (chain.starts_with(kToChainPrefix)) return std::string(chain.substr(kToChainPrefix.size()));
  return "";
}

template <typename T>
std::optional<T> number(std::string_view s) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Names and the descriptor comment

std::string chain_suffix(std::string_view host_veth) {
  const uint64_t h = net::stable_hash64(host_veth);
  char buf[17];
  std::snprintf(buf, sizeof buf, "%010llx", static_cast<unsigned long long>(h & 0xffffffffffull));
  return buf;
}

std::string from_chain(std::string_view host_veth) { return std::string(kFromChainPrefix) + chain_suffix(host_veth); }
std::string to_chain(std::string_view host_veth) { return std::string(kToChainPrefix) + chain_suffix(host_veth); }

bool is_our_chain(std::string_view chain) {
  return chain == kForwardChain || chain == kInputChain || chain.starts_with(kFromChainPrefix) ||
         chain.starts_with(kToChainPrefix) || is_policy_chain(chain);
}

std::string endpoint_comment(const Endpoint& ep) {
  std::string ips;
  for (const net::Ip& ip : ep.ips) ips += (ips.empty() ? "" : ",") + ip.str();
  std::string c = std::string(kDescriptorPrefix) + std::to_string(ep.endpoint_id) + " veth=" + ep.host_veth +
                  " ifindex=" + std::to_string(ep.host_ifindex) + " pod-mac=" + net::mac_str(ep.pod_mac) +
                  " host-mac=" + net::mac_str(ep.host_mac) + " ips=" + ips;
  if (c.size() > kMaxCommentLength)
    throw DataplaneError("cannot render iptables rules for endpoint " + std::to_string(ep.endpoint_id) +
                         ": its descriptor comment (" + std::to_string(c.size()) +
                         " characters) exceeds the 255 an iptables comment can hold; too many addresses");
  return c;
}

std::optional<Endpoint> parse_endpoint_comment(std::string_view comment) {
  if (!comment.starts_with(kDescriptorPrefix)) return std::nullopt;
  std::vector<std::string> tok;
  std::string_view rest = comment.substr(kDescriptorPrefix.size());
  while (!rest.empty()) {
    size_t sp = rest.find(' ');
    tok.emplace_back(rest.substr(0, sp));
    rest = sp == rest.npos ? std::string_view{} : rest.substr(sp + 1);
  }
  if (tok.size() != 6) return std::nullopt;
  Endpoint ep;
  auto id = number<uint32_t>(tok[0]);
  if (!id || *id == 0) return std::nullopt;
  ep.endpoint_id = *id;
  std::map<std::string, std::string> kv;
  for (size_t i = 1; i < tok.size(); ++i) {
    size_t eq = tok[i].find('=');
    if (eq == std::string::npos) return std::nullopt;
    kv[tok[i].substr(0, eq)] = tok[i].substr(eq + 1);
  }
  if (kv.size() != 5 || !kv.count("veth") || !kv.count("ifindex") || !kv.count("pod-mac") || !kv.count("host-mac") ||
      !kv.count("ips"))
    return std::nullopt;
  ep.host_veth = kv["veth"];
  auto ifindex = number<int>(kv["ifindex"]);
  auto pod_mac = net::parse_mac(kv["pod-mac"]);
  auto host_mac = net::parse_mac(kv["host-mac"]);
  if (!ifindex || !pod_mac || !host_mac || ep.host_veth.empty()) return std::nullopt;
  ep.host_ifindex = *ifindex;
  ep.pod_mac = *pod_mac;
  ep.host_mac = *host_mac;
  std::string_view ips = kv["ips"];
  while (!ips.empty()) {
    size_t comma = ips.find(',');
    auto ip = net::Ip::parse(ips.substr(0, comma));
    if (!ip) return std::nullopt;
    ep.ips.push_back(*ip);
    ips = comma == ips.npos ? std::string_view{} : ips.substr(comma + 1);
  }
  return ep;
}

// ---------------------------------------------------------------------------------------
// The table model

bool FilterTable::has_chain(std::string_view chain) const {
  return std::find(chains.begin(), chains.end(), chain) != chains.end();
}

std::vector<const Rule*> FilterTable::rules_of(std::string_view chain) const {
  std::vector<const Rule*> out;
  for (const Rule& r : rules)
    if (r.chain == chain) out.push_back(&r);
  return out;
}

FilterTable parse_save(std::string_view save_text) {
  FilterTable t;
  for (std::string_view line : filter_lines(save_text)) {
    if (line.starts_with(":")) {
      t.chains.push_back(split_chain(line.substr(1)).first);
      continue;
    }
    uint64_t packets = 0, bytes = 0;
    if (line.starts_with("[")) {  // iptables-save -c: "[packets:bytes] -A ..."
      size_t colon = line.find(':'), close = line.find(']');
      if (colon == line.npos || close == line.npos || colon > close) continue;
      packets = number<uint64_t>(line.substr(1, colon - 1)).value_or(0);
      bytes = number<uint64_t>(line.substr(colon + 1, close - colon - 1)).value_or(0);
      line.remove_prefix(close + 1);
      while (line.starts_with(" ")) line.remove_prefix(1);
    }
    if (!line.starts_with("-A ")) continue;
    auto [chain, spec] = split_chain(line.substr(3));
    Rule r = make_rule(std::move(chain), std::move(spec));
    r.packets = packets;
    r.bytes = bytes;
    t.rules.push_back(std::move(r));
  }
  return t;
}

// Only the chains the script names are taken apart (into one rule list each) and put back at
// the end, so a script of thousands of lines costs O(lines + rules) and a small one touching a
// table of thousands of rules is one pass with a hash lookup per rule. On an error the lines
// before the failing one stay applied, as with the kernel's line-by-line checks.
void apply_restore(FilterTable& t, std::string_view restore_text) {
  auto fail = [](std::string_view line, const std::string& why) {
    throw DataplaneError("restore line \"" + std::string(line) + "\" failed: " + why);
  };
  const std::vector<std::string_view> lines = filter_lines(restore_text);
  std::unordered_map<std::string, std::vector<Rule>> touched;  // chain -> its rules
  for (std::string_view line : lines)
    touched[split_chain(line.substr(line.starts_with(":") ? 1 : std::min<size_t>(3, line.size()))).first];
  std::unordered_set<std::string> declared(t.chains.begin(), t.chains.end());
  std::vector<Rule> kept;  // rules of untouched chains, in order
  std::unordered_map<std::string, int> kept_references;  // touched chain -> untouched rules naming it
  kept.reserve(t.rules.size());
  for (Rule& r : t.rules) {
    auto it = touched.find(r.chain);
    if (it != touched.end()) {
      it->second.push_back(std::move(r));
      continue;
    }
    if (touched.count(r.target)) ++kept_references[r.target];
    kept.push_back(std::move(r));
  }
  auto reassemble = [&] {
    t.rules.clear();
    size_t i = 0;
    for (const std::string& c : t.chains) {
      if (auto it = touched.find(c); it != touched.end()) {
        for (Rule& r : it->second) t.rules.push_back(std::move(r));
        it->second.clear();
      } else {
        for (; i < kept.size() && kept[i].chain == c; ++i) t.rules.push_back(std::move(kept[i]));
      }
    }
    for (; i < kept.size(); ++i) t.rules.push_back(std::move(kept[i]));  // out of chain order: kept
    for (auto& [c, rules] : touched)
      for (Rule& r : rules) t.rules.push_back(std::move(r));
  };
  auto referenced = [&](const std::string& chain) {
    if (kept_references.count(chain) && kept_references[chain] > 0) return true;
    for (const auto& [c, rules] : touched)
      for (const Rule& r : rules)
        if (r.target == chain) return true;
    return false;
  };
  try {
    for (std::string_view line : lines) {
      if (line.starts_with(":")) {
        std::string chain = split_chain(line.substr(1)).first;
        touched[chain].clear();  // declaring flushes
        if (declared.insert(chain).second) t.chains.push_back(chain);
        continue;
      }
      if (line.size() < 3 || line[0] != '-') fail(line, "unknown command");
      const char op = line[1];
      auto [chain, spec] = split_chain(line.substr(3));
      if (!declared.count(chain)) fail(line, "no chain " + chain);
      std::vector<Rule>& rules = touched[chain];
      switch (op) {
        case 'A':
          rules.push_back(make_rule(chain, spec));
          break;
        case 'I': {
          size_t pos = 1;
          auto [first, after] = split_chain(spec);
          if (auto n = number<size_t>(first)) {
            pos = *n;
            spec = after;
          }
          if (pos == 0 || pos > rules.size() + 1) fail(line, "index of insertion too big");
          rules.insert(rules.begin() + static_cast<std::ptrdiff_t>(pos - 1), make_rule(chain, spec));
          break;
        }
        case 'D': {
          auto r = std::find_if(rules.begin(), rules.end(), [&](const Rule& x) { return x.spec == spec; });
          if (r == rules.end()) fail(line, "no such rule");
          rules.erase(r);
          break;
        }
        case 'F':
          rules.clear();
          break;
        case 'X':
          if (!rules.empty() || referenced(chain)) fail(line, "chain " + chain + " is not empty or still referenced");
          declared.erase(chain);
          std::erase(t.chains, chain);
          break;
        default:
          fail(line, "unknown command");
      }
    }
  } catch (...) {
    reassemble();
    throw;
  }
  reassemble();
}

// ---------------------------------------------------------------------------------------
// Restore scripts

std::string render_start(const FilterTable& current) {
  Script s;
  ensure_base(s, current, /*at_top=*/true);
  return s.text();
}

std::string render_program(Family family, const Endpoint& ep, const FilterTable& current) {
  const EndpointRules want = endpoint_rules(family, ep);
  const std::string from = from_chain(ep.host_veth), to = to_chain(ep.host_veth);
  Script s;
  s.declare = {from, to};  // declaring flushes just these two chains
  // The policy chains belong to program_policy: created empty (not isolated) when missing,
  // never flushed here, so reprogramming an endpoint keeps its policy.
  for (dataplane::Direction d : {dataplane::Direction::Ingress, dataplane::Direction::Egress})
    if (!current.has_chain(policy_chain(d, ep.host_veth))) s.declare.push_back(policy_chain(d, ep.host_veth));
  for (const auto& spec : want.from) s.add.push_back("-A " + from + " " + spec);
  for (const auto& spec : want.to) s.add.push_back("-A " + to + " " + spec);
  ensure_base(s, current, /*at_top=*/false);
  for (auto [base, dispatch] : {std::pair<std::string_view, const std::vector<std::string>*>{kForwardChain, &want.forward_dispatch},
                                {kInputChain, &want.input_dispatch}}) {
    std::vector<const Rule*> have;
    for (const Rule* r : current.rules_of(base))
      if (r->target == from || r->target == to) have.push_back(r);
    if (sorted(specs_of(have)) == sorted(*dispatch)) continue;  // already exactly this endpoint's
    for (const Rule* r : have) s.remove.push_back("-D " + std::string(base) + " " + r->spec);
    for (const auto& spec : *dispatch) s.add.push_back("-A " + std::string(base) + " " + spec);
  }
  return s.text();
}

std::string render_remove(const Endpoint& installed, const FilterTable& current) {
  const std::string from = from_chain(installed.host_veth), to = to_chain(installed.host_veth);
  Script s;
  bool still_referenced = false;
  for (const Rule& r : current.rules) {
    if (r.target != from && r.target != to) continue;
    auto described = parse_endpoint_comment(r.comment);
    // Another endpoint id on the same veth (an id was reused) keeps its rules and the chains.
    if (described && described->endpoint_id != installed.endpoint_id) {
      still_referenced = true;
      continue;
    }
    s.remove.push_back("-D " + r.chain + " " + r.spec);
  }
  if (!still_referenced)
    for (const std::string& chain : {from, to, policy_chain(dataplane::Direction::Ingress, installed.host_veth),
                                      policy_chain(dataplane::Direction::Egress, installed.host_veth)})
      if (current.has_chain(chain)) {
        s.declare.push_back(chain);
        s.drop_chains.push_back(chain);
      }
  return s.text();
}

std::string render_cleanup(const FilterTable& current) {
  Script s;
  for (const Rule& r : current.rules)
    if (!is_our_chain(r.chain) && is_our_chain(r.target)) s.remove.push_back("-D " + r.chain + " " + r.spec);
  for (const std::string& chain : current.chains)
    if (is_our_chain(chain)) {
      s.declare.push_back(chain);
      s.drop_chains.push_back(chain);
    }
  return s.text();
}

std::string render_orphan_gc(const FilterTable& current) {
  std::set<std::string> referenced;
  for (const Rule& r : current.rules) referenced.insert(r.target);
  Script s;
  for (const std::string& chain : current.chains)
    if ((!endpoint_chain_suffix_of(chain).empty() || is_policy_chain(chain)) && !referenced.count(chain)) {
      s.declare.push_back(chain);
      s.drop_chains.push_back(chain);
    }
  return s.text();
}

// ---------------------------------------------------------------------------------------
// Installed state

std::vector<Endpoint> endpoints_from_tables(const FilterTable& v4, const FilterTable* v6) {
  std::vector<std::pair<Family, const FilterTable*>> tables = {{Family::kV4, &v4}};
  if (v6) tables.emplace_back(Family::kV6, v6);

  // Chain suffix → the endpoint its dispatch rules describe (first readable comment wins).
  std::map<std::string, Endpoint> by_suffix;
  for (const auto& [family, t] : tables)
    for (std::string_view base : {kForwardChain, kInputChain})
      for (const Rule* r : t->rules_of(base)) {
        std::string suffix = endpoint_chain_suffix_of(r->target);
        if (suffix.empty() || by_suffix.count(suffix)) continue;
        if (auto ep = parse_endpoint_comment(r->comment)) by_suffix.emplace(suffix, std::move(*ep));
      }

  std::vector<Endpoint> out;
  for (auto& [suffix, ep] : by_suffix) {
    ep.complete = false;
    bool complete = suffix == chain_suffix(ep.host_veth);
    for (const auto& [family, t] : tables) {
      if (!complete) break;
      EndpointRules want;
      try {
        want = endpoint_rules(family, ep);
      } catch (const DataplaneError&) {
        complete = false;
        break;
      }
      const std::string from = from_chain(ep.host_veth), to = to_chain(ep.host_veth);
      auto dispatch = [&](std::string_view base) {
        std::vector<const Rule*> have;
        for (const Rule* r : t->rules_of(base))
          if (r->target == from || r->target == to) have.push_back(r);
        return sorted(specs_of(have));
      };
      complete = jumps_present(*t) && t->has_chain(from) && t->has_chain(to) &&
                 t->has_chain(policy_chain(dataplane::Direction::Ingress, ep.host_veth)) &&
                 t->has_chain(policy_chain(dataplane::Direction::Egress, ep.host_veth)) &&
                 specs_of(t->rules_of(from)) == want.from && specs_of(t->rules_of(to)) == want.to &&
                 dispatch(kForwardChain) == sorted(want.forward_dispatch) &&
                 dispatch(kInputChain) == sorted(want.input_dispatch);
    }
    ep.complete = complete;
    out.push_back(std::move(ep));
  }
  std::sort(out.begin(), out.end(), [](const Endpoint& a, const Endpoint& b) { return a.endpoint_id < b.endpoint_id; });
  return out;
}

dataplane::Counter drop_spoofed_counter(const FilterTable& table) {
  dataplane::Counter c;
  c.name = "drop_spoofed";
  c.drop = true;
  for (const Rule& r : table.rules)
    if (r.chain.starts_with(kFromChainPrefix) && r.comment == kDropSpoofedComment) {
      c.packets += r.packets;
      c.bytes += r.bytes;
    }
  return c;
}

}  // namespace ferry::iptables
