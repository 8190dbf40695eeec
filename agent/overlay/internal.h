// Private to agent/overlay: the masquerade rules as text (pure, unit-tested).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ferry::overlay::detail {

inline constexpr std::string_view kJumpComment = "ferry: overlay masquerade";
// Versioned: a changed rule text gets a new comment, so an old rule is seen as outdated.
inline constexpr std::string_view kMasqComment = "ferry: masquerade pod traffic leaving the cluster v1";

// What iptables-save -t nat shows of ours.
struct NatState {
  bool chain = false;                    // FERRY-POSTROUTING declared
  std::vector<std::string> chain_rules;  // its rules, "-A ..." specs after the chain name
  size_t our_rules = 0;                  // of those, with kMasqComment
  std::vector<std::string> jumps;        // POSTROUTING rules jumping to FERRY-POSTROUTING (specs)
};
NatState parse_nat(std::string_view iptables_save);
// The rule in FERRY-POSTROUTING for `set` (ferry-pods-v4 / -v6), iptables-restore syntax.
std::string masquerade_rule(std::string_view set);
// --noflush restore text that makes the nat table hold exactly our chain, rule and one jump;
// "" when `state` is already that.
std::string render_nat_sync(const NatState& state, std::string_view set);
// --noflush restore text that removes our jumps and chain; "" when there is nothing.
std::string render_nat_removal(const NatState& state);

}  // namespace ferry::overlay::detail
