// service_bench — Services at scale (issue 6), both datapath modes in one run. Root.
//
//   service_bench [--services 1,1000,10000] [--rounds 5] [--connects 1000] [--modes ebpf,iptables]
//                 [--cpu last|N|none] [--program-only] [--json FILE]
//
// Per mode and per Service count S, a node (netns fysb<pid><e|i><S>-node, bpffs root
// /sys/fs/bpf/ferry/fysb<pid>e<S>) with a client pod and 3 server pods, and S ClusterIP
// Services (TCP port 80, 3 endpoints each on port 8080) programmed through
// Dataplane::program_services. The target Service is the last one: highest ServiceId and
// ClusterIP, installed last; its endpoints are the 3 server pods, the others' are addresses
// nobody uses (10.97.0.0/16).
//  1. Programming time on the largest S: from scratch, the same set again (must write nothing),
//     one endpoint change (one backend of a middle Service replaced). Wall time + kernel writes.
//  2. New-connection time to the target's ClusterIP for every S, interleaved like
//     policy_conn_bench (chunks of 50 connects cycling over every node), ratios largest S /
//     smallest S per mode (left out with --program-only).
// Goals: eBPF from scratch < 500 ms, one change < 5 ms; eBPF at the largest S within 5% of the
// smallest.
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
using dataplane::ServiceSet;

constexpr uint16_t kServicePort = 80;
constexpr uint16_t kBackendPort = 8080;
constexpr int kBackendsPerService = 3;
constexpr int kChunk = 50;

struct Options {
  std::vector<int> services = {1, 1000, 10000};
  int rounds = 5;
  int connects = 1000;
  std::vector<std::string> modes = {"ebpf", "iptables"};
  std::string cpu = "last";
  std::string json;
  bool connect = true;  // false: programming times only
};

net::Ip cluster_ip(int i) { return bench::ipv4_plus("10.96.0.10", static_cast<uint32_t>(i)); }

dataplane::ServiceBackend backend(const net::Ip& ip, bool local) {
  dataplane::ServiceBackend b;
  b.address = ip;
  b.port = kBackendPort;
  b.proto = IPPROTO_TCP;
  b.node = local ? "bench-node" : "elsewhere";
  b.local = local;
  return b;
}

// `count` Services; the last one's endpoints are `target_backends`.
ServiceSet make_services(int count, const std::vector<net::Ip>& target_backends) {
  ServiceSet set;
  for (int i = 0; i < count; ++i) {
    const bool target = i == count - 1;
    dataplane::ServiceFrontend f;
    f.address = cluster_ip(i);
    f.port = kServicePort;
    f.proto = IPPROTO_TCP;
    f.service = "bench/svc-" + std::to_string(i);
    for (int k = 0; k < kBackendsPerService; ++k) {
      const auto id = static_cast<dataplane::BackendId>(i * kBackendsPerService + k + 1);
      set.backends[id] = target ? backend(target_backends.at(static_cast<size_t>(k)), true)
                                : backend(bench::ipv4_plus("10.97.0.0", id), false);
      f.backends.push_back(id);
    }
    std::sort(f.backends.begin(), f.backends.end(), [&](auto a, auto b) {
      return set.backends[a].address.bytes < set.backends[b].address.bytes;
    });
    set.frontends[static_cast<dataplane::ServiceId>(i + 1)] = f;
  }
  return set;
}

struct Step {
  std::string name;
  double ms = 0;
  uint64_t writes = 0;
};

Step timed(BenchNode& node, const std::string& name, const ServiceSet& set) {
  const uint64_t before = node.stats().kernel_writes;
  const auto t0 = std::chrono::steady_clock::now();
  node.program_services(set);
  Step s{name, bench::elapsed_ms(t0), node.stats().kernel_writes - before};
  std::printf("  %-9s %-44s %10.1f ms  %7llu kernel writes\n", node.mode().c_str(), name.c_str(), s.ms,
              static_cast<unsigned long long>(s.writes));
  std::fflush(stdout);
  bench::throw_if_interrupted();
  return s;
}

// One node: client + 3 servers, `count` Services installed.
struct Setup {
  std::unique_ptr<BenchNode> node;
  const bench::BenchPod* client = nullptr;
  std::vector<std::unique_ptr<bench::TcpServer>> listeners;
  std::vector<net::Ip> server_ips;
};

