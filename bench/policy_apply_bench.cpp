// policy_apply_bench — how long a datapath takes to install NetworkPolicy for many endpoints
// from scratch, to confirm an unchanged set, and to apply one change afterwards (issue 5,
// "time to apply 1,000 policies over 1,000 pods"). Runs as root in a private network namespace
// per mode, both modes in one run. iptables: a private network namespace (fybp-<pid>, deleted at
// the end) with synthetic endpoints: its rules match veth names, which need not exist. eBPF: a
// node netns (fybp<pid>e-node, bpffs root /sys/fs/bpf/ferry/fybp<pid>e, both removed at the end)
// with one real veth pair per endpoint, so programming attaches real tc programs. Reports wall
// time and kernel writes per step.
//
//   policy_apply_bench [--endpoints 1000] [--identities 100] [--modes ebpf,iptables] [--json FILE]
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/dataplane/dataplane.h"
#include "agent/iptables/iptables.h"
#include "bench_support.h"
#include "net/net.h"

namespace {

using ferry::dataplane::Dataplane;
using ferry::dataplane::Endpoint;
using ferry::dataplane::EndpointPolicy;
using ferry::dataplane::Identity;
using ferry::dataplane::PolicyEntry;
using ferry::dataplane::PolicySet;

struct Options {
  int endpoints = 1000;
  int identities = 100;
  std::string json;
  std::vector<std::string> modes = {"ebpf", "iptables"};
};

// The namespace the benchmark runs in; deleted with everything in it.
class BenchNetns {
 public:
  BenchNetns() : name_("fybp-" + std::to_string(getpid())) {
    ferry::net::run_command({"ip", "netns", "del", name_});
    if (ferry::net::run_command({"ip", "netns", "add", name_}).status != 0)
      throw std::runtime_error("ip netns add " + name_ + " failed");
  }
  ~BenchNetns() { ferry::net::run_command({"ip", "netns", "del", name_}); }
  std::string path() const { return "/run/netns/" + name_; }

