// policy_conn_bench — per-connection cost of NetworkPolicy vs the number of rules that do not
// match the flow (issue 5): new-connection time and bulk TCP throughput from a client pod to a
// server pod whose ingress policy holds N non-matching entries plus the one that allows the
// client, for every N, eBPF vs iptables, interleaved in one run. Root.
//
//   policy_conn_bench [--rules 0,100,1000,10000] [--rounds 5] [--connects 1000]
//                     [--seconds 1] [--modes ebpf,iptables] [--cpu last|N|none] [--json FILE]
//
// One node per mode (netns fypc<pid>e-node / fypc<pid>i-node, each its own backend) with a
// client pod and one server pod per N, so every policy is installed once and the rounds can
// alternate between N and modes. Server N's ingress is isolated and allows: N entries
// (100 CIDR identities 172.20.<k>.0/24 x N/100 TCP ports 20000, 20002, ...: nobody's traffic),
// then the client's identity on TCP 80 and 5001. The client's identity sorts after the others,
// so in iptables mode its rule is the last of the chain; eBPF looks entries up by key.
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "bench_support.h"

namespace {

using namespace ferry;
using bench::BenchNode;
using dataplane::EndpointPolicy;
using dataplane::Identity;
using dataplane::PolicySet;

constexpr uint16_t kAllowedPort = 80;
constexpr uint16_t kDeniedPort = 81;
constexpr uint16_t kSinkPort = 5001;
constexpr int kCidrIdentities = 100;
constexpr int kChunk = 50;  // connects in a row to one server before the next (N, mode)
constexpr Identity kServerIdentity = dataplane::kFirstAllocatedIdentity + 500;
constexpr Identity kClientIdentity = dataplane::kFirstAllocatedIdentity + 1000;

struct Options {
  std::vector<int> rules = {0, 100, 1000, 10000};
  int rounds = 5;
  int connects = 1000;
  double seconds = 1;
  std::vector<std::string> modes = {"ebpf", "iptables"};
  std::string json;
  std::string cpu = "last";
};

// Server N's ingress: N entries that never match, then the client's.
EndpointPolicy server_policy(int n) {
  EndpointPolicy pol;
  pol.ingress_isolated = true;
  for (int i = 0; i < n; ++i) {
    const auto port = static_cast<uint16_t>(20000 + 2 * (i / kCidrIdentities));  // never adjacent: no merging
    pol.ingress.push_back({dataplane::kFirstAllocatedIdentity + static_cast<Identity>(i % kCidrIdentities),
                           IPPROTO_TCP, port, port});
  }
  pol.ingress.push_back({kClientIdentity, IPPROTO_TCP, kAllowedPort, kAllowedPort});
  pol.ingress.push_back({kClientIdentity, IPPROTO_TCP, kSinkPort, kSinkPort});
  std::sort(pol.ingress.begin(), pol.ingress.end());
  return pol;
}

// One simulated node: client + a server per N, servers listening, policy installed.
struct Setup {
  std::unique_ptr<BenchNode> node;
  const bench::BenchPod* client = nullptr;
  std::map<int, const bench::BenchPod*> servers;  // by N
  std::vector<std::unique_ptr<bench::TcpServer>> listeners;
  size_t policy_entries = 0;
  double policy_apply_ms = 0;
};

std::unique_ptr<Setup> build(const std::string& mode, int subnet, const Options& o) {
  auto s = std::make_unique<Setup>();
  std::fprintf(stderr, "policy_conn_bench: %s: node, client and %zu server pods\n", mode.c_str(), o.rules.size());
  s->node = std::make_unique<BenchNode>(bench::NodeOptions{mode, bench::run_tag("fypc", mode), subnet});
  s->client = &s->node->add_pod("client");
  PolicySet set;
  auto prefix = [](const std::string& p) { return *net::Prefix::parse(p); };
  set.ipcache = {{prefix("0.0.0.0/0"), dataplane::kIdentityWorld}, {prefix("::/0"), dataplane::kIdentityWorld}};
  for (int k = 0; k < kCidrIdentities; ++k)
    set.ipcache.push_back({prefix("172.20." + std::to_string(k) + ".0/24"),
                           dataplane::kFirstAllocatedIdentity + static_cast<Identity>(k)});
  set.ipcache.push_back({{s->client->ip, 32}, kClientIdentity});
  for (int n : o.rules) {
    const bench::BenchPod& server = s->node->add_pod("s" + std::to_string(n));
    s->servers[n] = &server;
    set.ipcache.push_back({{server.ip, 32}, kServerIdentity});
    set.endpoints[server.endpoint.endpoint_id] = server_policy(n);
    s->policy_entries += set.endpoints[server.endpoint.endpoint_id].ingress.size();
    for (uint16_t port : {kAllowedPort, kDeniedPort})
      s->listeners.push_back(std::make_unique<bench::TcpServer>(server.netns, port, bench::ServerKind::kAcceptClose));
    s->listeners.push_back(std::make_unique<bench::TcpServer>(server.netns, kSinkPort, bench::ServerKind::kSink));
  }
  std::sort(set.ipcache.begin(), set.ipcache.end(), [](const auto& a, const auto& b) {
    return std::tie(a.prefix.ip.family, a.prefix.ip.bytes, a.prefix.len) <
           std::tie(b.prefix.ip.family, b.prefix.ip.bytes, b.prefix.len);
  });
  const auto t0 = std::chrono::steady_clock::now();
  s->node->program_policy(set);
  s->policy_apply_ms = bench::elapsed_ms(t0);
  std::fprintf(stderr, "policy_conn_bench: %s: %zu ingress entries on %zu servers applied in %.0f ms\n", mode.c_str(),
               s->policy_entries, s->servers.size(), s->policy_apply_ms);
  // The bench measures an enforcing path or nothing: the allowed port must connect, the other
  // port (a listening server too) must not.
  for (const auto& [n, server] : s->servers) {
    if (!bench::can_connect(s->client->netns, server->ip, kAllowedPort, std::chrono::seconds(3)))
      throw bench::BenchError(mode + ": client cannot reach server s" + std::to_string(n) + " on the allowed port");
    if (bench::can_connect(s->client->netns, server->ip, kDeniedPort, std::chrono::milliseconds(300)))
      throw bench::BenchError(mode + ": policy not enforced: client reached s" + std::to_string(n) + ":" +
                              std::to_string(kDeniedPort));
  }
  return s;
}

std::string key(const std::string& mode, int n) { return mode + "@" + std::to_string(n); }

Options parse(int argc, char** argv) {
  Options o;
  bench::parse_options(
      argc, argv,
      [&](const std::string& a, const std::function<std::string()>& value) {
        if (a == "--rules") o.rules = bench::int_list(value());
        else if (a == "--rounds") o.rounds = std::stoi(value());
        else if (a == "--connects") o.connects = std::stoi(value());
        else if (a == "--seconds") o.seconds = std::stod(value());
        else if (a == "--modes") o.modes = bench::split_list(value());
        else if (a == "--json") o.json = value();
        else if (a == "--cpu") o.cpu = value();
        else return false;
        return true;
      },
      "usage: policy_conn_bench [--rules 0,100,1000,10000] [--rounds N] [--connects N] [--seconds S] "
      "[--modes ebpf,iptables] [--cpu last|N|none] [--json FILE]");
  if (o.rules.empty() || o.rounds < 1 || o.connects < 1 || o.seconds <= 0 || o.modes.empty())
    throw std::runtime_error("--rules, --rounds, --connects, --seconds and --modes need positive values");
  return o;
}

int run(const Options& o) {
  const int swept = bench::sweep_leftovers("fypc");
  if (swept) std::fprintf(stderr, "policy_conn_bench: removed %d leftovers of killed runs\n", swept);
  const int cpu = bench::pin_to_cpu(o.cpu);
  const std::string load_start = bench::load_average();
  std::map<std::string, std::unique_ptr<Setup>> setups;
  int subnet = 71;
  for (const std::string& mode : o.modes) setups[mode] = build(mode, subnet++, o);

  std::map<std::string, bench::ConnectSeries> connects;  // by key(mode, N)
  std::map<std::string, std::vector<double>> gbits;       // by key(mode, N), one per round
  std::fprintf(stderr, "policy_conn_bench: warm-up (not counted)\n");
  for (auto& [mode, s] : setups)
    for (const auto& [n, server] : s->servers) {
      bench::connect_times_us(s->client->netns, server->ip, kAllowedPort, std::max(50, o.connects / 10));
      bench::bulk_gbits(s->client->netns, server->ip, kSinkPort, 0.2);
    }
  for (int r = 0; r < o.rounds; ++r) {
    // Rotate the order of N and alternate the modes, so drift does not favour one column.
    std::vector<int> ns = o.rules;
    std::rotate(ns.begin(), ns.begin() + r % ns.size(), ns.end());
    std::vector<std::string> modes = o.modes;
    if (r % 2) std::reverse(modes.begin(), modes.end());
    std::vector<bench::ConnectTarget> order;
    for (int n : ns)
      for (const std::string& mode : modes)
        order.push_back({key(mode, n), setups[mode]->client->netns, setups[mode]->servers[n]->ip, kAllowedPort});
    bench::connect_round(order, o.connects, kChunk, connects);
    for (int n : ns)
      for (const std::string& mode : modes)
        gbits[key(mode, n)].push_back(
            bench::bulk_gbits(setups[mode]->client->netns, setups[mode]->servers[n]->ip, kSinkPort, o.seconds));
    std::string line;
    for (const auto& [k, v] : connects)
      line += " " + k + " " + std::to_string(int(v.median_us.back())) + "us/" +
              std::to_string(gbits[k].back()).substr(0, 4) + "G";
    std::fprintf(stderr, "policy_conn_bench: round %d/%d:%s\n", r + 1, o.rounds, line.c_str());
  }

  // Report: per mode and N the median over rounds of each round's median, min-max of those.
  nlohmann::json out = {{"rules", o.rules}, {"rounds", o.rounds}, {"connects_per_round", o.connects},
                        {"bulk_seconds", o.seconds}, {"cpu", cpu}, {"load_average_start", load_start},
                        {"load_average_end", bench::load_average()}};
  std::printf("New TCP connections (connect + RST close, %d per round in chunks of %d cycling over the servers) and one bulk TCP stream (%.1f s) from a "
              "client pod to a server pod whose ingress policy has N non-matching entries + 1 allowing the client; "
              "%d interleaved rounds; %s; load average %s at start, %s at end\n\n",
              o.connects, kChunk, o.seconds, o.rounds,
              cpu < 0 ? "unpinned" : ("everything on CPU " + std::to_string(cpu)).c_str(), load_start.c_str(),
              bench::load_average().c_str());
  std::printf("%-9s %7s  %22s  %18s  %22s\n", "mode", "N", "connect us med (min-max)", "connects/s median",
              "Gbit/s med (min-max)");
  for (const std::string& mode : o.modes)
    for (int n : o.rules) {
      const bench::ConnectSeries& v = connects[key(mode, n)];
      const std::vector<double>& tp = gbits[key(mode, n)];
      const bench::Spread c = bench::spread(v.median_us), g = bench::spread(tp);
      const double rate = bench::median(v.rate);
      std::printf("%-9s %7d  %6.1f (%6.1f-%6.1f)  %18.0f  %6.2f (%5.2f-%5.2f)\n", mode.c_str(), n, c.median, c.min,
                  c.max, rate, g.median, g.min, g.max);
      out["results"][mode][std::to_string(n)] = {{"connect_us_median", c.median}, {"connect_us_min", c.min},
                                                 {"connect_us_max", c.max}, {"connects_per_s_median", rate},
                                                 {"gbit_s_median", g.median}, {"gbit_s_min", g.min},
                                                 {"gbit_s_max", g.max}, {"connect_us_rounds", v.median_us},
                                                 {"gbit_s_rounds", tp}};
    }
  // Ratios of the largest N to the smallest.
  const int lo = *std::min_element(o.rules.begin(), o.rules.end());
  const int hi = *std::max_element(o.rules.begin(), o.rules.end());
  std::printf("\nratios %s@%d / %s@%d (connect time: >1 is slower; throughput: <1 is slower)\n", "mode", hi, "mode", lo);
  for (const std::string& mode : o.modes) {
    const bench::Ratio c = bench::ratio(connects[key(mode, hi)].median_us, connects[key(mode, lo)].median_us);
    const bench::Ratio g = bench::ratio(gbits[key(mode, hi)], gbits[key(mode, lo)]);
    std::printf("  %-9s connect time %.3f (per round %.3f, %.3f-%.3f)   throughput %.3f (per round %.3f, %.3f-%.3f)\n",
                mode.c_str(), c.of_medians, c.per_round.median, c.per_round.min, c.per_round.max, g.of_medians,
                g.per_round.median, g.per_round.min, g.per_round.max);
    out["ratios"][mode] = {{"connect_time", c.of_medians}, {"connect_time_per_round", c.rounds},
                           {"throughput", g.of_medians}, {"throughput_per_round", g.rounds}};
  }
  if (setups.count("ebpf")) {
    const double c = out["ratios"]["ebpf"]["connect_time"];
    const double g = out["ratios"]["ebpf"]["throughput"];
    const bool met = c <= 1.05 && g >= 0.95;
    std::printf("\ngoal: eBPF at %d rules within 5%% of eBPF at %d: connect time %+.1f%%, throughput %+.1f%%: %s\n",
                hi, lo, (c - 1) * 100, (g - 1) * 100, met ? "MET" : "NOT MET (reported, not failed)");
    out["goal_met"] = met;
  }
  for (auto& [mode, s] : setups) {
    out["setup"][mode] = {{"policy_entries", s->policy_entries}, {"policy_apply_ms", s->policy_apply_ms}};
    if (mode == "ebpf") {  // shows which path carried the traffic
      for (const dataplane::Counter& c : s->node->stats().counters)
        if (c.name == "redirect_local" || c.name == "drop_policy" || c.name == "to_stack")
          out["setup"][mode]["counters"][c.name] = c.packets;
      std::printf("ebpf datapath counters: %s\n", out["setup"][mode]["counters"].dump().c_str());
    }
  }
  if (!o.json.empty()) std::ofstream(o.json) << out.dump(2) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return ferry::bench::bench_main("policy_conn_bench", [&] { return run(parse(argc, argv)); });
}
