// The eBPF backend against a real kernel: two pods on one node, programs on their veths,
// traffic between them, restart, upgrade, removal, conntrack GC, anti-spoofing, cleanup.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <netinet/in.h>

#include <future>
#include <optional>
#include <thread>

#include "ferry/abi.h"
#include "support.h"

namespace ferry::ebpftest {
namespace {

using dataplane::Dataplane;
using dataplane::Endpoint;

class EbpfBackend : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_EBPF();
    node_ = std::make_unique<TwoPodNode>();
  }
  void TearDown() override { node_.reset(); }

  // Backend calls run in the node netns, like the agent.
  template <typename F>
  auto in_node(F fn) {
    return node_->run_in_node(fn);
  }
  std::unique_ptr<Dataplane> started(const ebpf::EbpfConfig& config) { return node_->started_backend(config); }

  std::vector<Endpoint> desired() const { return {node_->endpoint(0), node_->endpoint(1)}; }

  void program_all(Dataplane& dp) {
    for (const Endpoint& ep : desired()) in_node([&] { dp.program_endpoint(ep); });
  }

  std::vector<Endpoint> installed(Dataplane& dp) {
    return in_node([&] { return dp.installed_endpoints(); });
  }

  ebpf::TcFilters filters(int pod) {
    int ifindex = node_->host_ifindex(pod);
    return in_node([&] { return ebpf::tc_filters(ifindex); });
  }

  uint32_t pinned_prog_id(const std::string& pin) {
    int fd = bpf_obj_get((node_->bpffs_root() + "/" + pin).c_str());
    if (fd < 0) return 0;
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    uint32_t id = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
    ::close(fd);
    return id;
  }

  // A ping run in the background (count packets, 50 ms apart); get() = replies.
  std::future<int> background_ping(int count) {
    return std::async(std::launch::async, [this, count] { return node_->ping(0, node_->pod(1).ip4, count); });
  }

  std::unique_ptr<TwoPodNode> node_;
};

TEST_F(EbpfBackend, DeliversBetweenLocalPodsAndRoundTripsEndpoints) {
  auto dp = started(node_->config());
  program_all(*dp);

  uint64_t before = counter(in_node([&] { return dp->stats(); }), "redirect_local");
  EXPECT_EQ(node_->ping(0, node_->pod(1).ip4), 3);
  EXPECT_EQ(node_->ping(1, node_->pod(0).ip6), 3);
  EXPECT_TRUE(node_->tcp_exchange(0, 1, AF_INET, 15001));
  EXPECT_TRUE(node_->tcp_exchange(1, 0, AF_INET6, 15002));

  dataplane::Stats stats = in_node([&] { return dp->stats(); });
  // 6 echo requests + 6 replies + the TCP segments: all delivered by bpf_redirect_peer.
  EXPECT_GE(counter(stats, "redirect_local") - before, 12u);
  EXPECT_GT(counter(stats, "from_pod"), 0u);
  EXPECT_GT(counter(stats, "ct_new"), 0u);
  EXPECT_EQ(counter(stats, "drop_spoofed"), 0u);
  EXPECT_EQ(stats.maps.at(FERRY_MAP_ENDPOINTS).entries, 4u);  // 2 pods x (v4 + v6)
  EXPECT_EQ(stats.maps.at(FERRY_MAP_ENDPOINTS).max_entries, 1024u);
  EXPECT_GT(stats.maps.at(FERRY_MAP_CT).entries, 0u);
  EXPECT_GT(stats.kernel_writes, 0u);

  EXPECT_EQ(installed(*dp), desired());
  auto diff = dataplane::diff_endpoints(desired(), installed(*dp));
  EXPECT_TRUE(diff.program.empty());
  EXPECT_TRUE(diff.remove.empty());

  // Programming again is idempotent and writes nothing.
  uint64_t writes = stats.kernel_writes;
  program_all(*dp);
  EXPECT_EQ(in_node([&] { return dp->stats(); }).kernel_writes, writes);
}

TEST_F(EbpfBackend, RestartFindsEverythingInstalledAndWritesNothing) {
  {
    auto first = started(node_->config());
    program_all(*first);
  }  // the "agent" exits: programs stay attached, maps pinned
  EXPECT_EQ(node_->ping(0, node_->pod(1).ip4), 3) << "forwarding while no agent runs";

  auto pinging = background_ping(40);
  auto second = started(node_->config());
  std::vector<Endpoint> have = installed(*second);
  auto diff = dataplane::diff_endpoints(desired(), have);
  EXPECT_TRUE(diff.program.empty());
  EXPECT_TRUE(diff.remove.empty());
  EXPECT_EQ(have, desired());
  for (const Endpoint& ep : diff.program) in_node([&] { second->program_endpoint(ep); });
  second->maintain();
  EXPECT_EQ(in_node([&] { return second->stats(); }).kernel_writes, 0u);
  EXPECT_EQ(pinging.get(), 40) << "no echo lost across the restart";
}

