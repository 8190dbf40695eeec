// ferry-probe end to end: a server in one network namespace, the client in another, joined by
// a veth. Every protocol (TCP, UDP, SCTP over raw sockets, ICMP) in both address families,
// the failure reasons, and the stream / request-response modes. Root only; every object
// carries the prefix "fyprb" and disappears with the namespaces, also when a test fails.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <future>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

namespace {

using json = nlohmann::json;

#define FERRY_REQUIRE_ROOT() \
  if (geteuid() != 0) GTEST_SKIP() << "needs root to create network namespaces"

struct CmdRun {
  int exit_code = -1;
  std::string out;
};

CmdRun run(const std::string& cmd) {
  CmdRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

void must(const std::string& cmd) {
  CmdRun r = run(cmd + " 2>&1");
  if (r.exit_code != 0) throw std::runtime_error("`" + cmd + "` failed: " + r.out);
}

const std::string kProbe = FERRY_PROBE_BIN;

// Two namespaces and a veth between them; removed on destruction.
class Pair {
 public:
  Pair() : tag_(std::to_string(getpid())) {
    client = "fyprb-" + tag_ + "-c";
    server = "fyprb-" + tag_ + "-s";
    cleanup();
    must("ip netns add " + client);
    must("ip netns add " + server);
    must("ip link add fyprb" + tag_ + "c netns " + client + " type veth peer name fyprb" + tag_ +
         "s netns " + server);
    setup(client, "fyprb" + tag_ + "c", "10.77.0.1/24", "fd00:77::1/64");
    setup(server, "fyprb" + tag_ + "s", "10.77.0.2/24", "fd00:77::2/64");
    // Wait until both link-local addresses finished DAD, so IPv6 neighbour discovery works.
    for (int i = 0; i < 100; ++i) {
      if (run("ip -n " + client + " -6 addr show tentative; ip -n " + server + " -6 addr show tentative").out.empty())
        break;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~Pair() { cleanup(); }
  std::string in(const std::string& ns, const std::string& cmd) const {
    return "ip netns exec " + ns + " " + cmd;
  }
  std::string client, server;

 private:
  void setup(const std::string& ns, const std::string& dev, const std::string& v4, const std::string& v6) {
    must("ip -n " + ns + " link set lo up");
    must("ip -n " + ns + " addr add " + v4 + " dev " + dev);
    must("ip -n " + ns + " addr add " + v6 + " dev " + dev + " nodad");
    must("ip -n " + ns + " link set " + dev + " up");
  }
  void cleanup() {
    run("ip netns del " + client + " 2>/dev/null; ip netns del " + server + " 2>/dev/null");
  }
  std::string tag_;
};

// A ferry-probe server running in a namespace until destruction.
class Server {
 public:
  Server(const Pair& pair, const std::string& name) {
    pidfile_ = "/tmp/fyprb-" + std::to_string(getpid()) + ".pid";
    unlink(pidfile_.c_str());
    pid_ = fork();
    if (pid_ == 0) {
      // ip netns exec execs the probe in place: the child's pid is the server's.
      execlp("ip", "ip", "netns", "exec", pair.server.c_str(), kProbe.c_str(), "serve", "--name",
             name.c_str(), "--tcp", "80,81", "--udp", "80,81", "--sctp", "80,81", "--sink", "5001",
             "--rr", "5002", "--pidfile", pidfile_.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 200 && access(pidfile_.c_str(), F_OK) != 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (access(pidfile_.c_str(), F_OK) != 0) throw std::runtime_error("ferry-probe serve did not start");
  }
  ~Server() { stop(); }
  void stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    unlink(pidfile_.c_str());
  }

 private:
  pid_t pid_ = -1;
  std::string pidfile_;
};

struct Probe {
  int exit_code;
  json j;
};

Probe connect(const Pair& pair, const std::string& proto, const std::string& to, int port,
              int timeout_ms = 2000) {
  CmdRun r = run(pair.in(pair.client, kProbe + " connect -o json --proto " + proto + " --to " + to +
                                       " --port " + std::to_string(port) +
                                       " --timeout-ms " + std::to_string(timeout_ms)));
  return {r.exit_code, json::parse(r.out)};
}

class ProbeNetns : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_ROOT();
    pair_ = std::make_unique<Pair>();
    server_ = std::make_unique<Server>(*pair_, "fyprb-server");
  }
  void TearDown() override {
    server_.reset();
    pair_.reset();
  }
  std::unique_ptr<Pair> pair_;
  std::unique_ptr<Server> server_;
};

TEST_F(ProbeNetns, EveryProtocolAnswersWithNameAndSourceInBothFamilies) {
  struct Family {
    std::string server_ip, client_ip;
  };
  for (const Family& f : {Family{"10.77.0.2", "10.77.0.1"}, Family{"fd00:77::2", "fd00:77::1"}}) {
    for (std::string proto : {"tcp", "udp", "sctp"}) {
      for (int port : {80, 81}) {
        SCOPED_TRACE(proto + " " + f.server_ip + " port " + std::to_string(port));
        Probe p = connect(*pair_, proto, f.server_ip, port);
        EXPECT_EQ(p.exit_code, 0) << p.j.dump();
        EXPECT_EQ(p.j["ok"], true);
        EXPECT_EQ(p.j["proto"], proto);
        EXPECT_EQ(p.j["port"], port);
        EXPECT_EQ(p.j["server"], "fyprb-server");
        EXPECT_EQ(p.j["seen_source"], f.client_ip) << "the server reports the source IP it saw";
        EXPECT_GE(p.j["rtt_us"].get<int64_t>(), 0);
      }
    }
    Probe icmp = connect(*pair_, "icmp", f.server_ip, 1);
    EXPECT_EQ(icmp.exit_code, 0) << icmp.j.dump();
    EXPECT_EQ(icmp.j["ok"], true);
  }
}

TEST_F(ProbeNetns, ClosedPortsAndAbsentHostsFailWithAReason) {
  Probe tcp = connect(*pair_, "tcp", "10.77.0.2", 82);
  EXPECT_EQ(tcp.exit_code, 1);
  EXPECT_EQ(tcp.j["ok"], false);
  EXPECT_NE(tcp.j["error"].get<std::string>().find("refused"), std::string::npos) << tcp.j.dump();

  Probe udp = connect(*pair_, "udp", "fd00:77::2", 82);
  EXPECT_EQ(udp.exit_code, 1);
  EXPECT_NE(udp.j["error"].get<std::string>().find("refused"), std::string::npos) << udp.j.dump();

  // The server's raw socket ignores INITs to ports it does not serve: no INIT-ACK comes back.
  Probe sctp = connect(*pair_, "sctp", "10.77.0.2", 82, 400);
  EXPECT_EQ(sctp.exit_code, 1);
  EXPECT_NE(sctp.j["error"].get<std::string>().find("INIT-ACK"), std::string::npos) << sctp.j.dump();

  Probe icmp = connect(*pair_, "icmp", "10.77.0.9", 1, 400);
  EXPECT_EQ(icmp.exit_code, 1);
  EXPECT_FALSE(icmp.j["error"].get<std::string>().empty());
}

TEST_F(ProbeNetns, SctpWithoutServerIsProtocolUnreachable) {
  server_->stop();  // no raw SCTP socket left: the kernel answers "protocol unreachable"
  Probe sctp = connect(*pair_, "sctp", "10.77.0.2", 80, 1000);
  EXPECT_EQ(sctp.exit_code, 1);
  EXPECT_NE(sctp.j["error"].get<std::string>().find("protocol unreachable"), std::string::npos)
      << sctp.j.dump();
}

TEST_F(ProbeNetns, StreamAndRequestResponse) {
  CmdRun s = run(pair_->in(pair_->client, kProbe + " stream --to 10.77.0.2 --port 5001 --duration 0.5"));
  EXPECT_EQ(s.exit_code, 0) << s.out;
  json sj = json::parse(s.out);
  EXPECT_EQ(sj["ok"], true);
  EXPECT_EQ(sj["broken"], false);
  EXPECT_GT(sj["bytes"].get<uint64_t>(), 0u);

  CmdRun rr = run(pair_->in(pair_->client, kProbe + " rr --to fd00:77::2 --port 5002 --duration 0.5"));
  EXPECT_EQ(rr.exit_code, 0) << rr.out;
  json rj = json::parse(rr.out);
  EXPECT_EQ(rj["ok"], true);
  EXPECT_GT(rj["transactions"].get<uint64_t>(), 0u);
}

TEST_F(ProbeNetns, StreamReportsABrokenConnection) {
  auto stream = std::async(std::launch::async, [&] {
    return run(pair_->in(pair_->client, kProbe + " stream --to 10.77.0.2 --port 5001 --duration 5"));
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  server_->stop();  // the sink's socket closes: the next segments are answered with RST
  CmdRun s = stream.get();
  EXPECT_EQ(s.exit_code, 1) << s.out;
  json sj = json::parse(s.out);
  EXPECT_EQ(sj["broken"], true);
  EXPECT_FALSE(sj["error"].get<std::string>().empty());
}

TEST_F(ProbeNetns, ConnectionToServerThatIsGoneIsRefusedFast) {
  CmdRun r = run(pair_->in(pair_->client, kProbe + " stream --to 10.77.0.2 --port 5009 --duration 1"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(json::parse(r.out)["error"].get<std::string>().find("refused"), std::string::npos);
}

}  // namespace
