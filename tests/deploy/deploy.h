// Helpers of ferry_deploy_tests: the manifests under deploy/ as yaml-cpp documents, the objects
// and containers in them, and the agent configuration they carry. A missing object or field
// fails the calling test (ADD_FAILURE + an empty node), so each test reads as a list of checks.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include <yaml-cpp/yaml.h>

namespace ferry::deploy_test {

inline const std::string kDeployDir = std::string(FERRY_SOURCE_DIR) + "/deploy";
inline constexpr const char* kNamespace = "ferry-system";

struct Document {
  std::string file;  // e.g. "ferry.yaml"
  YAML::Node node;
};

// Every document of deploy/<file> (throws YAML::Exception when the file does not parse).
std::vector<Document> load_documents(const std::string& file);

// The one object of `kind` named `name` in `docs` (fails the test when not exactly one).
YAML::Node find_object(const std::vector<Document>& docs, const std::string& kind, const std::string& name);

// The container (or init container) named `name` of a DaemonSet.
YAML::Node find_container(const YAML::Node& daemonset, const std::string& name);

// The strings of a YAML sequence (a container's command, a rule's verbs).
std::vector<std::string> strings(const YAML::Node& seq);

// The ConfigMap's agent.yaml text, and the agent container's arguments to ferry-agent: its
// command after `ferry-node agent`, with $(NODE_NAME) replaced by `node`.
std::string agent_config_text(const std::vector<Document>& docs);
std::vector<std::string> agent_arguments(const std::vector<Document>& docs, const std::string& node);

// The value of --FLAG in `args` ("" when absent).
std::string flag_value(const std::vector<std::string>& args, const std::string& flag);

}  // namespace ferry::deploy_test
