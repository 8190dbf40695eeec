// The one MASQUERADE rule of the eBPF service datapath: from-uplink marks a NodePort connection
// of externalTrafficPolicy Cluster with FERRY_MARK_MASQ (kube-proxy's KUBE-MARK-MASQ bit) and the
// kernel SNATs its first packet here; conntrack undoes it for the replies before to-uplink runs.
#include <unistd.h>

#include <cstdio>
#include <sstream>

#include "agent/ebpf/internal.h"

namespace ferry::ebpf {
namespace detail {

namespace {

constexpr std::string_view kJumpComment = "ferry: eBPF service masquerade";
// Versioned: a changed rule text gets a new comment, so an old rule is seen as outdated.
constexpr std::string_view kRuleComment = "ferry: masquerade NodePort traffic marked by from-uplink v1";

std::string mark_match() {
  char text[32];
  std::snprintf(text, sizeof(text), "0x%x/0x%x", FERRY_MARK_MASQ, FERRY_MARK_MASQ);
  return text;
}

std::string rule_spec() {
  return "-m mark --mark " + mark_match() + " -m comment --comment " + net::iptables_quote(kRuleComment) +
         " -j MASQUERADE";
}

// Our part of an iptables-save nat table.
struct MasqState {
  bool chain = false;
  std::vector<std::string> rules;  // specs of the chain's rules
  std::vector<std::string> jumps;  // specs of POSTROUTING rules jumping to it
};

MasqState parse(std::string_view text) {
  MasqState s;
  const std::string chain(kLbMasqChain);
  std::istringstream lines{std::string(text)};
  for (std::string line; std::getline(lines, line);) {
    const std::vector<std::string> tokens = net::split_iptables_save_line(line);
    if (tokens.size() >= 2 && tokens[0] == ":" + chain) s.chain = true;
    if (tokens.size() < 3 || tokens[0] != "-A") continue;
    std::string spec = line.substr(line.find(tokens[1]) + tokens[1].size() + 1);  // after "-A <chain> "
    const bool jump = std::find(tokens.begin(), tokens.end(), chain) != tokens.end();
    if (tokens[1] == chain) s.rules.push_back(std::move(spec));
    else if (tokens[1] == "POSTROUTING" && jump) s.jumps.push_back(std::move(spec));
  }
  return s;
}

// The rule as iptables-save prints it back (it re-quotes the comment, which may differ from
// ours only in quoting): compared token by token.
bool is_our_rule(const std::string& spec) {
  return net::split_iptables_save_line(spec) == net::split_iptables_save_line(rule_spec());
}

struct Family {
  const char* save;
  const char* restore;
  bool usable;
};

std::vector<Family> families() {
  return {{"iptables-save", "iptables-restore", true},
          {"ip6tables-save", "ip6tables-restore", ::access("/proc/sys/net/ipv6", F_OK) == 0}};
}

std::string tool(const char* name) {
  auto path = net::find_executable(name);
  if (!path) throw EbpfError(std::string("NodePort masquerade: \"") + name + "\" not found (install iptables)");
  return *path;
}

// `removal`: a node without iptables has nothing to remove.
uint64_t apply(std::string (*render)(std::string_view), bool removal) {
  uint64_t writes = 0;
  for (const Family& f : families()) {
    if (!f.usable || (removal && !net::find_executable(f.save))) continue;
    net::CommandResult saved = net::run_command({tool(f.save), "-t", "nat"});
    if (saved.status != 0) throw EbpfError(std::string("NodePort masquerade: ") + f.save + " -t nat failed: " + saved.err);
    const std::string text = render(saved.out);
    if (text.empty()) continue;
    net::CommandResult r = net::run_command({tool(f.restore), "--noflush", "--wait", "10"}, text);
    if (r.status != 0) throw EbpfError(std::string("NodePort masquerade: ") + f.restore + " failed: " + r.err);
    ++writes;
  }
  return writes;
}

}  // namespace

std::string render_lb_masquerade_sync(std::string_view nat_table) {
  const MasqState s = parse(nat_table);
  const bool chain_ok = s.chain && s.rules.size() == 1 && is_our_rule(s.rules[0]);
  const bool jump_ok = s.jumps.size() == 1;
  if (chain_ok && jump_ok) return "";
  const std::string chain(kLbMasqChain);
  std::string text = "*nat\n";
  if (!chain_ok) text += ":" + chain + " - [0:0]\n-A " + chain + " " + rule_spec() + "\n";  // declaring flushes it
  if (!jump_ok) {
    for (const std::string& spec : s.jumps) text += "-D POSTROUTING " + spec + "\n";
    text += "-I POSTROUTING 1 -m comment --comment " + net::iptables_quote(kJumpComment) + " -j " + chain + "\n";
  }
  return text + "COMMIT\n";
}

std::string render_lb_masquerade_removal(std::string_view nat_table) {
  const MasqState s = parse(nat_table);
  if (!s.chain && s.jumps.empty()) return "";
  const std::string chain(kLbMasqChain);
  std::string text = "*nat\n";
  if (s.chain) text += ":" + chain + " - [0:0]\n";
  for (const std::string& spec : s.jumps) text += "-D POSTROUTING " + spec + "\n";
  if (s.chain) text += "-X " + chain + "\n";
  return text + "COMMIT\n";
}

uint64_t sync_lb_masquerade() { return apply(render_lb_masquerade_sync, false); }
uint64_t remove_lb_masquerade() { return apply(render_lb_masquerade_removal, true); }

}  // namespace detail
}  // namespace ferry::ebpf
