// Masquerade of pod traffic leaving the cluster: ipsets of every node's pod CIDRs and the nat
// chain FERRY-POSTROUTING (jumped from POSTROUTING) that masquerades pod sources going to
// destinations outside them. Pod-to-pod traffic, also across nodes, keeps its source.
#include <unistd.h>

#include <algorithm>
#include <set>

#include <spdlog/spdlog.h>

#include "agent/overlay/internal.h"
#include "agent/overlay/overlay.h"

namespace ferry::overlay {

namespace detail {

NatState parse_nat(std::string_view text) {
  NatState s;
  const std::string chain(kNatChain);
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    std::string_view line = text.substr(pos, nl == text.npos ? text.npos : nl - pos);
    pos = nl == text.npos ? text.size() : nl + 1;
    if (line.starts_with(":" + chain + " ")) s.chain = true;
    if (!line.starts_with("-A ")) continue;
    size_t sp = line.find(' ', 3);
    if (sp == line.npos) continue;
    std::string_view in = line.substr(3, sp - 3);
    std::string spec(line.substr(sp + 1));
    auto tokens = net::split_iptables_save_line(spec);
    std::string comment, target;
    for (size_t i = 0; i + 1 < tokens.size(); ++i) {
      if (tokens[i] == "--comment") comment = tokens[i + 1];
      if (tokens[i] == "-j" || tokens[i] == "-g") target = tokens[i + 1];
    }
    if (in == chain) {
      s.chain_rules.push_back(spec);
      if (comment == kMasqComment) ++s.our_rules;
    } else if (in == "POSTROUTING" && target == chain) {
      s.jumps.push_back(spec);
    }
  }
  return s;
}

std::string masquerade_rule(std::string_view set) {
  const std::string name(set);
  return "-A " + std::string(kNatChain) + " -m set --match-set " + name + " src -m set ! --match-set " + name +
         " dst -m comment --comment " + net::iptables_quote(kMasqComment) + " -j MASQUERADE";
}

std::string render_nat_sync(const NatState& s, std::string_view set) {
  const bool chain_ok = s.chain && s.chain_rules.size() == 1 && s.our_rules == 1;
  const bool jump_ok = s.jumps.size() == 1;
  if (chain_ok && jump_ok) return "";
  std::string text = "*nat\n";
  if (!chain_ok) text += ":" + std::string(kNatChain) + " - [0:0]\n" + masquerade_rule(set) + "\n";
  if (!jump_ok) {
    for (const std::string& spec : s.jumps) text += "-D POSTROUTING " + spec + "\n";
    text += "-I POSTROUTING 1 -m comment --comment " + net::iptables_quote(kJumpComment) + " -j " +
            std::string(kNatChain) + "\n";
  }
  return text + "COMMIT\n";
}

std::string render_nat_removal(const NatState& s) {
  if (!s.chain && s.jumps.empty()) return "";
  std::string text = "*nat\n";
  if (s.chain) text += ":" + std::string(kNatChain) + " - [0:0]\n";  // declaring flushes it
  for (const std::string& spec : s.jumps) text += "-D POSTROUTING " + spec + "\n";
  if (s.chain) text += "-X " + std::string(kNatChain) + "\n";
  return text + "COMMIT\n";
}

}  // namespace detail