TEST_F(EbpfBackend, UpgradeSwapsProgramsInPlace) {
  std::string old_hash = ebpf::embedded_program_hash();
  {
    auto first = started(node_->config());
    program_all(*first);
  }
  uint32_t old_from = pinned_prog_id("prog_from_pod_" + old_hash);
  ASSERT_NE(old_from, 0u);
  ASSERT_EQ(filters(0).ingress, old_from);

  auto pinging = background_ping(60);
  ebpf::EbpfConfig upgraded = node_->config();
  upgraded.program_hash_override = "fyebupgrade";
  auto second = started(upgraded);

  uint32_t new_from = pinned_prog_id("prog_from_pod_fyebupgrade");
  uint32_t new_to = pinned_prog_id("prog_to_pod_fyebupgrade");
  ASSERT_NE(new_from, 0u);
  EXPECT_NE(new_from, old_from);
  for (int pod : {0, 1}) {
    EXPECT_EQ(filters(pod).ingress, new_from);
    EXPECT_EQ(filters(pod).egress, new_to);
  }
  EXPECT_EQ(pinned_prog_id("prog_from_pod_" + old_hash), 0u) << "old programs unpinned";
  EXPECT_EQ(pinned_prog_id("prog_to_pod_" + old_hash), 0u);
  EXPECT_EQ(installed(*second), desired());  // complete: filters run the current programs
  EXPECT_EQ(pinging.get(), 60) << "no echo lost while the programs were swapped";
  EXPECT_EQ(node_->ping(1, node_->pod(0).ip6), 3);
}

TEST_F(EbpfBackend, OutdatedOrMissingFilterMakesEndpointIncomplete) {
  auto dp = started(node_->config());
  program_all(*dp);
  int ifindex = node_->host_ifindex(0);
  node_->node().exec("tc filter del dev fyebva ingress handle 0xfe prio 1 bpf");
  std::vector<Endpoint> have = installed(*dp);
  ASSERT_EQ(have.size(), 2u);
  EXPECT_FALSE(have[0].complete);
  EXPECT_TRUE(have[1].complete);
  auto diff = dataplane::diff_endpoints(desired(), have);
  ASSERT_EQ(diff.program.size(), 1u);
  in_node([&] { dp->program_endpoint(diff.program[0]); });
  EXPECT_NE(in_node([&] { return ebpf::tc_filters(ifindex); }).ingress, 0u);
  EXPECT_EQ(installed(*dp), desired());
}

TEST_F(EbpfBackend, ChangedAddressesReplaceStaleEntries) {
  auto dp = started(node_->config());
  program_all(*dp);
  Endpoint changed = node_->endpoint(0);
  changed.ips = {node_->pod(0).ip4};  // the pod lost its IPv6 address
  in_node([&] { dp->program_endpoint(changed); });
  auto eps = ebpf::PinnedMaps::open(node_->bpffs_root()).endpoints();
  ASSERT_EQ(eps.size(), 3u);
  for (const auto& e : eps) EXPECT_NE(e.ip, node_->pod(0).ip6);
  std::vector<Endpoint> want = {changed, node_->endpoint(1)};
  EXPECT_EQ(installed(*dp), want);
}

TEST_F(EbpfBackend, RemoveEndpointDeletesEntriesAndFilters) {
  auto dp = started(node_->config());
  program_all(*dp);
  std::vector<Endpoint> have = installed(*dp);
  ASSERT_EQ(have.size(), 2u);
  in_node([&] { dp->remove_endpoint(have[0]); });

  auto eps = ebpf::PinnedMaps::open(node_->bpffs_root()).endpoints();
  ASSERT_EQ(eps.size(), 2u);
  for (const auto& e : eps) EXPECT_EQ(e.endpoint_id, 102u);
  EXPECT_EQ(filters(0).ingress, 0u);
  EXPECT_EQ(filters(0).egress, 0u);
  EXPECT_NE(filters(1).ingress, 0u);
  std::vector<Endpoint> left = {node_->endpoint(1)};
  EXPECT_EQ(installed(*dp), left);
  // Removing twice, or an endpoint whose interface is gone, is fine.
  in_node([&] { dp->remove_endpoint(have[0]); });
  node_->node().exec("ip link del fyebvb");
  in_node([&] { dp->remove_endpoint(have[1]); });
  EXPECT_TRUE(installed(*dp).empty());
}

