// ferry-bridge next to the reference plugins (cniVersion 1.0.0: the Debian reference build
// does not speak 1.1.0): reference bridge + ferry-host-local, ferry-bridge + reference
// host-local, ferry-bridge chained with the reference portmap, bandwidth and tuning, and
// ferry-bridge's DEL cleaning up after a reference bridge ADD (switching "type" on a live node).
#include "tests/integration/test_bridge_fixture.h"

namespace ferry::test {
namespace {

class BridgeInterop : public BridgeFixture {
 protected:
  std::string ref(const std::string& name) const { return reference_plugin_dir() + "/" + name; }
  static std::string first_ip(const json& result) {
    std::string a = result["ips"][0]["address"];
    return a.substr(0, a.find('/'));
  }
  // Chained call: the plugin's own object plus name/cniVersion and prevResult.
  PluginRun chained(const std::string& verb, const std::string& binary, const std::string& name, const TestNetns& ns,
                    json plugin, const json& prev) {
    plugin["cniVersion"] = "1.0.0";
    plugin["name"] = network_;
    if (!prev.is_null()) plugin["prevResult"] = prev;
    return call(verb, cid(name), ns.path(), plugin, "eth0", "", binary);
  }
};

TEST_F(BridgeInterop, ReferenceBridgeWithFerryHostLocal) {
  TestNetns& a = pod("a");
  TestNetns& b = pod("b");
  json c = conf({{"type", "bridge"}});
  PluginRun ra = call("ADD", cid("a"), a.path(), c, "eth0", "", ref("bridge"));
  ASSERT_EQ(ra.exit_code, 0) << ra.out;
  added_.push_back({cid("a"), a.path(), "eth0", c});
  PluginRun rb = call("ADD", cid("b"), b.path(), c, "eth0", "", ref("bridge"));
  ASSERT_EQ(rb.exit_code, 0) << rb.out;
  EXPECT_EQ(reservations().size(), 2u);
  EXPECT_EQ(a.exec_status("ping -c1 -W2 " + first_ip(rb.json_out()) + " >/dev/null"), 0);
  PluginRun check = call("CHECK", cid("a"), a.path(), with_prev(c, ra.json_out()), "eth0", "", ref("bridge"));
  EXPECT_EQ(check.exit_code, 0) << check.out;
  for (const std::string n : {"a", "b"}) {
    PluginRun del = call("DEL", cid(n), (n == "a" ? a : b).path(), c, "eth0", "", ref("bridge"));
    EXPECT_EQ(del.exit_code, 0) << del.out;
  }
  EXPECT_TRUE(reservations().empty());
}

TEST_F(BridgeInterop, FerryBridgeWithReferenceHostLocal) {
  TestNetns& a = pod("a");
  json c = conf({{"ipam", ipam(true, "host-local")}});
  json r = add("a", a, c);
  ASSERT_EQ(r["ips"].size(), 2u);
  EXPECT_EQ(read_text(store() + "/" + first_ip(r)), cid("a") + "\r\neth0") << "the reference's own store format";
  EXPECT_EQ(a.exec_status("ping -c1 -W2 " + gateway() + " >/dev/null"), 0);
  PluginRun check = call("CHECK", cid("a"), a.path(), with_prev(c, r));
  EXPECT_EQ(check.exit_code, 0) << check.out;
  PluginRun del = call("DEL", cid("a"), a.path(), c);
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_TRUE(reservations().empty());
  EXPECT_TRUE(host_veths().empty());
}

TEST_F(BridgeInterop, ChainedWithReferencePortmapBandwidthAndTuning) {
  TestNetns& a = pod("a");
  TestNetns& client = pod("client");
  json bridge_conf = conf({{"ipMasq", true}, {"ipam", ipam(true)}});
  json portmap = {{"type", "portmap"},
                  {"capabilities", {{"portMappings", true}}},
                  {"runtimeConfig", {{"portMappings", {{{"hostPort", 18000 + idx_}, {"containerPort", 80}, {"protocol", "tcp"}}}}}}};
  json bandwidth = {{"type", "bandwidth"},
                    {"ingressRate", 8000000}, {"ingressBurst", 800000},
                    {"egressRate", 8000000},  {"egressBurst", 800000}};
  json tuning = {{"type", "tuning"}, {"sysctl", {{"net.ipv4.conf.eth0.arp_ignore", "1"}}}};

  json r0 = add("a", a, bridge_conf);
  ASSERT_TRUE(r0.is_object());
  PluginRun r1 = chained("ADD", ref("portmap"), "a", a, portmap, r0);
  ASSERT_EQ(r1.exit_code, 0) << r1.out << r1.err;
  PluginRun r2 = chained("ADD", ref("bandwidth"), "a", a, bandwidth, r1.json_out());
  ASSERT_EQ(r2.exit_code, 0) << r2.out << r2.err;
  PluginRun r3 = chained("ADD", ref("tuning"), "a", a, tuning, r2.json_out());
  ASSERT_EQ(r3.exit_code, 0) << r3.out << r3.err;
  json final_result = r3.json_out();

  // Each plugin found what it needed in ferry-bridge's result.
  std::string veth = r0["interfaces"][1]["name"];
  EXPECT_NE(sh("tc qdisc show dev " + veth).find("tbf"), std::string::npos) << "bandwidth found the host veth";
  EXPECT_EQ(a.exec("cat /proc/sys/net/ipv4/conf/eth0/arp_ignore"), "1\n");
  EXPECT_NE(sh("iptables-save -t nat 2>/dev/null").find("\"dnat name: \\\"" + network_ + "\\\" id: \\\"" + cid("a")),
            std::string::npos);

  // The mapped port works: another pod connects to the gateway's host port.
  json rc = add("client", client, conf());
  a.exec("sh -c 'echo h3-hello | timeout 5 nc -l -p 80 >/dev/null 2>&1 &'");
  std::string got;
  for (int i = 0; i < 20 && got.find("h3-hello") == std::string::npos; ++i)
    got = sh_status("ip netns exec " + client.name() + " timeout 2 nc -w1 " + gateway() + " " +
                    std::to_string(18000 + idx_) + " </dev/null 2>/dev/null")
              .out;
  EXPECT_NE(got.find("h3-hello"), std::string::npos) << "hostPort DNAT reached the pod";

  // CHECK every plugin with the final result, DEL in reverse order.
  PluginRun check = call("CHECK", cid("a"), a.path(), with_prev(bridge_conf, final_result));
  EXPECT_EQ(check.exit_code, 0) << check.out;
  // Not portmap: its 1.1.1 CHECK looks up the IPv4 rules in the ip6tables chain and fails
  // the same way after the reference bridge.
  for (auto [binary, plugin] : std::vector<std::pair<std::string, json>>{
           {ref("bandwidth"), bandwidth}, {ref("tuning"), tuning}}) {
    PluginRun chk = chained("CHECK", binary, "a", a, plugin, final_result);
    EXPECT_EQ(chk.exit_code, 0) << binary << ": " << chk.out;
  }
  for (auto [binary, plugin] : std::vector<std::pair<std::string, json>>{
           {ref("tuning"), tuning}, {ref("bandwidth"), bandwidth}, {ref("portmap"), portmap}}) {
    PluginRun del = chained("DEL", binary, "a", a, plugin, final_result);
    EXPECT_EQ(del.exit_code, 0) << binary << ": " << del.out;
  }
  PluginRun del = call("DEL", cid("a"), a.path(), with_prev(bridge_conf, final_result));
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_FALSE(host_link_exists(veth));
  EXPECT_EQ(masq_rule_count(), 0);
  EXPECT_EQ(sh("iptables-save -t nat 2>/dev/null").find("id: \\\"" + cid("a") + "\\\""), std::string::npos);
}

// A node switches "type" from bridge to ferry-bridge with pods running: ferry's DEL removes
// what the reference ADD made, including its masquerade chain (found by its comment).
TEST_F(BridgeInterop, FerryDelCleansUpAReferenceAdd) {
  TestNetns& a = pod("a");
  json c = conf({{"ipMasq", true}});
  json ref_conf = c;
  ref_conf["type"] = "bridge";
  PluginRun r = call("ADD", cid("a"), a.path(), ref_conf, "eth0", "", ref("bridge"));
  ASSERT_EQ(r.exit_code, 0) << r.out;
  added_.push_back({cid("a"), a.path(), "eth0", c});
  std::string veth = r.json_out()["interfaces"][1]["name"];
  EXPECT_GT(masq_rule_count(), 0);
  PluginRun del = call("DEL", cid("a"), a.path(), c);
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_FALSE(host_link_exists(veth));
  EXPECT_EQ(masq_rule_count(), 0) << "the reference's CNI-... chain is gone too";
  EXPECT_TRUE(reservations().empty());
}

}  // namespace
}  // namespace ferry::test
