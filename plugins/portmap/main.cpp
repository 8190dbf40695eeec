// ferry-portmap: the hostPort chained plugin, a drop-in for the reference portmap (iptables
// backend). Forwards hostIP:hostPort to the container address found in prevResult with one
// iptables-restore per family, and removes exactly that container's chain on DEL/GC.
//
// Per verb, per family: one iptables-save and at most one iptables-restore, the two
// families in parallel, under a host-wide lock (see iptables.h). The "nftables" backend is
// rejected with code 2 (unsupported field): ferry-portmap programs iptables only.
#include <netinet/in.h>

#include <cstdio>
#include <set>

#include "cni/cni.h"
#include "plugins/portmap/config.h"
#include "plugins/portmap/conntrack.h"
#include "plugins/portmap/iptables.h"
#include "plugins/portmap/localnet.h"
#include "plugins/portmap/rules.h"

namespace ferry::portmap {
namespace {

constexpr Family kFamilies[] = {Family::kV4, Family::kV6};

struct Target {
  Family family;
  cni::IPNet addr;
};

std::vector<Target> targets(const cni::Result& prev, const std::string& ifname) {
  ContainerAddrs a = container_addrs(prev, ifname);
  std::vector<Target> out;
  if (a.v4) out.push_back({Family::kV4, *a.v4});
  if (a.v6) out.push_back({Family::kV6, *a.v6});
  return out;
}

cni::Result cmd_add(const cni::CmdArgs& args) {
  Config conf = parse_config(args.conf);
  if (!args.conf.prev_result)
    throw cni::Error(cni::kInvalidConfig, "must be called as chained plugin",
                     "ferry-portmap needs prevResult: list it after the interface plugin (e.g. "
                     "ferry-bridge) in a conflist");
  const cni::Result& prev = *args.conf.prev_result;
  if (conf.mappings.empty()) return prev;
  std::vector<Target> todo = targets(prev, args.ifname);
  if (todo.empty()) return prev;

  const std::vector<SharedRule> shared = shared_rules(conf);
  const std::vector<std::string> chains = shared_chains(conf);
  {
    RulesLock lock;
    std::vector<Command> saves;
    for (const auto& t : todo) saves.push_back(start_save(t.family));
    std::vector<Command> restores;
    for (size_t i = 0; i < todo.size(); ++i) {
      NatTable current = *finish_save(saves[i], todo[i].family);
      ContainerRules mine = render_container_rules(conf, args.container_id, todo[i].addr);
      restores.push_back(start_restore(todo[i].family, render_add(current, shared, chains, mine)));
    }
    // While iptables works: 127.0.0.1 -> hostPort needs route_localnet on the bridge.
    if (conf.snat && todo.front().family == Family::kV4) enable_route_localnet(todo.front().addr.addr);
    for (size_t i = 0; i < todo.size(); ++i)
      finish_restore(restores[i], todo[i].family,
                     "install hostport rules for container " + args.container_id);
  }

  // After the rules exist, so new datagrams take them (reference PR #553); informative only.
  std::vector<int> udp_ports, families;
  for (const auto& m : conf.mappings)
    if (m.protocol == "udp") udp_ports.push_back(m.host_port);
  for (const auto& t : todo) families.push_back(t.family == Family::kV4 ? AF_INET : AF_INET6);
  if (std::string problem = delete_udp_conntrack(udp_ports, families); !problem.empty())
    std::fprintf(stderr, "ferry-portmap: failed to delete stale UDP conntrack entries: %s\n", problem.c_str());
  return prev;
}

// Saves the nat table of both families in parallel; a family whose iptables is unusable
// (IPv6 disabled, no ip6tables) is left out unless both are.
std::vector<std::pair<Family, NatTable>> save_both_families() {
  std::vector<Command> saves;
  for (Family f : kFamilies) saves.push_back(start_save(f));
  std::vector<std::pair<Family, NatTable>> out;
  std::string why;
  for (size_t i = 0; i < saves.size(); ++i)
    if (auto t = finish_save(saves[i], kFamilies[i], &why)) out.emplace_back(kFamilies[i], std::move(*t));
  if (out.empty()) throw cni::Error(cni::kInternal, "neither iptables nor ip6tables is usable", why);
  return out;
}

// Removes the per-container chains `chains_of(table)` names, one restore per family.
template <typename ChainsOf>
void remove_chains(ChainsOf chains_of, const std::string& what) {
  RulesLock lock;
  std::vector<std::pair<Family, Command>> restores;
  for (const auto& [f, current] : save_both_families())
    if (auto input = render_del(current, chains_of(current)))
      restores.emplace_back(f, start_restore(f, *input));
  for (auto& [f, cmd] : restores) finish_restore(cmd, f, what);
}

void cmd_del(const cni::CmdArgs& args) {
  Config conf = parse_config(args.conf);
  // Reference behaviour: DEL without the mappings is a no-op (libcni resends them from its
  // cache), which also keeps iptables out of every DEL of a pod without hostPorts.
  if (conf.mappings.empty()) return;
  const std::vector<std::string> mine = {container_chain(conf.network, args.container_id)};
  remove_chains([&](const NatTable&) { return mine; },
                "remove hostport rules for container " + args.container_id);
}

void cmd_check(const cni::CmdArgs& args) {
  Config conf = parse_config(args.conf);
  if (!args.conf.prev_result)
    throw cni::Error(cni::kInvalidConfig, "required prevResult missing",
                     "CHECK needs the prevResult of the ADD it checks");
  if (conf.mappings.empty()) return;
  std::vector<Target> todo = targets(*args.conf.prev_result, args.ifname);
  std::vector<Command> saves;
  for (const auto& t : todo) saves.push_back(start_save(t.family));
  const std::vector<SharedRule> shared = shared_rules(conf);
  std::string findings;
  for (size_t i = 0; i < todo.size(); ++i) {
    NatTable current = *finish_save(saves[i], todo[i].family);
    ContainerRules mine = render_container_rules(conf, args.container_id, todo[i].addr);
    for (const auto& f : check_rules(current, shared, mine))
      findings += (findings.empty() ? "" : "; ") + std::string(family_name(todo[i].family)) + " " + f;
  }
  if (!findings.empty())
    throw cni::Error(cni::kInternal,
                     "hostport rules of container " + args.container_id + " are missing or changed",
                     findings);
}

void cmd_gc(const cni::CmdArgs& args) {
  Config conf = parse_config(args.conf);
  std::set<std::string> valid;
  for (const auto& a : cni::valid_attachments(args.conf.raw)) valid.insert(a.container_id);

  remove_chains([&](const NatTable& t) { return orphan_chains(t, conf.network, valid); },
                "remove hostport rules of containers that are gone");
}

}  // namespace
}  // namespace ferry::portmap

int main() {
  using namespace ferry::portmap;
  ferry::cni::Plugin plugin;
  plugin.about = "ferry-portmap v" FERRY_VERSION;
  plugin.add = cmd_add;
  plugin.del = cmd_del;
  plugin.check = cmd_check;
  plugin.gc = cmd_gc;
  return ferry::cni::plugin_main(plugin);
}
