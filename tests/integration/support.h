// Shared fixtures for the root-only integration tests: namespaces that clean up after
// themselves, a shell helper, and running a plugin binary the way a runtime does.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <map>
#include <string>

#include "cni/cni.h"

namespace ferry::test {

using json = nlohmann::json;

inline bool is_root() { return geteuid() == 0; }

// Every integration test starts with this: without root there are no namespaces to make.
#define FERRY_REQUIRE_ROOT()                                                              \
  do {                                                                                    \
    if (!::ferry::test::is_root()) GTEST_SKIP() << "needs root to create network namespaces"; \
  } while (0)

// Directory holding the freshly built plugins (ferry-bridge, ferry-host-local, ...).
inline std::string plugin_dir() { return FERRY_PLUGIN_DIR; }
// The reference plugins from Debian's containernetworking-plugins.
inline std::string reference_plugin_dir() { return "/usr/lib/cni"; }

struct ShellResult {
  int status = 0;
  std::string out;
};
// Runs `cmd` with /bin/sh; stdout captured, stderr passed through.
ShellResult sh_status(const std::string& cmd);
// Runs `cmd` and fails the test (throws) when it exits non-zero; returns stdout.
std::string sh(const std::string& cmd);

// A network namespace created with `ip netns add` and deleted on destruction (also when the
// test fails). Name it with the test's own prefix.
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
  int exec_status(const std::string& cmd) const {
    return sh_status("ip netns exec " + name_ + " " + cmd).status;
  }

 private:
  std::string name_;
};

struct PluginRun {
  int exit_code = 0;
  std::string out;  // stdout
  std::string err;  // stderr
  json json_out() const { return out.empty() ? json() : json::parse(out); }
};

struct PluginCall {
  std::string command;        // ADD, DEL, CHECK, GC, STATUS, VERSION
  std::string container_id;
  std::string netns;          // path
  std::string ifname = "eth0";
  std::string cni_args;
  std::string cni_path;       // default: plugin_dir() + ":" + reference_plugin_dir()
  std::map<std::string, std::string> extra_env;
};
// Executes `binary` (a path, or a name looked up in plugin_dir()) with CNI_* from `call` and
// `conf` on stdin.
PluginRun run_plugin(const std::string& binary, const PluginCall& call, const json& conf);

}  // namespace ferry::test
