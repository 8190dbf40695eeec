// agent/iptables/internal.h — pieces shared by the endpoint rules (rules.cpp), the policy
// rules (policy_rules.cpp) and the service rules (service_rules.cpp); not part of the module's
// interface.
#pragma once

#include <netinet/in.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "agent/iptables/iptables.h"

namespace ferry::iptables::detail {

inline std::string with_comment(std::string_view comment) {
  return "-m comment --comment " + net::iptables_quote(comment);
}

// The pieces of a restore script, emitted in an order iptables-restore accepts: chain
// declarations, deletions, appends/inserts, chain removals.
struct Script {
  std::string table = "filter";
  std::vector<std::string> declare, remove, add, drop_chains;
  bool empty() const { return declare.empty() && remove.empty() && add.empty() && drop_chains.empty(); }
  std::string text() const {
    if (empty()) return "";
    std::string t = "*" + table + "\n";
    for (const auto& c : declare) t += ":" + c + " - [0:0]\n";
    for (const auto& l : remove) t += l + "\n";
    for (const auto& l : add) t += l + "\n";
    for (const auto& c : drop_chains) t += "-X " + c + "\n";
    return t + "COMMIT\n";
  }
};

// iptables' name of a protocol the datapath handles; nullptr for others.
inline const char* proto_name(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_SCTP: return "sctp";
    default: return nullptr;
  }
}

// Text split at '\n', trailing '\r' and spaces trimmed.
std::vector<std::string_view> lines_of(std::string_view text);

}  // namespace ferry::iptables::detail
