// ferry-bridge + ferry-host-local end to end in real namespaces: the JSON result against the
// kernel's view (ip -j), reachability between pods, dual stack, hairpin, MTU, spec versions,
// idempotent DEL (twice, netns gone, empty CNI_NETNS, stale netns file), CHECK drift,
// masquerade rules and traffic, endpoint records, L2 mode, VLANs, STATUS and GC.
#include <sys/socket.h>
#include <sys/un.h>

#include <map>
#include <set>
#include <thread>

#include "tests/integration/test_bridge_fixture.h"

namespace ferry::test {
namespace {

using BridgeAdd = BridgeFixture;

// The link as `ip -j -d link show` describes it; null when it does not exist.
json link_json(const std::string& cmd) {
  ShellResult r = sh_status(cmd + " 2>/dev/null");
  if (r.status != 0 || r.out.empty()) return json();
  json l = json::parse(r.out);
  return l.empty() ? json() : l[0];
}
json link_in(const TestNetns& ns, const std::string& name) {
  return link_json("ip -n " + ns.name() + " -j -d link show dev " + name);
}
json host_link(const std::string& name) { return link_json("ip -j -d link show dev " + name); }
bool has_addr(const json& addr_list, const std::string& local, int prefixlen) {
  for (const json& link : addr_list)
    for (const json& a : link.value("addr_info", json::array()))
      if (a.value("local", "") == local && a.value("prefixlen", 0) == prefixlen) return true;
  return false;
}
bool pings(const TestNetns& from, const std::string& ip) {
  std::string tool = ip.find(':') != std::string::npos ? "ping -6" : "ping";
  return from.exec_status(tool + " -c1 -W2 " + ip + " >/dev/null 2>&1") == 0;
}

TEST_F(BridgeAdd, ResultMatchesKernelAndCheckThenDelCleansUp) {
  TestNetns& ns = pod("a");
  json res = add("a", ns, conf());
  ASSERT_TRUE(res.is_object());
  EXPECT_EQ(res["cniVersion"], "1.0.0");

  // interfaces: [bridge, host veth, container], MACs as the kernel has them.
  ASSERT_EQ(res["interfaces"].size(), 3u);
  const json& ibr = res["interfaces"][0];
  const json& ihost = res["interfaces"][1];
  const json& ipod = res["interfaces"][2];
  EXPECT_EQ(ibr["name"], bridge_);
  EXPECT_FALSE(ibr.contains("sandbox"));
  json br = host_link(bridge_);
  ASSERT_TRUE(br.is_object());
  EXPECT_EQ(ibr["mac"], br["address"]);
  EXPECT_EQ(br["linkinfo"]["info_kind"], "bridge");

  std::string veth = ihost["name"];
  EXPECT_EQ(veth.size(), 15u);
  EXPECT_EQ(veth.rfind("ferry", 0), 0u);
  json hv = host_link(veth);
  ASSERT_TRUE(hv.is_object());
  EXPECT_EQ(ihost["mac"], hv["address"]);
  EXPECT_EQ(hv["master"], bridge_);
  EXPECT_EQ(hv["operstate"], "UP");

  EXPECT_EQ(ipod["name"], "eth0");
  EXPECT_EQ(ipod["sandbox"], ns.path());
  json eth0 = link_in(ns, "eth0");
  ASSERT_TRUE(eth0.is_object());
  EXPECT_EQ(ipod["mac"], eth0["address"]);
  EXPECT_EQ(eth0["linkinfo"]["info_kind"], "veth");
  EXPECT_EQ(eth0["operstate"], "UP");

  // ips / routes, and the same in the kernel.
  ASSERT_EQ(res["ips"].size(), 1u);
  EXPECT_EQ(res["ips"][0]["address"], subnet_prefix_ + ".2/24");
  EXPECT_EQ(res["ips"][0]["gateway"], gateway());
  EXPECT_EQ(res["ips"][0]["interface"], 2);
  EXPECT_FALSE(res["ips"][0].contains("version"));
  EXPECT_EQ(res["routes"], json::parse(R"([{"dst":"0.0.0.0/0"}])"));
  EXPECT_TRUE(has_addr(ip_json("ip -n " + ns.name() + " -j addr show dev eth0"), subnet_prefix_ + ".2", 24));
  json routes = ip_json("ip -n " + ns.name() + " -j route show default");
  ASSERT_EQ(routes.size(), 1u);
  EXPECT_EQ(routes[0]["gateway"], gateway());
  EXPECT_EQ(routes[0]["dev"], "eth0");
  // Gateway on the bridge, forwarding on, DAD off in the pod.
  EXPECT_TRUE(has_addr(ip_json("ip -j addr show dev " + bridge_), gateway(), 24));
  EXPECT_EQ(read_text("/proc/sys/net/ipv4/ip_forward"), "1\n");
  EXPECT_EQ(ns.exec("cat /proc/sys/net/ipv6/conf/eth0/accept_dad"), "0\n");

  // The IPAM reservation and the endpoint record.
  EXPECT_EQ(reservations(), std::vector<std::string>{subnet_prefix_ + ".2"});
  json rec = json::parse(read_text(endpoints() + "/" + cid("a") + "-eth0.json"));
  EXPECT_EQ(rec["containerID"], cid("a"));
  EXPECT_EQ(rec["ifname"], "eth0");
  EXPECT_EQ(rec["netns"], ns.path());
  EXPECT_EQ(rec["network"], network_);
  EXPECT_EQ(rec["bridge"], bridge_);
  EXPECT_EQ(rec["hostVeth"], veth);
  EXPECT_EQ(rec["hostVethIndex"], hv["ifindex"]);
  EXPECT_EQ(rec["containerMAC"], eth0["address"]);
  EXPECT_EQ(rec["ips"], json::array({subnet_prefix_ + ".2/24"}));
  EXPECT_EQ(rec["gateways"], json::array({gateway()}));

  PluginRun check = call("CHECK", cid("a"), ns.path(), with_prev(conf(), res));
  EXPECT_EQ(check.exit_code, 0) << check.out;
  EXPECT_EQ(check.out, "");

  PluginRun del = call("DEL", cid("a"), ns.path(), with_prev(conf(), res));
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_EQ(del.out, "");
  EXPECT_FALSE(host_link_exists(veth));
  EXPECT_TRUE(link_in(ns, "eth0").is_null());
  EXPECT_TRUE(reservations().empty());
  EXPECT_TRUE(endpoint_files().empty());
  EXPECT_TRUE(host_link_exists(bridge_)) << "the bridge is shared and never deleted";
}

TEST_F(BridgeAdd, TwoPodsReachEachOtherAndTheGateway) {
  TestNetns& a = pod("a");
  TestNetns& b = pod("b");
  json ra = add("a", a, conf());
  json rb = add("b", b, conf());
  std::string ip_a = ra["ips"][0]["address"].get<std::string>();
  std::string ip_b = rb["ips"][0]["address"].get<std::string>();
  ip_a = ip_a.substr(0, ip_a.find('/'));
  ip_b = ip_b.substr(0, ip_b.find('/'));
  EXPECT_NE(ip_a, ip_b);
  EXPECT_TRUE(pings(a, ip_b));
  EXPECT_TRUE(pings(b, ip_a));
  EXPECT_TRUE(pings(a, gateway()));
  EXPECT_EQ(sh_status("ping -c1 -W2 " + ip_b + " >/dev/null 2>&1").status, 0) << "host reaches the pod";
}

TEST_F(BridgeAdd, DualStackPodsPingOverIPv6WithoutDad) {
  TestNetns& a = pod("a");
  TestNetns& b = pod("b");
  json c = conf({{"ipam", ipam(true)}});
  json ra = add("a", a, c);
  json rb = add("b", b, c);
  ASSERT_EQ(ra["ips"].size(), 2u);
  EXPECT_EQ(ra["ips"][1]["address"], subnet6_prefix_ + "2/64");
  EXPECT_EQ(ra["ips"][1]["gateway"], gateway6());
  EXPECT_EQ(ra["ips"][1]["interface"], 2);
  std::string v6_b = rb["ips"][1]["address"].get<std::string>();
  v6_b = v6_b.substr(0, v6_b.find('/'));
  // No address is tentative: usable the moment ADD returns.
  EXPECT_EQ(a.exec("ip -6 addr show dev eth0 tentative"), "");
  EXPECT_TRUE(has_addr(ip_json("ip -j -6 addr show dev " + bridge_), gateway6(), 64));
  EXPECT_EQ(read_text("/proc/sys/net/ipv6/conf/all/forwarding"), "1\n");
  json r6 = ip_json("ip -n " + a.name() + " -j -6 route show default");
  ASSERT_EQ(r6.size(), 1u);
  EXPECT_EQ(r6[0]["gateway"], gateway6());
  EXPECT_TRUE(pings(a, v6_b));
  EXPECT_TRUE(pings(a, gateway6()));
  PluginRun check = call("CHECK", cid("a"), a.path(), with_prev(c, ra));
  EXPECT_EQ(check.exit_code, 0) << check.out;
}

TEST_F(BridgeAdd, EnabledDadWaitsForTentativeToClear) {
  TestNetns& a = pod("a");
  json c = conf({{"ipam", ipam(true)}, {"enabledad", true}});
  json r = add("a", a, c);
  ASSERT_EQ(r["ips"].size(), 2u);
  EXPECT_EQ(a.exec("cat /proc/sys/net/ipv6/conf/eth0/accept_dad"), "1\n");
  EXPECT_EQ(a.exec("ip -6 addr show dev eth0 tentative"), "") << "ADD returned before DAD finished";
}

TEST_F(BridgeAdd, HairpinModeLetsAPodReachItselfThroughADnatAddress) {
  TestNetns& a = pod("a");
  json r = add("a", a, conf({{"hairpinMode", true}}));
  std::string veth = r["interfaces"][1]["name"];
  EXPECT_EQ(read_text("/sys/class/net/" + veth + "/brport/hairpin_mode"), "1\n");
  json port = ip_json("bridge -j -d link show dev " + veth);
  ASSERT_EQ(port.size(), 1u);
  EXPECT_EQ(port[0]["hairpin"], true);

  // A "service" address DNAT'd to the pod (as kube-proxy does) plus hairpin SNAT: with
  // br_netfilter the bridge must send the frame back out the port it came in on.
  if (read_text("/proc/sys/net/bridge/bridge-nf-call-iptables") != "1\n")
    GTEST_SKIP() << "bridge-nf-call-iptables is off: the DNAT part needs br_netfilter";
  std::string ip = r["ips"][0]["address"].get<std::string>();
  ip = ip.substr(0, ip.find('/'));
  const std::string vip = "198.51.100." + std::to_string(10 + idx_ % 200);
  const std::string tag = "-m comment --comment h3-test-" + id_;
  sh("iptables -w -t nat -I PREROUTING -d " + vip + " " + tag + " -j DNAT --to-destination " + ip);
  sh("iptables -w -t nat -I POSTROUTING -s " + ip + " -d " + ip + " " + tag + " -j SNAT --to-source " + gateway());
  EXPECT_TRUE(pings(a, vip)) << "hairpin on: the pod reaches itself through " << vip;

  // Control: the same path with hairpin off fails (the test can fail).
  sh("ip link set dev " + veth + " type bridge_slave hairpin off");
  sh_status("conntrack -D -d " + vip + " >/dev/null 2>&1");
  EXPECT_FALSE(pings(a, vip)) << "hairpin off: the frame must not come back";
}

TEST_F(BridgeAdd, MtuOnBridgeAndBothVethEnds) {
  TestNetns& a = pod("a");
  json r = add("a", a, conf({{"mtu", 1400}}));
  EXPECT_EQ(host_link(bridge_)["mtu"], 1400);
  EXPECT_EQ(host_link(r["interfaces"][1]["name"])["mtu"], 1400);
  EXPECT_EQ(link_in(a, "eth0")["mtu"], 1400);
}

TEST_F(BridgeAdd, ContainerMacFromRuntimeConfig) {
  TestNetns& a = pod("a");
  json c = conf({{"capabilities", {{"mac", true}}}, {"runtimeConfig", {{"mac", "c2:11:22:33:44:55"}}}});
  json r = add("a", a, c);
  EXPECT_EQ(r["interfaces"][2]["mac"], "c2:11:22:33:44:55");
  EXPECT_EQ(link_in(a, "eth0")["address"], "c2:11:22:33:44:55");
}

TEST_F(BridgeAdd, DnsFromConfigReplacesIpamDns) {
  TestNetns& a = pod("a");
  json r = add("a", a, conf({{"dns", {{"nameservers", {"10.0.0.53"}}, {"search", {"svc.local"}}}}}));
  EXPECT_EQ(r["dns"]["nameservers"], json::array({"10.0.0.53"}));
  EXPECT_EQ(r["dns"]["search"], json::array({"svc.local"}));
}

TEST_F(BridgeAdd, DefaultGatewayRouteIsAddedOnce) {
  TestNetns& a = pod("a");
  json ip = ipam();
  ip.erase("routes");
  json r = add("a", a, conf({{"isDefaultGateway", true}, {"ipam", ip}}));
  EXPECT_EQ(r["routes"], json::parse(R"([{"dst":"0.0.0.0/0","gw":")" + gateway() + R"("}])"));
  json routes = ip_json("ip -n " + a.name() + " -j route show default");
  ASSERT_EQ(routes.size(), 1u);
  EXPECT_EQ(routes[0]["gateway"], gateway());
}

TEST_F(BridgeAdd, SpecVersionsShapeTheResult) {
  for (const std::string v : {"0.3.1", "0.4.0", "1.0.0", "1.1.0"}) {
    SCOPED_TRACE(v);
    TestNetns& ns = pod("v" + std::to_string(pods_.size()));
    std::string name = "v" + std::to_string(pods_.size());
    json c = conf({}, v);
    json r = add(name, ns, c);
    ASSERT_TRUE(r.is_object());
    EXPECT_EQ(r["cniVersion"], v);
    bool old = v[0] == '0';
    EXPECT_EQ(r["ips"][0].contains("version"), old);
    if (old) {
      EXPECT_EQ(r["ips"][0]["version"], "4");
    }
    if (v != "0.3.1") {
      PluginRun check = call("CHECK", cid(name), ns.path(), with_prev(c, r));
      EXPECT_EQ(check.exit_code, 0) << check.out;
    } else {
      PluginRun check = call("CHECK", cid(name), ns.path(), with_prev(c, r));
      EXPECT_EQ(check.exit_code, 1);
      EXPECT_EQ(json::parse(check.out)["code"], 1) << "CHECK needs 0.4.0";
    }
    PluginRun del = call("DEL", cid(name), ns.path(), c);
    EXPECT_EQ(del.exit_code, 0) << del.out;
  }
  EXPECT_TRUE(reservations().empty());
  EXPECT_TRUE(host_veths().empty());
}

TEST_F(BridgeAdd, ConflistsThroughCnitool) {
  std::string tool = plugin_dir() + "/ferry-cnitool";
  if (access(tool.c_str(), X_OK) != 0) GTEST_SKIP() << "ferry-cnitool not built";
  for (const std::string v : {"0.3.1", "0.4.0", "1.0.0"}) {
    SCOPED_TRACE(v);
    std::string confdir = dir_ + "/net.d-" + v;
    std::filesystem::create_directories(confdir);
    json list = {{"cniVersion", v}, {"name", network_}, {"plugins", json::array({conf({}, v)})}};
    list["plugins"][0].erase("cniVersion");
    list["plugins"][0].erase("name");
    std::ofstream(confdir + "/10-h3.conflist") << list.dump();
    // The runtime's loopback network, as containerd runs it: its own list, CNI_IFNAME=lo.
    json lo = {{"cniVersion", v}, {"name", network_ + "-lo"}, {"plugins", {{{"type", "ferry-loopback"}}}}};
    std::ofstream(confdir + "/99-h3-lo.conflist") << lo.dump();
    TestNetns& ns = pod("t" + std::to_string(pods_.size()));
    ns.exec("ip link set lo down");
    std::string env = "CNI_PATH=" + plugin_dir() + " ";
    std::string common = " --conf-dir " + confdir + " --cache-dir " + dir_ + "/cache --container-id " + cid(ns.name());
    for (const std::string verb : {"add", "check", "del"}) {
      if (verb == "check" && v == "0.3.1") continue;  // CHECK needs 0.4.0
      ShellResult lor = sh_status(env + tool + " " + verb + " " + network_ + "-lo " + ns.path() + common + " --ifname lo");
      EXPECT_EQ(lor.status, 0) << verb << " lo: " << lor.out;
      ShellResult r = sh_status(env + tool + " " + verb + " " + network_ + " " + ns.path() + common);
      EXPECT_EQ(r.status, 0) << verb << ": " << r.out;
      if (verb == "add" && r.status == 0 && lor.status == 0) {
        EXPECT_EQ(json::parse(r.out)["cniVersion"], v);
        EXPECT_EQ(json::parse(lor.out)["ips"][0]["address"], "127.0.0.1/8");
        EXPECT_EQ(ns.exec_status("ping -c1 -W1 127.0.0.1 >/dev/null"), 0);
        EXPECT_EQ(ns.exec_status("ping -c1 -W2 " + gateway() + " >/dev/null"), 0);
      }
    }
  }
  EXPECT_TRUE(reservations().empty());
  EXPECT_TRUE(host_veths().empty());
}

TEST_F(BridgeAdd, ParallelAddsOnAFreshBridgeThenParallelDels) {
  constexpr int kPods = 8;
  json c = conf({{"ipMasq", true}, {"ipam", ipam(true)}});
  std::vector<TestNetns*> ns;
  for (int i = 0; i < kPods; ++i) {
    ns.push_back(&pod("p" + std::to_string(i)));
    added_.push_back({cid("p" + std::to_string(i)), ns.back()->path(), "eth0", c});
  }
  std::vector<PluginRun> runs(kPods);
  auto all = [&](const std::string& verb) {
    std::vector<std::thread> threads;
    for (int i = 0; i < kPods; ++i)
      threads.emplace_back([&, i] { runs[i] = call(verb, cid("p" + std::to_string(i)), ns[i]->path(), c); });
    for (auto& t : threads) t.join();
  };
  all("ADD");
  std::set<std::string> ips;
  for (int i = 0; i < kPods; ++i) {
    ASSERT_EQ(runs[i].exit_code, 0) << runs[i].out;
    ips.insert(runs[i].json_out()["ips"][0]["address"].get<std::string>());
    EXPECT_TRUE(pings(*ns[i], gateway())) << "pod " << i;
  }
  EXPECT_EQ(ips.size(), static_cast<size_t>(kPods));
  EXPECT_EQ(host_veths().size(), static_cast<size_t>(kPods));
  EXPECT_EQ(masq_rule_count(), kPods * 6);
  all("DEL");
  for (int i = 0; i < kPods; ++i) EXPECT_EQ(runs[i].exit_code, 0) << runs[i].out;
  EXPECT_TRUE(host_veths().empty());
  EXPECT_EQ(masq_rule_count(), 0);
  EXPECT_TRUE(reservations().empty());
}

// ---------------------------------------------------------------------------------------
// DEL

using BridgeDel = BridgeFixture;

TEST_F(BridgeDel, TwiceSucceeds) {
  TestNetns& a = pod("a");
  json c = conf({{"ipMasq", true}});
  json r = add("a", a, c);
  for (int i = 0; i < 2; ++i) {
    PluginRun del = call("DEL", cid("a"), a.path(), c);
    EXPECT_EQ(del.exit_code, 0) << del.out;
  }
  EXPECT_TRUE(host_veths().empty());
  EXPECT_EQ(masq_rule_count(), 0);
  EXPECT_TRUE(reservations().empty());
}

TEST_F(BridgeDel, NetnsAlreadyDeleted) {
  json c = conf({{"ipMasq", true}, {"ipam", ipam(true)}});
  {
    TestNetns a("h3-" + id_ + "-gone");
    add("a", a, c);
    EXPECT_EQ(host_veths().size(), 1u);
    EXPECT_GT(masq_rule_count(), 0);
  }  // netns deleted here
  PluginRun del = call("DEL", cid("a"), "/run/netns/h3-" + id_ + "-gone", c);
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_TRUE(host_veths().empty());
  EXPECT_EQ(masq_rule_count(), 0) << "masquerade rules are removed by identity, no live IP needed";
  EXPECT_TRUE(reservations().empty());
  EXPECT_TRUE(endpoint_files().empty());
}

TEST_F(BridgeDel, EmptyNetnsStillCleansEverything) {
  TestNetns& a = pod("a");
  json c = conf({{"ipMasq", true}});
  add("a", a, c);
  PluginRun del = call("DEL", cid("a"), "", c);
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_TRUE(host_veths().empty()) << "the host veth is found by its deterministic name";
  EXPECT_TRUE(link_in(a, "eth0").is_null()) << "the pod end went with its peer";
  EXPECT_EQ(masq_rule_count(), 0) << "plugins#810: the reference leaks here";
  EXPECT_TRUE(reservations().empty());
}

TEST_F(BridgeDel, NetnsPathThatIsNotANamespaceCountsAsGone) {
  TestNetns& a = pod("a");
  json c = conf({{"ipMasq", true}});
  add("a", a, c);
  const std::string stale = dir_ + "/stale-netns";  // a plain file where a netns was (§6 #4)
  std::ofstream(stale) << "";
  PluginRun del = call("DEL", cid("a"), stale, c);
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_TRUE(host_veths().empty());
  EXPECT_EQ(masq_rule_count(), 0);
  EXPECT_TRUE(reservations().empty());
}

TEST_F(BridgeDel, NeverAddedSucceeds) {
  TestNetns& a = pod("a");
  PluginRun del = call("DEL", cid("never"), a.path(), conf({{"ipMasq", true}}));
  EXPECT_EQ(del.exit_code, 0) << del.out;
}

// ---------------------------------------------------------------------------------------
// CHECK

using BridgeCheck = BridgeFixture;

TEST_F(BridgeCheck, DetectsRemovedAddress) {
  TestNetns& a = pod("a");
  json c = conf();
  json r = add("a", a, c);
  a.exec("ip addr del " + r["ips"][0]["address"].get<std::string>() + " dev eth0");
  PluginRun check = call("CHECK", cid("a"), a.path(), with_prev(c, r));
  EXPECT_EQ(check.exit_code, 1);
  json err = json::parse(check.out);
  EXPECT_NE(err["msg"].get<std::string>().find("address " + r["ips"][0]["address"].get<std::string>() + " is missing"),
            std::string::npos)
      << check.out;
}

TEST_F(BridgeCheck, DetectsRemovedRoute) {
  TestNetns& a = pod("a");
  json c = conf();
  json r = add("a", a, c);
  a.exec("ip route del default");
  PluginRun check = call("CHECK", cid("a"), a.path(), with_prev(c, r));
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.out.find("route 0.0.0.0/0"), std::string::npos) << check.out;
}

TEST_F(BridgeCheck, DetectsMissingMasqueradeAndDetachedVeth) {
  TestNetns& a = pod("a");
  json c = conf({{"ipMasq", true}});
  json r = add("a", a, c);
  scrub_nat("\\\"" + network_ + "\\\"");
  PluginRun check = call("CHECK", cid("a"), a.path(), with_prev(c, r));
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.out.find("masquerade"), std::string::npos) << check.out;

