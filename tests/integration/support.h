// Fixtures of the root-only integration tests: the shared ones (FERRY_REQUIRE_ROOT, sh(),
// TestNetns from tests/support) and running a plugin binary the way a runtime does.
#pragma once

#include <map>
#include <string>

#include "cni/cni.h"
#include "tests/support/support.h"

namespace ferry::test {

using json = nlohmann::json;

// Directory holding the freshly built plugins (ferry-bridge, ferry-host-local, ...).
inline std::string plugin_dir() { return FERRY_PLUGIN_DIR; }
// The reference plugins from Debian's containernetworking-plugins.
inline std::string reference_plugin_dir() { return "/usr/lib/cni"; }

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
