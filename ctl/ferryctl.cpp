// ferryctl — inspect a node's eBPF datapath from its pinned maps: endpoints, overlay tunnels,
// conntrack, counters, live drop events, and the agent's health. Reads bpffs directly, so it works while
// the agent is down. Run it in the node's network namespace (nsenter --net=...) to see
// interface names and tc attachments; `ip netns exec` hides bpffs (it remounts /sys).
#include <dirent.h>
#include <httplib.h>
#include <net/if.h>
#include <time.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "agent/ebpf/ebpf.h"
#include "ctl/table.h"

namespace ebpf = ferry::ebpf;
using json = nlohmann::json;
using ferry::ctl::Table;

namespace {

struct Options {
  std::string bpffs_root;
  std::string node;
  std::string output = "table";
  std::string agent = "http://127.0.0.1:9400";
  int count = 0;          // monitor: stop after N events (0 = no limit)
  double timeout = 0;     // monitor: stop after this many seconds (0 = no limit)
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

// ---- monitor -----------------------------------------------------------------------------

json event_json(const ebpf::DropEvent& e) {
  return {{"time", e.wall_time},       {"ts_ns", e.ts_ns},        {"reason", e.reason_name},
          {"reason_code", e.reason},   {"hook", ebpf::hook_name(e.hook)}, {"family", family_name(e.family)},
          {"proto", ebpf::protocol_name(e.proto)}, {"src", e.src.str()}, {"sport", e.sport},
          {"dst", e.dst.str()},        {"dport", e.dport},        {"ifindex", e.ifindex},
          {"endpoint_id", e.endpoint_id}, {"len", e.pkt_len},     {"source", e.source}};
}

std::string event_line(const ebpf::DropEvent& e) {
  char ifname[IF_NAMESIZE] = {};
  std::string iface = std::to_string(e.ifindex);
  if (e.ifindex && ::if_indextoname(e.ifindex, ifname)) iface += "(" + std::string(ifname) + ")";
  std::ostringstream s;
  s << wall_clock(e.wall_time) << " drop " << e.reason_name << " " << ebpf::hook_name(e.hook) << " "
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
  } catch (const std::exception& e) {
    std::cerr << "ferryctl: " << e.what() << "\n";
    return 1;
  }
  return 1;
}