  json c2 = conf();
  sh("ip link set dev " + r["interfaces"][1]["name"].get<std::string>() + " nomaster");
  check = call("CHECK", cid("a"), a.path(), with_prev(c2, r));
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.out.find("not attached to bridge"), std::string::npos) << check.out;
}

TEST_F(BridgeCheck, RequiresPrevResult) {
  TestNetns& a = pod("a");
  add("a", a, conf());
  PluginRun check = call("CHECK", cid("a"), a.path(), conf());
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.out.find("Required prevResult missing"), std::string::npos) << check.out;
}

TEST_F(BridgeCheck, IgnoresAChangedHostVethMac) {
  TestNetns& a = pod("a");
  json c = conf();
  json r = add("a", a, c);
  sh("ip link set dev " + r["interfaces"][1]["name"].get<std::string>() + " address 02:00:00:00:00:99");
  PluginRun check = call("CHECK", cid("a"), a.path(), with_prev(c, r));
  EXPECT_EQ(check.exit_code, 0) << "udev rewriting the host veth MAC is not drift (plugins#805): " << check.out;
}

// ---------------------------------------------------------------------------------------
// ipMasq

using BridgeMasq = BridgeFixture;

TEST_F(BridgeMasq, RulesCarryFerryCommentsAndGoAwayOnDel) {
  TestNetns& a = pod("a");
  json c = conf({{"ipMasq", true}, {"ipam", ipam(true)}});
  json r = add("a", a, c);
  std::string save4 = sh("iptables-save -t nat 2>/dev/null");
  std::string save6 = sh("ip6tables-save -t nat 2>/dev/null");
  const std::string comment = "--comment \"ferry: name: \\\"" + network_ + "\\\" id: \\\"" + cid("a") + "\\\"\"";
  EXPECT_NE(save4.find("-A POSTROUTING -s " + subnet_prefix_ + ".2/32 -m comment " + comment + " -j FERRY-MASQ-"),
            std::string::npos)
      << save4;
  EXPECT_NE(save4.find("! -d 224.0.0.0/4 -m comment " + comment + " -j MASQUERADE"), std::string::npos);
  EXPECT_NE(save4.find("-d " + subnet() + " -m comment " + comment + " -j ACCEPT"), std::string::npos);
  EXPECT_NE(save6.find("-A POSTROUTING -s " + subnet6_prefix_ + "2/128 -m comment " + comment), std::string::npos)
      << save6;
  EXPECT_NE(save6.find("! -d ff00::/8 -m comment " + comment + " -j MASQUERADE"), std::string::npos);
  EXPECT_EQ(masq_rule_count(), 6);
  PluginRun check = call("CHECK", cid("a"), a.path(), with_prev(c, r));
  EXPECT_EQ(check.exit_code, 0) << check.out;
  PluginRun del = call("DEL", cid("a"), a.path(), c);
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_EQ(masq_rule_count(), 0);
  size_t at = save4.find(comment + " -j FERRY-MASQ-");
  ASSERT_NE(at, std::string::npos);
  std::string chain = save4.substr(at + comment.size() + 4, 27);
  EXPECT_NE(save4.find(":" + chain + " "), std::string::npos);
  EXPECT_EQ(sh("iptables-save -t nat 2>/dev/null").find(":" + chain + " "), std::string::npos) << "no chain left";
}

