// agent/iptables/iptables.h — the iptables endpoint datapath: the fallback backend of
// dataplane::Dataplane for kernels or nodes where the eBPF datapath cannot run.
//
// Layout (filter table, IPv4 and IPv6 alike; every rule carries a `ferry:` comment):
//
//   FORWARD ─(first rule, "ferry: endpoint datapath")─► FERRY-FORWARD
//   INPUT   ─(first rule, "ferry: endpoint datapath")─► FERRY-INPUT
//   FERRY-FORWARD, per endpoint (dispatch rules, comment = the endpoint's descriptor):
//     -m physdev --physdev-in  <veth>                       -j FERRY-FROM-<hex>
//     -m physdev --physdev-out <veth> --physdev-is-bridged  -j FERRY-TO-<hex>
//     -d <pod ip>/32|/128 -m physdev ! --physdev-is-bridged -j FERRY-TO-<hex>  (per address)
//   FERRY-INPUT, per endpoint:
//     -m physdev --physdev-in  <veth>                       -j FERRY-FROM-<hex>
//   FERRY-FROM-<hex>: traffic from the pod. Anti-spoofing: sources that are the endpoint's
//     own addresses go (-g) to FERRY-PE-<hex>; IPv6 link-local and unspecified sources RETURN
//     unjudged, as in the eBPF datapath; everything else is DROPped ("ferry: drop spoofed").
//   FERRY-TO-<hex>: traffic to the pod: goes (-g) to FERRY-PI-<hex>. Bridged traffic (from
//     another pod on the bridge) is told by its output port; traffic routed into the bridge
//     (from the VXLAN device, i.e. other nodes, or any other routed interface) passes FORWARD
//     with the bridge itself as output device, before the bridge picks a port, so it is told
//     by its destination address instead; `! --physdev-is-bridged` keeps a bridged packet from
//     matching both. Node-originated traffic (OUTPUT) does not pass FORWARD: the node (Host
//     identity) always reaches its pods.
//   FERRY-PE-<hex> / FERRY-PI-<hex>: the endpoint's egress / ingress NetworkPolicy (below).
//     program_endpoint() creates them when missing and never flushes them; their content is
//     program_policy()'s: empty (= not isolated) until the first one, afterwards a new
//     endpoint's chains are filled from the last applied PolicySet before program_endpoint()
//     returns.
//
// <hex> is 10 hex digits of a hash of the host veth name, so chain names are stable across
// restarts and fit iptables' 28-character limit. Bridged pod-to-pod traffic reaches these
// hooks only through br_netfilter, so start() turns on bridge-nf-call-ip(6)tables.
//
// The dispatch rules' comment ("ferry: endpoint 7 veth=... ifindex=12 pod-mac=... host-mac=...
// ips=10.244.1.5,fd00::5") holds every Endpoint field the rules themselves cannot, so
// installed_endpoints() rebuilds the desired Endpoint from `iptables-save` alone; it says
// complete=false when any chain, rule, dispatch rule, jump or family differs from what
// program_endpoint() writes.
//
// Updates are partial restores (KEP-3453 style): one `iptables-restore --noflush` (and one
// `ip6tables-restore --noflush`) per change, touching only the affected chains. Programming
// an endpoint re-declares (flushes) and rewrites its own two chains and replaces only its own
// dispatch rules, by deleting the exact old rule text and appending the new; FERRY-FORWARD
// and FERRY-INPUT are never rewritten wholesale, so other endpoints' rules are never touched
// and the cost of a change does not grow with the number of endpoints. The exact old text is
// known from the backend's model of the filter table (read with iptables-save, then kept up
// to date by applying every successful restore to it); when someone else changed the table
// and a restore fails, the model is re-read and the restore retried once.
//
// NetworkPolicy (program_policy; DESIGN.md "Identities"):
//   ipsets ferry-id-<identity>-4 / -6 (hash:net), one per identity and family that some allow
//   entry names and the ipcache gives addresses in that family: the identity's own ipcache
//   prefixes, plus, as `nomatch`, every ipcache prefix of another identity whose nearest
//   enclosing ipcache prefix is one of its own. hash:net answers with its most specific
//   element, so set membership is exactly "longest-prefix match in the ipcache gives this
//   identity" (/0 is split into two /1, which hash:net can hold).
//   A policy chain of an isolated direction:
//     -m conntrack --ctdir REPLY -j RETURN         replies of connections allowed before
//     (IPv6) ICMPv6 types 133-137 -j RETURN         neighbour discovery must keep working
//     one rule per allow entry: [-p P] [-m set --match-set ferry-id-N-F src|dst]
//                               [-m P --dport A[:B]] -j RETURN
//     -m comment --comment "ferry: policy-deny ingress|egress" -j DROP   (the drop counter)
//   Only the original direction of a connection is judged, on every packet, so a revoking
//   change stops the connection at its next packet and an unrelated change does not touch it.
//   A non-isolated direction (or an endpoint absent from the PolicySet, or enforce false) has
//   an empty chain. Order of a change: `ipset restore` (create sets, add/del members), then
//   the iptables restores of the changed chains only, then `ipset restore` destroying the sets
//   no rule uses any more. State is read back from `ipset save` and iptables-save, so a second
//   program_policy, also by a restarted agent, finds nothing to write.
//
// Services (program_services; DESIGN.md "Services"): kube-proxy's iptables layout
// (pkg/proxy/iptables/proxier.go) with ferry names, iptables for IPv4 frontends and ip6tables
// for IPv6 ones, every rule commented "ferry: <kube-proxy's text>":
//   nat PREROUTING, OUTPUT ─► FERRY-SERVICES: per ClusterIP frontend with backends
//     "-d <ip> -p P --dport <port> -j FERRY-SVC-<h>" (internalTrafficPolicy Local: FERRY-SVL-<h>),
//     per externalIP "-j FERRY-EXT-<h>", last "-m addrtype --dst-type LOCAL -j FERRY-NODEPORTS".
//   FERRY-NODEPORTS: per NodePort frontend "-d <node address> -p P --dport <nodePort> -j FERRY-EXT-<h>".
//   FERRY-SVC-<h> (every endpoint) / FERRY-SVL-<h> (this node's endpoints): with sessionAffinity
//     first one "-m recent --rcheck --seconds T --reap --name FERRY-SEP-<e>" rule per endpoint,
//     then endpoint i of n with "-m statistic --mode random --probability 1/(n-i)" (the last
//     unconditional), in IR order. With exactly one cluster CIDR of the family configured, the
//     ClusterIP's chain first marks traffic from outside it for masquerade (kube-proxy's
//     --cluster-cidr); without, that rule is left out.
//   FERRY-SEP-<e>: "-s <endpoint> -j FERRY-MARK-MASQ" (hairpin), then DNAT to the endpoint
//     (with affinity, "-m recent --set --name FERRY-SEP-<e>" remembers the client).
//   FERRY-EXT-<h>: externalTrafficPolicy Cluster: mark for masquerade, -j FERRY-SVC-<h>. Local:
//     sources in the cluster CIDRs (pods) and the node itself (addrtype LOCAL, masqueraded) go
//     to FERRY-SVC-<h> (every endpoint, the IR's pod_and_host_backends); everyone else keeps its
//     source and goes to FERRY-SVL-<h>. Without configured cluster CIDRs, pods count as outside
//     clients there (kube-proxy without a local-traffic detector).
//   FERRY-MARK-MASQ: MARK --set-xmark 0x4000/0x4000 (FERRY_MARK_MASQ, kube-proxy's bit).
//   POSTROUTING ─► FERRY-SVC-POSTROUTING: marked packets are MASQUERADEd (--random-fully), the
//     mark cleared.
//   filter INPUT, FORWARD, OUTPUT ─(ctstate NEW)─► FERRY-SERVICES: per frontend without
//     backends "-j REJECT" (when_empty Reject: ICMP port unreachable, connect() sees
//     ECONNREFUSED) or "-j DROP" (when_empty Drop). In INPUT and FORWARD the jump sits right
//     after the endpoint datapath's, so a pod's egress policy judges (and counts) first.
// <h> is 16 upper-case hex digits of a hash of "namespace/name:port/protocol" (stable across
// restarts, like kube-proxy's base32 of sha256), <e> of that plus the endpoint address:port.
// The frontends of one Service port and family share its chains: the ClusterIP's backends (or
// the first frontend's under the same traffic policy) fill SVC/SVL, as the IR gives every
// frontend of a port the same lists for the same policy.
// Updates are partial restores (KEP-3453): the desired chains are compared with the installed
// ones (read with iptables-save once, then kept current as restores succeed) and only chains
// whose rules differ are rewritten, chains no longer wanted are flushed and deleted, so one
// endpoint change rewrites the Service's SVC/SVL chain and the SEP chains that came or went;
// FERRY-SERVICES / FERRY-NODEPORTS only when their own rules change. A restarted agent with the
// same ServiceSet writes nothing. Established flows keep their conntrack DNAT; UDP flows to a
// frontend that went away, or to an endpoint no longer named by its frontend, are deleted with
// the `conntrack` tool when it is installed (kube-proxy does the same), else left to time out.
//
// Errors: the backend throws dataplane::DataplaneError with the command and its stderr; the
// pure functions below throw DataplaneError for endpoints they cannot render (a veth name with
// characters iptables-restore would misread, a descriptor longer than a rule comment may be).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/dataplane/dataplane.h"

