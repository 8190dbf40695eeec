// ferry-bridge's fail-closed handshake with the node agent ("agentRequired"): ADD returns only
// after the agent answered "ok <record>"; no agent, an error answer or silence fail ADD with
// CNI code 11 and roll everything back, so the runtime retries instead of starting a pod
// whose endpoint is not programmed.
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <thread>

#include "tests/integration/test_bridge_fixture.h"

namespace ferry::test {
namespace {

using BridgeAgent = BridgeFixture;

// A stand-in agent: a datagram socket at `path` that answers each request with `answer(name)`
// (nothing when it returns an empty string) and remembers what it was asked.
class FakeAgent {
 public:
  FakeAgent(const std::string& path, std::function<std::string(const std::string&)> answer)
      : answer_(std::move(answer)) {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw std::runtime_error("bind " + path);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeAgent() {
    stop_ = true;
    thread_.join();
    close(fd_);
  }
  std::vector<std::string> requests() {
    std::lock_guard<std::mutex> lock(mu_);
    return requests_;
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 50) <= 0) continue;
      char buf[512];
      sockaddr_un from{};
      socklen_t len = sizeof from;
      ssize_t n = recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
      if (n <= 0) continue;
      std::string name(buf, static_cast<size_t>(n));
      {
        std::lock_guard<std::mutex> lock(mu_);
        requests_.push_back(name);
      }
      std::string reply = answer_(name);
      if (!reply.empty() && len > sizeof(sa_family_t))
        sendto(fd_, reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from), len);
    }
  }

  int fd_ = -1;
  std::function<std::string(const std::string&)> answer_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  std::mutex mu_;
  std::vector<std::string> requests_;
};

TEST_F(BridgeAgent, AddReturnsAfterTheAgentConfirms) {
  const std::string sock = dir_ + "/agent.sock";
  FakeAgent agent(sock, [](const std::string& name) { return "ok " + name; });
  TestNetns& a = pod("a");
  json c = conf({{"agentSocket", sock}, {"agentRequired", true}});
  add("a", a, c);
  ASSERT_EQ(agent.requests(), std::vector<std::string>{cid("a") + "-eth0.json"});
  EXPECT_EQ(endpoint_files(), std::vector<std::string>{cid("a") + "-eth0.json"});
  EXPECT_EQ(a.exec_status("ping -c1 -W2 " + gateway() + " >/dev/null"), 0);
}

TEST_F(BridgeAgent, NoAgentFailsWithTryAgainAndRollsBack) {
  TestNetns& a = pod("a");
  json c = conf({{"agentSocket", dir_ + "/nobody.sock"}, {"agentRequired", true}});
  PluginRun r = call("ADD", cid("a"), a.path(), c);
  EXPECT_EQ(r.exit_code, 1);
  json err = r.json_out();
  EXPECT_EQ(err["code"], 11) << r.out;
  EXPECT_NE(err["msg"].get<std::string>().find("ferry-agent is not running"), std::string::npos) << r.out;
  EXPECT_TRUE(host_veths().empty()) << "veth rolled back";
  EXPECT_TRUE(reservations().empty()) << "IP released";
  EXPECT_TRUE(endpoint_files().empty()) << "record removed";
}

TEST_F(BridgeAgent, AgentErrorAndSilenceFailWithTryAgain) {
  const std::string sock = dir_ + "/agent.sock";
  std::atomic<bool> silent{false};
  FakeAgent agent(sock, [&](const std::string&) { return silent ? std::string() : std::string("error map full"); });
  TestNetns& a = pod("a");
  json c = conf({{"agentSocket", sock}, {"agentRequired", true}, {"agentTimeoutMs", 300}});
  PluginRun r = call("ADD", cid("a"), a.path(), c);
  EXPECT_EQ(r.json_out()["code"], 11) << r.out;
  EXPECT_NE(r.out.find("map full"), std::string::npos) << "the agent's reason reaches the runtime: " << r.out;
  EXPECT_TRUE(host_veths().empty());
  EXPECT_TRUE(reservations().empty());

  silent = true;
  r = call("ADD", cid("a"), a.path(), c);
  EXPECT_EQ(r.json_out()["code"], 11) << r.out;
  EXPECT_NE(r.out.find("within 300 ms"), std::string::npos) << r.out;
  EXPECT_TRUE(host_veths().empty());
  EXPECT_TRUE(reservations().empty());
  EXPECT_TRUE(endpoint_files().empty());
  // The rollback told the agent the record is gone (request, then removal notice, per ADD).
  EXPECT_EQ(agent.requests().size(), 4u);
}

TEST_F(BridgeAgent, BadTimeoutIsAConfigError) {
  TestNetns& a = pod("a");
  PluginRun r = call("ADD", cid("a"), a.path(), conf({{"agentRequired", true}, {"agentTimeoutMs", 0}}));
  EXPECT_EQ(r.json_out()["code"], 7) << r.out;
  EXPECT_NE(r.out.find("agentTimeoutMs"), std::string::npos);
}

}  // namespace
}  // namespace ferry::test
