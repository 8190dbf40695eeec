// ferry-loopback: lo up with the reference result, prevResult passed through, DEL sets lo
// down and succeeds when the namespace is gone, CHECK notices lo down.
#include "tests/integration/support.h"

namespace ferry::test {
namespace {

class Loopback : public ::testing::Test {
 protected:
  void SetUp() override { FERRY_REQUIRE_ROOT(); }

  PluginRun run(const std::string& verb, const std::string& netns, const json& c) {
    PluginCall pc;
    pc.command = verb;
    pc.container_id = "h3c-lo";
    pc.netns = netns;
    pc.ifname = "lo";
    return run_plugin("ferry-loopback", pc, c);
  }
  static json conf(const std::string& version = "1.0.0") {
    return {{"cniVersion", version}, {"name", "h3-lo"}, {"type", "ferry-loopback"}};
  }
  static bool lo_up(const TestNetns& ns) {
    return ns.exec("ip -j link show lo").find("\"UP\"") != std::string::npos &&
           ns.exec("ip -j link show lo").find("\"flags\":[\"LOOPBACK\",\"UP\"") != std::string::npos;
  }
};

TEST_F(Loopback, AddBringsLoUpAndReportsLoopbackAddresses) {
  TestNetns ns("h3-lo-a");
  ns.exec("ip link set lo down");
  ASSERT_FALSE(lo_up(ns));
  PluginRun r = run("ADD", ns.path(), conf());
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(lo_up(ns));
  EXPECT_EQ(r.json_out(), json::parse(R"({"cniVersion":"1.0.0",
    "interfaces":[{"name":"lo","mac":"00:00:00:00:00:00","sandbox":"/run/netns/h3-lo-a"}],
    "ips":[{"interface":0,"address":"127.0.0.1/8"},{"interface":0,"address":"::1/128"}]})"));
  EXPECT_EQ(ns.exec_status("ping -c1 -W1 127.0.0.1 >/dev/null"), 0);
}

TEST_F(Loopback, OldVersionsCarryIpVersion) {
  TestNetns ns("h3-lo-v");
  for (const std::string v : {"0.3.1", "0.4.0"}) {
    PluginRun r = run("ADD", ns.path(), conf(v));
    ASSERT_EQ(r.exit_code, 0) << r.out;
    json j = r.json_out();
    EXPECT_EQ(j["cniVersion"], v);
    EXPECT_EQ(j["ips"][0]["version"], "4");
    EXPECT_EQ(j["ips"][1]["version"], "6");
  }
}

TEST_F(Loopback, PrevResultIsPassedThrough) {
  TestNetns ns("h3-lo-p");
  json c = conf();
  c["prevResult"] = json::parse(R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],
    "ips":[{"interface":0,"address":"10.9.0.5/24"}]})");
  PluginRun r = run("ADD", ns.path(), c);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.json_out()["ips"][0]["address"], "10.9.0.5/24");
  EXPECT_EQ(r.json_out()["interfaces"][0]["name"], "eth0");
  EXPECT_TRUE(lo_up(ns));
}

TEST_F(Loopback, CheckAndDel) {
  TestNetns ns("h3-lo-c");
  ASSERT_EQ(run("ADD", ns.path(), conf()).exit_code, 0);
  json c = conf();
  c["prevResult"] = run("ADD", ns.path(), conf()).json_out();
  EXPECT_EQ(run("CHECK", ns.path(), c).exit_code, 0);
  PluginRun del = run("DEL", ns.path(), c);
  EXPECT_EQ(del.exit_code, 0) << del.out;
  EXPECT_FALSE(lo_up(ns));
  PluginRun check = run("CHECK", ns.path(), c);
  EXPECT_EQ(check.exit_code, 1);
  EXPECT_NE(check.out.find("loopback interface is down"), std::string::npos) << check.out;
}

TEST_F(Loopback, DelSucceedsWithoutANamespace) {
  EXPECT_EQ(run("DEL", "", conf()).exit_code, 0);
  EXPECT_EQ(run("DEL", "/run/netns/h3-lo-never-existed", conf()).exit_code, 0);
}

TEST_F(Loopback, AddFailsForAMissingNamespace) {
  PluginRun r = run("ADD", "/run/netns/h3-lo-never-existed", conf());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("h3-lo-never-existed"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace ferry::test