// A second namespace plays "the outside": it has no route back to the pod subnet, so a reply
// arrives only when the pod's traffic was masqueraded to the host's address.
TEST_F(BridgeMasq, PodReachesTheOutsideThroughMasquerade) {
  TestNetns outside("h3-" + id_ + "-out");
  const std::string host_end = "h3o" + id_, out_end = "h3oo" + id_;
  const std::string host_ip = "198.18." + std::to_string(idx_ % 250) + ".1";
  const std::string out_ip = "198.18." + std::to_string(idx_ % 250) + ".2";
  sh("ip link add " + host_end + " type veth peer name " + out_end + " netns " + outside.name());
  struct DelLink {
    std::string name;
    ~DelLink() { sh_status("ip link del " + name + " 2>/dev/null"); }
  } del_link{host_end};
  sh("ip addr add " + host_ip + "/24 dev " + host_end + " && ip link set " + host_end + " up");
  outside.exec("ip addr add " + out_ip + "/24 dev " + out_end);
  outside.exec("ip link set " + out_end + " up");

  TestNetns& a = pod("a");
  TestNetns& b = pod("b");
  add("a", a, conf({{"ipMasq", true}}));
  EXPECT_TRUE(pings(a, out_ip)) << "masqueraded pod reaches the outside";
  add("b", b, conf({{"ipMasq", false}}));
  EXPECT_FALSE(pings(b, out_ip)) << "control: without ipMasq the outside cannot answer";
}

