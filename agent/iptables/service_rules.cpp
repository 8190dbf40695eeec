// Services in the iptables datapath as pure text: kube-proxy's iptables layout
// (pkg/proxy/iptables/proxier.go) rendered from the service IR, the partial-restore diff
// against what iptables-save shows, and the UDP flows a change leaves stale. No kernel access.
#include <netinet/in.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <set>
#include <unordered_map>

#include "agent/iptables/internal.h"
#include "agent/iptables/iptables.h"

namespace ferry::iptables {

using dataplane::BackendId;
using dataplane::FrontendKind;
using dataplane::ServiceBackend;
using dataplane::ServiceFrontend;
using dataplane::ServiceSet;
using dataplane::TrafficPolicy;
using detail::proto_name;
using detail::Script;
using detail::with_comment;

namespace {

constexpr std::string_view kPortalsComment = "ferry: service portals";
constexpr std::string_view kPostroutingJumpComment = "ferry: service postrouting rules";
constexpr std::string_view kNodePortsComment =
    "ferry: service nodeports; NOTE: this must be the last rule in this chain";
constexpr const char* kMasqMark = "0x4000";  // FERRY_MARK_MASQ, kube-proxy's bit 14
constexpr size_t kHashDigits = 16;

bool family_matches(Family family, const net::Ip& ip) { return (ip.family == AF_INET6) == (family == Family::kV6); }

std::string host_prefix(const net::Ip& ip) { return ip.str() + (ip.family == AF_INET6 ? "/128" : "/32"); }

std::string address_port(const net::Ip& ip, uint16_t port) {
  return (ip.family == AF_INET6 ? "[" + ip.str() + "]" : ip.str()) + ":" + std::to_string(port);
}

std::string hash_suffix(std::string_view key) {
  char buf[kHashDigits + 1];
  std::snprintf(buf, sizeof buf, "%016llX", static_cast<unsigned long long>(net::stable_hash64(key)));
  return buf;
}

bool is_hashed_chain(std::string_view chain) {
  for (std::string_view prefix : {kServiceChainPrefix, kLocalServiceChainPrefix, kExternalChainPrefix,
                                  kEndpointChainPrefix}) {
    if (!chain.starts_with(prefix) || chain.size() != prefix.size() + kHashDigits) continue;
    std::string_view hex = chain.substr(prefix.size());
    if (std::all_of(hex.begin(), hex.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'F'); }))
      return true;
  }
  return false;
}

// The `-m statistic` probability exactly as iptables-save prints it: the kernel keeps
// round(p * 2^31) and iptables prints that back with 11 decimals, so writing kube-proxy's
// "%0.10f" would read back differently and look changed on every sync.
std::string probability(size_t remaining) {
  const double fixed = std::lround(2147483648.0 / static_cast<double>(remaining));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.11f", fixed / 2147483648.0);
  return buf;
}

// "-d <addr> -p <proto> -m comment --comment <c> -m <proto> --dport <port>", the form every
// frontend match takes.
std::string frontend_match(const net::Ip& address, uint8_t proto, uint16_t port, std::string_view comment) {
  const std::string p = proto_name(proto);
  return "-d " + host_prefix(address) + " -p " + p + " " + with_comment(comment) + " -m " + p + " --dport " +
         std::to_string(port);
}

// One Service port in one family: kube-proxy's unit of SVC/SVL/EXT chains.
struct ServicePort {
  std::string name;  // "namespace/name" or "namespace/name:port", as kube-proxy prints it
  uint8_t proto = 0;
  std::string hash;
  std::optional<std::vector<BackendId>> cluster, local;  // what SVC-/SVL- hold
  bool affinity = false;
  uint32_t affinity_timeout = 0;
  const ServiceFrontend* cluster_ip = nullptr;  // its ClusterIP frontend, if any
  std::optional<TrafficPolicy> external_policy;  // set when it has NodePort/ExternalIP frontends
  bool external_reachable = false;  // some external frontend has a backend list to go to

  std::string chain(std::string_view prefix) const { return std::string(prefix) + hash; }
  std::string endpoint_chain(const ServiceBackend& b) const {
    return std::string(kEndpointChainPrefix) +
           hash_suffix(name + "/" + proto_name(proto) + "/" + address_port(b.address, b.port));
  }
};

class LayoutBuilder {
 public:
  LayoutBuilder(Family family, const ServiceSet& set, const std::vector<net::Prefix>& cluster_cidrs)
      : family_(family), set_(set) {
    for (const net::Prefix& p : cluster_cidrs)
      if (family_matches(family, p.ip)) cluster_cidrs_.push_back(p.network());
  }