std::unique_ptr<Setup> build(const std::string& mode, int count, int subnet) {
  auto s = std::make_unique<Setup>();
  std::fprintf(stderr, "service_bench: %s: node with %d Services\n", mode.c_str(), count);
  s->node = std::make_unique<BenchNode>(
      bench::NodeOptions{mode, bench::run_tag("fysb", mode) + std::to_string(count), subnet});
  s->client = &s->node->add_pod("client");
  for (int k = 0; k < kBackendsPerService; ++k) {
    const bench::BenchPod& server = s->node->add_pod("s" + std::to_string(k));
    s->server_ips.push_back(server.ip);
    s->listeners.push_back(std::make_unique<bench::TcpServer>(server.netns, kBackendPort, bench::ServerKind::kAcceptClose));
  }
  return s;
}

std::vector<Step> program_steps(Setup& s, int count) {
  ServiceSet set = make_services(count, s.server_ips);
  std::vector<Step> steps;
  steps.push_back(timed(*s.node, "from scratch", set));
  steps.push_back(timed(*s.node, "same set again", set));
  // One endpoint change, 11 times (a noisy machine: the median is the figure): each time another
  // middle Service's second backend is replaced by a new one.
  std::vector<Step> changes;
  for (int i = 0; i < 11; ++i) {
    const auto id = static_cast<dataplane::ServiceId>((count / 2 + i) % count + 1);
    dataplane::ServiceFrontend& f = set.frontends.at(id);
    const dataplane::BackendId old_id = f.backends[1];
    const auto new_id = static_cast<dataplane::BackendId>(count * kBackendsPerService + 1 + i);
    set.backends.erase(old_id);
    set.backends[new_id] = backend(bench::ipv4_plus("10.98.0.1", i), false);
    f.backends[1] = new_id;
    std::sort(f.backends.begin(), f.backends.end(), [&](auto a, auto b) {
      return set.backends[a].address.bytes < set.backends[b].address.bytes;
    });
    changes.push_back(timed(*s.node, "one endpoint change #" + std::to_string(i + 1), set));
  }
  std::vector<double> ms;
  for (const Step& c : changes) ms.push_back(c.ms);
  Step change{"one endpoint change", bench::median(ms), changes.front().writes};
  std::printf("  %-9s %-44s %10.1f ms  (median of 11; max %.1f ms)\n", s.node->mode().c_str(),
              "one endpoint change", change.ms, *std::max_element(ms.begin(), ms.end()));
  steps.push_back(change);
  return steps;
}

Options parse(int argc, char** argv) {
  Options o;
  bench::parse_options(
      argc, argv,
      [&](const std::string& a, const std::function<std::string()>& value) {
        if (a == "--services") o.services = bench::int_list(value());
        else if (a == "--rounds") o.rounds = std::stoi(value());
        else if (a == "--connects") o.connects = std::stoi(value());
        else if (a == "--modes") o.modes = bench::split_list(value());
        else if (a == "--cpu") o.cpu = value();
        else if (a == "--json") o.json = value();
        else if (a == "--program-only") o.connect = false;
        else return false;
        return true;
      },
      "usage: service_bench [--services 1,1000,10000] [--rounds N] [--connects N] [--modes ebpf,iptables] "
      "[--cpu last|N|none] [--program-only] [--json FILE]");
  std::sort(o.services.begin(), o.services.end());
  if (o.services.empty() || o.services.front() < 1 || o.rounds < 1 || o.connects < 1 || o.modes.empty())
    throw std::runtime_error("--services, --rounds, --connects and --modes need positive values");
  return o;
}

std::string key(const std::string& mode, int count) { return mode + "@" + std::to_string(count); }