TEST_F(BridgeMasq, NftablesBackend) {
  if (sh_status("command -v nft >/dev/null").status != 0) GTEST_SKIP() << "nft not installed";
  TestNetns& a = pod("a");
  json c = conf({{"ipMasq", true}, {"ipMasqBackend", "nftables"}});
  json r = add("a", a, c);
  std::string rules = sh("nft list chain inet ferry_masquerade masq_checks");
  EXPECT_NE(rules.find("ip saddr " + subnet_prefix_ + ".2 ip daddr != " + subnet() +
                       " masquerade comment \"ferry: net=" + network_ + " id=" + cid("a") + "\""),
            std::string::npos)
      << rules;
  EXPECT_EQ(masq_rule_count(), 0) << "nothing in iptables";
  PluginRun check = call("CHECK", cid("a"), a.path(), with_prev(c, r));
  EXPECT_EQ(check.exit_code, 0) << check.out;
  PluginRun del = call("DEL", cid("a"), "", c);
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_EQ(sh("nft list chain inet ferry_masquerade masq_checks").find(cid("a")), std::string::npos);
}

// ---------------------------------------------------------------------------------------
// Other features

using BridgeFeatures = BridgeFixture;

bool kernel_has_vlan_filtering() {
  bool ok = sh_status("ip link add h3vlanprobe type bridge vlan_filtering 1 2>/dev/null").status == 0;
  sh_status("ip link del h3vlanprobe 2>/dev/null");
  return ok;
}