  ServiceTables build() {
    collect();
    ChainRules& nat = tables_.nat;
    nat[std::string(kServicesChain)];
    nat[std::string(kNodePortsChain)];
    nat[std::string(kMarkMasqChain)] = {with_comment("ferry: mark for masquerade") + " -j MARK --set-xmark " +
                                        kMasqMark + "/" + kMasqMark};
    nat[std::string(kServicePostroutingChain)] = {
        "-m mark ! --mark " + std::string(kMasqMark) + "/" + kMasqMark + " " +
            with_comment("ferry: not marked for masquerade") + " -j RETURN",
        with_comment("ferry: clear the masquerade mark") + " -j MARK --set-xmark 0x0/" + kMasqMark,
        with_comment("ferry: service traffic requiring SNAT") + " -j MASQUERADE --random-fully"};
    tables_.filter[std::string(kServicesChain)];

    for (const auto& [id, fe] : set_.frontends)
      if (family_matches(family_, fe.address) && proto_name(fe.proto)) frontend_rules(fe);
    for (const auto& [key, sp] : ports_) port_chains(sp);
    nat[std::string(kServicesChain)].push_back(with_comment(kNodePortsComment) + " -m addrtype --dst-type LOCAL -j " +
                                               std::string(kNodePortsChain));
    return std::move(tables_);
  }

 private:
  // Groups the frontends into Service ports and decides what each port's chains hold.
  void collect() {
    for (const auto& [id, fe] : set_.frontends) {
      if (!family_matches(family_, fe.address)) continue;
      if (!proto_name(fe.proto))
        throw dataplane::DataplaneError("cannot render iptables service rules for " + fe.service + " protocol " +
                                        std::to_string(fe.proto) + " (only TCP, UDP, SCTP)");
      ServicePort& sp = port_of(fe);
      const bool local = fe.traffic_policy == TrafficPolicy::Local;
      auto& list = local ? sp.local : sp.cluster;
      if (!list) list = fe.backends;
      if (fe.pod_and_host_backends && !sp.cluster) sp.cluster = *fe.pod_and_host_backends;
      if (fe.affinity && !sp.affinity) {
        sp.affinity = true;
        sp.affinity_timeout = fe.affinity_timeout_seconds;
      }
      if (fe.kind == FrontendKind::ClusterIP) {
        if (!sp.cluster_ip) sp.cluster_ip = &fe;
      } else {
        if (!sp.external_policy) sp.external_policy = fe.traffic_policy;
        sp.external_reachable = sp.external_reachable || reachable(fe);
      }
    }
  }

  ServicePort& port_of(const ServiceFrontend& fe) {
    const std::string key = fe.service + ":" + fe.port_name + "/" + proto_name(fe.proto);
    auto [it, fresh] = ports_.try_emplace(key);
    if (fresh) {
      it->second.name = fe.service + (fe.port_name.empty() ? "" : ":" + fe.port_name);
      it->second.proto = fe.proto;
      it->second.hash = hash_suffix(key);
    }
    return it->second;
  }

  static bool reachable(const ServiceFrontend& fe) {
    return !fe.backends.empty() || (fe.pod_and_host_backends && !fe.pod_and_host_backends->empty());
  }

  const ServicePort& port_for(const ServiceFrontend& fe) const {
    return ports_.at(fe.service + ":" + fe.port_name + "/" + proto_name(fe.proto));
  }

  // The frontend's rule in FERRY-SERVICES / FERRY-NODEPORTS (nat), or its REJECT/DROP in the
  // filter FERRY-SERVICES when new connections have nowhere to go.
  void frontend_rules(const ServiceFrontend& fe) {
    const ServicePort& sp = port_for(fe);
    if (fe.backends.empty()) {
      const bool drop = fe.when_empty == dataplane::WhenEmpty::Drop;
      const std::string what = sp.name + (drop ? " has no local endpoints" : " has no endpoints");
      const std::string target =
          drop ? "DROP" : family_ == Family::kV4 ? "REJECT --reject-with icmp-port-unreachable"
                                                 : "REJECT --reject-with icmp6-port-unreachable";
      tables_.filter[std::string(kServicesChain)].push_back(
          frontend_match(fe.address, fe.proto, fe.port, "ferry: " + what) + " -j " + target);
    }
    if (!reachable(fe)) return;
    // ClusterIP and externalIPs are matched in FERRY-SERVICES, node ports in FERRY-NODEPORTS.
    std::string chain(kServicesChain), what = " cluster IP", target = sp.chain(kExternalChainPrefix);
    if (fe.kind == FrontendKind::ClusterIP) {
      if (fe.backends.empty()) return;
      target = internal_chain(sp, fe);
    } else if (fe.kind == FrontendKind::ExternalIP) {
      what = " external IP";
    } else {
      chain = kNodePortsChain;
      what = " node port";
    }
    tables_.nat[chain].push_back(frontend_match(fe.address, fe.proto, fe.port, "ferry: " + sp.name + what) + " -j " +
                                 target);
  }

