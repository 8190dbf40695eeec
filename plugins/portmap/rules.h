// plugins/portmap/rules.h — ferry-portmap's iptables layout, rendered as text. Pure: no
// kernel access, so every rule is unit-tested as golden text.
//
// Layout (table nat, per family), the reference portmap's with ferry's own names so both
// plugins can run on one host:
//   PREROUTING, OUTPUT:      -m addrtype --dst-type LOCAL -j FERRY-HOSTPORT-DNAT
//   FERRY-HOSTPORT-DNAT:     -p <proto> -m multiport --dports <=15 ports> [conditions]
//                            -j FERRY-DN-<fnv1a64(network + containerID)>   (newest first)
//   FERRY-DN-<hash>:         per mapping: [hairpin mark] [localhost mark, v4] DNAT
//   FERRY-HOSTPORT-SETMARK:  -j MARK --set-xmark <bit>/<bit>
//   POSTROUTING (first):     -j FERRY-HOSTPORT-MASQ
//   FERRY-HOSTPORT-MASQ:     -m mark --mark <bit>/<bit> -j MASQUERADE
// Every rule carries a comment starting "ferry: "; per-container rules name the network and
// container ID ("ferry: hostport net=<network> id=<containerID>"), which is what DEL, CHECK
// and GC recognise.
//
// Rules are rendered in the canonical form iptables-save prints them in (e.g. "-p tcp -m
// tcp --dport 80", addresses with a prefix length), so checking a rule is a string
// comparison against iptables-save output.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "cni/cni.h"
#include "plugins/portmap/config.h"

namespace ferry::portmap {

enum class Family { kV4, kV6 };
std::string_view family_name(Family f);  // "IPv4" / "IPv6"

inline constexpr std::string_view kDnatChain = "FERRY-HOSTPORT-DNAT";
inline constexpr std::string_view kSetMarkChain = "FERRY-HOSTPORT-SETMARK";
inline constexpr std::string_view kMasqChain = "FERRY-HOSTPORT-MASQ";
inline constexpr std::string_view kContainerChainPrefix = "FERRY-DN-";
// multiport matches at most 15 ports per rule.
inline constexpr size_t kMaxMultiportPorts = 15;

// 64-bit FNV-1a (net::stable_hash64): stable across builds and machines.
uint64_t fnv1a64(std::string_view data);
// "FERRY-DN-" + 16 lower-case hex digits of fnv1a64(network + container_id).
std::string container_chain(std::string_view network, std::string_view container_id);
// "ferry: hostport net=<network> id=<container_id>", cut to the 255 bytes xt_comment keeps.
std::string container_comment(std::string_view network, std::string_view container_id);

// One rule: its chain and its canonical iptables-save text after "-A <chain> ".
struct Rule {
  std::string chain;
  std::string spec;
  bool operator==(const Rule&) const = default;
};

// What one container's mappings install in one family.
struct ContainerRules {
  std::string chain;           // FERRY-DN-<hash>
  std::vector<Rule> entries;   // in FERRY-HOSTPORT-DNAT, jumping to `chain`, in order
  std::vector<Rule> rules;     // in `chain`, in order
  bool has_conditions = false;  // entries carry user conditions (not in canonical form)
};
ContainerRules render_container_rules(const Config& conf, std::string_view container_id,
                                      const cni::IPNet& container_addr);

// The rules shared by every container, for this configuration and family. `prepend` rules
// go first in their chain (the POSTROUTING jump, so the bridge's own masquerade rules do
// not see hairpin traffic first); the others are appended.
struct SharedRule {
  Rule rule;
  bool prepend = false;
};
std::vector<SharedRule> shared_rules(const Config& conf);
// The chains ferry-portmap creates for `conf` besides the per-container one.
std::vector<std::string> shared_chains(const Config& conf);

// `iptables-save -t nat` output, parsed.
struct NatTable {
  std::set<std::string> chains;                              // every chain in the table
  std::map<std::string, std::vector<std::string>> rules;     // chain -> rule specs, in order
  bool has_chain(std::string_view chain) const;
  bool has_rule(const Rule& r) const;
  const std::vector<std::string>& chain_rules(std::string_view chain) const;
};
NatTable parse_save(std::string_view text);

// iptables-restore --noflush input that installs `c` on top of `current`: creates the shared
// chains and rules that are missing (never duplicating one), replaces any earlier rules and
// jumps of the same container chain, and prepends the container's entries.
std::string render_add(const NatTable& current, const std::vector<SharedRule>& shared,
                       const std::vector<std::string>& chains, const ContainerRules& c);

// iptables-restore --noflush input that removes `chains` (per-container chains) and the
// jumps to them from FERRY-HOSTPORT-DNAT; nullopt when none of them is present.
std::optional<std::string> render_del(const NatTable& current,
                                      const std::vector<std::string>& chains);

// What is missing or different, one line per finding (empty = all present). Entries with
// user conditions are matched by comment, ports and target only, since iptables reorders
// conditions when it prints them.
std::vector<std::string> check_rules(const NatTable& current, const std::vector<SharedRule>& shared,
                                     const ContainerRules& c);

// The network and container ID named in a rule's "ferry: hostport ..." comment.
struct Owner {
  std::string network;
  std::string container_id;
};
std::optional<Owner> rule_owner(std::string_view spec);

// Per-container chains of `network` whose container ID is not in `valid_ids`. A chain is
// attributed by its rules' comment, confirmed against its name (the hash), so chains of
// other networks or not made by ferry are never returned.
std::vector<std::string> orphan_chains(const NatTable& current, std::string_view network,
                                       const std::set<std::string>& valid_ids);

}  // namespace ferry::portmap
