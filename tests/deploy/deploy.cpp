// Loading deploy/*.yaml for ferry_deploy_tests.
#include "tests/deploy/deploy.h"

#include <algorithm>

namespace ferry::deploy_test {

std::vector<Document> load_documents(const std::string& file) {
  std::vector<Document> out;
  for (const YAML::Node& n : YAML::LoadAllFromFile(kDeployDir + "/" + file)) out.push_back({file, n});
  return out;
}

YAML::Node find_object(const std::vector<Document>& docs, const std::string& kind, const std::string& name) {
  std::vector<YAML::Node> found;
  for (const Document& d : docs)
    if (d.node.IsMap() && d.node["kind"] && d.node["kind"].as<std::string>() == kind && d.node["metadata"] &&
        d.node["metadata"]["name"] && d.node["metadata"]["name"].as<std::string>() == name)
      found.push_back(d.node);
  if (found.size() != 1) {
    ADD_FAILURE() << "expected one " << kind << " " << name << ", found " << found.size();
    return YAML::Node();
  }
  return found[0];
}

YAML::Node find_container(const YAML::Node& daemonset, const std::string& name) {
  const YAML::Node spec = daemonset["spec"]["template"]["spec"];
  for (const char* list : {"initContainers", "containers"})
    for (const YAML::Node& c : spec[list])
      if (c["name"].as<std::string>() == name) return c;
  ADD_FAILURE() << "no container " << name;
  return YAML::Node();
}

std::vector<std::string> strings(const YAML::Node& seq) {
  std::vector<std::string> out;
  if (seq.IsSequence())
    for (const YAML::Node& s : seq) out.push_back(s.as<std::string>());
  return out;
}

std::string agent_config_text(const std::vector<Document>& docs) {
  const YAML::Node cm = find_object(docs, "ConfigMap", "ferry-config");
  if (!cm || !cm["data"]["agent.yaml"]) {
    ADD_FAILURE() << "ConfigMap ferry-config has no agent.yaml";
    return "";
  }
  return cm["data"]["agent.yaml"].as<std::string>();
}

std::vector<std::string> agent_arguments(const std::vector<Document>& docs, const std::string& node) {
  const YAML::Node agent = find_container(find_object(docs, "DaemonSet", "ferry-agent"), "agent");
  std::vector<std::string> cmd = strings(agent["command"]);
  if (cmd.size() < 2 || cmd[0] != "ferry-node" || cmd[1] != "agent") {
    ADD_FAILURE() << "the agent container does not run `ferry-node agent ...`";
    return {};
  }
  std::vector<std::string> args(cmd.begin() + 2, cmd.end());
  for (std::string& a : args)
    if (a == "$(NODE_NAME)") a = node;
  return args;
}

std::string flag_value(const std::vector<std::string>& args, const std::string& flag) {
  auto it = std::find(args.begin(), args.end(), flag);
  return it != args.end() && it + 1 != args.end() ? *(it + 1) : "";
}

}  // namespace ferry::deploy_test