  static std::string internal_chain(const ServicePort& sp, const ServiceFrontend& fe) {
    return sp.chain(fe.traffic_policy == TrafficPolicy::Local ? kLocalServiceChainPrefix : kServiceChainPrefix);
  }

  void port_chains(const ServicePort& sp) {
    std::string internal;  // the chain the ClusterIP frontend jumps to
    if (sp.cluster_ip && !sp.cluster_ip->backends.empty()) internal = internal_chain(sp, *sp.cluster_ip);
    if (sp.cluster && !sp.cluster->empty() && (sp.cluster_ip || sp.external_reachable))
      balance_chain(sp, sp.chain(kServiceChainPrefix), *sp.cluster, internal);
    if (sp.local && !sp.local->empty()) balance_chain(sp, sp.chain(kLocalServiceChainPrefix), *sp.local, internal);
    if (sp.external_policy && sp.external_reachable) external_chain(sp);
  }

  // FERRY-SVC-/SVL-: affinity first (a client seen within the timeout goes back to its
  // endpoint), then the random choice: endpoint i of n with probability 1/(n-i).
  void balance_chain(const ServicePort& sp, const std::string& chain, const std::vector<BackendId>& backends,
                     const std::string& internal) {
    std::vector<std::string>& rules = tables_.nat[chain];
    if (chain == internal && cluster_cidrs_.size() == 1) {
      // kube-proxy with --cluster-cidr: a ClusterIP reached from outside the pod network is
      // masqueraded, so replies come back through this node.
      const ServiceFrontend& fe = *sp.cluster_ip;
      rules.push_back("! -s " + cluster_cidrs_[0].str() + " " +
                      frontend_match(fe.address, fe.proto, fe.port, "ferry: " + sp.name + " cluster IP") +
                      " -j " + std::string(kMarkMasqChain));
    }
    std::vector<const ServiceBackend*> endpoints;
    for (BackendId id : backends)
      if (auto it = set_.backends.find(id); it != set_.backends.end()) endpoints.push_back(&it->second);
    auto comment_for = [&](const ServiceBackend& b) {
      return with_comment("ferry: " + sp.name + " -> " + address_port(b.address, b.port));
    };
    if (sp.affinity)
      for (const ServiceBackend* b : endpoints)
        rules.push_back(comment_for(*b) + " -m recent --rcheck --seconds " + std::to_string(sp.affinity_timeout) +
                        " --reap --name " + sp.endpoint_chain(*b) + " --mask " + full_mask() + " --rsource -j " +
                        sp.endpoint_chain(*b));
    for (size_t i = 0; i < endpoints.size(); ++i) {
      const size_t remaining = endpoints.size() - i;
      std::string pick = remaining > 1 ? " -m statistic --mode random --probability " + probability(remaining) : "";
      rules.push_back(comment_for(*endpoints[i]) + pick + " -j " + sp.endpoint_chain(*endpoints[i]));
      endpoint_chain(sp, *endpoints[i]);
    }
  }

  // FERRY-SEP-: a pod reaching itself is masqueraded (hairpin), then DNAT to the endpoint.
  void endpoint_chain(const ServicePort& sp, const ServiceBackend& b) {
    const std::string chain = sp.endpoint_chain(b);
    std::vector<std::string>& rules = tables_.nat[chain];
    if (!rules.empty()) return;  // also in the other balance chain of this port
    const std::string comment = with_comment("ferry: " + sp.name);
    rules.push_back("-s " + host_prefix(b.address) + " " + comment + " -j " + std::string(kMarkMasqChain));
    std::string remember =
        sp.affinity ? " -m recent --set --name " + chain + " --mask " + full_mask() + " --rsource" : "";
    rules.push_back(std::string("-p ") + proto_name(sp.proto) + " " + comment + remember +
                    " -j DNAT --to-destination " + address_port(b.address, b.port));
  }