namespace {

struct Family {
  int af;
  std::string_view set;
  const char* ipset_family;
  const char* save;
  const char* restore;
};
constexpr Family kFamilies[] = {{AF_INET, kPodSetV4, "inet", "iptables-save", "iptables-restore"},
                                {AF_INET6, kPodSetV6, "inet6", "ip6tables-save", "ip6tables-restore"}};

std::string tool(const char* name) {
  auto path = net::find_executable(name);
  if (!path) throw OverlayError(std::string("overlay: \"") + name + "\" not found (install iptables / ipset)");
  return *path;
}

net::CommandResult run(const std::vector<std::string>& argv, std::string_view input = {}) {
  return net::run_command(argv, input);
}

void must(const net::CommandResult& r, const std::string& what) {
  if (r.status != 0) throw OverlayError("overlay: " + what + " failed (exit " + std::to_string(r.status) + "): " + r.err);
}

bool family_usable(const Family& f) { return f.af == AF_INET || access("/proc/sys/net/ipv6", F_OK) == 0; }

// Members of ipset `set`, nullopt when the set does not exist.
std::optional<std::set<std::string>> ipset_members(std::string_view set) {
  auto r = run({tool("ipset"), "list", std::string(set), "-output", "save"});
  if (r.status != 0) {
    if (r.err.find("does not exist") != std::string::npos) return std::nullopt;
    must(r, "ipset list " + std::string(set));
  }
  std::set<std::string> out;
  const std::string prefix = "add " + std::string(set) + " ";
  size_t pos = 0;
  while (pos < r.out.size()) {
    size_t nl = r.out.find('\n', pos);
    std::string line = r.out.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? r.out.size() : nl + 1;
    if (!line.starts_with(prefix)) continue;
    std::string member = line.substr(prefix.size());
    if (member.find(' ') != std::string::npos) member = member.substr(0, member.find(' '));
    if (member.find('/') == std::string::npos) member += member.find(':') != std::string::npos ? "/128" : "/32";
    if (auto p = net::Prefix::parse(member)) out.insert(p->network().str());
  }
  return out;
}

detail::NatState read_nat(const Family& f) {
  auto r = run({tool(f.save), "-t", "nat"});
  must(r, std::string(f.save) + " -t nat");
  return detail::parse_nat(r.out);
}

void restore(const Family& f, const std::string& text) {
  must(run({tool(f.restore), "--noflush", "--wait", "10"}, text), std::string(f.restore) + " --noflush");
}

// Removes our rules, then the set (a set in use by a rule cannot be destroyed). Returns writes.
uint64_t remove_family(const Family& f) {
  uint64_t writes = 0;
  if (!family_usable(f)) return 0;
  std::string text = detail::render_nat_removal(read_nat(f));
  if (!text.empty()) {
    restore(f, text);
    ++writes;
  }
  if (ipset_members(f.set)) {
    must(run({tool("ipset"), "destroy", std::string(f.set)}), "ipset destroy " + std::string(f.set));
    ++writes;
  }
  return writes;
}

}  // namespace

void KernelOverlay::sync_masquerade(const OverlayPlan& plan) {
  for (const Family& f : kFamilies) {
    if (!family_usable(f)) continue;
    std::set<std::string> want;
    for (const net::Prefix& p : plan.cluster_pod_cidrs)
      if (p.ip.family == f.af) want.insert(p.network().str());
    if (want.empty()) {
      writes_ += remove_family(f);
      continue;
    }
    const std::string set(f.set);
    auto have = ipset_members(f.set);
    std::string batch;
    uint64_t changes = 0;
    if (!have) {
      batch += "create " + set + " hash:net family " + f.ipset_family + "\n";
      ++changes;
      have.emplace();
    }
    for (const std::string& m : *have)
      if (!want.count(m)) {
        batch += "del " + set + " " + m + "\n";
        ++changes;
      }
    for (const std::string& m : want)
      if (!have->count(m)) {
        batch += "add " + set + " " + m + "\n";
        ++changes;
      }
    if (changes) {
      must(run({tool("ipset"), "-exist", "restore"}, batch), "ipset restore (" + set + ")");
      writes_ += changes;
    }
    std::string text = detail::render_nat_sync(read_nat(f), f.set);
    if (!text.empty()) {
      restore(f, text);
      ++writes_;
    }
  }
}

uint64_t KernelOverlay::remove_masquerade() {
  uint64_t writes = 0;
  for (const Family& f : kFamilies) writes += remove_family(f);
  return writes;
}

}  // namespace ferry::overlay