TEST_F(BridgeFeatures, Layer2OnlyWithoutIpam) {
  TestNetns& a = pod("a");
  json c = conf();
  c.erase("ipam");
  json r = add("a", a, c);
  EXPECT_EQ(r["interfaces"].size(), 3u);
  EXPECT_FALSE(r.contains("ips") && !r["ips"].empty());
  EXPECT_EQ(link_in(a, "eth0")["operstate"], "UP");
  EXPECT_FALSE(has_addr(ip_json("ip -j -4 addr show dev " + bridge_), gateway(), 24));
}

TEST_F(BridgeFeatures, DisableContainerInterfaceLeavesItDown) {
  TestNetns& a = pod("a");
  json c = conf({{"disableContainerInterface", true}});
  c.erase("ipam");
  json r = add("a", a, c);
  EXPECT_EQ(link_in(a, "eth0")["flags"].dump().find("\"UP\""), std::string::npos);
}

TEST_F(BridgeFeatures, AccessVlanAndTrunkOnThePort) {
  if (!kernel_has_vlan_filtering()) GTEST_SKIP() << "kernel without CONFIG_BRIDGE_VLAN_FILTERING";
  TestNetns& a = pod("a");
  json c = conf({{"vlan", 100}, {"vlanTrunk", {{{"id", 101}}, {{"minID", 200}, {"maxID", 201}}}}});
  c["isGateway"] = false;
  json r = add("a", a, c);
  std::string veth = r["interfaces"][1]["name"];
  EXPECT_EQ(read_text("/sys/class/net/" + bridge_ + "/bridge/vlan_filtering"), "1\n");
  json vlans = ip_json("bridge -j vlan show dev " + veth);
  ASSERT_EQ(vlans.size(), 1u);
  std::map<int, std::vector<std::string>> by_id;
  for (const json& v : vlans[0]["vlans"]) by_id[v["vlan"]] = v.value("flags", std::vector<std::string>{});
  EXPECT_EQ(by_id.count(1), 0u) << "the default VLAN is removed";
  EXPECT_EQ(by_id[100], (std::vector<std::string>{"PVID", "Egress Untagged"}));
  EXPECT_TRUE(by_id.count(101) && by_id[101].empty());
  EXPECT_TRUE(by_id.count(200) && by_id.count(201));
}