namespace ferry::iptables {

struct IptablesConfig {
  bool ipv6 = true;  // also program ip6tables; false on nodes without IPv6
  // Binaries, found in PATH and then /usr/sbin, /sbin (or absolute paths, e.g. the -legacy ones).
  std::string iptables_restore = "iptables-restore";
  std::string ip6tables_restore = "ip6tables-restore";
  std::string iptables_save = "iptables-save";
  std::string ip6tables_save = "ip6tables-save";
  std::string ipset = "ipset";  // needed only once a policy names a peer identity
  // iptables-restore --wait: how long to wait for the xtables lock other users (ferry-portmap,
  // ferry-bridge's ipMasq, kube-proxy) hold. iptables-nft serialises through nftables instead.
  int lock_wait_seconds = 10;
  // start() sets net.bridge.bridge-nf-call-ip(6)tables=1 and cleanup_all() sets them to 0.
  bool manage_bridge_nf_call = true;
  // The cluster's pod network (kube-proxy's --cluster-cidr), at most one prefix per family for
  // the ClusterIP masquerade rule; sources here are pods for externalTrafficPolicy Local.
  std::vector<net::Prefix> cluster_cidrs;
  // conntrack-tools, for deleting stale UDP flows of Services; optional.
  std::string conntrack = "conntrack";
};

std::unique_ptr<dataplane::Dataplane> make_iptables_dataplane(const IptablesConfig& config = {});

// ---------------------------------------------------------------------------------------
// Rendering and parsing: pure functions (no kernel, no exec), unit-tested without root.

enum class Family { kV4, kV6 };

inline constexpr std::string_view kForwardChain = "FERRY-FORWARD";
inline constexpr std::string_view kInputChain = "FERRY-INPUT";
inline constexpr std::string_view kFromChainPrefix = "FERRY-FROM-";
inline constexpr std::string_view kToChainPrefix = "FERRY-TO-";
inline constexpr std::string_view kDropSpoofedComment = "ferry: drop spoofed";
inline constexpr std::string_view kPolicyIngressChainPrefix = "FERRY-PI-";
inline constexpr std::string_view kPolicyEgressChainPrefix = "FERRY-PE-";
inline constexpr std::string_view kIdentitySetPrefix = "ferry-id-";

std::string chain_suffix(std::string_view host_veth);  // 10 lower-case hex digits
std::string from_chain(std::string_view host_veth);    // "FERRY-FROM-" + suffix
std::string to_chain(std::string_view host_veth);      // "FERRY-TO-" + suffix
// "FERRY-PI-" / "FERRY-PE-" + suffix
std::string policy_chain(dataplane::Direction dir, std::string_view host_veth);
bool is_policy_chain(std::string_view chain);
// True for the chains this backend owns (and cleanup_all removes).
bool is_our_chain(std::string_view chain);

// The dispatch rules' comment and its inverse (nullopt when it is not one of ours).
std::string endpoint_comment(const dataplane::Endpoint& ep);
std::optional<dataplane::Endpoint> parse_endpoint_comment(std::string_view comment);

// The filter table of one family as iptables-save prints it.
struct Rule {
  std::string chain;
  std::string spec;     // everything after "-A <chain> ", exactly as iptables-save prints it
  std::string comment;  // --comment value, unquoted ("" when none)
  std::string target;   // -j / -g value
  uint64_t packets = 0;  // with iptables-save -c
  uint64_t bytes = 0;
};
struct FilterTable {
  std::vector<std::string> chains;  // built-in and user chains, in save order
  std::vector<Rule> rules;          // grouped by chain, in rule order
  bool has_chain(std::string_view chain) const;
  std::vector<const Rule*> rules_of(std::string_view chain) const;
};
// Parses the *filter section of `iptables-save [-c]` output; other tables are ignored.
FilterTable parse_save(std::string_view save_text);
// Applies restore text the way `iptables-restore --noflush` does (declaring a chain flushes
// it; -A, -I, -D, -F, -X); throws DataplaneError where the kernel would refuse (e.g. -D of a
// rule that is not there). The backend keeps its model of the table current with it.
void apply_restore(FilterTable& table, std::string_view restore_text);

// Restore texts for `iptables-restore --noflush`; "" when the table already matches.
// start(): base chains present, exactly one jump to each, as the first rule of FORWARD/INPUT.
std::string render_start(const FilterTable& current);
// One endpoint in one family: its chains rewritten, its dispatch rules replaced if they
// differ, base chains and jumps added if missing.
std::string render_program(Family family, const dataplane::Endpoint& ep, const FilterTable& current);
// The installed endpoint's dispatch rules (those whose comment names its endpoint_id) and,
// once nothing else jumps to them, its chains.
std::string render_remove(const dataplane::Endpoint& installed, const FilterTable& current);
// Every FERRY-FORWARD/INPUT/FROM-*/TO-* chain and every jump to them; nothing else.
std::string render_cleanup(const FilterTable& current);
// FERRY-FROM-*/TO-* chains nothing jumps to (left by someone editing the table by hand).
std::string render_orphan_gc(const FilterTable& current);

// Endpoints described by the dispatch rules of the given families (v6 null when IPv6 is not
// managed), sorted by endpoint_id, each complete only when every piece in every family is
// exactly what render_program() writes.
std::vector<dataplane::Endpoint> endpoints_from_tables(const FilterTable& v4, const FilterTable* v6);

// Packets/bytes of the anti-spoofing DROP rules in one table (needs iptables-save -c).
dataplane::Counter drop_spoofed_counter(const FilterTable& table);

// ---------------------------------------------------------------------------------------
// NetworkPolicy: ipsets and policy chains (policy_rules.cpp), pure as well.

// "ferry-id-257-4" / "ferry-id-257-6": at most 21 characters (ipset allows 31).
std::string identity_set_name(dataplane::Identity id, Family family);

// One ipset of ours: member prefix (network form, as net::Prefix::str() prints it) -> nomatch.
struct IdentitySet {
  Family family = Family::kV4;
  std::map<std::string, bool> members;
  bool operator==(const IdentitySet&) const = default;
};
using IdentitySets = std::map<std::string, IdentitySet>;  // by set name

// The sets `desired` needs (none when it does not enforce).
IdentitySets identity_sets(const dataplane::PolicySet& desired);
// The ferry-id-* sets in `ipset save` output; other sets are ignored.
IdentitySets parse_ipset_save(std::string_view save_text);
// `ipset restore` text: create the missing sets, del/add the members that differ ("" = none).
std::string render_set_update(const IdentitySets& desired, const IdentitySets& current);
// `ipset restore` text: destroy the sets of `current` that `desired` lacks ("" = none). Run
// after the rules that used them are gone (the kernel refuses to destroy a set in use).
std::string render_set_destroy(const IdentitySets& desired, const IdentitySets& current);

// Endpoint ids and their host veths, from the dispatch rules' descriptors in FERRY-FORWARD.
std::map<uint32_t, std::string> endpoint_veths(const FilterTable& current);
// The rules of one policy chain as iptables-save prints them; empty when `policy` is null or
// the direction is not isolated. `sets`: entries whose peer has no set in this family can
// never match and are left out. Throws DataplaneError for a protocol it cannot render.
std::vector<std::string> policy_chain_rules(Family family, dataplane::Direction dir,
                                            const dataplane::EndpointPolicy* policy, const IdentitySets& sets);
// The policy chains of the given endpoints that differ from `current`, rewritten.
std::string render_policy(Family family, const dataplane::PolicySet& desired,
                          const std::map<uint32_t, std::string>& endpoint_veths, const IdentitySets& sets,
                          const FilterTable& current);

// Packets/bytes of the policy-deny rules in one table (needs iptables-save -c).
dataplane::Counter drop_policy_counter(const FilterTable& table);

// ---------------------------------------------------------------------------------------
// Services: kube-proxy's layout (service_rules.cpp), pure as well.

enum class Table { kFilter, kNat };

inline constexpr std::string_view kServicesChain = "FERRY-SERVICES";  // in nat and in filter
inline constexpr std::string_view kNodePortsChain = "FERRY-NODEPORTS";
inline constexpr std::string_view kMarkMasqChain = "FERRY-MARK-MASQ";
inline constexpr std::string_view kServicePostroutingChain = "FERRY-SVC-POSTROUTING";
inline constexpr std::string_view kServiceChainPrefix = "FERRY-SVC-";
inline constexpr std::string_view kLocalServiceChainPrefix = "FERRY-SVL-";
inline constexpr std::string_view kExternalChainPrefix = "FERRY-EXT-";
inline constexpr std::string_view kEndpointChainPrefix = "FERRY-SEP-";

// Chains of one table: name -> rule specs as iptables-save prints them (after "-A <chain> ").
using ChainRules = std::map<std::string, std::vector<std::string>>;
struct ServiceTables {
  ChainRules nat, filter;
};
// The service chains of one family. Throws DataplaneError for a protocol other than TCP, UDP,
// SCTP.
ServiceTables service_tables(Family family, const dataplane::ServiceSet& set,
                             const std::vector<net::Prefix>& cluster_cidrs);
// True for the chains of `table` that service_tables() makes (cleanup removes exactly these).
bool is_service_chain(Table table, std::string_view chain);
// parse_save / apply_restore for either table (the model type is the same).
FilterTable parse_table_save(std::string_view save_text, Table table);
void apply_table_restore(FilterTable& model, Table table, std::string_view restore_text);
// Restore text (for --noflush) making `table` hold `want`: chains whose rules differ are
// rewritten whole, service chains not in `want` flushed and deleted, the jumps from the
// built-in chains added where missing; "" when everything already matches.
std::string render_services(Table table, const ChainRules& want, const FilterTable& current);
// Every service chain of `table` and every jump to one.
std::string render_services_cleanup(Table table, const FilterTable& current);

// UDP conntrack entries a change leaves pointing nowhere: to a frontend that is gone
// (backend nullopt: every flow to it) or to a backend its frontend no longer names.
struct StaleUdpFlows {
  net::Ip frontend;
  uint16_t port = 0;
  std::optional<net::Ip> backend;
};
std::vector<StaleUdpFlows> stale_udp_flows(const dataplane::ServiceSet& before, const dataplane::ServiceSet& after);

// Packets/bytes of the filter FERRY-SERVICES rules (rejected or dropped for lack of an
// endpoint; needs iptables-save -c): "drop_no_service", the eBPF datapath's name for it.
dataplane::Counter service_no_endpoint_counter(const FilterTable& filter);

}  // namespace ferry::iptables
