// The real ferry-agent with --datastore kubernetes --kubeconfig against the fake API server, both
// inside a test network namespace ("fyk8s<pid>"): the objects the server holds show up in the
// agent's /metrics, a watch event changes them, and a wrong token stops the agent with a clear
// message. Root (the agent programs the iptables datapath of the namespace).
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "net/net.h"
#include "tests/k8s/fake_api_server.h"
#include "tests/k8s/objects.h"
#include "tests/support/support.h"

namespace ferry::k8s::test {
namespace {

#ifdef FERRY_AGENT_BINARY
constexpr const char* kAgentBinary = FERRY_AGENT_BINARY;
#else
constexpr const char* kAgentBinary = "";
#endif

struct AgentBinaryK8s : ::testing::Test {
  void SetUp() override {
    FERRY_REQUIRE_ROOT();
    node = "fyk8s" + std::to_string(getpid() % 100000);
    std::string tmpl = (std::filesystem::temp_directory_path() / "fyk8s-XXXXXX").string();
    dir = mkdtemp(tmpl.data());
    ns = std::make_unique<ferry::test::TestNetns>(node);
    pki = make_test_pki(dir);
    // The server's listening socket is made inside the namespace, where the agent runs.
    net::in_netns(net::Netns::open(ns->path()), [&] { server = std::make_unique<FakeApiServer>(pki, "agent-token"); });
    server->put(node_json(node, "10.244.1.0/24", "172.18.0.2"));
    server->put(namespace_json("shop"));
    server->put(pod_json("shop", "web-0", node, "10.244.1.10"));
    server->put(pod_json("shop", "web-1", "other-node", "10.244.2.10"));
    server->put(networkpolicy_json("shop", "web-ingress"));
  }
  void TearDown() override {
    server.reset();
    ns.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
    if (!node.empty()) std::filesystem::remove_all("/sys/fs/bpf/ferry/" + node, ec);
  }

  std::vector<std::string> agent_args(const std::string& kubeconfig) const {
    return {kAgentBinary, "--node", node, "--datastore", "kubernetes", "--kubeconfig", kubeconfig,
            "--state-dir", dir + "/state", "--bpffs-root", "/sys/fs/bpf/ferry/" + node,
            "--datapath", "iptables", "--overlay", "none", "--resync-interval", "30s"};
  }

  std::string metrics() const {
    std::string body;
    net::in_netns(net::Netns::open(ns->path()), [&] {
      httplib::Client client("127.0.0.1", 9400);
      client.set_connection_timeout(2, 0);
      client.set_read_timeout(10, 0);
      if (auto res = client.Get("/metrics"); res && res->status == 200) body = res->body;
    });
    return body;
  }

  // Bounded wait until /metrics has `line` (fails with the agent's log).
  void wait_metric(ferry::test::NetnsProcess& agent, const std::string& line) {
    for (int i = 0; i < 300; ++i) {
      ASSERT_TRUE(agent.running()) << "ferry-agent exited:\n" << agent.log();
      if (ferry::test::has_line(metrics(), line)) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    FAIL() << "no \"" << line << "\" in /metrics:\n" << metrics() << "\nlog:\n" << agent.log();
  }

  std::string node, dir;
  std::unique_ptr<ferry::test::TestNetns> ns;
  TestPki pki;
  std::unique_ptr<FakeApiServer> server;
};

TEST_F(AgentBinaryK8s, ObjectsFromTheApiServerReachTheAgentsClusterState) {
  write_kubeconfig(dir + "/kubeconfig", server->url(), pki.ca_cert, "agent-token");
  ferry::test::NetnsProcess agent(ns->path(), agent_args(dir + "/kubeconfig"), dir + "/agent.log");
  wait_metric(agent, "ferry_cluster_objects{kind=\"Node\"} 1");
  wait_metric(agent, "ferry_cluster_objects{kind=\"Pod\"} 2");
  wait_metric(agent, "ferry_cluster_objects{kind=\"NetworkPolicy\"} 1");
  wait_metric(agent, "ferry_cluster_objects{kind=\"Namespace\"} 1");

  // A watch event: the count follows.
  server->put(pod_json("shop", "web-2", node, "10.244.1.11"));
  server->remove("NetworkPolicy", "shop", "web-ingress");
  wait_metric(agent, "ferry_cluster_objects{kind=\"Pod\"} 3");
  wait_metric(agent, "ferry_cluster_objects{kind=\"NetworkPolicy\"} 0");
  EXPECT_NE(agent.log().find("kubernetes datastore: " + server->url()), std::string::npos) << agent.log();

  int status = agent.terminate();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << agent.log();
}

TEST_F(AgentBinaryK8s, WrongTokenStopsTheAgentWithAClearMessage) {
  write_kubeconfig(dir + "/kubeconfig", server->url(), pki.ca_cert, "not-the-token");
  ferry::test::NetnsProcess agent(ns->path(), agent_args(dir + "/kubeconfig"), dir + "/agent.log");
  int status = agent.wait_exit();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << status << "\n" << agent.log();
  EXPECT_NE(agent.log().find("HTTP 401"), std::string::npos) << agent.log();
  EXPECT_NE(agent.log().find("bearer token was rejected"), std::string::npos) << agent.log();
}

}  // namespace
}  // namespace ferry::k8s::test