  // FERRY-EXT-: NodePort and externalIPs. Cluster: masquerade, then any endpoint. Local: the
  // client source is kept and only local endpoints serve, except for pods and the node itself,
  // which reach every endpoint (kube-proxy's short-circuit).
  void external_chain(const ServicePort& sp) {
    std::vector<std::string>& rules = tables_.nat[sp.chain(kExternalChainPrefix)];
    const std::string svc = sp.chain(kServiceChainPrefix), svl = sp.chain(kLocalServiceChainPrefix);
    const bool have_cluster = sp.cluster && !sp.cluster->empty(), have_local = sp.local && !sp.local->empty();
    const std::string what = sp.name + " external destinations";
    if (*sp.external_policy == TrafficPolicy::Cluster) {
      rules.push_back(with_comment("ferry: masquerade traffic for " + what) + " -j " + std::string(kMarkMasqChain));
      if (have_cluster) rules.push_back(with_comment("ferry: " + what) + " -j " + svc);
      return;
    }
    if (have_cluster) {
      for (const net::Prefix& cidr : cluster_cidrs_)
        rules.push_back("-s " + cidr.str() + " " + with_comment("ferry: pod traffic for " + what) + " -j " + svc);
      rules.push_back(with_comment("ferry: masquerade LOCAL traffic for " + what) +
                      " -m addrtype --src-type LOCAL -j " + std::string(kMarkMasqChain));
      rules.push_back(with_comment("ferry: route LOCAL traffic for " + what) + " -m addrtype --src-type LOCAL -j " +
                      svc);
    }
    if (have_local) rules.push_back(with_comment("ferry: local endpoints for " + what) + " -j " + svl);
  }

  std::string full_mask() const {
    return family_ == Family::kV4 ? "255.255.255.255" : "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
  }

  Family family_;
  const ServiceSet& set_;
  std::vector<net::Prefix> cluster_cidrs_;
  std::map<std::string, ServicePort> ports_;
  ServiceTables tables_;
};

// Where a built-in chain jumps to one of our base chains.
struct BaseJump {
  std::string_view builtin, spec_head, chain;
  std::string_view after;  // insert right after the jump to this chain (when present), else first
};

std::vector<BaseJump> base_jumps(Table table) {
  if (table == Table::kNat)
    return {{"PREROUTING", kPortalsComment, kServicesChain, ""},
            {"OUTPUT", kPortalsComment, kServicesChain, ""},
            {"POSTROUTING", kPostroutingJumpComment, kServicePostroutingChain, ""}};
  // New connections only: rejects concern connection attempts. After the endpoint datapath's
  // jump, so that a pod whose egress policy denies the destination is counted as a policy drop.
  return {{"INPUT", kPortalsComment, kServicesChain, kInputChain},
          {"FORWARD", kPortalsComment, kServicesChain, kForwardChain},
          {"OUTPUT", kPortalsComment, kServicesChain, ""}};
}

std::string jump_rule(Table table, const BaseJump& j) {
  return std::string(table == Table::kFilter ? "-m conntrack --ctstate NEW " : "") + with_comment(j.spec_head) +
         " -j " + std::string(j.chain);
}

std::string table_name(Table table) { return table == Table::kNat ? "nat" : "filter"; }

// parse_save and apply_restore read a *filter section; a nat section has the same grammar.
std::string as_filter_section(std::string_view text, Table table) {
  if (table == Table::kFilter) return std::string(text);
  std::string out;
  for (std::string_view line : detail::lines_of(text)) {
    if (line == "*filter") line = "*ignored-filter";
    else if (line == "*nat") line = "*filter";
    out.append(line).push_back('\n');
  }
  return out;
}

using RulesByChain = std::unordered_map<std::string_view, std::vector<const Rule*>>;
const std::vector<const Rule*> kNoRules;

RulesByChain rules_by_chain(const FilterTable& t) {
  RulesByChain by;
  for (const Rule& r : t.rules) by[r.chain].push_back(&r);
  return by;
}

}  // namespace

bool is_service_chain(Table table, std::string_view chain) {
  if (chain == kServicesChain) return true;
  if (table == Table::kFilter) return false;
  return chain == kNodePortsChain || chain == kMarkMasqChain || chain == kServicePostroutingChain ||
         is_hashed_chain(chain);
}

ServiceTables service_tables(Family family, const ServiceSet& set, const std::vector<net::Prefix>& cluster_cidrs) {
  return LayoutBuilder(family, set, cluster_cidrs).build();
}

FilterTable parse_table_save(std::string_view save_text, Table table) {
  return parse_save(as_filter_section(save_text, table));
}

void apply_table_restore(FilterTable& model, Table table, std::string_view restore_text) {
  apply_restore(model, as_filter_section(restore_text, table));
}

