// The eBPF backend's program_policy against a real kernel: two pods on one node, policy written
// through the backend, real traffic between the pods (an allowed flow arrives, a denied one does
// not), the maps as ferryctl reads them, idempotence (a second call and a restart write nothing),
// endpoint removal, and the switch off.
#include <netinet/in.h>

#include <chrono>
#include <future>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>
#include <sstream>

#include "ferry/abi.h"
#include "support.h"

namespace ferry::ebpftest {
namespace {

using dataplane::Direction;
using dataplane::PolicyEntry;
using dataplane::PolicySet;

constexpr dataplane::Identity kIdA = 256, kIdB = 257;
constexpr uint16_t kAllowedPort = 15101, kDeniedPort = 15102;

class EbpfPolicy : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_EBPF();
    node_ = std::make_unique<TwoPodNode>();
    dp_ = node_->started_backend(node_->config());
    for (int i = 0; i < 2; ++i) {
      dataplane::Endpoint ep = node_->endpoint(i);
      node_->in_node([&] { dp_->program_endpoint(ep); });
    }
  }
  void TearDown() override {
    dp_.reset();
    node_.reset();
  }

  template <typename F>
  auto in_node(F fn) {
    return node_->run_in_node(fn);
  }
  uint64_t writes() { return in_node([&] { return dp_->stats(); }).kernel_writes; }
  void program(const PolicySet& set) {
    in_node([&] { dp_->program_policy(set); });
  }

  // Pod b (endpoint 102) accepts only TCP kAllowedPort from pod a; pod a is not isolated.
  PolicySet b_isolated() const {
    PolicySet set;
    auto prefix = [](const net::Ip& ip) { return net::Prefix{ip, ip.family == AF_INET6 ? 128 : 32}; };
    set.ipcache = {{*net::Prefix::parse("0.0.0.0/0"), dataplane::kIdentityWorld},
                   {prefix(node_->pod(0).ip4), kIdA},
                   {prefix(node_->pod(1).ip4), kIdB},
                   {*net::Prefix::parse("::/0"), dataplane::kIdentityWorld},
                   {prefix(node_->pod(0).ip6), kIdA},
                   {prefix(node_->pod(1).ip6), kIdB}};
    dataplane::EndpointPolicy b;
    b.ingress_isolated = true;
    b.ingress = {PolicyEntry{kIdA, IPPROTO_TCP, kAllowedPort, kAllowedPort}};
    set.endpoints[102] = b;
    return set;
  }

  std::vector<ebpf::PolicyMapEntry> entries_of(uint32_t endpoint_id) {
    std::vector<ebpf::PolicyMapEntry> out;
    for (const auto& e : ebpf::PinnedMaps::open(node_->bpffs_root()).policy_entries())
      if (e.endpoint_id == endpoint_id) out.push_back(e);
    return out;
  }

  std::unique_ptr<TwoPodNode> node_;
  std::unique_ptr<dataplane::Dataplane> dp_;
};

TEST_F(EbpfPolicy, DeniedFlowsDoNotArriveAllowedOnesDo) {
  program(b_isolated());
  EXPECT_TRUE(node_->tcp_exchange(0, 1, AF_INET, kAllowedPort));
  EXPECT_TRUE(node_->tcp_exchange(0, 1, AF_INET6, kAllowedPort));
  uint64_t drops_before = counter(in_node([&] { return dp_->stats(); }), "drop_policy");
  EXPECT_FALSE(node_->tcp_exchange(0, 1, AF_INET, kDeniedPort)) << "another port";
  EXPECT_EQ(node_->ping(0, node_->pod(1).ip4, 2), 0) << "another protocol";
  // Pod a is not isolated: b may open connections to it, and they arrive.
  EXPECT_TRUE(node_->tcp_exchange(1, 0, AF_INET, kDeniedPort));
  EXPECT_EQ(node_->ping(1, node_->pod(0).ip6, 2), 2);

  dataplane::Stats stats = in_node([&] { return dp_->stats(); });
  EXPECT_GE(counter(stats, "drop_policy") - drops_before, 3u) << "SYN retries and echo requests";
  EXPECT_EQ(stats.maps.at(FERRY_MAP_IPCACHE).entries, 6u);
  // b: ingress 1 entry, egress (not isolated) 1; a (in ferry_ep_v1, absent from the set): 2.
  EXPECT_EQ(stats.maps.at(FERRY_MAP_POLICY).entries, 4u);
  EXPECT_GT(stats.maps.at(FERRY_MAP_POLICY).max_entries, 0u);

  // Opening b up (any protocol from a) lets the ping through; a changed policy applies at once.
  PolicySet open = b_isolated();
  open.endpoints[102].ingress.push_back(PolicyEntry{kIdA, 0, 0, 65535});
  program(open);
  EXPECT_EQ(node_->ping(0, node_->pod(1).ip4, 2), 2);
}

