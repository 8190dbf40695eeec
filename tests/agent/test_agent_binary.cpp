// The real ferry-agent binary inside a test network namespace (prefix "fyag"): HTTP endpoints,
// endpoint programming through the agent socket, restart without kernel writes, SIGTERM
// leaving the datapath in place, a malformed manifest that is logged and tolerated. Root only.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "fakes.h"
#include "net/net.h"
#include "tests/support/support.h"

namespace ferry::agent::test {
namespace {

#ifdef FERRY_AGENT_BINARY
constexpr const char* kAgentBinary = FERRY_AGENT_BINARY;
#else
constexpr const char* kAgentBinary = "";
#endif
std::string run(const std::vector<std::string>& argv) {
  net::CommandResult r = net::run_command(argv);
  if (r.status != 0) {
    std::string cmd;
    for (const auto& a : argv) cmd += a + " ";
    throw std::runtime_error(cmd + "failed (" + std::to_string(r.status) + "): " + r.err);
  }
  return r.out;
}

// `ip netns add` + lo up; deleted on destruction (the namespace takes its links, iptables
// rules and sockets along).
class TestNetns {
 public:
  explicit TestNetns(std::string name) : name_(std::move(name)) {
    net::run_command({"ip", "netns", "del", name_});  // a leftover of a crashed run
    run({"ip", "netns", "add", name_});
    run({"ip", "-n", name_, "link", "set", "lo", "up"});
  }
  ~TestNetns() { net::run_command({"ip", "netns", "del", name_}); }
  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  std::string ip(std::vector<std::string> args) const {
    args.insert(args.begin(), {"ip", "-n", name_});
    return run(args);
  }
  std::string exec(std::vector<std::string> args) const {
    args.insert(args.begin(), {"ip", "netns", "exec", name_});
    return run(args);
  }

 private:
  std::string name_;
};

// ferry-agent in the test netns (tests/support NetnsProcess).
struct AgentProcess : ferry::test::NetnsProcess {
  AgentProcess(const TestNetns& ns, const std::vector<std::string>& args, std::string log)
      : NetnsProcess(ns.path(), with_binary(args), std::move(log)) {}
  static std::vector<std::string> with_binary(std::vector<std::string> args) {
    args.insert(args.begin(), kAgentBinary);
    return args;
  }
};

struct HttpAnswer {
  int status = 0;  // 0: no answer
  std::string body;
};

HttpAnswer get(const TestNetns& ns, const std::string& path) {
  HttpAnswer a;
  net::Netns netns = net::Netns::open(ns.path());
  net::in_netns(netns, [&] {
    httplib::Client client("127.0.0.1", 9400);
    client.set_connection_timeout(2, 0);
    client.set_read_timeout(10, 0);
    if (auto res = client.Get(path.c_str())) {
      a.status = res->status;
      a.body = res->body;
    }
  });
  return a;
}

using ferry::test::has_line;

struct AgentBinaryTest : ::testing::Test {
  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root to create network namespaces";
    if (std::string(kAgentBinary).empty()) GTEST_SKIP() << "ferry-agent was not built";
    node = "fyag" + std::to_string(getpid() % 100000);
    ns = std::make_unique<TestNetns>(node);
    manifests = tmp / "manifests";
    state = tmp / "state";
    bpffs_root = "/sys/fs/bpf/ferry/" + node;
    std::filesystem::create_directories(manifests);
    std::ofstream(manifests + "/pods.yaml") << "apiVersion: v1\n"
                                               "kind: Pod\n"
                                               "metadata: {name: a, namespace: default}\n"
                                               "spec:\n"
                                               "  nodeName: " << node << "\n"
                                               "  containers: [{name: c, image: busybox}]\n";
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(bpffs_root, ec);  // unpins maps and programs of this node
  }

  std::vector<std::string> args(const std::string& datapath) const {
    return {"--node", node, "--datastore", "dir:" + manifests, "--state-dir", state, "--bpffs-root", bpffs_root,
            "--datapath", datapath, "--resync-interval", "30s"};
  }

  // Bounded wait for /readyz 200 (fails with the log when the agent died or never got ready).
  void wait_ready(AgentProcess& agent) {
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE(agent.running()) << "ferry-agent exited:\n" << agent.log();
      if (get(*ns, "/readyz").status == 200) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << "ferry-agent not ready after 30s:\n" << agent.log() << get(*ns, "/readyz").body;
  }

  // A pod's host side as ferry-bridge leaves it: bridge ferry0, a veth enslaved to it, and the
  // endpoint record.
  bridge::EndpointRecord add_pod(const std::string& container_id, const std::string& ip) {
    // A fixed MAC, as ferry-bridge sets: otherwise the bridge takes its ports' lowest MAC and
    // every new port could change every endpoint's host_mac.
    ns->ip({"link", "add", "ferry0", "address", "02:fe:00:00:00:01", "type", "bridge"});
    ns->ip({"link", "set", "ferry0", "up"});
    auto rec = make_record(container_id, 1, ip);
    ns->ip({"link", "add", rec.host_veth, "type", "veth", "peer", "name", "fyagpeer0"});
    ns->ip({"link", "set", rec.host_veth, "master", "ferry0", "up"});
    std::string index = ns->exec({"cat", "/sys/class/net/" + rec.host_veth + "/ifindex"});
    rec.host_veth_index = std::stoi(index);
    bridge::write_endpoint(state + "/endpoints", rec);
    return rec;
  }

