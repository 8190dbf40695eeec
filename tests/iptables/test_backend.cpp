// Root tests of the iptables backend in private namespaces (prefix fyipt): a node netns with a
// bridge, two pod netns attached by veth (IPv4 + IPv6 in one subnet), and the backend running
// inside the node netns. Everything lives in those namespaces and goes with them.
#include <gtest/gtest.h>

#include "tests/iptables/bridge_node.h"

namespace ferry::iptables {
namespace {

using dataplane::Endpoint;
using test::sh;
using testing::Pod;
using testing::save_without_noise;

const Pod kPodA{"fyipt-pa", "fyipt0a", "10.250.0.1", "fd00:fa::1"};
const Pod kPodB{"fyipt-pb", "fyipt0b", "10.250.0.2", "fd00:fa::2"};

class IptablesBackend : public testing::BridgeNode {
 protected:
  void SetUp() override { build("fyipt", kPodA, kPodB); }

  std::vector<Endpoint> desired() { return {endpoint_of(1, kPodA), endpoint_of(2, kPodB)}; }
  uint64_t drop_spoofed(dataplane::Dataplane& dp) { return drop_counter(dp, "drop_spoofed"); }
};

TEST_F(IptablesBackend, ProgrammedPodsTalkAndSpoofedSourcesAreDropped) {
  // Spoofing works before the datapath is there: what follows is our rules' doing.
  sh("ip -n fyipt-pa addr add 10.250.0.99/24 dev eth0");
  // Deprecated (preferred_lft 0), so the pod's own address stays the default source.
  sh("ip -n fyipt-pa addr add fd00:fa::99/64 dev eth0 nodad preferred_lft 0");
  ASSERT_TRUE(ping(kPodA, kPodB.v4, "10.250.0.99"));
  ASSERT_TRUE(ping(kPodA, kPodB.v6, "fd00:fa::99"));

  auto dp = make_iptables_dataplane();
  EXPECT_EQ(dp->name(), "iptables");
  in_node([&] {
    dp->start();
    for (const Endpoint& ep : desired()) dp->program_endpoint(ep);
  });
  EXPECT_EQ(node_->exec("cat /proc/sys/net/bridge/bridge-nf-call-iptables"), "1\n");
  EXPECT_EQ(node_->exec("cat /proc/sys/net/bridge/bridge-nf-call-ip6tables"), "1\n");

  EXPECT_TRUE(ping(kPodA, kPodB.v4));
  EXPECT_TRUE(ping(kPodB, kPodA.v4));
  EXPECT_TRUE(ping(kPodA, kPodB.v6));
  EXPECT_TRUE(ping(kPodB, kPodA.v6));

  const uint64_t before = drop_spoofed(*dp);
  EXPECT_TRUE(ping_fails(kPodA, kPodB.v4, "10.250.0.99"));
  const uint64_t after_v4 = drop_spoofed(*dp);
  EXPECT_GT(after_v4, before);
  EXPECT_TRUE(ping_fails(kPodA, kPodB.v6, "fd00:fa::99"));
  EXPECT_GT(drop_spoofed(*dp), after_v4);
  // The pod's own addresses still work after the drops.
  EXPECT_TRUE(ping(kPodA, kPodB.v4));

  // Traffic to the node itself (INPUT, through FERRY-INPUT) gets the same check.
  sh("ip -n fyipt-node addr add 10.250.0.254/24 dev fyiptbr0");
  EXPECT_TRUE(ping(kPodA, "10.250.0.254"));
  const uint64_t before_input = drop_spoofed(*dp);
  EXPECT_TRUE(ping_fails(kPodA, "10.250.0.254", "10.250.0.99"));
  EXPECT_GT(drop_spoofed(*dp), before_input);

  std::vector<Endpoint> installed;
  in_node([&] { installed = dp->installed_endpoints(); });
  EXPECT_EQ(installed, desired());
}

TEST_F(IptablesBackend, RestartFindsEverythingInstalledAndWritesNothing) {
  {
    auto first = make_iptables_dataplane();
    in_node([&] {
      first->start();
      for (const Endpoint& ep : desired()) first->program_endpoint(ep);
    });
    uint64_t writes = 0;
    in_node([&] { writes = first->stats().kernel_writes; });
    EXPECT_GE(writes, 4u);  // 2 endpoints x 2 families, at least
  }
  const std::string v4_before = save_without_noise(node_save("iptables-save", "filter"));
  const std::string v6_before = save_without_noise(node_save("ip6tables-save", "filter"));

  auto restarted = make_iptables_dataplane();
  dataplane::EndpointDiff diff;
  dataplane::Stats stats;
  in_node([&] {
    restarted->start();
    diff = dataplane::diff_endpoints(desired(), restarted->installed_endpoints());
    stats = restarted->stats();
  });
  EXPECT_TRUE(diff.program.empty()) << diff.program.size() << " endpoint(s) to reprogram";
  EXPECT_TRUE(diff.remove.empty()) << diff.remove.size() << " endpoint(s) to remove";
  EXPECT_EQ(stats.kernel_writes, 0u);
  EXPECT_EQ(save_without_noise(node_save("iptables-save", "filter")), v4_before);
  EXPECT_EQ(save_without_noise(node_save("ip6tables-save", "filter")), v6_before);
  EXPECT_TRUE(ping(kPodA, kPodB.v4));
}

TEST_F(IptablesBackend, RemoveEndpointRemovesOnlyItsChains) {
  auto dp = make_iptables_dataplane();
  std::vector<Endpoint> installed;
  in_node([&] {
    dp->start();
    for (const Endpoint& ep : desired()) dp->program_endpoint(ep);
    installed = dp->installed_endpoints();
  });
  ASSERT_EQ(installed.size(), 2u);
  in_node([&] {
    dp->remove_endpoint(installed[0]);
    installed = dp->installed_endpoints();
  });
  EXPECT_EQ(installed, std::vector<Endpoint>{endpoint_of(2, kPodB)});
  for (const char* tool : {"iptables-save", "ip6tables-save"}) {
    const std::string save = node_save(tool, "filter");
    EXPECT_EQ(save.find(from_chain(kPodA.veth)), std::string::npos) << save;
    EXPECT_EQ(save.find(to_chain(kPodA.veth)), std::string::npos) << save;
    EXPECT_EQ(save.find(kPodA.veth), std::string::npos) << save;
    EXPECT_NE(save.find(":" + from_chain(kPodB.veth)), std::string::npos) << save;
    EXPECT_NE(save.find(":" + to_chain(kPodB.veth)), std::string::npos) << save;
  }
  // Removing it again finds nothing to do.
  uint64_t writes = 0, writes_after = 0;
  in_node([&] {
    writes = dp->stats().kernel_writes;
    dp->remove_endpoint(endpoint_of(1, kPodA));
    writes_after = dp->stats().kernel_writes;
  });
  EXPECT_EQ(writes_after, writes);
  // Pod A is no longer filtered; pod B still is.
  sh("ip -n fyipt-pa addr add 10.250.0.99/24 dev eth0");
  sh("ip -n fyipt-pb addr add 10.250.0.98/24 dev eth0");
  EXPECT_TRUE(ping(kPodA, kPodB.v4, "10.250.0.99"));
  EXPECT_TRUE(ping_fails(kPodB, kPodA.v4, "10.250.0.98"));
}

TEST_F(IptablesBackend, CleanupAllRemovesOurChainsAndLeavesThePluginsNatChains) {
  // Chains of ferry-portmap and ferry-bridge live in nat; cleanup must not touch them.
  for (const char* tool : {"iptables", "ip6tables"}) {
    const std::string t = std::string(tool) + " -w -t nat ";
    node_->exec(t + "-N FERRY-HOSTPORT-fyipt");
    node_->exec(t + "-A FERRY-HOSTPORT-fyipt -p tcp --dport 8080 -m comment --comment \"ferry: fyipt hostport\" -j RETURN");
    node_->exec(t + "-A PREROUTING -m comment --comment \"ferry: fyipt hostport\" -j FERRY-HOSTPORT-fyipt");
    node_->exec(t + "-N FERRY-DN-fyipt");
    node_->exec(t + "-N FERRY-MASQ-fyipt");
    node_->exec(t + "-A POSTROUTING -m comment --comment \"ferry: fyipt masq\" -j FERRY-MASQ-fyipt");
  }
  const std::string nat4 = save_without_noise(node_save("iptables-save", "nat"));
  const std::string nat6 = save_without_noise(node_save("ip6tables-save", "nat"));

  auto dp = make_iptables_dataplane();
  in_node([&] {
    dp->start();
    for (const Endpoint& ep : desired()) dp->program_endpoint(ep);
    dp->cleanup_all();
  });
  for (const char* tool : {"iptables-save", "ip6tables-save"}) {
    const std::string save = node_save(tool, "filter");
    EXPECT_EQ(save.find("FERRY-"), std::string::npos) << save;
    EXPECT_EQ(save.find("ferry"), std::string::npos) << save;
  }
  EXPECT_EQ(save_without_noise(node_save("iptables-save", "nat")), nat4);
  EXPECT_EQ(save_without_noise(node_save("ip6tables-save", "nat")), nat6);
  EXPECT_NE(nat4.find(":FERRY-HOSTPORT-fyipt"), std::string::npos) << nat4;
  EXPECT_EQ(node_->exec("cat /proc/sys/net/bridge/bridge-nf-call-iptables"), "0\n");
  EXPECT_EQ(node_->exec("cat /proc/sys/net/bridge/bridge-nf-call-ip6tables"), "0\n");

  // Idempotent and cheap: a second cleanup (another instance, as after a restart) writes nothing.
  auto again = make_iptables_dataplane();
  dataplane::Stats stats;
  std::vector<Endpoint> installed;
  in_node([&] {
    again->cleanup_all();
    stats = again->stats();
    installed = again->installed_endpoints();
  });
  EXPECT_EQ(stats.kernel_writes, 0u);
  EXPECT_TRUE(installed.empty());
  EXPECT_TRUE(ping(kPodA, kPodB.v4));
}

}  // namespace
}  // namespace ferry::iptables
