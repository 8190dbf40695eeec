// ferry-probe spread (tools/probe/spread.cpp): counts by answering server, errors by reason,
// the client loop's per-connection start times. No root: a `ferry-probe serve` child on a
// loopback port, and a loopback port nothing listens on (refused at once).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "probe.h"

namespace {

using namespace ferry::probe;

// A ferry-probe server named `name` on TCP and UDP `port` (unprivileged), stopped at the end.
class Server {
 public:
  Server(const std::string& name, uint16_t port) {
    pidfile_ = std::filesystem::temp_directory_path() / ("ferry-spread-test-" + std::to_string(getpid()) + ".pid");
    std::filesystem::remove(pidfile_);
    pid_ = fork();
    if (pid_ == 0) {
      const std::string p = std::to_string(port);
      execl(FERRY_PROBE_BIN, "ferry-probe", "serve", "--name", name.c_str(), "--tcp", p.c_str(), "--udp", p.c_str(),
            "--pidfile", pidfile_.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 200 && !std::filesystem::exists(pidfile_); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ~Server() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    std::filesystem::remove(pidfile_);
  }
  bool ready() const { return std::filesystem::exists(pidfile_); }

 private:
  pid_t pid_ = -1;
  std::filesystem::path pidfile_;
};

// A port in the unprivileged range, different per test process (tests may run side by side).
uint16_t test_port(int offset) { return uint16_t(20000 + (getpid() * 7 + offset) % 20000); }

TEST(ProbeSpread, CountsConnectionsByAnsweringServer) {
  const uint16_t port = test_port(0);
  Server server("spread/one", port);
  ASSERT_TRUE(server.ready()) << "ferry-probe serve did not start on port " << port;
  for (const char* proto : {"tcp", "udp"}) {
    SpreadOptions opts;
    opts.proto = proto;
    opts.to = "127.0.0.1";
    opts.port = port;
    opts.count = 20;
    opts.parallel = 4;
    const auto j = spread(opts);
    EXPECT_EQ(j["connections"], 20) << j.dump();
    EXPECT_EQ(j["answered"], 20) << j.dump();
    EXPECT_EQ(j["servers"], nlohmann::json({{"spread/one", 20}})) << j.dump();
    EXPECT_EQ(j["seen_sources"], nlohmann::json({{"127.0.0.1", 20}})) << j.dump();
    EXPECT_TRUE(j["errors"].empty()) << j.dump();
    EXPECT_FALSE(j.contains("each"));
  }
}

TEST(ProbeSpread, CountsErrorsByReason) {
  SpreadOptions opts;
  opts.proto = "tcp";
  opts.to = "127.0.0.1";
  opts.port = test_port(1);  // nothing listens: refused
  opts.count = 5;
  const auto j = spread(opts);
  EXPECT_EQ(j["answered"], 0);
  EXPECT_EQ(j["errors"], nlohmann::json({{"connection refused", 5}})) << j.dump();
  EXPECT_TRUE(j["servers"].empty());
}

TEST(ProbeSpread, ClientLoopListsEveryConnectionWithItsStartTime) {
  const uint16_t port = test_port(2);
  Server server("spread/loop", port);
  ASSERT_TRUE(server.ready());
  SpreadOptions opts;
  opts.proto = "tcp";
  opts.to = "127.0.0.1";
  opts.port = port;
  opts.duration_s = 0.5;
  opts.interval_ms = 50;
  opts.each = true;
  const double before =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  const auto j = spread(opts);
  const double after =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  ASSERT_TRUE(j["each"].is_array());
  ASSERT_EQ(j["each"].size(), j["connections"].get<size_t>());
  ASSERT_GE(j["each"].size(), 2u) << j.dump();  // one every 50 ms for 0.5 s: about 10
  double last = 0;
  for (const auto& c : j["each"]) {
    EXPECT_TRUE(c["ok"].get<bool>()) << c.dump();
    EXPECT_EQ(c["server"], "spread/loop");
    const double t = c["t"].get<double>();
    EXPECT_GE(t, before);
    EXPECT_LE(t, after);
    EXPECT_GT(t, last);  // in start order
    last = t;
  }
}

TEST(ProbeSpread, RejectsIcmpAndBadAddresses) {
  SpreadOptions opts;
  opts.proto = "icmp";
  opts.to = "127.0.0.1";
  opts.count = 1;
  EXPECT_THROW(spread(opts), ProbeError);
  opts.proto = "tcp";
  opts.to = "not-an-ip";
  opts.port = 80;
  EXPECT_THROW(spread(opts), ProbeError);
}

}  // namespace