 private:
  std::string name_;
};

ferry::net::Ip pod_ip(int i, bool v6) {
  char buf[64];
  if (v6)
    std::snprintf(buf, sizeof buf, "fd00:60::%x", i + 1);
  else
    std::snprintf(buf, sizeof buf, "10.60.%d.%d", (i + 1) / 256, (i + 1) % 256);
  return *ferry::net::Ip::parse(buf);
}

std::vector<Endpoint> make_endpoints(int n) {
  std::vector<Endpoint> eps;
  for (int i = 0; i < n; ++i) {
    Endpoint ep;
    ep.endpoint_id = static_cast<uint32_t>(i + 1);
    char veth[16];
    std::snprintf(veth, sizeof veth, "fybp%06x", i);
    ep.host_veth = veth;
    ep.host_ifindex = 1000 + i;
    ep.ips = {pod_ip(i, false), pod_ip(i, true)};
    ep.pod_mac = *ferry::net::parse_mac("02:00:00:00:00:01");
    ep.host_mac = *ferry::net::parse_mac("02:00:00:00:00:02");
    eps.push_back(ep);
  }
  return eps;
}

// Pod i has identity 256 + i % k (k apps); an ipBlock 192.168.0.0/16 except 192.168.1.0/24
// has identity 256 + k. Every pod is isolated both ways, as by one policy per app: ingress from
// the neighbouring apps on TCP 80 and 8000-8010 and from the node, egress to one app on UDP 53,
// to the ipBlock on TCP 443 and to anyone on TCP 5432.
PolicySet make_policy(int n, int k) {
  auto app = [&](int i) { return static_cast<Identity>(ferry::dataplane::kFirstAllocatedIdentity + ((i % k) + k) % k); };
  const Identity block = ferry::dataplane::kFirstAllocatedIdentity + static_cast<Identity>(k);
  PolicySet set;
  auto prefix = [](const std::string& s) { return *ferry::net::Prefix::parse(s); };
  set.ipcache = {{prefix("0.0.0.0/0"), ferry::dataplane::kIdentityWorld},
                 {prefix("::/0"), ferry::dataplane::kIdentityWorld},
                 {prefix("192.168.0.0/16"), block},
                 {prefix("192.168.1.0/24"), ferry::dataplane::kIdentityWorld}};
  for (int i = 0; i < n; ++i) {
    set.ipcache.push_back({{pod_ip(i, false), 32}, app(i)});
    set.ipcache.push_back({{pod_ip(i, true), 128}, app(i)});
    EndpointPolicy pol;
    pol.ingress_isolated = pol.egress_isolated = true;
    pol.ingress = {{ferry::dataplane::kIdentityHost, 0, 0, 65535},
                   {app(i - 1), IPPROTO_TCP, 80, 80},
                   {app(i + 1), IPPROTO_TCP, 8000, 8010}};
    pol.egress = {{ferry::dataplane::kIdentityAny, IPPROTO_TCP, 5432, 5432},
                  {app(i + 7), IPPROTO_UDP, 53, 53},
                  {block, IPPROTO_TCP, 443, 443}};
    std::sort(pol.ingress.begin(), pol.ingress.end());
    std::sort(pol.egress.begin(), pol.egress.end());
    set.endpoints[static_cast<uint32_t>(i + 1)] = pol;
  }
  return set;
}

struct Step {
  std::string name;
  double ms = 0;
  uint64_t writes = 0;
};

Step timed(Dataplane& dp, const std::string& name, const std::function<void()>& fn) {
  const uint64_t before = dp.stats().kernel_writes;
  const auto t0 = std::chrono::steady_clock::now();
  fn();
  const auto t1 = std::chrono::steady_clock::now();
  Step s{name, std::chrono::duration<double, std::milli>(t1 - t0).count(), dp.stats().kernel_writes - before};
  std::printf("  %-46s %10.1f ms  %6llu kernel writes\n", name.c_str(), s.ms, static_cast<unsigned long long>(s.writes));
  std::fflush(stdout);
  return s;
}

// Runs the steps with every backend call made through `in_node` (the node netns).
std::vector<Step> run_mode(const std::string& mode, Dataplane& dp, const std::vector<Endpoint>& eps,
                           const std::function<void(const std::function<void()>&)>& in_node, const Options& o) {
  std::printf("%s: %d endpoints, %d identities\n", mode.c_str(), o.endpoints, o.identities);
  PolicySet set = make_policy(o.endpoints, o.identities);
  std::vector<Step> steps;
  auto step = [&](const std::string& name, const std::function<void()>& fn) {
    in_node([&] { steps.push_back(timed(dp, name, fn)); });
    ferry::bench::throw_if_interrupted();
  };
  step("program endpoints (no policy)", [&] {
    for (const Endpoint& ep : eps) dp.program_endpoint(ep);
  });
  step("policy from scratch", [&] { dp.program_policy(set); });
  step("same policy again", [&] { dp.program_policy(set); });
  // One policy change: the middle endpoint's ingress allows one more port.
  const uint32_t mid = static_cast<uint32_t>(o.endpoints / 2);
  set.endpoints[mid].ingress.push_back({ferry::dataplane::kIdentityAny, IPPROTO_TCP, 9090, 9090});
  std::sort(set.endpoints[mid].ingress.begin(), set.endpoints[mid].ingress.end());
  step("one change: one endpoint's rules", [&] { dp.program_policy(set); });
  // One pod IP joins an app (a pod created elsewhere): only that identity's set changes.
  set.ipcache.push_back({*ferry::net::Prefix::parse("10.61.0.1/32"), ferry::dataplane::kFirstAllocatedIdentity});
  std::sort(set.ipcache.begin(), set.ipcache.end(), [](const auto& a, const auto& b) {
    return std::tie(a.prefix.ip.family, a.prefix.ip.bytes, a.prefix.len) <
           std::tie(b.prefix.ip.family, b.prefix.ip.bytes, b.prefix.len);
  });
  step("one change: one pod IP joins an identity", [&] { dp.program_policy(set); });
  set.enforce = false;
  step("enforce off (remove all policy)", [&] { dp.program_policy(set); });
  return steps;
}

// iptables: synthetic endpoints (its rules match veth names, which need not exist) in a
// private netns; the backend's cleanup is the netns going away.
std::vector<Step> run_iptables(const Options& o) {
  BenchNetns ns;
  const ferry::net::Netns handle = ferry::net::Netns::open(ns.path());
  auto dp = ferry::iptables::make_iptables_dataplane();
  auto in_node = [&](const std::function<void()>& fn) { ferry::net::in_netns(handle, fn); };
  in_node([&] { dp->start(); });
  return run_mode("iptables", *dp, make_endpoints(o.endpoints), in_node, o);
}

// eBPF: real veths (both ends in the node netns) so program_endpoint attaches tc programs to
// real interfaces; addresses as in make_endpoints().
std::vector<Step> run_ebpf(const Options& o) {
  ferry::bench::NodeOptions node_options{"ebpf", ferry::bench::run_tag("fybp", "ebpf"), 60};
  node_options.ebpf_endpoints_max = static_cast<uint32_t>(std::max(4096, 4 * o.endpoints));
  ferry::bench::BenchNode node(node_options);
  std::vector<Endpoint> eps;
  for (const Endpoint& synthetic : make_endpoints(o.endpoints)) {
    Endpoint ep = node.add_bare_endpoint();
    ep.ips = synthetic.ips;
    if (ep.endpoint_id != synthetic.endpoint_id) throw std::runtime_error("endpoint ids out of step");
    eps.push_back(ep);
  }
  return run_mode("ebpf", node.dataplane(), eps, [&](const std::function<void()>& fn) { node.in_node(fn); }, o);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "--endpoints") o.endpoints = std::stoi(value());
    else if (a == "--identities") o.identities = std::stoi(value());
    else if (a == "--json") o.json = value();
    else if (a == "--modes") {
      o.modes.clear();
      std::stringstream list(value());
      for (std::string m; std::getline(list, m, ',');) {
        if (m != "ebpf" && m != "iptables") throw std::runtime_error("unknown mode " + m);
        o.modes.push_back(m);
      }
    }
    else {
      std::fprintf(stderr, "usage: %s [--endpoints N] [--identities K] [--modes ebpf,iptables] [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "policy_apply_bench: needs root (network namespaces, iptables)\n");
    return 77;
  }
  ferry::bench::install_interrupt_handlers();
  ferry::bench::sweep_leftovers("fybp");
  try {
    nlohmann::json out = {{"endpoints", o.endpoints}, {"identities", o.identities},
                          {"load_average_start", ferry::bench::load_average()}};
    for (const std::string& mode : o.modes) {
      const std::vector<Step> steps = mode == "ebpf" ? run_ebpf(o) : run_iptables(o);
      for (const Step& s : steps) out[mode][s.name] = {{"ms", s.ms}, {"kernel_writes", s.writes}};
    }
    out["load_average_end"] = ferry::bench::load_average();
    std::printf("load average %s at start, %s at end\n", out["load_average_start"].get<std::string>().c_str(),
                out["load_average_end"].get<std::string>().c_str());
    if (out.contains("ebpf")) {
      const double full = out["ebpf"]["policy from scratch"]["ms"];
      const double change = std::max(out["ebpf"]["one change: one endpoint's rules"]["ms"].get<double>(),
                                     out["ebpf"]["one change: one pod IP joins an identity"]["ms"].get<double>());
      std::printf("goal: eBPF full apply < 1 s (%.1f ms: %s), one change < 10 ms (slowest %.2f ms: %s)\n", full,
                  full < 1000 ? "met" : "NOT MET", change, change < 10 ? "met" : "NOT MET");
    }
    if (!o.json.empty()) std::ofstream(o.json) << out.dump(2) << "\n";
  } catch (const ferry::bench::Interrupted&) {
    std::fprintf(stderr, "policy_apply_bench: interrupted; cleaned up\n");
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "policy_apply_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
