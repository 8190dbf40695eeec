// The DaemonSet's node side for real (root): in a node namespace `fyd7-node`, the init step
// installs the plugins, ferry-agent runs with the ConfigMap's agent.yaml and the DaemonSet's
// arguments (datastore, conflist and IPAM paths moved into a temp dir) and writes the node's
// conflist from its Node; ferry-cnitool ADDs and DELs a pod with that conflist through the
// installed plugins; `ferry-node cleanup` then leaves the node without any of ferry's objects.
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "tests/deploy/deploy.h"
#include "tests/support/support.h"

namespace ferry::deploy_test {
namespace {

using ferry::test::sh;
using ferry::test::sh_status;
using ferry::test::TestNetns;
namespace fs = std::filesystem;

constexpr const char* kNode = "fyd7-node";
const std::string kNodeNs = std::string("nsenter --net=/run/netns/") + kNode + " ";
const std::string kFerryNode = "sh " + kDeployDir + "/ferry-node.sh";

// Polls `ready` every 100 ms for up to `seconds` (generous: the machine is shared).
bool wait_for(const std::function<bool()>& ready, int seconds) {
  for (int i = 0; i < seconds * 10; ++i) {
    if (ready()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return ready();
}

// What `ferry-node cleanup` must remove, as the node namespace shows it (one line each).
std::string ferry_objects_left(const std::string& tmp) {
  std::string left;
  left += sh(kNodeNs + "sh -c '(iptables-save; ip6tables-save) 2>/dev/null | grep -E \"FERRY-|ferry:\" || true'");
  left += sh(kNodeNs + "sh -c 'ipset list -n | grep ^ferry- || true'");
  left += sh(kNodeNs + "sh -c 'ip -o link show ferry_vxlan 2>/dev/null || true'");
  left += sh(kNodeNs + "sh -c 'for d in $(ip -o link show | sed \"s/^[0-9]*: \\([^:@]*\\).*/\\1/\"); do "
                       "for s in ingress egress; do tc filter show dev $d $s | grep -H --label=$d.$s \"handle 0xfe\"; "
                       "done; done; true'");
  for (const std::string& path : {std::string("/sys/fs/bpf/ferry/") + kNode, std::string("/run/ferry/") + kNode,
                                  tmp + "/net.d/05-ferry.conflist", tmp + "/ipam/ferry", tmp + "/cni-bin/ferry-bridge"})
    if (fs::exists(path)) left += path + "\n";
  return left;
}

class DeployNode : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_ROOT();
    char dir[] = "/tmp/fyd7-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    tmp_ = dir;
    node_ns_ = std::make_unique<TestNetns>(kNode);
    pod_ns_ = std::make_unique<TestNetns>("fyd7-pod");
    remove_node_state();
    // The underlay: the Node's InternalIP on a veth inside the node (VXLAN's local address, MTU 1500).
    const std::string ip = "ip -n " + std::string(kNode);
    sh(ip + " link add fyd7ul type veth peer name fyd7ulp");
    sh(ip + " addr add 172.31.77.10/24 dev fyd7ul");
    sh(ip + " link set fyd7ulp up && " + ip + " link set fyd7ul up");
    fs::create_directories(tmp_ + "/manifests");
    std::ofstream(tmp_ + "/manifests/node.json") << nlohmann::json{
        {"apiVersion", "v1"},
        {"kind", "Node"},
        {"metadata", {{"name", kNode}}},
        {"spec", {{"podCIDR", "10.77.1.0/24"}, {"podCIDRs", {"10.77.1.0/24"}}}},
        {"status", {{"addresses", {{{"type", "InternalIP"}, {"address", "172.31.77.10"}}}}}}};

    // The deployed configuration; only what points at the host's real files moves into tmp_.
    docs_ = load_documents("ferry.yaml");
    YAML::Node config = YAML::Load(agent_config_text(docs_));
    config["datastore"] = "dir:" + tmp_ + "/manifests";
    config["cni-conflist"] = tmp_ + "/net.d/05-ferry.conflist";
    config["ipam-dir"] = tmp_ + "/ipam";
    config["datapath"] = GetParam();
    config_ = tmp_ + "/agent.yaml";
    std::ofstream(config_) << YAML::Dump(config) << "\n";
  }

  void TearDown() override {
    stop_agent();
    node_ns_.reset();
    pod_ns_.reset();
    remove_node_state();
    if (!tmp_.empty()) fs::remove_all(tmp_);
  }

  void remove_node_state() {
    fs::remove_all(std::string("/sys/fs/bpf/ferry/") + kNode);
    fs::remove_all(std::string("/run/ferry/") + kNode);
  }

  void start_agent() {
    std::string cmd = kNodeNs + FERRY_AGENT_BINARY;
    for (const std::string& a : agent_arguments(docs_, kNode)) cmd += " '" + (a == "/etc/ferry/agent.yaml" ? config_ : a) + "'";
    agent_pid_ = std::stoi(sh(cmd + " >" + tmp_ + "/agent.log 2>&1 & echo $!"));
  }

  void stop_agent() {
    if (agent_pid_ <= 0) return;
    kill(agent_pid_, SIGTERM);
    wait_for([&] { return kill(agent_pid_, 0) != 0; }, 20);
    kill(agent_pid_, SIGKILL);
    agent_pid_ = 0;
  }

  std::string agent_log() { return sh("tail -n 30 " + tmp_ + "/agent.log"); }

  std::string cnitool(const std::string& verb, const std::string& conf_dir, const std::string& cni_path) {
    return kNodeNs + "env CNI_PATH=" + cni_path + " " + FERRY_PLUGIN_DIR + "/ferry-cnitool " + verb +
           " ferry /run/netns/fyd7-pod --conf-dir " + conf_dir + " --cache-dir " + tmp_ + "/cache";
  }

  std::string tmp_, config_;
  std::vector<Document> docs_;
  std::unique_ptr<TestNetns> node_ns_, pod_ns_;
  int agent_pid_ = 0;
};

TEST_P(DeployNode, AgentConflistWorksWithTheInstalledPluginsAndCleanupLeavesNothing) {
  // Init step: the plugins into this node's CNI bin directory.
  sh(kFerryNode + " install-cni --from " + FERRY_PLUGIN_DIR + " --to " + tmp_ + "/cni-bin");

  start_agent();
  const std::string conflist = tmp_ + "/net.d/05-ferry.conflist";
  ASSERT_TRUE(wait_for([&] { return fs::exists(conflist); }, 60)) << "no conflist written\n" << agent_log();
  ASSERT_TRUE(wait_for([&] { return sh_status(kNodeNs + "curl -sf http://127.0.0.1:9400/readyz").status == 0; }, 60))
      << "agent not ready\n" << agent_log();
  const nlohmann::json conf = nlohmann::json::parse(std::ifstream(conflist));
  const nlohmann::json& bridge = conf["plugins"][0];
  EXPECT_EQ(bridge["type"], "ferry-bridge");
  EXPECT_EQ(bridge["agentRequired"], true);
  EXPECT_EQ(bridge["endpointDir"], std::string("/run/ferry/") + kNode + "/endpoints");
  EXPECT_EQ(bridge["ipam"]["ranges"][0][0]["subnet"], "10.77.1.0/24");

  // ADD through the installed plugins; with agentRequired it returns once the agent programmed the pod.
  auto add = sh_status(cnitool("add", tmp_ + "/net.d", tmp_ + "/cni-bin"));
  ASSERT_EQ(add.status, 0) << add.out << "\n" << agent_log();
  const nlohmann::json result = nlohmann::json::parse(add.out);
  const std::string address = result["ips"][0]["address"];
  EXPECT_EQ(address.rfind("10.77.1.", 0), 0u) << address;
  EXPECT_NE(pod_ns_->exec("ip -o addr show dev eth0").find(address), std::string::npos);
  EXPECT_NE(pod_ns_->exec("ip -o link show dev eth0").find("mtu 1450"), std::string::npos);  // VXLAN MTU
  EXPECT_EQ(pod_ns_->exec_status("ping -c1 -W5 10.77.1.1 >/dev/null"), 0) << "pod cannot reach its gateway";
  EXPECT_FALSE(fs::is_empty(std::string("/run/ferry/") + kNode + "/endpoints"));

  // What the cleanup has to remove is there before it runs.
  stop_agent();
  std::string before = ferry_objects_left(tmp_);
  for (const char* expected : {"FERRY-POSTROUTING", "ferry-pods-v4", "ferry_vxlan", "/run/ferry/", "05-ferry.conflist",
                               "cni-bin/ferry-bridge", GetParam() == "ebpf" ? "handle 0xfe" : "FERRY-FORWARD"})
    EXPECT_NE(before.find(expected), std::string::npos) << expected << " missing before cleanup:\n" << before;

  fs::copy(tmp_ + "/net.d", tmp_ + "/net.d-copy");  // for the DEL after the cleanup
  const std::string cleanup =
      kNodeNs + "env FERRY_CNI_BIN_DIR=" + tmp_ + "/cni-bin " + kFerryNode + " cleanup --config " + config_ + " --node " + kNode;
  sh(cleanup);
  EXPECT_EQ(ferry_objects_left(tmp_), "");
  EXPECT_EQ(sh_status(kNodeNs + "ip link show ferry0 >/dev/null 2>&1").status, 0) << "ferry0 removed while a pod uses it";

  // DEL works without the agent; a second cleanup (idempotent) then removes the empty bridge
  // and the IPAM store.
  auto del = sh_status(cnitool("del", tmp_ + "/net.d-copy", FERRY_PLUGIN_DIR));
  EXPECT_EQ(del.status, 0) << del.out;
  EXPECT_NE(pod_ns_->exec_status("ip link show eth0 >/dev/null 2>&1"), 0);
  sh(cleanup);
  EXPECT_EQ(ferry_objects_left(tmp_), "");
  EXPECT_NE(sh_status(kNodeNs + "ip link show ferry0 >/dev/null 2>&1").status, 0);
}

INSTANTIATE_TEST_SUITE_P(Datapath, DeployNode, ::testing::Values("ebpf", "iptables"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ferry::deploy_test
