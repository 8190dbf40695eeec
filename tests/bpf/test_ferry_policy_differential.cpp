// The loaded BPF policy lookup against the NetworkPolicy oracle: random clusters and policies
// (tests/policy/random_cluster.h) compiled by policy::compile, written into ferry_ipc_v1 and
// ferry_pol_v1 by the eBPF backend's own writer (PolicyMapSync, what program_policy runs: one
// writer across all clusters, so its diffing is exercised too), and random packets crafted into
// frames and run through the hook that judges them (egress: from-pod; ingress: to-pod or
// from-overlay). The verdict must equal policy::allows on the compiled set and the oracle.
// FERRY_POLICY_SEED=<n> replays one cluster.
#include <arpa/inet.h>
#include <linux/pkt_cls.h>
#include <netinet/in.h>

#include <cstdio>
#include <cstdlib>

#include "agent/ebpf/internal.h"
#include "datapath.h"
#include "tests/policy/oracle.h"
#include "tests/policy/random_cluster.h"

namespace ferry::bpftest {
namespace {

namespace pt = policy::testing;
using dataplane::Direction;

constexpr uint64_t kClusters = 300;
constexpr size_t kPacketsPerCluster = 120;

std::pair<uint64_t, uint64_t> seed_range() {
  if (const char* s = std::getenv("FERRY_POLICY_SEED")) {
    const uint64_t seed = std::strtoull(s, nullptr, 10);
    return {seed, seed + 1};
  }
  return {1, 1 + kClusters};
}

Addr addr_of(const net::Ip& ip) {
  Addr a;
  a.family = static_cast<uint8_t>(ip.family);
  a.bytes = ip.bytes;
  return a;
}

// The packet's L4 as the datapath parses it: TCP SYN / UDP / SCTP to `port`, ICMP echo (IPv4) or
// protocol 1 without ports (IPv6, where ICMP is not ICMPv6).
L4 l4_of(const pt::Packet& p, uint16_t sport) {
  switch (p.proto) {
    case IPPROTO_TCP: return tcp(sport, p.port, kTcpSyn);
    case IPPROTO_UDP: return udp(sport, p.port);
    case IPPROTO_SCTP: return sctp(sport, p.port);
    case IPPROTO_ICMP:
      if (p.peer.family == AF_INET) return icmp_echo(false, false, p.port);
      return raw(IPPROTO_ICMP, 8);
    default: return raw(p.proto, 8);
  }
}

class FerryPolicyDifferential : public DatapathTest {
 protected:
  // ferry_ep_v1 holds only the endpoint under test (the peer is never local here, so only
  // the judged direction is asked).
  void make_only_endpoint(uint32_t endpoint_id, const Addr& ip) {
    const int fd = bpf_map__fd(skel()->maps.ferry_ep_v1);
    ferry_endpoint_key key{};
    while (bpf_map_get_next_key(fd, nullptr, &key) == 0) ASSERT_EQ(bpf_map_delete_elem(fd, &key), 0);
    Pod pod = pod_a_;
    pod.endpoint_id = endpoint_id;
    add_endpoint(pod, ip);
  }
  // Every packet is a new flow: nothing cached from the last one.
  void flush_conntrack() {
    const int fd = bpf_map__fd(skel()->maps.ferry_ct_v2);
    ferry_ct_key key{};
    while (bpf_map_get_next_key(fd, nullptr, &key) == 0) ASSERT_EQ(bpf_map_delete_elem(fd, &key), 0);
  }
};

TEST_F(FerryPolicyDifferential, LoadedProgramsAgreeWithTheCompiledRulesAndTheOracle) {
  ebpf::detail::PolicyMapSync writer;
  writer.attach(bpf_map__fd(skel()->maps.ferry_ipc_v1), bpf_map__fd(skel()->maps.ferry_pol_v1));
  policy::IdentityAllocator allocator;
  auto [first, last] = seed_range();
  size_t packets = 0, skipped = 0, isolated = 0, isolated_allowed = 0, disagreements = 0;
  uint64_t map_writes = 0;
  uint32_t revision = 0;
  uint16_t sport = 1024;

  for (uint64_t seed = first; seed < last && disagreements < 5; ++seed) {
    const pt::RandomCluster rc = pt::random_cluster(seed);
    const policy::CompileResult compiled = policy::compile(rc.input(), allocator);
    std::vector<uint32_t> local;
    for (const policy::LocalEndpoint& ep : rc.endpoints) local.push_back(ep.endpoint_id);
    map_writes += writer.sync(compiled.set, local);
    set_policy(true, ++revision);

    for (const pt::Packet& p : pt::random_packets(rc, seed, kPacketsPerCluster)) {
      const policy::LocalEndpoint* ep = nullptr;
      for (const policy::LocalEndpoint& e : rc.endpoints)
        if (e.endpoint_id == p.endpoint_id) ep = &e;
      const net::Ip* own = nullptr;
      if (ep)
        for (const net::Ip& ip : ep->ips)
          if (ip.family == p.peer.family && !own) own = &ip;
      if (!own || *own == p.peer) {  // no address of the peer's family, or the pod itself
        ++skipped;
        continue;
      }
      make_only_endpoint(p.endpoint_id, addr_of(*own));
      flush_conntrack();
      if (HasFatalFailure()) return;

      sport = sport == 65535 ? 1024 : sport + 1;
      const L4 l4 = l4_of(p, sport);
      const Addr self = addr_of(*own), peer = addr_of(p.peer);
      RunResult r;
      std::string hook;
      if (p.dir == Direction::Egress) {
        hook = "from-pod";
        r = from_pod(pod_a_, ip_frame(pod_a_.host_mac, pod_a_.pod_mac, self, peer, l4));
      } else if (packets % 2 == 0) {
        hook = "to-pod";
        r = to_pod(pod_a_, ip_frame(pod_a_.pod_mac, pod_a_.host_mac, peer, self, l4));
      } else {
        hook = "from-overlay";
        r = from_overlay(ip_frame(pod_a_.pod_mac, pod_a_.host_mac, peer, self, l4));
      }
      ASSERT_TRUE(r.retval == TC_ACT_OK || r.retval == TC_ACT_REDIRECT || r.retval == TC_ACT_SHOT)
          << tc_act_name(r.retval);
      const bool got = r.retval != TC_ACT_SHOT;
      const bool compiled_allows = policy::allows(compiled.set, p.endpoint_id, p.dir, p.peer, p.proto, p.port);
      const bool oracle = pt::oracle_allows(rc, p);
      ++packets;
      if (auto it = compiled.set.endpoints.find(p.endpoint_id);
          it != compiled.set.endpoints.end() &&
          (p.dir == Direction::Ingress ? it->second.ingress_isolated : it->second.egress_isolated)) {
        ++isolated;
        isolated_allowed += oracle;
      }
      if (got != compiled_allows || got != oracle) {
        ++disagreements;
        ADD_FAILURE() << "BPF (" << hook << ") " << (got ? "allows" : "denies") << ", compiled rules "
                      << (compiled_allows ? "allow" : "deny") << ", oracle " << (oracle ? "allows" : "denies")
                      << ": " << p.str() << " (own address " << own->str() << ")\n"
                      << pt::explain(rc, p, compiled) << "replay: FERRY_POLICY_SEED=" << seed << "\n"
                      << rc.describe();
        break;
      }
    }
  }
  drain_events();  // the denied packets' events: not this test's subject
  std::printf("bpf differential: %llu clusters, %zu packets run (%zu skipped), %zu on isolated directions, "
              "%zu of those allowed; %llu policy map writes\n",
              static_cast<unsigned long long>(last - first), packets, skipped, isolated, isolated_allowed,
              static_cast<unsigned long long>(map_writes));
  if (last - first > 1) {  // both verdicts in quantity, or the comparison proves little
    EXPECT_GT(isolated, packets / 4);
    EXPECT_GT(isolated_allowed, isolated / 10);
    EXPECT_LT(isolated_allowed, isolated - isolated / 10);
  }
}

}  // namespace
}  // namespace ferry::bpftest