std::string render_services(Table table, const ChainRules& want, const FilterTable& current) {
  const RulesByChain have = rules_by_chain(current);
  const std::set<std::string_view> chains(current.chains.begin(), current.chains.end());
  Script s;
  s.table = table_name(table);
  for (const auto& [chain, rules] : want) {
    auto h = have.find(chain);
    const std::vector<const Rule*>& installed = h == have.end() ? kNoRules : h->second;
    if (chains.count(chain) && std::equal(rules.begin(), rules.end(), installed.begin(), installed.end(),
                                          [](const std::string& w, const Rule* r) { return w == r->spec; }))
      continue;
    s.declare.push_back(chain);  // declaring flushes: the chain is rewritten whole
    for (const std::string& spec : rules) s.add.push_back("-A " + chain + " " + spec);
  }
  for (const std::string& chain : current.chains)
    if (is_service_chain(table, chain) && !want.count(chain)) {
      s.declare.push_back(chain);
      s.drop_chains.push_back(chain);
    }
  for (const BaseJump& j : base_jumps(table)) {
    const std::string spec = jump_rule(table, j);
    auto h = have.find(j.builtin);
    const std::vector<const Rule*>& rules = h == have.end() ? kNoRules : h->second;
    std::vector<const Rule*> jumps;
    for (const Rule* r : rules)
      if (r->target == j.chain) jumps.push_back(r);
    if (jumps.size() == 1 && jumps[0]->spec == spec) continue;
    size_t position = 1;  // counted without our old jumps, which are deleted first
    size_t index = 0;
    for (const Rule* r : j.after.empty() ? kNoRules : rules) {
      if (r->target == j.chain) continue;
      ++index;
      if (r->target == j.after) {
        position = index + 1;
        break;
      }
    }
    for (const Rule* r : jumps) s.remove.push_back("-D " + std::string(j.builtin) + " " + r->spec);
    s.add.push_back("-I " + std::string(j.builtin) + " " + std::to_string(position) + " " + spec);
  }
  return s.text();
}

std::string render_services_cleanup(Table table, const FilterTable& current) {
  Script s;
  s.table = table_name(table);
  for (const Rule& r : current.rules)
    if (!is_service_chain(table, r.chain) && is_service_chain(table, r.target))
      s.remove.push_back("-D " + r.chain + " " + r.spec);
  for (const std::string& chain : current.chains)
    if (is_service_chain(table, chain)) {
      s.declare.push_back(chain);
      s.drop_chains.push_back(chain);
    }
  return s.text();
}

std::vector<StaleUdpFlows> stale_udp_flows(const ServiceSet& before, const ServiceSet& after) {
  auto key = [](const ServiceFrontend& fe) { return std::tuple(fe.address.family, fe.address.bytes, fe.port, fe.proto); };
  std::map<decltype(key(ServiceFrontend{})), const ServiceFrontend*> now;
  for (const auto& [id, fe] : after.frontends) now[key(fe)] = &fe;
  auto addresses = [](const ServiceSet& set, const ServiceFrontend& fe) {
    std::set<std::pair<std::array<uint8_t, 16>, uint16_t>> out;
    auto add = [&](const std::vector<BackendId>& ids) {
      for (BackendId id : ids)
        if (auto it = set.backends.find(id); it != set.backends.end())
          out.emplace(it->second.address.bytes, it->second.port);
    };
    add(fe.backends);
    add(fe.other_backends);
    if (fe.pod_and_host_backends) add(*fe.pod_and_host_backends);
    return out;
  };
  std::vector<StaleUdpFlows> stale;
  for (const auto& [id, fe] : before.frontends) {
    if (fe.proto != IPPROTO_UDP) continue;
    auto it = now.find(key(fe));
    if (it == now.end()) {
      stale.push_back({fe.address, fe.port, std::nullopt});
      continue;
    }
    const auto kept = addresses(after, *it->second);
    for (const auto& [bytes, port] : addresses(before, fe))
      if (!kept.count({bytes, port})) {
        net::Ip backend;
        backend.family = fe.address.family;
        backend.bytes = bytes;
        stale.push_back({fe.address, fe.port, backend});
      }
  }
  return stale;
}

dataplane::Counter service_no_endpoint_counter(const FilterTable& filter) {
  dataplane::Counter c;
  c.name = "drop_no_service";
  c.drop = true;
  for (const Rule& r : filter.rules)
    if (r.chain == kServicesChain) {
      c.packets += r.packets;
      c.bytes += r.bytes;
    }
  return c;
}

}  // namespace ferry::iptables
