// policy_apply_bench — how long a datapath takes to install NetworkPolicy for many endpoints
// from scratch, to confirm an unchanged set, and to apply one change afterwards (issue 5,
// "time to apply 1,000 policies over 1,000 pods"). Runs as root in a private network namespace
// (fybp-<pid>, deleted at the end) with synthetic endpoints: the iptables backend's rules match
// veth names, which need not exist. Reports wall time and kernel writes per step.
//
//   policy_apply_bench [--endpoints 1000] [--identities 100] [--json FILE]
//
// Modes: iptables (the eBPF side is added next to it).
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/dataplane/dataplane.h"
#include "agent/iptables/iptables.h"
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

std::vector<Step> run_mode(const std::string& mode, std::unique_ptr<Dataplane> dp, const Options& o) {
  std::printf("%s: %d endpoints, %d identities\n", mode.c_str(), o.endpoints, o.identities);
  const std::vector<Endpoint> eps = make_endpoints(o.endpoints);
  PolicySet set = make_policy(o.endpoints, o.identities);
  std::vector<Step> steps;
  dp->start();
  steps.push_back(timed(*dp, "program endpoints (no policy)", [&] {
    for (const Endpoint& ep : eps) dp->program_endpoint(ep);
  }));
  steps.push_back(timed(*dp, "policy from scratch", [&] { dp->program_policy(set); }));
  steps.push_back(timed(*dp, "same policy again", [&] { dp->program_policy(set); }));
  // One policy change: the middle endpoint's ingress allows one more port.
  const uint32_t mid = static_cast<uint32_t>(o.endpoints / 2);
  set.endpoints[mid].ingress.push_back({ferry::dataplane::kIdentityAny, IPPROTO_TCP, 9090, 9090});
  std::sort(set.endpoints[mid].ingress.begin(), set.endpoints[mid].ingress.end());
  steps.push_back(timed(*dp, "one change: one endpoint's rules", [&] { dp->program_policy(set); }));
  // One pod IP joins an app (a pod created elsewhere): only that identity's set changes.
  set.ipcache.push_back({*ferry::net::Prefix::parse("10.61.0.1/32"), ferry::dataplane::kFirstAllocatedIdentity});
  steps.push_back(timed(*dp, "one change: one pod IP joins an identity", [&] { dp->program_policy(set); }));
  set.enforce = false;
  steps.push_back(timed(*dp, "enforce off (remove all policy)", [&] { dp->program_policy(set); }));
  dp->cleanup_all();
  return steps;
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
    else {
      std::fprintf(stderr, "usage: %s [--endpoints N] [--identities K] [--json FILE]\n", argv[0]);
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "policy_apply_bench: needs root (network namespaces, iptables)\n");
    return 77;
  }
  try {
    BenchNetns ns;
    nlohmann::json out = {{"endpoints", o.endpoints}, {"identities", o.identities}};
    ferry::net::in_netns(ferry::net::Netns::open(ns.path()), [&] {
      for (const Step& s : run_mode("iptables", ferry::iptables::make_iptables_dataplane(), o))
        out["iptables"][s.name] = {{"ms", s.ms}, {"kernel_writes", s.writes}};
    });
    if (!o.json.empty()) std::ofstream(o.json) << out.dump(2) << "\n";
  } catch (const std::exception& e) {
    std::fprintf(stderr, "policy_apply_bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
