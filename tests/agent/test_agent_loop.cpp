// The agent socket protocol, the event loop and the HTTP endpoints, with a fake datapath.
#include <gtest/gtest.h>
#include <httplib.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <fstream>
#include <thread>

#include "fakes.h"

namespace ferry::agent::test {
namespace {

TEST(AgentSocket, RepliesToAnAutoboundSender) {
  TempDir tmp;
  registry::AgentSocket sock(tmp / "run/agent.sock");
  struct stat st;
  ASSERT_EQ(stat((tmp / "run/agent.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  BridgeClient client;
  client.send(sock.path(), "abc-eth0.json");
  pollfd p{sock.fd(), POLLIN, 0};
  ASSERT_EQ(poll(&p, 1, 20000), 1);
  auto d = sock.receive();
  ASSERT_TRUE(d);
  EXPECT_EQ(d->text, "abc-eth0.json");
  ASSERT_TRUE(d->has_sender());
  EXPECT_TRUE(sock.reply(*d, "ok abc-eth0.json"));
  EXPECT_EQ(client.receive(), "ok abc-eth0.json");
  EXPECT_FALSE(sock.receive());  // nothing else queued; never blocks
}

TEST(AgentSocket, UnboundSenderGetsNoReply) {
  TempDir tmp;
  registry::AgentSocket sock(tmp / "agent.sock");
  bridge::notify_agent(sock.path(), "x-eth0.json");  // ferry-bridge's fire-and-forget path
  auto d = sock.receive();
  ASSERT_TRUE(d);
  EXPECT_EQ(d->text, "x-eth0.json");
  EXPECT_FALSE(d->has_sender());
  EXPECT_FALSE(sock.reply(*d, "ok x-eth0.json"));
}

TEST(AgentSocket, StaleSocketIsReplacedOtherFilesAreNot) {
  TempDir tmp;
  {
    registry::AgentSocket first(tmp / "agent.sock");
    // A crashed agent leaves its socket file behind: simulate by linking the file elsewhere.
    ASSERT_EQ(link((tmp / "agent.sock").c_str(), (tmp / "stale.sock").c_str()), 0);
  }
  ASSERT_EQ(rename((tmp / "stale.sock").c_str(), (tmp / "agent.sock").c_str()), 0);
  EXPECT_NO_THROW(registry::AgentSocket second(tmp / "agent.sock"));
  EXPECT_FALSE(std::filesystem::exists(tmp / "agent.sock"));  // removed on close

  std::ofstream(tmp / "file") << "data";
  EXPECT_THROW(registry::AgentSocket third(tmp / "file"), registry::RegistryError);
  EXPECT_TRUE(std::filesystem::exists(tmp / "file"));
}

struct AgentLoopTest : ::testing::Test {
  TempDir tmp;
  FakeKernel kernel;
  std::map<int, std::string> veths;
  std::vector<std::string> backends_made;
  AgentConfig config;

  AgentLoopTest() {
    config.node = "node-1";
    config.state_dir = tmp / "state";
    config.endpoint_dir = tmp / "state/endpoints";
    config.agent_socket = tmp / "state/agent.sock";
  }

  std::unique_ptr<Agent> make_agent(const std::string& mode = "ebpf") {
    Agent::Parts parts;
    parts.cluster = std::make_unique<FakeFeed>();
    parts.registry = std::make_unique<registry::EndpointRegistry>(config.endpoint_dir, config.state_dir,
                                                                  std::make_unique<FakeLinks>(&veths));
    parts.backends = [this](const std::string& m) {
      backends_made.push_back(m);
      return std::make_unique<FakeDataplane>(kernel, m);
    };
    parts.mode = mode;
    return std::make_unique<Agent>(config, std::move(parts));
  }

  bridge::EndpointRecord add(const std::string& id, int ifindex, const std::string& ip4) {
    auto rec = make_record(id, ifindex, ip4);
    veths[ifindex] = rec.host_veth;
    bridge::write_endpoint(config.endpoint_dir, rec);
    return rec;
  }
};

TEST_F(AgentLoopTest, AddIsAnsweredAfterTheEndpointIsProgrammed) {
  auto agent = make_agent();
  agent->start();
  EXPECT_TRUE(kernel.started);
  std::string reason;
  EXPECT_TRUE(agent->status().ready(&reason)) << reason;

  Running loop(*agent);
  auto rec = add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  BridgeClient client;
  client.send(config.agent_socket, record_file(rec));
  EXPECT_EQ(client.receive(), "ok " + record_file(rec));
  EXPECT_EQ(loop.stop(), 0);
  ASSERT_EQ(kernel.endpoints.size(), 1u);
  EXPECT_EQ(kernel.endpoints.begin()->second.host_ifindex, 7);
}

TEST_F(AgentLoopTest, DelIsAnsweredAfterTheEndpointIsRemoved) {
  auto rec = add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  auto agent = make_agent();
  agent->start();
  ASSERT_EQ(kernel.endpoints.size(), 1u);
  Running loop(*agent);
  bridge::remove_endpoint(config.endpoint_dir, rec.container_id, rec.ifname);
  BridgeClient client;
  client.send(config.agent_socket, record_file(rec));
  EXPECT_EQ(client.receive(), "ok " + record_file(rec));
  loop.stop();
  EXPECT_TRUE(kernel.endpoints.empty());
}

TEST_F(AgentLoopTest, ErrorsAreAnsweredWithTheReason) {
  auto agent = make_agent();
  agent->start();
  Running loop(*agent);
  BridgeClient client;

  std::ofstream(config.endpoint_dir + "/broken-eth0.json") << "{";
  client.send(config.agent_socket, "broken-eth0.json");
  std::string answer = client.receive();
  EXPECT_TRUE(answer.starts_with("error ")) << answer;
  EXPECT_NE(answer.find("broken-eth0.json"), std::string::npos) << answer;

  auto stale = make_record("cccccccccccc", 9, "10.244.1.9/24");  // its veth does not exist
  bridge::write_endpoint(config.endpoint_dir, stale);
  client.send(config.agent_socket, record_file(stale));
  answer = client.receive();
  EXPECT_TRUE(answer.starts_with("error ")) << answer;
  EXPECT_NE(answer.find(stale.host_veth), std::string::npos) << answer;

  kernel.fail_program = {};
  client.send(config.agent_socket, "../../etc/passwd");
  answer = client.receive();
  EXPECT_TRUE(answer.starts_with("error ")) << answer;
}

TEST_F(AgentLoopTest, DatapathFailureIsAnsweredAsAnError) {
  auto agent = make_agent();
  agent->start();
  kernel.fail_program = {1};  // the first endpoint id of a fresh state dir
  Running loop(*agent);
  auto rec = add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  BridgeClient client;
  client.send(config.agent_socket, record_file(rec));
  std::string answer = client.receive();
  EXPECT_TRUE(answer.starts_with("error ")) << answer;
  EXPECT_NE(answer.find("program of endpoint 1 failed"), std::string::npos) << answer;
  std::string reason;
  EXPECT_FALSE(agent->status().ready(&reason));
  EXPECT_NE(reason.find("program of endpoint 1 failed"), std::string::npos) << reason;
}

TEST_F(AgentLoopTest, RecordsFoundByInotifyAreProgrammedWithoutADatagram) {
  auto agent = make_agent();
  agent->start();
  Running loop(*agent);
  add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  // Bounded wait for the loop to see the file (no timing asserted: only that it happens).
  for (int i = 0; i < 2000 && agent->status().metrics().endpoints == 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(agent->status().metrics().endpoints, 1u);
  loop.stop();
  EXPECT_EQ(kernel.endpoints.size(), 1u);
}

TEST_F(AgentLoopTest, RestartWithNothingChangedWritesNothing) {
  add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  add("bbbbbbbbbbbb", 8, "10.244.1.6/24");
  {
    auto agent = make_agent();
    agent->start();
    EXPECT_EQ(agent->first_reconcile().programmed, 2u);
    EXPECT_EQ(agent->first_reconcile().kernel_writes, 3u);  // two endpoints, the policy set
  }
  auto before = kernel.endpoints;
  auto agent = make_agent();
  agent->start();
  EXPECT_EQ(agent->first_reconcile().desired, 2u);
  EXPECT_EQ(agent->first_reconcile().programmed, 0u);
  EXPECT_EQ(agent->first_reconcile().removed, 0u);
  EXPECT_EQ(agent->first_reconcile().kernel_writes, 0u);
  EXPECT_EQ(kernel.endpoints, before);  // same ids, same everything
  EXPECT_EQ(agent->status().metrics().stats.kernel_writes, 0u);
  EXPECT_EQ(kernel.policy_programs, 2);  // handed over again at start, unchanged
}

TEST_F(AgentLoopTest, DatapathSwitchCleansUpThePreviousBackendFirst) {
  add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  {
    auto agent = make_agent("iptables");
    agent->start();
  }
  EXPECT_EQ(backends_made, (std::vector<std::string>{"iptables"}));
  std::ifstream mode_in(config.state_dir + "/datapath");
  std::string mode;
  mode_in >> mode;
  EXPECT_EQ(mode, "iptables");

  backends_made.clear();
  auto agent = make_agent("ebpf");
  agent->start();
  EXPECT_EQ(backends_made, (std::vector<std::string>{"iptables", "ebpf"}));
  EXPECT_EQ(kernel.cleanups, 1);
  EXPECT_EQ(kernel.endpoints.size(), 1u);  // reprogrammed by the new backend
  std::ifstream again(config.state_dir + "/datapath");
  again >> mode;
  EXPECT_EQ(mode, "ebpf");

  // Same mode again: no cleanup.
  backends_made.clear();
  auto third = make_agent("ebpf");
  third->start();
  EXPECT_EQ(backends_made, (std::vector<std::string>{"ebpf"}));
  EXPECT_EQ(kernel.cleanups, 1);
}

TEST_F(AgentLoopTest, FirstReconcileFailureLeavesTheAgentNotReady) {
  add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  kernel.fail_installed = true;
  auto agent = make_agent();
  agent->start();
  std::string reason;
  EXPECT_FALSE(agent->status().ready(&reason));
  EXPECT_NE(reason.find("cannot read installed endpoints"), std::string::npos) << reason;
}

TEST_F(AgentLoopTest, MalformedRecordDoesNotBlockReadiness) {
  add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  std::ofstream(config.endpoint_dir + "/broken-eth0.json") << "{";
  auto agent = make_agent();
  agent->start();
  std::string reason;
  EXPECT_TRUE(agent->status().ready(&reason)) << reason;
  EXPECT_EQ(kernel.endpoints.size(), 1u);
}

TEST_F(AgentLoopTest, HttpServesHealthReadinessAndMetrics) {
  add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  auto agent = make_agent();
  HttpServer http(ListenAddress{"127.0.0.1", 0}, agent->status());
  httplib::Client client("127.0.0.1", http.port());
  client.set_read_timeout(20, 0);

  auto res = client.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("starting"), std::string::npos) << res->body;

  agent->start();
  Running loop(*agent);
  res = client.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  res = client.Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200) << res->body;
  res = client.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Type").find("text/plain"), std::string::npos);
  EXPECT_NE(res->body.find("\nferry_datapath_info{mode=\"ebpf\"} 1\n"), std::string::npos) << res->body;
  EXPECT_NE(res->body.find("\nferry_endpoints 1\n"), std::string::npos) << res->body;
  EXPECT_NE(res->body.find("\nferry_cluster_objects{kind=\"Pod\"} 2\n"), std::string::npos) << res->body;
  EXPECT_NE(res->body.find("\nferry_bpf_map_entries{map=\"ferry_ep_v1\"} 1\n"), std::string::npos) << res->body;
  EXPECT_NE(res->body.find("\nferry_reconcile_total 1\n"), std::string::npos) << res->body;
  EXPECT_EQ(client.Get("/nope")->status, 404);
}

TEST(AgentStatus, HealthNeedsARecentLoop) {
  AgentStatus status;
  EXPECT_FALSE(status.healthy());  // the loop never ran
  status.set_loop_alive();
  EXPECT_TRUE(status.healthy());
  EXPECT_FALSE(status.healthy(std::chrono::steady_clock::duration(-1)));
}

TEST(HttpServer, BusyAddressIsAStartupError) {
  AgentStatus status;
  HttpServer first(ListenAddress{"127.0.0.1", 0}, status);
  EXPECT_THROW(HttpServer(ListenAddress{"127.0.0.1", first.port()}, status), AgentError);
}

}  // namespace
}  // namespace ferry::agent::test