TEST_F(EbpfBackend, ConntrackGcDeletesExpiredEntriesOnly) {
  ebpf::EbpfConfig config = node_->config();
  config.gc_batch = 2;  // bounded work per maintain() call
  auto dp = started(config);
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(node_->bpffs_root());

  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);  // bpf_ktime_get_ns()'s clock
  uint64_t now = static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
  auto key = [](uint16_t sport) {
    ferry_ct_key k{};
    k.family = AF_INET;
    k.proto = IPPROTO_UDP;
    inet_pton(AF_INET, "10.77.0.2", k.saddr);
    inet_pton(AF_INET, "10.77.0.3", k.daddr);
    k.sport = htons(sport);
    k.dport = htons(53);
    return k;
  };
  auto value = [](uint64_t last_seen, uint32_t lifetime) {
    ferry_ct_value v{};
    v.created_ns = last_seen;
    v.last_seen_ns = last_seen;
    v.lifetime_s = lifetime;
    v.state = FERRY_CT_ESTABLISHED;
    return v;
  };
  const uint16_t expired_ports[] = {1001, 1002, 1003};
  for (uint16_t p : expired_ports) {
    ferry_ct_key k = key(p);
    ferry_ct_value v = value(now - 120ull * 1000000000ull, 60);  // idle 120 s, lifetime 60 s
    ASSERT_EQ(bpf_map_update_elem(maps.conntrack_fd(), &k, &v, BPF_ANY), 0);
  }
  ferry_ct_key live = key(2000);
  ferry_ct_value live_v = value(now, 60);
  ASSERT_EQ(bpf_map_update_elem(maps.conntrack_fd(), &live, &live_v, BPF_ANY), 0);

  dp->maintain();
  EXPECT_LE(counter(in_node([&] { return dp->stats(); }), "ct_gc_deleted"), 2u) << "at most gc_batch per call";
  for (int i = 0; i < 10; ++i) dp->maintain();

  for (uint16_t p : expired_ports) {
    ferry_ct_key k = key(p);
    ferry_ct_value v{};
    EXPECT_NE(bpf_map_lookup_elem(maps.conntrack_fd(), &k, &v), 0) << "expired entry " << p << " still there";
  }
  ferry_ct_value v{};
  EXPECT_EQ(bpf_map_lookup_elem(maps.conntrack_fd(), &live, &v), 0) << "live entry deleted";
  EXPECT_EQ(counter(in_node([&] { return dp->stats(); }), "ct_gc_deleted"), 3u);
}

TEST_F(EbpfBackend, SpoofedSourceIsDroppedAndReported) {
  auto dp = started(node_->config());
  program_all(*dp);
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(node_->bpffs_root());
  ebpf::DropEventReader reader(maps);

  node_->pod_netns(0).exec("ip addr add 10.77.0.99/32 dev eth0");
  EXPECT_EQ(node_->ping(0, node_->pod(1).ip4, 2, "-I 10.77.0.99"), 0) << "spoofed echo got through";
  EXPECT_EQ(node_->ping(0, node_->pod(1).ip4, 2), 2) << "the pod's own address still works";

  std::vector<ebpf::DropEvent> events;
  for (int i = 0; i < 20 && events.empty(); ++i)
    reader.poll(250, [&](const ebpf::DropEvent& e) { events.push_back(e); });
  ASSERT_FALSE(events.empty()) << "no drop event in the ring buffer";
  const ebpf::DropEvent& e = events.front();
  EXPECT_EQ(e.reason, static_cast<uint32_t>(FERRY_DROP_SPOOFED));
  EXPECT_EQ(e.reason_name, "spoofed");
  EXPECT_EQ(e.hook, FERRY_HOOK_FROM_POD);
  EXPECT_EQ(e.proto, IPPROTO_ICMP);
  EXPECT_EQ(e.src.str(), "10.77.0.99");
  EXPECT_EQ(e.dst, node_->pod(1).ip4);
  EXPECT_EQ(static_cast<int>(e.ifindex), node_->host_ifindex(0));
  EXPECT_NE(e.source.find("bpf/"), std::string::npos) << e.source;
  EXPECT_GE(counter(maps.counters(), "drop_spoofed"), 2u);
}

TEST_F(EbpfBackend, CleanupAllRemovesEveryPinAndFilter) {
  auto dp = started(node_->config());
  program_all(*dp);
  in_node([&] { dp->cleanup_all(); });
  EXPECT_FALSE(ebpf::PinnedMaps::exists(node_->bpffs_root()));
  EXPECT_NE(::access(node_->bpffs_root().c_str(), F_OK), 0) << "root dir still there";
  for (int pod : {0, 1}) {
    EXPECT_EQ(filters(pod).ingress, 0u);
    EXPECT_EQ(filters(pod).egress, 0u);
  }
  EXPECT_EQ(node_->node().exec("tc filter show dev fyebva ingress"), "");
  // Without the datapath the bridge still connects the pods.
  EXPECT_EQ(node_->ping(0, node_->pod(1).ip4), 3);

  // Idempotent, and a fresh backend can take over again.
  auto other = ebpf::make_ebpf_dataplane(node_->config());
  in_node([&] { other->cleanup_all(); });
  EXPECT_EQ(in_node([&] {
              auto again = ebpf::make_ebpf_dataplane(node_->config());
              again->start();
              return again->installed_endpoints();
            }).size(),
            0u);
}

}  // namespace
}  // namespace ferry::ebpftest
