// Helpers shared by the root test suites (library ferry_test_support): the root check that
// skips with a reason, a shell helper, and network namespaces that delete themselves, also
// when the test fails. Suite-specific fixtures stay in each suite's own files.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <string>
#include <vector>

namespace ferry::test {

inline bool is_root() { return geteuid() == 0; }

// Root tests start with this: without root there are no namespaces to make.
#define FERRY_REQUIRE_ROOT()                                                                  \
  do {                                                                                        \
    if (!::ferry::test::is_root()) GTEST_SKIP() << "needs root to create network namespaces"; \
  } while (0)

struct ShellResult {
  int status = 0;
  std::string out;  // stdout (stderr too when the command redirects it)
};
// Runs `cmd` with /bin/sh; stdout captured, stderr passed through.
ShellResult sh_status(const std::string& cmd);
// Runs `cmd` and fails the test (throws) when it exits non-zero; returns stdout.
std::string sh(const std::string& cmd);

// A network namespace created with `ip netns add` (a leftover of a killed run is deleted
// first) and deleted with everything in it on destruction. Name it with the test's own prefix.
class TestNetns {
 public:
  explicit TestNetns(std::string name);
  ~TestNetns();
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;
  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  // Runs `cmd` inside the namespace (ip netns exec).
  std::string exec(const std::string& cmd) const { return sh("ip netns exec " + name_ + " " + cmd); }
  int exec_status(const std::string& cmd) const { return sh_status("ip netns exec " + name_ + " " + cmd).status; }

 private:
  std::string name_;
};

// A program started inside a network namespace the way the harness runs the agent (setns into
// the namespace's network only, keeping the host mount namespace and so bpffs), stdout and
// stderr appended to `log`. Killed (SIGKILL) on destruction if still running.
class NetnsProcess {
 public:
  NetnsProcess(const std::string& netns_path, std::vector<std::string> argv, std::string log);
  ~NetnsProcess();
  NetnsProcess(const NetnsProcess&) = delete;
  NetnsProcess& operator=(const NetnsProcess&) = delete;
  bool running();
  // SIGTERM and wait (bounded, then SIGKILL); returns the wait status.
  int terminate();
  // Waits (bounded: 30 s, then SIGKILL) for the process to exit by itself; returns the wait status.
  int wait_exit();
  std::string log() const;

 private:
  std::string log_;
  int pid_ = -1;
  bool exited_ = false;
  int status_ = -1;
};

// Whether `text` has a line exactly equal to `line` (Prometheus metrics, logs).
bool has_line(const std::string& text, const std::string& line);

}  // namespace ferry::test
