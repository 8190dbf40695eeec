// Root-test helpers of the iptables suite (a trimmed copy of tests/integration/support.h):
// a shell helper and network namespaces that delete themselves, also when a test fails.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <stdexcept>
#include <string>

namespace ferry::test {

inline bool is_root() { return geteuid() == 0; }

#define FERRY_REQUIRE_ROOT()                                                                  \
  do {                                                                                        \
    if (!::ferry::test::is_root()) GTEST_SKIP() << "needs root to create network namespaces"; \
  } while (0)

struct ShellResult {
  int status = 0;
  std::string out;
};

// Runs `cmd` with /bin/sh; stdout captured, stderr passed through.
inline ShellResult sh_status(const std::string& cmd) {
  ShellResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed: " + cmd);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  return r;
}

// Runs `cmd`; throws (failing the test) when it exits non-zero. Returns stdout.
inline std::string sh(const std::string& cmd) {
  ShellResult r = sh_status(cmd);
  if (r.status != 0)
    throw std::runtime_error("command failed (" + std::to_string(r.status) + "): " + cmd + "\n" + r.out);
  return r.out;
}

// A network namespace (`ip netns add`), deleted with everything in it on destruction.
class TestNetns {
 public:
  explicit TestNetns(std::string name) : name_(std::move(name)) {
    sh_status("ip netns del " + name_ + " 2>/dev/null");  // left over from a killed run
    sh("ip netns add " + name_);
    sh("ip -n " + name_ + " link set lo up");
  }
  ~TestNetns() { sh_status("ip netns del " + name_ + " 2>/dev/null"); }
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;
  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  std::string exec(const std::string& cmd) const { return sh("ip netns exec " + name_ + " " + cmd); }
  int exec_status(const std::string& cmd) const { return sh_status("ip netns exec " + name_ + " " + cmd).status; }

 private:
  std::string name_;
};

}  // namespace ferry::test
