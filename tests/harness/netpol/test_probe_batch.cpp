// ferry-probe batch (tools/probe/batch.cpp): input parsing and concurrent runs. No root: the
// probes go to loopback ports nothing listens on (refused at once) and to a port this test
// listens on.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <sstream>

#include "probe.h"

namespace {

using namespace ferry::probe;

TEST(ProbeBatch, ParsesLinesSkipsBlanksAndComments) {
  std::istringstream in("# header\n80/tcp|x/a|x/b tcp 10.244.1.5 80\n\n  \nc2 sctp fd00::5 81\nc3 icmp 10.0.0.1 0\n");
  auto probes = parse_batch(in);
  ASSERT_EQ(probes.size(), 3u);
  EXPECT_EQ(probes[0].id, "80/tcp|x/a|x/b");
  EXPECT_EQ(probes[0].proto, "tcp");
  EXPECT_EQ(probes[0].to, "10.244.1.5");
  EXPECT_EQ(probes[0].port, 80);
  EXPECT_EQ(probes[1].proto, "sctp");
  EXPECT_EQ(probes[1].to, "fd00::5");
  EXPECT_EQ(probes[1].port, 81);
}

TEST(ProbeBatch, RejectsMalformedLinesNamingThem) {
  for (const char* bad : {"c1 tcp 10.0.0.1\n", "c1 http 10.0.0.1 80\n", "c1 tcp 10.0.0.1 70000\n",
                          "c1 tcp 10.0.0.1 eighty\n"}) {
    std::istringstream in(std::string("ok tcp 10.0.0.1 80\n") + bad);
    try {
      parse_batch(in);
      FAIL() << "accepted: " << bad;
    } catch (const ProbeError& e) {
      EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
    }
  }
}

// A loopback TCP listener on an ephemeral port; the probe's TCP handshake completes in the
// kernel backlog, but nothing answers, so the probe times out "connected, but ...".
struct Listener {
  int fd = -1;
  uint16_t port = 0;
  Listener() {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    listen(fd, 64);
    socklen_t len = sizeof a;
    getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.sin_port);
  }
  ~Listener() { close(fd); }
};

TEST(ProbeBatch, KeepsOrderAndIdsAndReportsWhy) {
  Listener silent;
  std::vector<BatchProbe> probes;
  // 40 probes that each wait the full timeout: one after the other they would take 40 x.
  for (int i = 0; i < 40; ++i) probes.push_back({"silent" + std::to_string(i), "tcp", "127.0.0.1", silent.port});
  probes.push_back({"bad-address", "tcp", "not-an-ip", 80});
  const auto start = std::chrono::steady_clock::now();
  auto results = run_batch(probes, 300, 256);
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_EQ(results.size(), probes.size());
  for (size_t i = 0; i < probes.size(); ++i) {
    EXPECT_EQ(results[i]["id"], probes[i].id);
    EXPECT_FALSE(results[i]["ok"].get<bool>());
  }
  EXPECT_NE(results[0]["error"].get<std::string>().find("connected, but"), std::string::npos) << results[0].dump();
  EXPECT_FALSE(results.back()["error"].get<std::string>().empty());
  // Informational (the machine is shared: no timed assertion): 40 serial timeouts are 12 s.
  std::cout << "40 silent probes of 300 ms in "
            << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms\n";
}

}  // namespace
