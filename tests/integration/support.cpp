#include "support.h"

#include <cstdio>
#include <stdexcept>

namespace ferry::test {

ShellResult sh_status(const std::string& cmd) {
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

std::string sh(const std::string& cmd) {
  ShellResult r = sh_status(cmd);
  if (r.status != 0)
    throw std::runtime_error("command failed (" + std::to_string(r.status) + "): " + cmd + "\n" + r.out);
  return r.out;
}

TestNetns::TestNetns(std::string name) : name_(std::move(name)) {
  sh_status("ip netns del " + name_ + " 2>/dev/null");
  sh("ip netns add " + name_);
  sh("ip -n " + name_ + " link set lo up");
}

TestNetns::~TestNetns() { sh_status("ip netns del " + name_ + " 2>/dev/null"); }

PluginRun run_plugin(const std::string& binary, const PluginCall& call, const json& conf) {
  std::map<std::string, std::string> env = {
      {"CNI_COMMAND", call.command},
      {"CNI_CONTAINERID", call.container_id},
      {"CNI_NETNS", call.netns},
      {"CNI_IFNAME", call.ifname},
      {"CNI_ARGS", call.cni_args},
      {"CNI_PATH", call.cni_path.empty() ? plugin_dir() + ":" + reference_plugin_dir() : call.cni_path},
      {"PATH", "/usr/sbin:/usr/bin:/sbin:/bin"},
  };
  for (const auto& [k, v] : call.extra_env) env[k] = v;
  std::string path = binary.find('/') == std::string::npos ? plugin_dir() + "/" + binary : binary;
  cni::ExecResult r = cni::exec_plugin(path, env, conf.dump());
  return PluginRun{r.exit_code, r.stdout_data, r.stderr_data};
}

}  // namespace ferry::test
