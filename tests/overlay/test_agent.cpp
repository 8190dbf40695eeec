// The real ferry-agent keeping the overlay of node fyov-a in line with Node manifests: device,
// conflist, a node added and removed at run time, restart with 0 overlay writes, --overlay none.
// Root only (namespaces fyov-a, fyov-b; files under a temporary directory).
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "nodes.h"
#include "tests/support/support.h"

namespace ferry::overlay::test {
namespace {

using ferry::test::sh;
using ferry::test::TestNetns;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

void write_manifest(const std::string& dir, const std::string& name, const nlohmann::json& obj) {
  const std::string tmp = dir + "/../" + name + ".tmp";
  std::ofstream(tmp) << obj.dump(2);
  std::filesystem::rename(tmp, dir + "/" + name);
}

// Polls `cond` for up to 20 s (a bound for a loaded machine, not a timing assertion).
bool eventually(const std::function<bool()>& cond) {
  for (int i = 0; i < 400; ++i) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return cond();
}

class OverlayKernelAgent : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ferry::test::is_root()) GTEST_SKIP() << "needs root to create network namespaces";
    a_ = std::make_unique<TestNetns>("fyov-a");
    b_ = std::make_unique<TestNetns>("fyov-b");
    sh("ip -n fyov-a link add fyovu0 type veth peer name fyovu0 netns fyov-b");
    sh("ip -n fyov-a addr add 192.168.77.1/24 dev fyovu0 && ip -n fyov-a link set fyovu0 up");
    sh("ip -n fyov-b addr add 192.168.77.2/24 dev fyovu0 && ip -n fyov-b link set fyovu0 up");
    std::string tmpl = (std::filesystem::temp_directory_path() / "fyov-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    manifests_ = dir_ + "/manifests";
    std::filesystem::create_directories(manifests_);
    write_manifest(manifests_, "node-a.json", node_json("fyov-a", {"10.77.1.0/24", "fd77:1::/64"}, {"192.168.77.1"}));
    write_manifest(manifests_, "node-b.json", node_json("fyov-b", {"10.77.2.0/24", "fd77:2::/64"}, {"192.168.77.2"}));
  }
  void TearDown() override {
    stop();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  void start(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--node", "fyov-a", "--datastore", "dir:" + manifests_, "--datapath", "iptables",
                                     "--state-dir", dir_ + "/state", "--bpffs-root", dir_ + "/bpf", "--listen",
                                     "127.0.0.1:19409", "--vxlan-vni", "42", "--cni-conflist", conflist(),
                                     "--ipam-dir", dir_ + "/ipam"};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.begin(), FERRY_AGENT_BINARY);
    stop();
    const size_t before = log().size();
    agent_ = std::make_unique<ferry::test::NetnsProcess>(a_->path(), args, log_path());
    ASSERT_TRUE(eventually([&] { return log().find("ready:", before) != std::string::npos || !agent_->running(); }))
        << log();
    ASSERT_TRUE(agent_->running()) << log();
    run_log_ = log().substr(before);
  }
  // SIGTERM, as an operator stops the agent (the datapath stays in place).
  void stop() {
    if (agent_) agent_->terminate();
    agent_.reset();
  }

  std::string conflist() const { return dir_ + "/cni/10-ferry.conflist"; }
  std::string log_path() const { return dir_ + "/agent.log"; }
  std::string log() const { return slurp(log_path()); }
  std::string fdb() const { return a_->exec("bridge fdb show dev ferry_vxlan"); }

  std::unique_ptr<TestNetns> a_, b_;
  std::string dir_, manifests_, run_log_;
  std::unique_ptr<ferry::test::NetnsProcess> agent_;
};

TEST_F(OverlayKernelAgent, FollowsNodesAndRestartsWithoutWrites) {
  start();
  EXPECT_NE(run_log_.find("overlay: 1 remote nodes, "), std::string::npos) << run_log_;
  EXPECT_EQ(run_log_.find("overlay: 1 remote nodes, 0 kernel writes"), std::string::npos) << run_log_;
  std::string link = a_->exec("ip -d link show ferry_vxlan");
  EXPECT_NE(link.find("vxlan id 42"), std::string::npos) << link;
  EXPECT_NE(link.find("dstport 8472"), std::string::npos) << link;
  EXPECT_NE(fdb().find("0e:fe:c0:a8:4d:02 dst 192.168.77.2"), std::string::npos);

  // The conflist from this node's pod CIDRs, with the VXLAN MTU and this agent's socket.
  auto conf = nlohmann::json::parse(slurp(conflist()));
  const auto& bridge = conf["plugins"][0];
  EXPECT_EQ(bridge["mtu"], 1450);
  EXPECT_EQ(bridge["agentSocket"], dir_ + "/state/agent.sock");
  EXPECT_EQ(bridge["agentRequired"], true);
  EXPECT_EQ(bridge["ipam"]["ranges"][0][0]["subnet"], "10.77.1.0/24");
  EXPECT_EQ(bridge["ipam"]["ranges"][1][0]["subnet"], "fd77:1::/64");
  EXPECT_EQ(bridge["ipam"]["dataDir"], dir_ + "/ipam");

  std::string metrics = a_->exec("curl -s http://127.0.0.1:19409/metrics");
  EXPECT_NE(metrics.find("\nferry_overlay_remote_nodes 1\n"), std::string::npos) << metrics;

  // A node joins while the agent runs, then leaves.
  write_manifest(manifests_, "node-c.json", node_json("fyov-c", {"10.77.3.0/24"}, {"192.168.77.3"}));
  EXPECT_TRUE(eventually([&] { return fdb().find("0e:fe:c0:a8:4d:03 dst 192.168.77.3") != std::string::npos; }))
      << fdb();
  EXPECT_NE(a_->exec("ip -o route show proto 254").find("10.77.3.0/24 via 10.77.3.0 dev ferry_vxlan onlink"),
            std::string::npos);
  std::filesystem::remove(manifests_ + "/node-c.json");
  EXPECT_TRUE(eventually([&] { return fdb().find("0e:fe:c0:a8:4d:03") == std::string::npos; })) << fdb();
  EXPECT_EQ(a_->exec("ip -o route show proto 254").find("10.77.3.0"), std::string::npos);
  EXPECT_NE(fdb().find("0e:fe:c0:a8:4d:02"), std::string::npos);  // B untouched

  // Restart: nothing to write, and the conflist is not rewritten.
  struct stat before {};
  stat(conflist().c_str(), &before);
  stop();
  start();
  EXPECT_NE(run_log_.find("overlay: 1 remote nodes, 0 kernel writes"), std::string::npos) << run_log_;
  struct stat after {};
  stat(conflist().c_str(), &after);
  EXPECT_EQ(before.st_ino, after.st_ino);

  // --overlay none removes it all.
  stop();
  start({"--overlay", "none"});
  EXPECT_NE(a_->exec_status("ip link show ferry_vxlan >/dev/null 2>&1"), 0);
  EXPECT_EQ(a_->exec("iptables-save -t nat").find("FERRY-POSTROUTING"), std::string::npos);
}

}  // namespace
}  // namespace ferry::overlay::test
