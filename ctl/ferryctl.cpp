// ferryctl — inspect a node's eBPF datapath from its pinned maps: endpoints, overlay tunnels,
// conntrack, counters, live drop events, and the agent's health. Reads bpffs directly, so it works while
// the agent is down. Run it in the node's network namespace (nsenter --net=...) to see
// interface names and tc attachments; `ip netns exec` hides bpffs (it remounts /sys).
#include <dirent.h>
#include <httplib.h>
#include <net/if.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <netinet/in.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <tuple>

#include "agent/ebpf/ebpf.h"
#include "ctl/table.h"
#include "ferry/abi.h"
#include "net/net.h"
#include "policy/policy.h"

namespace ebpf = ferry::ebpf;
using json = nlohmann::json;
using ferry::ctl::Table;

namespace {

struct Options {
  std::string bpffs_root;
  std::string node;
  std::string output = "table";
  std::string agent = "http://127.0.0.1:9400";
  std::string state_dir;  // policy, identities, services: the agent's state directory
  std::string pod;        // policy: "namespace/name"
  int count = 0;          // monitor: stop after N events (0 = no limit)
  double timeout = 0;     // monitor: stop after this many seconds (0 = no limit)
  uint32_t endpoint = 0;  // policy-map: only this endpoint (0 = all)
  bool json() const { return output == "json"; }
};

class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// --bpffs-root wins, then --node; with neither, the only node under /sys/fs/bpf/ferry.
std::string resolve_root(const Options& o) {
  if (!o.bpffs_root.empty()) return o.bpffs_root;
  if (!o.node.empty()) return ebpf::node_bpffs_root(o.node);
  std::string base = std::string(ebpf::kBpffsMount) + "/ferry";
  std::vector<std::string> nodes;
  if (DIR* dir = ::opendir(base.c_str())) {
    while (dirent* de = ::readdir(dir)) {
      std::string n = de->d_name;
      if (n != "." && n != "..") nodes.push_back(n);
    }
    ::closedir(dir);
  }
  if (nodes.size() == 1) return base + "/" + nodes[0];
  std::string msg = "give --node NAME or --bpffs-root PATH";
  if (nodes.empty()) msg += " (no nodes under " + base + ")";
  else {
    msg += " (nodes under " + base + ":";
    for (const auto& n : nodes) msg += " " + n;
    msg += ")";
  }
  throw UsageError(msg);
}

std::string yes_no(bool b) { return b ? "yes" : "no"; }

std::string fixed(double v, int digits = 1) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string wall_clock(double t) {
  time_t secs = static_cast<time_t>(t);
  struct tm tm {};
  localtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  int ms = static_cast<int>((t - static_cast<double>(secs)) * 1000);
  char out[80];
  std::snprintf(out, sizeof(out), "%s.%03d", buf, ms < 0 ? 0 : ms);
  return out;
}

std::string family_name(uint8_t f) { return f == AF_INET6 ? "ipv6" : "ipv4"; }

// ---- status ------------------------------------------------------------------------------

json agent_health(const std::string& url) {
  json out = {{"url", url}};
  try {
    httplib::Client client(url);
    client.set_connection_timeout(1, 0);
    client.set_read_timeout(2, 0);
    bool reachable = false;
    for (const char* path : {"/healthz", "/readyz"}) {
      auto res = client.Get(path);
      std::string key = std::string(path).substr(1);
      if (!res) {
        out[key] = {{"error", httplib::to_string(res.error())}};
        continue;
      }
      reachable = true;
      std::string body = res->body;
      while (!body.empty() && (body.back() == '\n' || body.back() == '\r')) body.pop_back();
      out[key] = {{"status", res->status}, {"body", body}};
    }
    out["reachable"] = reachable;
  } catch (const std::exception& e) {
    out["reachable"] = false;
    out["error"] = e.what();
  }
  return out;
}

// How many tc filters in this netns run program `id`.
int attachments(uint32_t id, const std::vector<std::pair<int, uint32_t>>& filters) {
  int n = 0;
  for (const auto& f : filters) n += f.second == id;
  return n;
}

int cmd_status(const Options& o) {
  std::string root = resolve_root(o);
  json out = {{"root", root}};
  bool have_maps = ebpf::PinnedMaps::exists(root);
  json agent = agent_health(o.agent);
  if (have_maps) {
    ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(root);
    // Our filters in this netns: (ifindex, program id), both sides.
    std::vector<std::pair<int, uint32_t>> filters;
    for (const ebpf::EndpointEntry& e : maps.endpoints()) {
      bool seen = false;
      for (const auto& f : filters) seen |= f.first == e.ifindex;
      if (seen) continue;
      ebpf::TcFilters f = ebpf::tc_filters(e.ifindex);
      filters.push_back({e.ifindex, f.ingress});
      filters.push_back({e.ifindex, f.egress});
    }
    if (int overlay = maps.overlay().ifindex; overlay > 0) filters.push_back({overlay, ebpf::tc_filters(overlay).ingress});
    json pins = json::array();
    for (const ebpf::PinInfo& p : maps.pins()) {
      json j = {{"name", p.name}, {"kind", p.kind}, {"id", p.id}, {"object_name", p.object_name}};
      if (p.kind == "program") j["attachments"] = attachments(p.id, filters);
      pins.push_back(j);
    }
    out["pins"] = pins;
    json fill = json::object();
    for (const auto& [name, f] : maps.map_fill())
      fill[name] = {{"entries", f.entries}, {"max_entries", f.max_entries}};
    out["maps"] = fill;
  }
  out["agent"] = agent;

  if (o.json()) {
    std::cout << out.dump(2) << "\n";
  } else {
    std::cout << "bpffs root: " << root << "\n";
    if (have_maps) {
      std::cout << "\n";
      Table pins({"PIN", "KIND", "ID", "NAME", "ATTACHED"});
      for (const json& p : out["pins"])
        pins.add({p["name"], p["kind"], std::to_string(p["id"].get<uint32_t>()), p["object_name"],
                  p.contains("attachments") ? std::to_string(p["attachments"].get<int>()) : ""});
      pins.print(std::cout);
      std::cout << "\n";
      Table fill({"MAP", "ENTRIES", "MAX", "FILL"});
      for (const auto& [name, f] : out["maps"].items()) {
        uint64_t entries = f["entries"], max = f["max_entries"];
        fill.add({name, std::to_string(entries), std::to_string(max),
                  max ? fixed(100.0 * static_cast<double>(entries) / static_cast<double>(max), 2) + "%" : "-"});
      }
      fill.print(std::cout);
    }
    std::cout << "\nagent " << o.agent << ": ";
    if (!agent.value("reachable", false)) {
      std::cout << "not reachable (the datapath keeps forwarding while the agent is down)\n";
    } else {
      std::cout << "\n";
      for (const char* k : {"healthz", "readyz"}) {
        const json& r = agent[k];
        std::cout << "  /" << k << ": "
                  << (r.contains("status") ? std::to_string(r["status"].get<int>()) + " " + r["body"].get<std::string>()
                                           : r.value("error", "error"))
                  << "\n";
      }
    }
  }
  if (!have_maps) {
    std::cerr << "ferryctl: no ferry maps under " << root
              << " (is the agent running in eBPF mode on this node?)\n";
    return 1;
  }
  return 0;
}

// ---- endpoints, conntrack, counters ------------------------------------------------------

int cmd_endpoints(const Options& o) {
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(resolve_root(o));
  auto eps = maps.endpoints();
  if (o.json()) {
    json out = json::array();
    for (const auto& e : eps)
      out.push_back({{"ip", e.ip.str()},
                     {"endpoint_id", e.endpoint_id},
                     {"ifindex", e.ifindex},
                     {"ifname", e.ifname},
                     {"pod_mac", ferry::net::mac_str(e.pod_mac)},
                     {"host_mac", ferry::net::mac_str(e.host_mac)},
                     {"programmed", e.programmed()},
                     {"flags", e.flags}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  Table t({"IP", "ENDPOINT", "IFINDEX", "VETH", "POD MAC", "HOST MAC", "PROGRAMMED"});
  for (const auto& e : eps)
    t.add({e.ip.str(), std::to_string(e.endpoint_id), std::to_string(e.ifindex), e.ifname.empty() ? "?" : e.ifname,
           ferry::net::mac_str(e.pod_mac), ferry::net::mac_str(e.host_mac), yes_no(e.programmed())});
  t.print(std::cout);
  return 0;
}

int cmd_tunnels(const Options& o) {
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(resolve_root(o));
  ferry::dataplane::Overlay overlay = maps.overlay();
  uint32_t program = overlay.ifindex > 0 ? ebpf::tc_filters(overlay.ifindex).ingress : 0;
  if (o.json()) {
    json routes = json::array();
    for (const auto& r : overlay.routes)
      routes.push_back({{"pod_cidr", r.pod_cidr.str()}, {"node_ip", r.node_ip.str()},
                        {"vtep_mac", ferry::net::mac_str(r.vtep_mac)}});
    json out = {{"enabled", overlay.ifindex > 0},
                {"device", overlay.device},
                {"ifindex", overlay.ifindex},
                {"local_vtep_mac", ferry::net::mac_str(overlay.local_vtep_mac)},
                {"from_overlay_prog_id", program},
                {"tunnels", routes}};
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (overlay.ifindex > 0)
    std::cout << "overlay device: " << (overlay.device.empty() ? "?" : overlay.device) << " (ifindex "
              << overlay.ifindex << "), local VTEP MAC " << ferry::net::mac_str(overlay.local_vtep_mac)
              << ", from-overlay " << (program ? "attached (prog " + std::to_string(program) + ")" : "not attached")
              << "\n\n";
  else
    std::cout << "overlay: direct path off (no overlay device programmed)\n\n";
  Table t({"POD CIDR", "NODE IP", "VTEP MAC"});
  for (const auto& r : overlay.routes)
    t.add({r.pod_cidr.str(), r.node_ip.str(), ferry::net::mac_str(r.vtep_mac)});
  t.print(std::cout);
  return 0;
}

int cmd_ct_list(const Options& o) {
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(resolve_root(o));
  auto entries = maps.conntrack();
  std::sort(entries.begin(), entries.end(), [](const auto& a, const auto& b) { return a.idle_s < b.idle_s; });
  if (o.json()) {
    json out = json::array();
    for (const auto& c : entries)
      out.push_back({{"family", family_name(c.family)},
                     {"proto", ebpf::protocol_name(c.proto)},
                     {"src", c.src.str()},
                     {"sport", c.sport},
                     {"dst", c.dst.str()},
                     {"dport", c.dport},
                     {"state", ebpf::ct_state_name(c.state)},
                     {"packets_fwd", c.packets_fwd},
                     {"bytes_fwd", c.bytes_fwd},
                     {"packets_rev", c.packets_rev},
                     {"bytes_rev", c.bytes_rev},
                     {"tcp_flags_fwd", c.tcp_flags_fwd},
                     {"tcp_flags_rev", c.tcp_flags_rev},
                     {"src_endpoint", c.src_endpoint},
                     {"lifetime_s", c.lifetime_s},
                     {"age_s", c.age_s},
                     {"idle_s", c.idle_s},
                     {"expires_in_s", c.expires_in_s}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  Table t({"PROTO", "SOURCE", "DESTINATION", "STATE", "PKTS >", "BYTES >", "PKTS <", "BYTES <", "AGE", "EXPIRES", "EP"});
  for (const auto& c : entries)
    t.add({ebpf::protocol_name(c.proto), ebpf::endpoint_str(c.src, c.sport, c.proto),
           ebpf::endpoint_str(c.dst, c.dport, c.proto), ebpf::ct_state_name(c.state), std::to_string(c.packets_fwd),
           std::to_string(c.bytes_fwd), std::to_string(c.packets_rev), std::to_string(c.bytes_rev),
           fixed(c.age_s) + "s", c.expires_in_s < 0 ? "expired" : fixed(c.expires_in_s) + "s",
           c.src_endpoint ? std::to_string(c.src_endpoint) : "-"});
  t.print(std::cout);
  return 0;
}

int cmd_ct_flush(const Options& o) {
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(resolve_root(o));
  size_t deleted = maps.flush_conntrack();
  if (o.json())
    std::cout << json{{"deleted", deleted}}.dump() << "\n";
  else
    std::cout << "deleted " << deleted << " conntrack entries\n";
  return 0;
}

int cmd_counters(const Options& o) {
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(resolve_root(o));
  auto counters = maps.counters();
  if (o.json()) {
    json out = json::array();
    for (const auto& c : counters)
      out.push_back({{"name", c.name}, {"drop", c.drop}, {"packets", c.packets}, {"bytes", c.bytes}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  Table t({"COUNTER", "PACKETS", "BYTES", ""});
  for (const auto& c : counters)
    t.add({c.name, std::to_string(c.packets), std::to_string(c.bytes), c.drop ? "drop" : ""});
  t.print(std::cout);
  return 0;
}

// ---- policy, identities (the agent's <state-dir>/policy.json) ----------------------------

// --state-dir wins, then --node (/run/ferry/NAME); with neither, the only node under /run/ferry
// whose agent wrote `file` (policy.json, services.json).
std::string resolve_state_dir(const Options& o, const std::string& file) {
  if (!o.state_dir.empty()) return o.state_dir;
  const std::string base = "/run/ferry";
  if (!o.node.empty()) return base + "/" + o.node;
  std::vector<std::string> nodes;
  if (DIR* dir = ::opendir(base.c_str())) {
    while (dirent* de = ::readdir(dir)) {
      std::string n = de->d_name;
      if (n != "." && n != ".." && ::access((base + "/" + n + "/" + file).c_str(), R_OK) == 0) nodes.push_back(n);
    }
    ::closedir(dir);
  }
  if (nodes.size() == 1) return base + "/" + nodes[0];
  std::string msg = "give --node NAME or --state-dir PATH";
  if (nodes.empty()) msg += " (no node under " + base + " has a " + file + ")";
  else {
    msg += " (nodes with a " + file + " under " + base + ":";
    for (const auto& n : nodes) msg += " " + n;
    msg += ")";
  }
  throw UsageError(msg);
}

// One of the agent's state files; `key` must be in it ("endpoints" for policy.json).
json read_state_file(const Options& o, const std::string& file, const char* key) {
  const std::string path = resolve_state_dir(o, file) + "/" + file;
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read " + path + " (is ferry-agent running on this node with that state dir?)");
  json j = json::parse(in, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains(key))
    throw std::runtime_error(path + " is not a " + file + " written by ferry-agent");
  return j;
}

json read_policy_file(const Options& o) { return read_state_file(o, "policy.json", "endpoints"); }

// The pinned map directory a state file's checks use: --bpffs-root / --node, else the file's.
std::string bpffs_root_for(const Options& o, const json& file) {
  return !o.bpffs_root.empty() || !o.node.empty() ? resolve_root(o) : file.value("bpffs_root", std::string());
}

using IdentityMap = std::map<uint32_t, ferry::policy::IdentityInfo>;

IdentityMap identities_of(const json& file) {
  IdentityMap out;
  for (const json& j : file.value("identities", json::array()))
    if (auto info = ferry::policy::IdentityInfo::from_json(j.value("info", json())); info && j.contains("identity"))
      out[j["identity"].get<uint32_t>()] = *info;
  return out;
}

std::string labels_text(const ferry::model::Labels& labels) {
  std::string out;
  for (const auto& [k, v] : labels) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

std::string join(const std::vector<std::string>& parts, const char* sep) {
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : sep) + p;
  return out;
}

// "pod x {pod=b}", "host (this node)", "world in ipBlock 10.0.0.0/8 except 10.1.0.0/16", ...
std::string describe_identity(uint32_t id, const IdentityMap& ids) {
  using Kind = ferry::policy::IdentityInfo::Kind;
  if (id == ferry::dataplane::kIdentityAny) return "any peer";
  auto it = ids.find(id);
  if (it == ids.end()) return "identity " + std::to_string(id) + " (unknown)";
  const auto& info = it->second;
  std::string out;
  switch (info.kind) {
    case Kind::Host: out = "host (this node)"; break;
    case Kind::RemoteNode: out = "remote nodes"; break;
    case Kind::World: out = "world"; break;
    case Kind::Pod: out = "pod " + info.ns + " {" + labels_text(info.labels) + "}"; break;
  }
  if (!info.ip_blocks.empty()) out += " in ipBlock " + join(info.ip_blocks, "; ");
  return out;
}

std::string proto_text(uint8_t proto) { return proto == 0 ? "any" : ebpf::protocol_name(proto); }

std::string ports_text(const ferry::dataplane::PolicyEntry& e) {
  if (e.proto == 0 || (e.port_first == 0 && e.port_last == 65535)) return "any";
  if (e.port_first == e.port_last) return std::to_string(e.port_first);
  return std::to_string(e.port_first) + "-" + std::to_string(e.port_last);
}

// The allow entries pinned in ferry_pol_v1, for checking policy.json against the kernel.
struct KernelPolicy {
  bool checked = false;
  std::string why_not;  // when not checked
  std::set<std::tuple<uint32_t, uint8_t, uint32_t, uint8_t, uint16_t, int>> keys;  // ep, dir, peer, proto, port, len
  // Every key of `e` is pinned (a port range is a few prefixes).
  bool has(uint32_t ep, ferry::dataplane::Direction dir, const ferry::dataplane::PolicyEntry& e) const {
    const auto d = static_cast<uint8_t>(dir);
    if (e.proto == 0) return keys.count({ep, d, e.peer, 0, 0, 0}) > 0;
    for (const auto& p : ferry::policy::port_range_prefixes(e.port_first, e.port_last))
      if (!keys.count({ep, d, e.peer, e.proto, p.port, p.len})) return false;
    return true;
  }
};

KernelPolicy read_kernel_policy(const Options& o, const json& file) {
  KernelPolicy k;
  if (file.value("datapath", "") != "ebpf") {
    k.why_not = file.value("datapath", "unknown") + " datapath (only eBPF maps are checked)";
    return k;
  }
  if (!file.value("enforce", true)) {
    k.why_not = "policy not enforced (--policy off)";
    return k;
  }
  const std::string root = bpffs_root_for(o, file);
  if (root.empty() || !ebpf::PinnedMaps::exists(root)) {
    k.why_not = "no ferry maps under " + (root.empty() ? std::string("?") : root);
    return k;
  }
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(root);
  if (maps.policy_fd() < 0) {
    k.why_not = std::string(FERRY_MAP_POLICY) + " is not pinned under " + root;
    return k;
  }
  for (const ebpf::PolicyMapEntry& e : maps.policy_entries())
    k.keys.insert({e.endpoint_id, e.direction, e.peer, e.proto, e.port_first, e.port_prefix_len});
  k.checked = true;
  return k;
}

ferry::dataplane::PolicyEntry entry_from_json(const json& j) {
  ferry::dataplane::PolicyEntry e;
  e.peer = j.value("peer", 0u);
  e.proto = j.value("proto", uint8_t{0});
  e.port_first = j.value("port_first", uint16_t{0});
  e.port_last = j.value("port_last", uint16_t{65535});
  return e;
}

// One direction of one endpoint: the entries with their peers described and, when checked,
// whether each is in the kernel. A direction that is not isolated is the (any, any) entry.
json direction_json(uint32_t ep, ferry::dataplane::Direction dir, const json& d, const IdentityMap& ids,
                    const KernelPolicy& kernel) {
  const bool isolated = d.value("isolated", false);
  std::vector<ferry::dataplane::PolicyEntry> entries;
  if (isolated)
    for (const json& e : d.value("entries", json::array())) entries.push_back(entry_from_json(e));
  else
    entries.push_back({});
  json out = {{"isolated", isolated}, {"entries", json::array()}};
  for (const auto& e : entries) {
    json j = {{"peer", e.peer},
              {"peer_description", describe_identity(e.peer, ids)},
              {"proto", e.proto},
              {"protocol", proto_text(e.proto)},
              {"port_first", e.port_first},
              {"port_last", e.port_last}};
    if (!isolated) j["implicit"] = true;  // not isolated: everything allowed
    j["in_kernel"] = kernel.checked ? json(kernel.has(ep, dir, e)) : json(nullptr);
    out["entries"].push_back(j);
  }
  return out;
}

int cmd_policy(const Options& o) {
  using ferry::dataplane::Direction;
  json file = read_policy_file(o);
  IdentityMap ids = identities_of(file);
  std::vector<const json*> mine;
  std::vector<std::string> pods;
  for (const json& ep : file["endpoints"]) {
    if (ep.value("pod", "") == o.pod) mine.push_back(&ep);
    if (!ep.value("pod", "").empty()) pods.push_back(ep["pod"]);
  }
  if (mine.empty())
    throw std::runtime_error("no endpoint of pod " + o.pod + " on node " + file.value("node", "?") +
                             (pods.empty() ? std::string(" (no pods here)") : " (pods here: " + join(pods, ", ") + ")"));
  KernelPolicy kernel = read_kernel_policy(o, file);
  json out = {{"pod", o.pod},
              {"node", file.value("node", "")},
              {"datapath", file.value("datapath", "")},
              {"enforce", file.value("enforce", true)},
              {"kernel_checked", kernel.checked},
              {"endpoints", json::array()}};
  if (!kernel.checked) out["kernel_not_checked"] = kernel.why_not;
  size_t missing = 0;
  for (const json* ep : mine) {
    const uint32_t id = (*ep)["endpoint_id"];
    json e = {{"endpoint_id", id},
              {"ips", (*ep)["ips"]},
              {"pod_known", ep->value("pod_known", true)},
              {"policies", (*ep)["policies"]},
              {"ingress", direction_json(id, Direction::Ingress, (*ep)["ingress"], ids, kernel)},
              {"egress", direction_json(id, Direction::Egress, (*ep)["egress"], ids, kernel)}};
    for (const char* d : {"ingress", "egress"})
      for (const json& x : e[d]["entries"]) missing += x["in_kernel"] == false;
    out["endpoints"].push_back(e);
  }
  out["missing_in_kernel"] = missing;
  if (o.json()) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "pod " << o.pod << " on node " << out["node"].get<std::string>() << " ("
            << out["datapath"].get<std::string>() << " datapath, policy "
            << (out["enforce"].get<bool>() ? "enforced" : "NOT enforced: --policy off") << ")\n";
  for (const json& e : out["endpoints"]) {
    std::vector<std::string> ips;
    for (const json& ip : e["ips"]) ips.push_back(ip);
    std::cout << "\nendpoint " << e["endpoint_id"].get<uint32_t>() << "  " << join(ips, ", ")
              << (e["pod_known"].get<bool>() ? "" : "  (no Pod object yet: not isolated)") << "\n";
    std::vector<std::string> pols;
    for (const json& p : e["policies"]) pols.push_back(p);
    std::cout << "  policies: " << (pols.empty() ? "none" : join(pols, ", ")) << "\n";
    for (const char* d : {"ingress", "egress"}) {
      const json& dir = e[d];
      std::cout << "  " << d << ": "
                << (dir["isolated"].get<bool>()
                        ? "isolated, " + std::to_string(dir["entries"].size()) + " allow entries"
                        : std::string("not isolated (everything allowed)"))
                << "\n";
    }
    Table t({"DIRECTION", "PEER", "IDENTITY", "PROTO", "PORTS", "KERNEL"});
    for (const char* d : {"ingress", "egress"})
      for (const json& x : e[d]["entries"])
        t.add({d, x["peer_description"], std::to_string(x["peer"].get<uint32_t>()), x["protocol"],
               ports_text(entry_from_json(x)),
               x["in_kernel"].is_null() ? "-" : (x["in_kernel"].get<bool>() ? "ok" : "MISSING")});
    std::cout << "\n";
    t.print(std::cout);
  }
  if (!kernel.checked) std::cout << "\nkernel: not checked: " << kernel.why_not << "\n";
  else if (missing) std::cout << "\nkernel: " << missing << " entries MISSING from " << FERRY_MAP_POLICY << "\n";
  else std::cout << "\nkernel: every entry is in " << FERRY_MAP_POLICY << "\n";
  return 0;
}

int cmd_identities(const Options& o) {
  json file = read_policy_file(o);
  IdentityMap ids = identities_of(file);
  std::map<uint32_t, std::vector<std::string>> prefixes;
  for (const json& e : file.value("ipcache", json::array())) prefixes[e["identity"].get<uint32_t>()].push_back(e["prefix"]);
  if (o.json()) {
    json out = json::array();
    for (const auto& [id, info] : ids) {
      json ports = json::array();
      for (const auto& p : info.named_ports)
        ports.push_back({{"name", p.name}, {"protocol", proto_text(p.proto)}, {"port", p.port}});
      out.push_back({{"identity", id},
                     {"kind", ferry::policy::kind_name(info.kind)},
                     {"namespace", info.ns},
                     {"labels", info.labels},
                     {"namespace_labels", info.ns_labels},
                     {"named_ports", ports},
                     {"ip_blocks", info.ip_blocks},
                     {"prefixes", prefixes[id]},
                     {"prefix_count", prefixes[id].size()}});
    }
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  Table t({"IDENTITY", "KIND", "NAMESPACE", "LABELS", "IPBLOCKS", "PREFIXES"});
  for (const auto& [id, info] : ids)
    t.add({std::to_string(id), std::string(ferry::policy::kind_name(info.kind)), info.ns, labels_text(info.labels),
           join(info.ip_blocks, "; "), std::to_string(prefixes[id].size())});
  t.print(std::cout);
  return 0;
}

// ---- services (the agent's <state-dir>/services.json) ------------------------------------

// Frontends pinned in ferry_svc_v1, for checking services.json against the kernel.
struct KernelServices {
  bool checked = false;
  std::string why_not;  // when not checked
  int fd = -1;
  ~KernelServices() {
    if (fd >= 0) ::close(fd);
  }
  // The frontend is in the map under its own service id.
  bool has(const json& frontend) const {
    auto ip = ferry::net::Ip::parse(frontend.value("address", ""));
    if (!ip) return false;
    ferry_service_key key{};
    std::memcpy(key.addr, ip->bytes.data(), static_cast<size_t>(ip->size()));
    key.port = htons(frontend.value("port", uint16_t{0}));
    key.proto = ebpf_protocol(frontend.value("protocol", ""));
    key.family = static_cast<__u8>(ip->family);
    ferry_service_value value{};
    return bpf_map_lookup_elem(fd, &key, &value) == 0 && value.service_id == frontend.value("id", 0u);
  }
  static __u8 ebpf_protocol(const std::string& name) {
    return name == "TCP" ? IPPROTO_TCP : name == "UDP" ? IPPROTO_UDP : name == "SCTP" ? IPPROTO_SCTP : 0;
  }
};

void read_kernel_services(const Options& o, const json& file, KernelServices& k) {
  if (file.value("datapath", "") != "ebpf") {
    k.why_not = file.value("datapath", "unknown") + " datapath (only eBPF maps are checked)";
    return;
  }
  const std::string root = bpffs_root_for(o, file);
  const std::string path = root + "/" + FERRY_MAP_SERVICES;
  if (root.empty() || ::access(path.c_str(), F_OK) != 0) {
    k.why_not = std::string(FERRY_MAP_SERVICES) + " is not pinned under " + (root.empty() ? std::string("?") : root);
    return;
  }
  k.fd = bpf_obj_get(path.c_str());
  if (k.fd < 0) {
    k.why_not = "cannot open " + path + ": " + std::strerror(errno);
    return;
  }
  k.checked = true;
}

// "10.0.0.1:80", "[fd00::1]:80"
std::string host_port(const json& j) {
  const std::string addr = j.value("address", "");
  const std::string port = std::to_string(j.value("port", 0));
  return addr.find(':') != std::string::npos ? "[" + addr + "]:" + port : addr + ":" + port;
}

int cmd_services(const Options& o) {
  json file = read_state_file(o, "services.json", "frontends");
  KernelServices kernel;
  read_kernel_services(o, file, kernel);
  json frontends = json::array();
  size_t missing = 0;
  for (json f : file["frontends"]) {
    f["in_kernel"] = kernel.checked ? json(kernel.has(f)) : json(nullptr);
    missing += f["in_kernel"] == false;
    frontends.push_back(std::move(f));
  }
  json out = {{"node", file.value("node", "")},
              {"datapath", file.value("datapath", "")},
              {"enabled", file.value("enabled", true)},
              {"lb_algorithm", file.value("lb_algorithm", "")},
              {"nodeport_addresses", file.value("nodeport_addresses", json::array())},
              {"problems", file.value("problems", json::array())},
              {"kernel_checked", kernel.checked},
              {"frontends", frontends},
              {"missing_in_kernel", missing}};
  if (!kernel.checked) out["kernel_not_checked"] = kernel.why_not;
  if (o.json()) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  std::cout << "node " << out["node"].get<std::string>() << " (" << out["datapath"].get<std::string>()
            << " datapath, services " << (out["enabled"].get<bool>() ? "on" : "OFF: nothing translated")
            << ", lb-algorithm " << out["lb_algorithm"].get<std::string>() << ")\n\n";
  Table t({"ID", "FRONTEND", "TYPE", "SERVICE", "BACKENDS", "KERNEL"});
  for (const json& f : frontends) {
    std::string service = f.value("service", "");
    if (!f.value("port_name", "").empty()) service += ":" + f.value("port_name", "");
    std::vector<std::string> backends;
    for (const json& b : f["backends"]) backends.push_back(host_port(b) + " (" + b.value("state", "") + ")");
    // Not chosen for new connections, but established flows to them go on.
    for (const json& b : f["other_backends"])
      backends.push_back(host_port(b) + " (" + b.value("state", "") + ", existing flows only)");
    if (f["backends"].empty())
      backends.insert(backends.begin(), f.value("when_empty", "") == "drop" ? "none: new connections dropped"
                                                                             : "none: new connections rejected");
    std::string type = f.value("kind", "");
    if (f.value("traffic_policy", "") == "Local") type += " (Local)";
    t.add({std::to_string(f.value("id", 0u)), host_port(f) + "/" + f.value("protocol", ""), type, service,
           backends.front(), f["in_kernel"].is_null() ? "-" : (f["in_kernel"].get<bool>() ? "ok" : "MISSING")});
    for (size_t i = 1; i < backends.size(); ++i) t.add({"", "", "", "", backends[i], ""});
  }
  t.print(std::cout);
  for (const json& p : out["problems"]) std::cout << "problem: " << p.get<std::string>() << "\n";
  if (!kernel.checked) std::cout << "\nkernel: not checked: " << kernel.why_not << "\n";
  else if (missing) std::cout << "\nkernel: " << missing << " frontends MISSING from " << FERRY_MAP_SERVICES << "\n";
  else std::cout << "\nkernel: every frontend is in " << FERRY_MAP_SERVICES << "\n";
  return 0;
}

// ---- policy-map, ipcache (the pinned policy maps, no agent needed) -------------------------

std::string identity_name(uint32_t identity) {
  switch (identity) {
    case FERRY_IDENTITY_ANY: return "any";
    case FERRY_IDENTITY_HOST: return "host";
    case FERRY_IDENTITY_REMOTE_NODE: return "remote-node";
    case FERRY_IDENTITY_WORLD: return "world";
    default: return std::to_string(identity);
  }
}

// ferry_pol_v1 as allow entries (one row per map key: a port range shows as its prefixes).
int cmd_policy_map(const Options& o) {
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(resolve_root(o));
  const ebpf::PolicyState state = maps.policy_state();
  std::vector<ebpf::PolicyMapEntry> entries;
  for (const auto& e : maps.policy_entries())
    if (o.endpoint == 0 || e.endpoint_id == o.endpoint) entries.push_back(e);
  auto ports = [](const ebpf::PolicyMapEntry& e) { return ports_text({e.peer, e.proto, e.port_first, e.port_last}); };
  if (o.json()) {
    json rows = json::array();
    for (const auto& e : entries)
      rows.push_back({{"endpoint_id", e.endpoint_id},
                      {"direction", ebpf::direction_name(e.direction)},
                      {"peer", e.peer},
                      {"peer_name", identity_name(e.peer)},
                      {"proto", e.proto},
                      {"protocol", proto_text(e.proto)},
                      {"port_first", e.port_first},
                      {"port_last", e.port_last},
                      {"port_prefix_len", e.port_prefix_len}});
    std::cout << json{{"enforced", state.enforced}, {"revision", state.revision}, {"entries", rows}}.dump(2) << "\n";
    return 0;
  }
  std::cout << "policy " << (state.enforced ? "enforced" : "off") << ", revision " << state.revision << "\n\n";
  Table t({"ENDPOINT", "DIRECTION", "PEER", "PROTO", "PORTS", "KEY"});
  for (const auto& e : entries)
    t.add({std::to_string(e.endpoint_id), ebpf::direction_name(e.direction), identity_name(e.peer), proto_text(e.proto),
           ports(e), e.proto == 0 ? "-" : std::to_string(e.port_first) + "/" + std::to_string(e.port_prefix_len)});
  t.print(std::cout);
  return 0;
}

// ferry_ipc_v1: prefix -> security identity.
int cmd_ipcache(const Options& o) {
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(resolve_root(o));
  const auto entries = maps.ipcache();
  if (o.json()) {
    json out = json::array();
    for (const auto& e : entries)
      out.push_back({{"prefix", e.prefix.str()}, {"identity", e.identity}, {"identity_name", identity_name(e.identity)}});
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  Table t({"PREFIX", "IDENTITY"});
  for (const auto& e : entries) t.add({e.prefix.str(), identity_name(e.identity)});
  t.print(std::cout);
  return 0;
}

// ---- monitor -----------------------------------------------------------------------------

json event_json(const ebpf::DropEvent& e) {
  return {{"time", e.wall_time},       {"ts_ns", e.ts_ns},        {"reason", e.reason_name},
          {"reason_code", e.reason},   {"hook", ebpf::hook_name(e.hook)}, {"family", family_name(e.family)},
          {"proto", ebpf::protocol_name(e.proto)}, {"src", e.src.str()}, {"sport", e.sport},
          {"dst", e.dst.str()},        {"dport", e.dport},        {"ifindex", e.ifindex},
          {"endpoint_id", e.endpoint_id}, {"len", e.pkt_len},     {"source", e.source},
          {"direction", ebpf::direction_name(e.direction)}};
}

std::string event_line(const ebpf::DropEvent& e) {
  char ifname[IF_NAMESIZE] = {};
  std::string iface = std::to_string(e.ifindex);
  if (e.ifindex && ::if_indextoname(e.ifindex, ifname)) iface += "(" + std::string(ifname) + ")";
  std::ostringstream s;
  // A policy drop says whose policy denied it: "drop policy(ingress) ... ep 12".
  std::string reason = e.reason_name;
  if (e.direction) reason += "(" + ebpf::direction_name(e.direction) + ")";
  s << wall_clock(e.wall_time) << " drop " << reason << " " << ebpf::hook_name(e.hook) << " "
    << ebpf::protocol_name(e.proto) << " " << ebpf::endpoint_str(e.src, e.sport, e.proto) << " -> "
    << ebpf::endpoint_str(e.dst, e.dport, e.proto) << " len " << e.pkt_len << " if " << iface << " ep "
    << e.endpoint_id << " at " << e.source;
  return s.str();
}

int cmd_monitor(const Options& o) {
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(resolve_root(o));
  ebpf::DropEventReader reader(maps);
  if (!o.json()) std::cerr << "listening for drop events on " << maps.root() << " (Ctrl-C to stop)\n";
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(o.timeout);
  int seen = 0;
  while (o.count <= 0 || seen < o.count) {
    int wait_ms = 250;
    if (o.timeout > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      wait_ms = static_cast<int>(std::min<int64_t>(left.count(), 250));
    }
    reader.poll(wait_ms, [&](const ebpf::DropEvent& e) {
      if (o.count > 0 && seen >= o.count) return;
      ++seen;
      if (o.json())
        std::cout << event_json(e).dump() << "\n";
      else
        std::cout << event_line(e) << "\n";
      std::cout.flush();
    });
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"ferryctl: inspect ferry's eBPF datapath on this node (reads the pinned maps)"};
  app.require_subcommand(1);
  app.fallthrough();  // global options also after the command: `ferryctl endpoints -o json`
  auto* root_opt = app.add_option("--bpffs-root", o.bpffs_root, "bpffs directory of the node's pins");
  app.add_option("--node", o.node, "node name: same as --bpffs-root /sys/fs/bpf/ferry/NAME")->excludes(root_opt);
  app.add_option("-o,--output", o.output, "table or json")->check(CLI::IsMember({"table", "json"}));
  app.add_option("--state-dir", o.state_dir, "policy, identities, services: the agent's state directory (default /run/ferry/<node>)");

  auto* status = app.add_subcommand("status", "pins, program attachments, map fill and the agent's health");
  status->add_option("--agent", o.agent, "agent HTTP address");
  auto* endpoints = app.add_subcommand("endpoints", "local endpoints in the datapath");
  auto* tunnels = app.add_subcommand("tunnels", "overlay: remote pod CIDR -> node IP, VTEP MAC");
  auto* ct = app.add_subcommand("ct", "conntrack");
  ct->require_subcommand(1);
  auto* ct_list = ct->add_subcommand("list", "list conntrack entries");
  auto* ct_flush = ct->add_subcommand("flush", "delete every conntrack entry");
  auto* counters = app.add_subcommand("counters", "datapath counters (drops marked)");
  auto* monitor = app.add_subcommand("monitor", "print drop events as they happen");
  monitor->add_option("--count", o.count, "exit after N events");
  monitor->add_option("--timeout", o.timeout, "exit after SECONDS");
  auto* policy_map = app.add_subcommand("policy-map", "NetworkPolicy allow entries in the datapath (ferry_pol_v1)");
  policy_map->add_option("--endpoint", o.endpoint, "only this endpoint id");
  auto* ipcache = app.add_subcommand("ipcache", "NetworkPolicy ipcache in the datapath: prefix -> identity (ferry_ipc_v1)");
  auto* policy = app.add_subcommand("policy", "a pod's compiled NetworkPolicy (agent's policy.json), checked against "
                                              "the kernel in eBPF mode");
  policy->add_option("pod", o.pod, "namespace/name")->required();
  auto* identities = app.add_subcommand("identities", "security identities and how many prefixes map to each");
  auto* services = app.add_subcommand("services", "Service frontends -> backends with their state (agent's "
                                                  "services.json), checked against the kernel in eBPF mode");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    if (status->parsed()) return cmd_status(o);
    if (endpoints->parsed()) return cmd_endpoints(o);
    if (tunnels->parsed()) return cmd_tunnels(o);
    if (ct_list->parsed()) return cmd_ct_list(o);
    if (ct_flush->parsed()) return cmd_ct_flush(o);
    if (counters->parsed()) return cmd_counters(o);
    if (monitor->parsed()) return cmd_monitor(o);
    if (policy_map->parsed()) return cmd_policy_map(o);
    if (ipcache->parsed()) return cmd_ipcache(o);
    if (policy->parsed()) return cmd_policy(o);
    if (identities->parsed()) return cmd_identities(o);
    if (services->parsed()) return cmd_services(o);
  } catch (const std::exception& e) {
    std::cerr << "ferryctl: " << e.what() << "\n";
    return 1;
  }
  return 1;
}