TEST_F(BridgeFeatures, VlanWithoutKernelSupportIsAClearError) {
  if (kernel_has_vlan_filtering()) GTEST_SKIP() << "this kernel filters VLANs";
  TestNetns& a = pod("a");
  PluginRun r = call("ADD", cid("a"), a.path(), conf({{"vlan", 100}}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("CONFIG_BRIDGE_VLAN_FILTERING"), std::string::npos) << r.out;
  EXPECT_TRUE(reservations().empty());
}

TEST_F(BridgeFeatures, VlanGatewayInterface) {
  if (!kernel_has_vlan_filtering()) GTEST_SKIP() << "kernel without CONFIG_BRIDGE_VLAN_FILTERING";
  TestNetns& a = pod("a");
  json c = conf({{"vlan", 42}});
  json r = add("a", a, c);
  ASSERT_EQ(r["interfaces"].size(), 4u);
  EXPECT_EQ(r["interfaces"][3]["name"], bridge_ + ".42");
  EXPECT_TRUE(has_addr(ip_json("ip -j addr show dev " + bridge_ + ".42"), gateway(), 24));
  EXPECT_TRUE(pings(a, gateway()));
  sh_status("ip link del " + bridge_ + ".42");
}

TEST_F(BridgeFeatures, PortIsolationFlag) {
  TestNetns& a = pod("a");
  TestNetns& b = pod("b");
  json c = conf({{"portIsolation", true}});
  json ra = add("a", a, c);
  json rb = add("b", b, c);
  EXPECT_EQ(read_text("/sys/class/net/" + ra["interfaces"][1]["name"].get<std::string>() + "/brport/isolated"), "1\n");
  std::string ip_b = rb["ips"][0]["address"];
  EXPECT_FALSE(pings(a, ip_b.substr(0, ip_b.find('/')))) << "isolated ports do not talk to each other";
  EXPECT_TRUE(pings(a, gateway()));
}

TEST_F(BridgeFeatures, MacSpoofCheck) {
  if (sh_status("command -v nft >/dev/null").status != 0) GTEST_SKIP() << "nft not installed";
  TestNetns& a = pod("a");
  json c = conf({{"macspoofchk", true}});
  json r = add("a", a, c);
  std::string table = sh("nft list table bridge nat");
  std::string mac = r["interfaces"][2]["mac"];
  EXPECT_NE(table.find("iifname \"" + r["interfaces"][1]["name"].get<std::string>() + "\" jump cni-br-iface-" +
                       cid("a") + "-eth0 comment \"macspoofchk-" + cid("a") + "-eth0\""),
            std::string::npos)
      << table;
  EXPECT_NE(table.find("ether saddr " + mac + " return"), std::string::npos);
  EXPECT_TRUE(pings(a, gateway()));
  // A spoofed source MAC is dropped.
  a.exec("ip link set eth0 address 02:00:00:00:01:01");
  a.exec("ip neigh flush dev eth0");
  EXPECT_FALSE(pings(a, gateway()));
  a.exec("ip link set eth0 address " + mac);
  PluginRun del = call("DEL", cid("a"), a.path(), c);
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_EQ(sh("nft list table bridge nat").find(cid("a")), std::string::npos);
}

TEST_F(BridgeFeatures, ExistingInterfaceNameIsAnErrorAndLeavesNothing) {
  TestNetns& a = pod("a");
  a.exec("ip link add eth0 type veth peer name eth0p");
  PluginRun r = call("ADD", cid("a"), a.path(), conf({{"ipMasq", true}}));
  EXPECT_EQ(r.exit_code, 1);
  json err = json::parse(r.out);
  EXPECT_NE(err["msg"].get<std::string>().find("\"eth0\" already exists"), std::string::npos) << r.out;
  EXPECT_TRUE(host_veths().empty());
  EXPECT_TRUE(reservations().empty());
  EXPECT_EQ(masq_rule_count(), 0);
}

TEST_F(BridgeFeatures, NotABridgeIsAnError) {
  TestNetns& a = pod("a");
  sh("ip link add " + bridge_ + " type veth peer name " + bridge_ + "p");
  PluginRun r = call("ADD", cid("a"), a.path(), conf());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("already exists but is not a bridge"), std::string::npos) << r.out;
  EXPECT_TRUE(reservations().empty());
}