int run(const Options& o) {
  const int swept = bench::sweep_leftovers("fysb");
  if (swept) std::fprintf(stderr, "service_bench: removed %d leftovers of killed runs\n", swept);
  const int cpu = bench::pin_to_cpu(o.cpu);
  const std::string load_start = bench::load_average();
  nlohmann::json out = {{"services", o.services}, {"rounds", o.rounds}, {"connects_per_round", o.connects},
                        {"cpu", cpu}, {"load_average_start", load_start}};
  std::map<std::string, std::unique_ptr<Setup>> setups;  // by key(mode, count)
  int subnet = 81;
  for (const std::string& mode : o.modes)
    for (int count : o.services) setups[key(mode, count)] = build(mode, count, subnet++);

  const int largest = o.services.back();
  std::printf("Programming %d Services x %d endpoints (Dataplane::program_services):\n", largest, kBackendsPerService);
  std::vector<std::string> modes;  // those whose backend implements Services
  for (const std::string& mode : o.modes) {
    try {
      for (const Step& s : program_steps(*setups[key(mode, largest)], largest))
        out["program"][mode][s.name] = {{"ms", s.ms}, {"kernel_writes", s.writes}};
      for (int count : o.services)
        if (count != largest) {
          Setup& s = *setups[key(mode, count)];
          s.node->program_services(make_services(count, s.server_ips));
        }
      modes.push_back(mode);
    } catch (const dataplane::DataplaneError& e) {  // e.g. a backend without Services yet
      std::printf("  %-9s program_services failed, mode left out: %s\n", mode.c_str(), e.what());
      out["program"][mode] = {{"error", e.what()}};
      for (int count : o.services) setups.erase(key(mode, count));
    }
  }
  if (modes.empty()) throw bench::BenchError("no mode could program Services");
  if (!o.connect) {
    if (!o.json.empty()) std::ofstream(o.json) << out.dump(2) << "\n";
    return 0;
  }

  const net::Ip target_of_largest = cluster_ip(largest - 1);
  std::fprintf(stderr, "service_bench: warm-up (not counted)\n");
  std::map<std::string, bench::ConnectSeries> connects;
  std::vector<bench::ConnectTarget> all;
  for (const std::string& mode : modes)
    for (int count : o.services)
      all.push_back({key(mode, count), setups[key(mode, count)]->client->netns, cluster_ip(count - 1), kServicePort});
  {
    std::map<std::string, bench::ConnectSeries> warm;
    bench::connect_round(all, std::max(kChunk, o.connects / 10), kChunk, warm);
  }
  for (int r = 0; r < o.rounds; ++r) {
    std::vector<bench::ConnectTarget> order = all;
    std::rotate(order.begin(), order.begin() + r % order.size(), order.end());
    bench::connect_round(order, o.connects, kChunk, connects);
    std::string line;
    for (const auto& [k, v] : connects) line += " " + k + " " + std::to_string(int(v.median_us.back())) + "us";
    std::fprintf(stderr, "service_bench: round %d/%d:%s\n", r + 1, o.rounds, line.c_str());
  }

  out["load_average_end"] = bench::load_average();
  std::printf("\nNew TCP connections to the last Service's ClusterIP (%s:%u, 3 local endpoints; connect + RST "
              "close, %d per round in chunks of %d cycling over the nodes), %d interleaved rounds; %s; load average "
              "%s at start, %s at end\n\n",
              target_of_largest.str().c_str(), kServicePort, o.connects, kChunk, o.rounds,
              cpu < 0 ? "unpinned" : ("everything on CPU " + std::to_string(cpu)).c_str(), load_start.c_str(),
              out["load_average_end"].get<std::string>().c_str());
  std::printf("%-9s %9s  %24s  %17s\n", "mode", "Services", "connect us med (min-max)", "connects/s median");
  for (const std::string& mode : modes)
    for (int count : o.services) {
      const bench::ConnectSeries& v = connects[key(mode, count)];
      const bench::Spread c = bench::spread(v.median_us);
      const double rate = bench::median(v.rate);
      std::printf("%-9s %9d  %6.1f (%6.1f-%6.1f)     %17.0f\n", mode.c_str(), count, c.median, c.min, c.max, rate);
      out["connect"][mode][std::to_string(count)] = {{"connect_us_median", c.median}, {"connect_us_min", c.min},
                                                      {"connect_us_max", c.max}, {"connects_per_s_median", rate},
                                                      {"connect_us_rounds", v.median_us}};
    }
  const int smallest = o.services.front();
  std::printf("\nratios mode@%d / mode@%d (connect time: >1 is slower)\n", largest, smallest);
  for (const std::string& mode : modes) {
    const bench::Ratio c = bench::ratio(connects[key(mode, largest)].median_us, connects[key(mode, smallest)].median_us);
    std::printf("  %-9s %.3f (per round %.3f, %.3f-%.3f)\n", mode.c_str(), c.of_medians, c.per_round.median,
                c.per_round.min, c.per_round.max);
    out["ratios"][mode] = {{"connect_time", c.of_medians}, {"connect_time_per_round", c.rounds}};
  }
  if (std::find(modes.begin(), modes.end(), "ebpf") != modes.end()) {
    const double scratch = out["program"]["ebpf"]["from scratch"]["ms"];
    const double change = out["program"]["ebpf"]["one endpoint change"]["ms"];
    const double c = out["ratios"]["ebpf"]["connect_time"];
    std::printf("\ngoals: eBPF from scratch < 500 ms (%.1f ms: %s); one change < 5 ms (%.2f ms: %s); eBPF at %d "
                "Services within 5%% of %d (%+.1f%%: %s)\n",
                scratch, scratch < 500 ? "met" : "NOT MET", change, change < 5 ? "met" : "NOT MET", largest, smallest,
                (c - 1) * 100, c <= 1.05 ? "met" : "NOT MET");
  }
  if (!o.json.empty()) std::ofstream(o.json) << out.dump(2) << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  return ferry::bench::bench_main("service_bench", [&] { return run(parse(argc, argv)); });
}