  // `ferryctl policy <pod> -o json` against this node's policy.json and pins.
  nlohmann::json ferryctl_policy(const std::string& pod) {
    net::CommandResult r = net::run_command(
        {kFerryctl, "--state-dir", state, "--bpffs-root", bpffs_root, "policy", pod, "-o", "json"});
    EXPECT_EQ(r.status, 0) << r.err;
    return nlohmann::json::parse(r.out, nullptr, false);
  }

  // Pods for the records make_record() writes, and a policy isolating b's ingress.
  void write_policy_manifests() {
    auto pod = [&](const std::string& name, const std::string& app, const std::string& ips) {
      return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: default, labels: {app: " + app +
             "}}\nspec: {nodeName: " + node + ", containers: [{name: c, image: i}]}\nstatus: {phase: Running, podIPs: " +
             ips + "}\n---\n";
    };
    std::ofstream(manifests + "/policy.yaml")
        << pod("pod-aaaaaaaaaaaa", "a", "[{ip: 10.244.1.5}]")
        << pod("pod-bbbbbbbbbbbb", "b", "[{ip: 10.244.1.6}, {ip: 'fd00:10:244:1::6'}]")
        << "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-a, namespace: default}\n"
           "spec:\n  podSelector: {matchLabels: {app: b}}\n  ingress:\n"
           "  - from: [{podSelector: {matchLabels: {app: a}}}]\n    ports: [{protocol: TCP, port: 80, endPort: 90}]\n";
  }

  // ferry-bridge's "agentRequired" handshake, run where the plugin runs: in the node's netns.
  // (The reply goes to an autobound abstract address, and those are per network namespace.)
  void confirm_in_node(const std::string& socket, const std::string& file) {
    net::Netns netns = net::Netns::open(ns->path());
    net::in_netns(netns, [&] { bridge::confirm_with_agent(socket, file, std::chrono::seconds(20)); });
  }

  TempDir tmp;
  std::string node, manifests, state, bpffs_root;
  std::unique_ptr<TestNetns> ns;
};

TEST_F(AgentBinaryTest, ServesHealthReadinessMetricsAndExitsCleanlyOnSigterm) {
  AgentProcess agent(*ns, args("iptables"), tmp / "agent.log");
  wait_ready(agent);
  EXPECT_EQ(get(*ns, "/healthz").status, 200);
  HttpAnswer metrics = get(*ns, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_TRUE(has_line(metrics.body, "ferry_datapath_info{mode=\"iptables\"} 1")) << metrics.body;
  EXPECT_TRUE(has_line(metrics.body, "ferry_cluster_objects{kind=\"Pod\"} 1")) << metrics.body;
  EXPECT_TRUE(has_line(metrics.body, "ferry_endpoints 0")) << metrics.body;
  EXPECT_TRUE(has_line(metrics.body, "ferry_reconcile_errors_total 0")) << metrics.body;
  EXPECT_NE(agent.log().find("first reconcile: 0 endpoints"), std::string::npos) << agent.log();

  // A malformed manifest is logged with its file name; the agent stays ready.
  std::ofstream(manifests + "/broken.yaml") << "apiVersion: v1\nkind: Pod\nmetadata: [not, a, map\n";
  bool logged = false;
  for (int i = 0; i < 300 && !logged; ++i) {
    logged = agent.log().find("broken.yaml") != std::string::npos;
    if (!logged) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(logged) << agent.log();
  EXPECT_EQ(get(*ns, "/readyz").status, 200);
  EXPECT_TRUE(agent.running());

  int status = agent.terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "wait status " << status << "\n" << agent.log();
  // The datapath stays: base chains are still installed after the agent left.
  EXPECT_NE(ns->exec({"iptables-save", "-t", "filter"}).find(":FERRY-FORWARD"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(state + "/agent.sock"));
}

TEST_F(AgentBinaryTest, KubernetesDatastoreOutsideAPodWithoutKubeconfigSaysSo) {
  auto a = args("iptables");
  a[3] = "kubernetes";
  AgentProcess agent(*ns, a, tmp / "agent.log");
  int status = agent.wait_exit();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status;
  EXPECT_NE(agent.log().find("KUBERNETES_SERVICE_HOST"), std::string::npos) << agent.log();
}

class AgentBinaryDatapath : public AgentBinaryTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(AgentBinaryDatapath, ProgramsEndpointsAndRestartsWithoutKernelWrites) {
  const std::string mode = GetParam();
  write_policy_manifests();
  auto rec = add_pod("aaaaaaaaaaaa", "10.244.1.5/24");
  {
    AgentProcess agent(*ns, args(mode), tmp / "agent1.log");
    wait_ready(agent);
    EXPECT_NE(agent.log().find("first reconcile: 1 endpoints, 1 programmed, 0 removed"), std::string::npos)
        << agent.log();
    EXPECT_TRUE(has_line(get(*ns, "/metrics").body, "ferry_endpoints 1"));

    // ADD of a second pod: the answer comes once the endpoint is programmed.
    auto second = make_record("bbbbbbbbbbbb", 1, "10.244.1.6/24", "fd00:10:244:1::6/64");  // dual-stack
    ns->ip({"link", "add", second.host_veth, "type", "veth", "peer", "name", "fyagpeer1"});
    ns->ip({"link", "set", second.host_veth, "master", "ferry0", "up"});
    second.host_veth_index = std::stoi(ns->exec({"cat", "/sys/class/net/" + second.host_veth + "/ifindex"}));
    bridge::write_endpoint(state + "/endpoints", second);
    std::string answer = "(no answer)";
    try {
      confirm_in_node(state + "/agent.sock", record_file(second));
      answer = "ok";
    } catch (const std::exception& e) {
      answer = e.what();
    }
    EXPECT_EQ(answer, "ok") << agent.log();
    EXPECT_TRUE(has_line(get(*ns, "/metrics").body, "ferry_endpoints 2"));
    // Its policy came with the answer: isolated ingress, in the kernel (eBPF: every entry in
    // ferry_pol_v1).
    EXPECT_TRUE(has_line(get(*ns, "/metrics").body, "ferry_policy_endpoints_isolated{direction=\"ingress\"} 1"));
    nlohmann::json pol = ferryctl_policy("default/pod-bbbbbbbbbbbb");
    ASSERT_TRUE(pol.is_object()) << pol;
    EXPECT_EQ(pol["endpoints"][0]["ingress"]["isolated"], true) << pol.dump(2);
    EXPECT_EQ(pol["endpoints"][0]["policies"], nlohmann::json::array({"default/allow-a"}));
    EXPECT_EQ(pol["kernel_checked"], mode == "ebpf") << pol.dump(2);
    EXPECT_EQ(pol["missing_in_kernel"], 0) << pol.dump(2);
    if (mode == "iptables") {
      std::string rules = ns->exec({"iptables-save", "-t", "filter"});
      EXPECT_NE(rules.find(rec.host_veth), std::string::npos) << rules;
      EXPECT_NE(rules.find(second.host_veth), std::string::npos) << rules;
    } else {
      EXPECT_TRUE(std::filesystem::exists(bpffs_root + "/ferry_ep_v1"));
      std::string filters = ns->exec({"tc", "filter", "show", "dev", second.host_veth, "ingress"});
      EXPECT_NE(filters.find("bpf"), std::string::npos) << filters;
    }
    int status = agent.terminate();
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << agent.log();
  }
  // Restart with nothing changed: not one kernel write.
  AgentProcess agent(*ns, args(mode), tmp / "agent2.log");
  wait_ready(agent);
  EXPECT_NE(agent.log().find("first reconcile: 2 endpoints, 0 programmed, 0 removed, kernel writes 0"),
            std::string::npos)
      << agent.log();
  EXPECT_TRUE(has_line(get(*ns, "/metrics").body, "ferry_datapath_kernel_writes_total 0"));
  EXPECT_NE(agent.log().find("first policy pass: "), std::string::npos) << agent.log();

  // DEL: the record goes, the agent removes the endpoint and answers.
  bridge::remove_endpoint(state + "/endpoints", rec.container_id, rec.ifname);
  confirm_in_node(state + "/agent.sock", record_file(rec));
  EXPECT_TRUE(has_line(get(*ns, "/metrics").body, "ferry_endpoints 1"));
  if (mode == "iptables") {
    EXPECT_EQ(ns->exec({"iptables-save", "-t", "filter"}).find(rec.host_veth), std::string::npos);
  }
  agent.terminate();
  if (mode != "ebpf") return;

  // A policy entry lost from the kernel: ferryctl marks it MISSING; the next agent start
  // (a full resync) puts it back.
  std::string dump = run({"bpftool", "-j", "map", "dump", "pinned", bpffs_root + "/ferry_pol_v1"});
  nlohmann::json keys = nlohmann::json::parse(dump, nullptr, false);
  ASSERT_TRUE(keys.is_array() && !keys.empty()) << dump;
  std::vector<std::string> del = {"bpftool", "map", "delete", "pinned", bpffs_root + "/ferry_pol_v1", "key", "hex"};
  for (const auto& byte : keys[0]["key"]) del.push_back(byte.get<std::string>().substr(2));
  run(del);
  EXPECT_EQ(ferryctl_policy("default/pod-bbbbbbbbbbbb")["missing_in_kernel"], 1);
  AgentProcess healer(*ns, args(mode), tmp / "agent3.log");
  wait_ready(healer);
  EXPECT_EQ(ferryctl_policy("default/pod-bbbbbbbbbbbb")["missing_in_kernel"], 0);
  healer.terminate();
}

INSTANTIATE_TEST_SUITE_P(AgentBinary, AgentBinaryDatapath, ::testing::Values("iptables", "ebpf"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace ferry::agent::test
