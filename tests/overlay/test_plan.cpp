// Overlay plan from Node objects, VTEP MACs, the conflist and the masquerade rule text (no root).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/overlay/internal.h"
#include "agent/overlay/overlay.h"
#include "nodes.h"

namespace ferry::overlay::test {
namespace {

net::Ip ip(const char* text) { return *net::Ip::parse(text); }
net::Prefix cidr(const char* text) { return *net::Prefix::parse(text); }

TEST(OverlayVtepMac, DerivedFromTheUnderlayIPv4) {
  EXPECT_EQ(net::mac_str(vtep_mac(ip("192.168.50.3"))), "0e:fe:c0:a8:32:03");
  EXPECT_EQ(net::mac_str(vtep_mac(ip("10.0.0.1"))), "0e:fe:0a:00:00:01");
  // Locally administered (0x02) unicast (not 0x01).
  net::Mac m = vtep_mac(ip("172.16.1.2"));
  EXPECT_EQ(m[0] & 0x03, 0x02);
}

TEST(OverlayVtepMac, IPv6UsesTheLastFourBytes) {
  EXPECT_EQ(net::mac_str(vtep_mac(ip("fd00::c0a8:3203"))), "0e:fe:c0:a8:32:03");
}

TEST(OverlayPlan, DualStackClusterOfThree) {
  auto state = state_of({node_json("n1", {"10.244.1.0/24", "fd00:10:244:1::/64"}, {"192.168.50.1"}),
                         node_json("n2", {"10.244.2.0/24", "fd00:10:244:2::/64"}, {"192.168.50.2"}),
                         node_json("n3", {"10.244.3.0/24"}, {"192.168.50.3", "fd00:50::3"})});
  OverlayConfig config;
  config.vni = 7;
  OverlayPlan plan = plan_overlay(state, "n2", config);
  ASSERT_TRUE(plan.ready());
  EXPECT_EQ(plan.config.vni, 7u);
  EXPECT_EQ(plan.self_node, "n2");
  EXPECT_EQ(*plan.local_underlay_ip, ip("192.168.50.2"));
  EXPECT_EQ(plan.local_pod_cidrs, (std::vector<net::Prefix>{cidr("10.244.2.0/24"), cidr("fd00:10:244:2::/64")}));
  ASSERT_EQ(plan.remotes.size(), 2u);  // self excluded
  EXPECT_EQ(plan.remotes[0].name, "n1");
  EXPECT_EQ(plan.remotes[0].underlay_ip, ip("192.168.50.1"));
  EXPECT_EQ(net::mac_str(plan.remotes[0].vtep_mac), "0e:fe:c0:a8:32:01");
  EXPECT_EQ(plan.remotes[0].pod_cidrs,
            (std::vector<net::Prefix>{cidr("10.244.1.0/24"), cidr("fd00:10:244:1::/64")}));
  EXPECT_EQ(plan.remotes[1].name, "n3");
  EXPECT_EQ(plan.remotes[1].underlay_ip, ip("192.168.50.3"));  // IPv4 InternalIP preferred
  EXPECT_EQ(plan.remotes[1].pod_cidrs, (std::vector<net::Prefix>{cidr("10.244.3.0/24")}));
  EXPECT_EQ(plan.cluster_pod_cidrs.size(), 5u);
  EXPECT_TRUE(plan.skipped.empty());
}

TEST(OverlayPlan, NodesWithoutCidrOrAddressAreSkippedWithAReason) {
  auto state = state_of({node_json("a", {"10.244.1.0/24"}, {"192.168.50.1"}),
                         node_json("b-no-cidr", {}, {"192.168.50.2"}),
                         node_json("c-no-ip", {"10.244.3.0/24"}, {}),
                         node_json("d-v6-underlay", {"10.244.4.0/24"}, {"fd00:50::4"}),
                         node_json("e-same-cidr", {"10.244.1.0/24"}, {"192.168.50.5"})});
  OverlayPlan plan = plan_overlay(state, "a", {});
  EXPECT_TRUE(plan.remotes.empty());
  ASSERT_EQ(plan.skipped.size(), 4u);
  EXPECT_EQ(plan.skipped[0], "node b-no-cidr: no pod CIDR");
  EXPECT_EQ(plan.skipped[1], "node c-no-ip: no InternalIP");
  EXPECT_NE(plan.skipped[2].find("d-v6-underlay"), std::string::npos);
  EXPECT_NE(plan.skipped[3].find("10.244.1.0/24 is already another node's"), std::string::npos);
}

TEST(OverlayPlan, MissingSelfIsNotReady) {
  auto state = state_of({node_json("a", {"10.244.1.0/24"}, {"192.168.50.1"})});
  OverlayPlan plan = plan_overlay(state, "zz", {});
  EXPECT_FALSE(plan.ready());
  ASSERT_FALSE(plan.skipped.empty());
  EXPECT_NE(plan.skipped[0].find("no Node object"), std::string::npos);
  EXPECT_EQ(plan.remotes.size(), 1u);  // still planned; the applier refuses an unready plan
}

TEST(OverlayPlan, ReaddressedNodeGetsANewVtepMac) {
  auto before = plan_overlay(state_of({node_json("a", {"10.244.1.0/24"}, {"192.168.50.1"}),
                                       node_json("b", {"10.244.2.0/24"}, {"192.168.50.2"})}),
                             "a", {});
  auto after = plan_overlay(state_of({node_json("a", {"10.244.1.0/24"}, {"192.168.50.1"}),
                                      node_json("b", {"10.244.2.0/24"}, {"192.168.50.9"})}),
                            "a", {});
  ASSERT_EQ(before.remotes.size(), 1u);
  ASSERT_EQ(after.remotes.size(), 1u);
  EXPECT_EQ(after.remotes[0].underlay_ip, ip("192.168.50.9"));
  EXPECT_EQ(net::mac_str(after.remotes[0].vtep_mac), "0e:fe:c0:a8:32:09");
  EXPECT_EQ(before.remotes[0].pod_cidrs, after.remotes[0].pod_cidrs);
}

TEST(OverlayConflist, RangesAndRoutesPerFamily) {
  ConflistOptions o;
  o.network = "ferry";
  o.mtu = 1450;
  o.endpoint_dir = "/run/ferry/n1/endpoints";
  o.agent_socket = "/run/ferry/n1/agent.sock";
  o.ipam_dir = "/var/lib/cni/networks";
  auto j = nlohmann::json::parse(render_conflist({cidr("10.244.1.0/24"), cidr("fd00:10:244:1::/64")}, o));
  EXPECT_EQ(j["cniVersion"], "1.1.0");
  EXPECT_EQ(j["name"], "ferry");
  ASSERT_EQ(j["plugins"].size(), 1u);
  const auto& b = j["plugins"][0];
  EXPECT_EQ(b["type"], "ferry-bridge");
  EXPECT_EQ(b["bridge"], "ferry0");
  EXPECT_EQ(b["isGateway"], true);
  EXPECT_EQ(b["ipMasq"], false);
  EXPECT_EQ(b["hairpinMode"], true);  // Services: a pod reaching itself in iptables mode
  EXPECT_EQ(b["mtu"], 1450);
  EXPECT_EQ(b["agentRequired"], true);
  EXPECT_EQ(b["endpointDir"], "/run/ferry/n1/endpoints");
  EXPECT_EQ(b["agentSocket"], "/run/ferry/n1/agent.sock");
  EXPECT_EQ(b["ipam"]["type"], "ferry-host-local");
  EXPECT_EQ(b["ipam"]["dataDir"], "/var/lib/cni/networks");
  EXPECT_EQ(b["ipam"]["ranges"], nlohmann::json::parse(R"([[{"subnet":"10.244.1.0/24"}],[{"subnet":"fd00:10:244:1::/64"}]])"));
  EXPECT_EQ(b["ipam"]["routes"], nlohmann::json::parse(R"([{"dst":"0.0.0.0/0"},{"dst":"::/0"}])"));
}

TEST(OverlayConflist, SingleStackAndNone) {
  ConflistOptions o;
  auto j = nlohmann::json::parse(render_conflist({cidr("10.244.7.0/24")}, o));
  EXPECT_EQ(j["plugins"][0]["ipam"]["routes"], nlohmann::json::parse(R"([{"dst":"0.0.0.0/0"}])"));
  EXPECT_FALSE(j["plugins"][0].contains("mtu"));
  EXPECT_EQ(render_conflist({}, o), "");
}

TEST(OverlayMasquerade, RuleTextAndSync) {
  const std::string rule = detail::masquerade_rule(kPodSetV4);
  EXPECT_EQ(rule,
            "-A FERRY-POSTROUTING -m set --match-set ferry-pods-v4 src -m set ! --match-set ferry-pods-v4 dst "
            "-m comment --comment \"ferry: masquerade pod traffic leaving the cluster v1\" -j MASQUERADE");
  detail::NatState empty;
  std::string text = detail::render_nat_sync(empty, kPodSetV4);
  EXPECT_NE(text.find(":FERRY-POSTROUTING - [0:0]\n"), std::string::npos);
  EXPECT_NE(text.find(rule), std::string::npos);
  EXPECT_NE(text.find("-I POSTROUTING 1 -m comment --comment \"ferry: overlay masquerade\" -j FERRY-POSTROUTING"),
            std::string::npos);
  EXPECT_EQ(detail::render_nat_removal(empty), "");

  // iptables-save output holding exactly ours: nothing to do; removal deletes jump and chain.
  const std::string saved =
      "*nat\n:PREROUTING ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n:FERRY-POSTROUTING - [0:0]\n"
      "-A POSTROUTING -m comment --comment \"ferry: overlay masquerade\" -j FERRY-POSTROUTING\n"
      "-A FERRY-POSTROUTING -m set --match-set ferry-pods-v4 src -m set ! --match-set ferry-pods-v4 dst -m comment "
      "--comment \"ferry: masquerade pod traffic leaving the cluster v1\" -j MASQUERADE\nCOMMIT\n";
  detail::NatState s = detail::parse_nat(saved);
  EXPECT_TRUE(s.chain);
  EXPECT_EQ(s.our_rules, 1u);
  EXPECT_EQ(s.jumps.size(), 1u);
  EXPECT_EQ(detail::render_nat_sync(s, kPodSetV4), "");
  EXPECT_EQ(detail::render_nat_removal(s),
            "*nat\n:FERRY-POSTROUTING - [0:0]\n"
            "-D POSTROUTING -m comment --comment \"ferry: overlay masquerade\" -j FERRY-POSTROUTING\n"
            "-X FERRY-POSTROUTING\nCOMMIT\n");

  // An old rule version is rewritten; a doubled jump collapses to one.
  std::string old = saved;
  old.replace(old.find(" v1"), 3, " v0");
  old.insert(old.find("-A FERRY"), "-A POSTROUTING -m comment --comment \"ferry: overlay masquerade\" -j FERRY-POSTROUTING\n");
  detail::NatState o = detail::parse_nat(old);
  EXPECT_EQ(o.our_rules, 0u);
  EXPECT_EQ(o.jumps.size(), 2u);
  std::string fix = detail::render_nat_sync(o, kPodSetV4);
  EXPECT_NE(fix.find(rule), std::string::npos);
  EXPECT_EQ(std::count(fix.begin(), fix.end(), '\n'), 7);  // *nat, chain, rule, 2x -D, -I, COMMIT
}

}  // namespace
}  // namespace ferry::overlay::test
