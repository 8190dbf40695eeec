#include "support.h"

namespace ferry::test {

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