TEST_F(EbpfPolicy, ARevokedConnectionStopsAtItsNextPacket) {
  PolicySet set = b_isolated();
  set.endpoints[102].ingress.push_back(PolicyEntry{kIdA, 0, 0, 65535});
  program(set);
  // One ping run = one echo flow (one identifier). Revoke while it runs.
  constexpr int kCount = 100;
  auto pinging = std::async(std::launch::async, [&] { return node_->ping(0, node_->pod(1).ip4, kCount); });
  auto echo_flow = [&]() -> std::optional<ebpf::ConntrackEntry> {
    for (const auto& c : ebpf::PinnedMaps::open(node_->bpffs_root()).conntrack())
      if (c.proto == IPPROTO_ICMP && c.src == node_->pod(0).ip4 && c.dst == node_->pod(1).ip4) return c;
    return std::nullopt;
  };
  for (int i = 0; i < 200; ++i) {  // until replies flow (bounded wait, not a timing assertion)
    auto flow = echo_flow();
    if (flow && flow->packets_rev >= 3) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ASSERT_TRUE(echo_flow()) << "the ping never got going";
  program(b_isolated());  // ICMP from a is no longer allowed
  const int received = pinging.get();
  EXPECT_GE(received, 3);
  EXPECT_LT(received, kCount) << "the established echo flow kept going after the revocation";
  EXPECT_FALSE(echo_flow()) << "the revoked flow's entry is deleted (and no new one is made)";
  EXPECT_GT(counter(in_node([&] { return dp_->stats(); }), "drop_policy"), 0u);
}

TEST_F(EbpfPolicy, ProgrammingTheSameSetAgainOrAfterARestartWritesNothing) {
  const PolicySet set = b_isolated();
  uint64_t before = writes();
  program(set);
  uint64_t after_first = writes();
  EXPECT_GT(after_first, before);
  ebpf::PolicyState state = ebpf::PinnedMaps::open(node_->bpffs_root()).policy_state();
  EXPECT_TRUE(state.enforced);
  EXPECT_NE(state.revision, 0u);

  program(set);
  EXPECT_EQ(writes(), after_first) << "the second call found nothing to change";
  EXPECT_EQ(ebpf::PinnedMaps::open(node_->bpffs_root()).policy_state().revision, state.revision);

  // A restarted agent reads the maps back and writes nothing either; enforcement went on.
  dp_ = node_->started_backend(node_->config());
  program(set);
  EXPECT_EQ(writes(), 0u);
  EXPECT_EQ(ebpf::PinnedMaps::open(node_->bpffs_root()).policy_state().revision, state.revision);
  EXPECT_FALSE(node_->tcp_exchange(0, 1, AF_INET, kDeniedPort));

  // One change = the entries that differ + the revision bump.
  PolicySet changed = set;
  changed.endpoints[102].ingress.push_back(PolicyEntry{kIdA, IPPROTO_UDP, 53, 53});
  program(changed);
  EXPECT_EQ(writes(), 2u);
  EXPECT_EQ(ebpf::PinnedMaps::open(node_->bpffs_root()).policy_state().revision, state.revision + 1);
}

TEST_F(EbpfPolicy, MapsHoldTheSetAsPortPrefixes) {
  PolicySet set = b_isolated();
  set.endpoints[102].ingress.push_back(PolicyEntry{kIdA, IPPROTO_UDP, 1000, 2000});
  set.endpoints[102].egress_isolated = true;  // no egress entries: b may send nothing new
  program(set);
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(node_->bpffs_root());
  EXPECT_EQ(maps.ipcache(), set.ipcache);

  std::vector<ebpf::PolicyMapEntry> b = entries_of(102);
  uint32_t covered = 0;
  for (const auto& e : b) {
    EXPECT_EQ(e.direction, FERRY_DIR_INGRESS) << "an isolated direction without entries has none";
    EXPECT_EQ(e.peer, kIdA);
    if (e.proto == IPPROTO_UDP) {
      EXPECT_GE(e.port_first, 1000);
      EXPECT_LE(e.port_last, 2000);
      covered += e.port_last - e.port_first + 1u;
    }
  }
  EXPECT_EQ(covered, 1001u) << "the prefixes cover 1000-2000 exactly";
  std::vector<ebpf::PolicyMapEntry> a = entries_of(101);
  ASSERT_EQ(a.size(), 2u) << "a is not named by the set: not isolated either way";
  for (const auto& e : a) {
    EXPECT_EQ(e.peer, 0u);
    EXPECT_EQ(e.proto, 0u);
  }
  EXPECT_FALSE(node_->tcp_exchange(1, 0, AF_INET, kAllowedPort)) << "b's egress is closed";
}

TEST_F(EbpfPolicy, RemovingAnEndpointRemovesItsEntries) {
  program(b_isolated());
  ASSERT_FALSE(entries_of(102).empty());
  const uint32_t revision = ebpf::PinnedMaps::open(node_->bpffs_root()).policy_state().revision;
  dataplane::Endpoint b = node_->endpoint(1);
  in_node([&] { dp_->remove_endpoint(b); });
  EXPECT_TRUE(entries_of(102).empty());
  EXPECT_EQ(entries_of(101).size(), 2u);
  EXPECT_GT(ebpf::PinnedMaps::open(node_->bpffs_root()).policy_state().revision, revision);
}

TEST_F(EbpfPolicy, EnforceOffEmptiesTheMapsAndAllowsEverything) {
  program(b_isolated());
  ASSERT_FALSE(node_->tcp_exchange(0, 1, AF_INET, kDeniedPort));
  PolicySet off = b_isolated();
  off.enforce = false;
  program(off);
  ebpf::PinnedMaps maps = ebpf::PinnedMaps::open(node_->bpffs_root());
  EXPECT_FALSE(maps.policy_state().enforced);
  EXPECT_TRUE(maps.policy_entries().empty());
  EXPECT_TRUE(maps.ipcache().empty());
  EXPECT_TRUE(node_->tcp_exchange(0, 1, AF_INET, kDeniedPort));
  EXPECT_EQ(node_->ping(0, node_->pod(1).ip4, 2), 2);
  // The overlay part of the config is untouched by policy (and the reverse, in program_overlay).
  uint64_t w = writes();
  program(off);
  EXPECT_EQ(writes(), w);
}

// ferryctl reads the policy maps back (table and JSON) and monitor names the denying side.
TEST_F(EbpfPolicy, FerryctlShowsTheMapsAndPolicyDropsWithTheirDirection) {
  program(b_isolated());
  auto ferryctl = [&](const std::string& args) {
    return sh_status("nsenter --net=" + node_->node().path() + " " + FERRY_BIN_DIR + "/ferryctl --bpffs-root " +
                     node_->bpffs_root() + " " + args + " 2>/dev/null");
  };
  ShellResult r = ferryctl("-o json policy-map --endpoint 102");
  ASSERT_EQ(r.status, 0) << r.out;
  nlohmann::json map = nlohmann::json::parse(r.out);
  EXPECT_EQ(map["enforced"], true);
  ASSERT_EQ(map["entries"].size(), 2u);  // ingress: a on TCP kAllowedPort; egress: not isolated
  const nlohmann::json& in = map["entries"][0];
  EXPECT_EQ(in["direction"], "ingress");
  EXPECT_EQ(in["peer"], kIdA);
  EXPECT_EQ(in["protocol"], "tcp");
  EXPECT_EQ(in["port_first"], kAllowedPort);
  EXPECT_EQ(in["port_last"], kAllowedPort);
  EXPECT_EQ(map["entries"][1]["direction"], "egress");
  EXPECT_EQ(map["entries"][1]["peer_name"], "any");

  r = ferryctl("policy-map");
  EXPECT_NE(r.out.find("policy enforced, revision"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(std::to_string(kAllowedPort)), std::string::npos) << r.out;

  r = ferryctl("-o json ipcache");
  ASSERT_EQ(r.status, 0) << r.out;
  nlohmann::json ipc = nlohmann::json::parse(r.out);
  ASSERT_EQ(ipc.size(), 6u);
  EXPECT_EQ(ipc[0]["prefix"], "0.0.0.0/0");
  EXPECT_EQ(ipc[0]["identity_name"], "world");
  EXPECT_EQ(ipc[1]["prefix"], node_->pod(0).ip4.str() + "/32");
  EXPECT_EQ(ipc[1]["identity"], kIdA);

  // A denied connection attempt while monitor listens: the event says policy, ingress, b.
  auto monitor = std::async(std::launch::async, [&] { return ferryctl("-o json monitor --count 1 --timeout 20"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // let it open the ring buffer
  EXPECT_FALSE(node_->tcp_exchange(0, 1, AF_INET, kDeniedPort));
  r = monitor.get();
  ASSERT_EQ(r.status, 0);
  std::istringstream lines(r.out);
  std::string line;
  ASSERT_TRUE(std::getline(lines, line)) << "no event";
  nlohmann::json ev = nlohmann::json::parse(line);
  EXPECT_EQ(ev["reason"], "policy");
  EXPECT_EQ(ev["direction"], "ingress");
  EXPECT_EQ(ev["endpoint_id"], 102);
  EXPECT_EQ(ev["dport"], kDeniedPort);
  EXPECT_EQ(ev["source"].get<std::string>().rfind("bpf/lib/policy.h:", 0), 0u) << ev.dump();
}

}  // namespace
}  // namespace ferry::ebpftest