TEST_F(BridgeFeatures, GatewayConflictNeedsForceAddress) {
  TestNetns& a = pod("a");
  sh("ip link add " + bridge_ + " type bridge && ip addr add 10.254.254.1/24 dev " + bridge_);
  PluginRun r = call("ADD", cid("a"), a.path(), conf());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("already has an IP address different from " + gateway() + "/24"), std::string::npos) << r.out;
  EXPECT_TRUE(host_veths().empty()) << "rolled back";
  EXPECT_TRUE(reservations().empty()) << "IPAM released";
  json ok = add("a", a, conf({{"forceAddress", true}}));
  EXPECT_TRUE(has_addr(ip_json("ip -j addr show dev " + bridge_), gateway(), 24));
  EXPECT_FALSE(has_addr(ip_json("ip -j addr show dev " + bridge_), "10.254.254.1", 24));
}

TEST_F(BridgeFeatures, EndpointRecordAndAgentNotification) {
  const std::string sock_path = dir_ + "/agent.sock";
  int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", sock_path.c_str());
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  timeval tv{2, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

  TestNetns& a = pod("a");
  json c = conf({{"agentSocket", sock_path}});
  add("a", a, c, "eth0", "IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=web-0");
  char buf[256] = {};
  ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
  EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), cid("a") + "-eth0.json");
  json rec = json::parse(read_text(endpoints() + "/" + cid("a") + "-eth0.json"));
  EXPECT_EQ(rec["podNamespace"], "prod");
  EXPECT_EQ(rec["podName"], "web-0");

  EXPECT_EQ(call("DEL", cid("a"), a.path(), c).exit_code, 0);
  n = recv(fd, buf, sizeof buf - 1, 0);
  EXPECT_EQ(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0), cid("a") + "-eth0.json") << "DEL notifies too";
  EXPECT_TRUE(endpoint_files().empty());
  close(fd);
}

TEST_F(BridgeFeatures, StatusDelegatesToIpam) {
  json c = conf({}, "1.1.0");
  PluginRun ok = call("STATUS", "", "", c);
  EXPECT_EQ(ok.exit_code, 0) << ok.out;
  c["ipam"]["type"] = "h3-no-such-ipam";
  PluginRun bad = call("STATUS", "", "", c);
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.out.find("h3-no-such-ipam"), std::string::npos) << bad.out;
}

TEST_F(BridgeFeatures, GcRemovesWhatIsNotValidAndForwardsToIpam) {
  TestNetns& a = pod("a");
  TestNetns& b = pod("b");
  json c = conf({{"ipMasq", true}}, "1.1.0");
  add("a", a, c);
  add("b", b, c);
  EXPECT_EQ(reservations().size(), 2u);
  EXPECT_EQ(host_veths().size(), 2u);
  json gc = c;
  gc["cni.dev/valid-attachments"] = json::array({{{"containerID", cid("a")}, {"ifname", "eth0"}}});
  PluginRun r = call("GC", "", "", gc);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(reservations(), std::vector<std::string>{subnet_prefix_ + ".2"}) << "GC reached ferry-host-local";
  EXPECT_EQ(host_veths().size(), 1u);
  EXPECT_EQ(masq_rule_count(), 3) << "only a's three rules remain";
  EXPECT_EQ(endpoint_files(), std::vector<std::string>{cid("a") + "-eth0.json"});
  EXPECT_TRUE(pings(a, gateway())) << "the valid attachment still works";
}

}  // namespace
}  // namespace ferry::test
