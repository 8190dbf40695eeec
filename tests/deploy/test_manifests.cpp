// Offline checks of deploy/: every manifest parses and names known kinds, the DaemonSet has what
// the agent needs (host network, mounts at the host's own paths, probes on the configured
// listen port, the node name, tolerations), the agent accepts the ConfigMap and the arguments,
// and the ClusterRole grants exactly read access to the kinds the agent watches.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>

#include "agent/core/agent.h"
#include "agent/model/model.h"
#ifdef FERRY_HAVE_K8S
#include "agent/k8s/k8s.h"
#endif
#include "tests/deploy/deploy.h"

namespace ferry::deploy_test {
namespace {

const std::vector<std::string> kManifestFiles = {"ferry.yaml", "ferry-cleanup.yaml", "kind-config.yaml",
                                                 "kind-config-no-kube-proxy.yaml"};

// apiVersion of every kind deploy/ may use.
const std::map<std::string, std::string> kKnownKinds = {
    {"Namespace", "v1"},
    {"ServiceAccount", "v1"},
    {"ConfigMap", "v1"},
    {"ClusterRole", "rbac.authorization.k8s.io/v1"},
    {"ClusterRoleBinding", "rbac.authorization.k8s.io/v1"},
    {"DaemonSet", "apps/v1"},
    {"Cluster", "kind.x-k8s.io/v1alpha4"},
};

struct Manifests : ::testing::Test {
  std::vector<Document> docs = load_documents("ferry.yaml");
  std::vector<Document> cleanup_docs = load_documents("ferry-cleanup.yaml");
  YAML::Node daemonset = find_object(docs, "DaemonSet", "ferry-agent");
  YAML::Node pod_spec = daemonset["spec"]["template"]["spec"];
  YAML::Node agent = find_container(daemonset, "agent");
};

// The agent's configuration as the DaemonSet gives it: the ConfigMap's agent.yaml (written to
// a temp file) and the container's arguments, through the agent's own parser.
agent::AgentConfig parse_deployed_config(const std::vector<Document>& docs) {
  char path[] = "/tmp/ferry-deploy-agent-XXXXXX.yaml";
  int fd = mkstemps(path, 5);
  EXPECT_GE(fd, 0);
  close(fd);
  std::ofstream(path) << agent_config_text(docs);
  std::vector<std::string> argv = {"ferry-agent"};
  for (std::string a : agent_arguments(docs, "node-a")) argv.push_back(a == "/etc/ferry/agent.yaml" ? path : a);
  agent::AgentConfig c;
  try {
    c = *agent::parse_config(argv);
  } catch (const agent::ConfigError& e) {
    ADD_FAILURE() << "the agent refuses the deployed configuration: " << e.what();
  }
  std::remove(path);
  return c;
}

// The mount of `path` in a container: {volume name, mountPropagation, readOnly}.
struct Mount {
  std::string volume, propagation;
  bool read_only = false;
};
std::map<std::string, Mount> mounts_of(const YAML::Node& container) {
  std::map<std::string, Mount> out;
  for (const YAML::Node& m : container["volumeMounts"])
    out[m["mountPath"].as<std::string>()] = {m["name"].as<std::string>(), m["mountPropagation"].as<std::string>(""),
                                             m["readOnly"].as<bool>(false)};
  return out;
}

// Whether `path` is `dir` or below it.
bool under(const std::string& path, const std::string& dir) {
  return path == dir || path.rfind(dir + "/", 0) == 0;
}

// The longest mount path of `container` that holds `path` ("" when none does).
std::string mount_holding(const YAML::Node& container, const std::string& path) {
  std::string best;
  for (const auto& [mount_path, m] : mounts_of(container))
    if (under(path, mount_path) && mount_path.size() > best.size()) best = mount_path;
  return best;
}

TEST(DeployFiles, EveryDocumentParsesWithAKnownKindAndApiVersion) {
  for (const std::string& file : kManifestFiles) {
    std::vector<Document> docs;
    ASSERT_NO_THROW(docs = load_documents(file)) << file;
    ASSERT_FALSE(docs.empty()) << file;
    for (const Document& d : docs) {
      ASSERT_TRUE(d.node.IsMap()) << file << ": a document is not a mapping";
      const std::string kind = d.node["kind"].as<std::string>("");
      auto known = kKnownKinds.find(kind);
      ASSERT_NE(known, kKnownKinds.end()) << file << ": unknown kind \"" << kind << "\"";
      EXPECT_EQ(d.node["apiVersion"].as<std::string>(""), known->second) << file << ": " << kind;
      if (kind == "Cluster") continue;  // kind's own config: no metadata
      EXPECT_FALSE(d.node["metadata"]["name"].as<std::string>("").empty()) << file << ": " << kind << " without a name";
      const bool cluster_scoped = kind == "Namespace" || kind == "ClusterRole" || kind == "ClusterRoleBinding";
      EXPECT_EQ(d.node["metadata"]["namespace"].as<std::string>(""), cluster_scoped ? "" : kNamespace)
          << file << ": " << kind << " " << d.node["metadata"]["name"].as<std::string>("");
    }
  }
  find_object(load_documents("ferry.yaml"), "Namespace", kNamespace);
}

TEST_F(Manifests, DaemonSetRunsOnEveryNodeInTheHostNetwork) {
  EXPECT_TRUE(pod_spec["hostNetwork"].as<bool>(false));
  EXPECT_EQ(pod_spec["dnsPolicy"].as<std::string>(""), "Default");  // cluster DNS needs the CNI first
  EXPECT_EQ(pod_spec["priorityClassName"].as<std::string>(""), "system-node-critical");
  // One toleration with operator Exists and no key or effect tolerates every taint.
  bool everything = false;
  for (const YAML::Node& t : pod_spec["tolerations"])
    everything |= t["operator"].as<std::string>("") == "Exists" && !t["key"] && !t["effect"];
  EXPECT_TRUE(everything) << "no toleration of every taint";
  EXPECT_EQ(daemonset["spec"]["updateStrategy"]["type"].as<std::string>(""), "RollingUpdate");
  for (const auto& kv : daemonset["spec"]["selector"]["matchLabels"])
    EXPECT_EQ(daemonset["spec"]["template"]["metadata"]["labels"][kv.first.as<std::string>()].as<std::string>(""),
              kv.second.as<std::string>())
        << "the selector does not select the pod template";
  // The service account the RBAC binds.
  EXPECT_EQ(pod_spec["serviceAccountName"].as<std::string>(""), "ferry-agent");
  find_object(docs, "ServiceAccount", "ferry-agent");
}

TEST_F(Manifests, EveryContainerRunsTheSameImageAndGetsItsNodeName) {
  for (const auto& manifest : {docs, cleanup_docs})
    for (const Document& d : manifest) {
      if (d.node["kind"].as<std::string>() != "DaemonSet") continue;
      const YAML::Node spec = d.node["spec"]["template"]["spec"];
      for (const char* list : {"initContainers", "containers"})
        for (const YAML::Node& c : spec[list]) {
          const std::string name = c["name"].as<std::string>();
          EXPECT_EQ(c["image"].as<std::string>(""), "ferry:dev") << name;  // install.sh substitutes this text
          const std::vector<std::string> cmd = strings(c["command"]);
          if (std::find(cmd.begin(), cmd.end(), "$(NODE_NAME)") == cmd.end()) continue;
          bool downward = false;
          for (const YAML::Node& e : c["env"])
            downward |= e["name"].as<std::string>() == "NODE_NAME" &&
                        e["valueFrom"]["fieldRef"]["fieldPath"].as<std::string>("") == "spec.nodeName";
          EXPECT_TRUE(downward) << name << " uses $(NODE_NAME) without NODE_NAME from spec.nodeName";
        }
    }
}

// Host directories are mounted at the host's own paths, so what the agent writes into the
// conflist (endpointDir, agentSocket, dataDir) is valid for ferry-bridge run by the runtime.
TEST_F(Manifests, HostPathsAreMountedWhereTheHostHasThem) {
  for (const auto& manifest : {docs, cleanup_docs})
    for (const Document& d : manifest) {
      if (d.node["kind"].as<std::string>() != "DaemonSet") continue;
      const YAML::Node spec = d.node["spec"]["template"]["spec"];
      std::map<std::string, YAML::Node> volumes;
      for (const YAML::Node& v : spec["volumes"]) volumes[v["name"].as<std::string>()] = v;
      for (const char* list : {"initContainers", "containers"})
        for (const YAML::Node& c : spec[list])
          for (const auto& [path, m] : mounts_of(c)) {
            ASSERT_TRUE(volumes.count(m.volume)) << c["name"] << " mounts undefined volume " << m.volume;
            const YAML::Node v = volumes[m.volume];
            if (v["hostPath"]) {
              EXPECT_EQ(v["hostPath"]["path"].as<std::string>(), path) << m.volume;
            }
            // The API server accepts Bidirectional only in privileged containers.
            if (m.propagation == "Bidirectional") {
              EXPECT_TRUE(c["securityContext"]["privileged"].as<bool>(false)) << c["name"];
            }
          }
    }
}

TEST_F(Manifests, AgentMountsWhatItWritesAndTheInitStepsWhatTheyNeed) {
  const agent::AgentConfig c = parse_deployed_config(docs);
  // Every path the agent writes is on a host mount (not in the container's own filesystem).
  for (const std::string& path : {c.state_dir, c.endpoint_dir, c.agent_socket, c.bpffs_root, c.cni_conflist})
    EXPECT_FALSE(mount_holding(agent, path).empty()) << path << " is not on a mounted host directory";
  auto mounts = mounts_of(agent);
  EXPECT_EQ(mounts["/sys/fs/bpf"].propagation, "HostToContainer");  // sees the bpffs that prep mounted
  // The socket load-balancer attaches to the host's cgroup v2 root, not the pod's namespaced one.
  EXPECT_FALSE(mounts["/sys/fs/cgroup"].volume.empty()) << "the host's cgroup v2 is not mounted";
  EXPECT_TRUE(mounts["/sys/fs/cgroup"].read_only);
  EXPECT_FALSE(mounts["/run/xtables.lock"].volume.empty()) << "no shared xtables lock";
  EXPECT_TRUE(mounts["/etc/ferry"].read_only);

  const YAML::Node prep = find_container(daemonset, "prep");
  auto prep_mounts = mounts_of(prep);
  EXPECT_EQ(prep_mounts["/sys/fs/bpf"].propagation, "Bidirectional");  // the bpffs mount reaches the host
  EXPECT_TRUE(prep_mounts["/lib/modules"].read_only);                   // modprobe br_netfilter
  const YAML::Node install = find_container(daemonset, "install-cni");
  EXPECT_EQ(strings(install["command"]),
            (std::vector<std::string>{"ferry-node", "install-cni", "--from", "/opt/ferry/cni", "--to", "/opt/cni/bin"}));
  EXPECT_FALSE(mount_holding(install, "/opt/cni/bin/ferry-bridge").empty());

  // The cleanup reaches every path the agent and the plugins write, the IPAM store included.
  const YAML::Node cleanup = find_container(find_object(cleanup_docs, "DaemonSet", "ferry-cleanup"), "cleanup");
  for (const std::string& path : {c.state_dir, c.bpffs_root, c.cni_conflist, c.ipam_dir + "/" + c.cni_network,
                                  std::string("/opt/cni/bin/ferry-bridge"), std::string("/run/xtables.lock")})
    EXPECT_FALSE(mount_holding(cleanup, path).empty()) << "the cleanup cannot reach " << path;
  // All three node steps read the agent's own configuration.
  for (const YAML::Node& step : {prep, agent, cleanup}) EXPECT_EQ(flag_value(strings(step["command"]), "--config"), "/etc/ferry/agent.yaml");
}

TEST_F(Manifests, AgentRunsWithCapabilitiesNotPrivileged) {
  const YAML::Node sc = agent["securityContext"];
  EXPECT_FALSE(sc["privileged"].as<bool>(true));
  EXPECT_EQ(strings(sc["capabilities"]["drop"]), std::vector<std::string>{"ALL"});
  std::vector<std::string> caps = strings(sc["capabilities"]["add"]);
  std::sort(caps.begin(), caps.end());
  EXPECT_EQ(caps, (std::vector<std::string>{"BPF", "NET_ADMIN", "NET_RAW", "PERFMON", "SYS_ADMIN", "SYS_RESOURCE"}));
  EXPECT_FALSE(find_container(daemonset, "install-cni")["securityContext"]["privileged"].as<bool>(false));
}

TEST_F(Manifests, ProbesAskTheAgentsHealthEndpointsOnItsListenAddress) {
  const agent::AgentConfig c = parse_deployed_config(docs);
  const agent::ListenAddress listen = agent::parse_listen(c.listen);
  for (const auto& [probe, path] : {std::pair{"livenessProbe", "/healthz"}, std::pair{"readinessProbe", "/readyz"}}) {
    const YAML::Node get = agent[probe]["httpGet"];
    ASSERT_TRUE(get) << probe;
    EXPECT_EQ(get["path"].as<std::string>(""), path);
    EXPECT_EQ(get["port"].as<int>(0), listen.port) << probe << " does not match listen " << c.listen;
    // The kubelet probes from the host: loopback reaches a loopback or wildcard listener.
    const std::string host = get["host"].as<std::string>("");
    EXPECT_TRUE(host == listen.host || (host == "127.0.0.1" && (listen.host == "0.0.0.0" || listen.host == "::")))
        << probe << " host " << host << " vs listen " << c.listen;
  }
  EXPECT_EQ(agent["ports"][0]["containerPort"].as<int>(0), listen.port);
}

TEST_F(Manifests, AgentAcceptsTheConfigMapAndWritesTheConflist) {
  const agent::AgentConfig c = parse_deployed_config(docs);
  EXPECT_EQ(c.node, "node-a");  // --node $(NODE_NAME)
  EXPECT_EQ(c.datastore, "kubernetes");
  EXPECT_EQ(c.kubeconfig, "");  // in-cluster service account
  EXPECT_EQ(c.cni_conflist, "/etc/cni/net.d/05-ferry.conflist");
  EXPECT_EQ(c.overlay, "vxlan");
  EXPECT_EQ(c.services, "on");  // ferry replaces kube-proxy
  EXPECT_EQ(c.lb_algorithm, "random");
  // install.sh --kube-proxy turns Services off by rewriting exactly this line.
  EXPECT_NE(agent_config_text(docs).find("\nservices: \"on\"\n"), std::string::npos);
}

// ---------------------------------------------------------------------------------------
// RBAC: exactly get/list/watch on what the agent watches.

using GroupResource = std::pair<std::string, std::string>;  // {API group, plural resource}

// From the agent's model: every Kind with its API group; plural as the API spells it.
std::set<GroupResource> watched_by_model() {
  std::set<GroupResource> out;
  for (model::Kind k : model::kAllKinds) {
    std::string version(model::api_version_of(k));
    std::string group = version.find('/') == std::string::npos ? "" : version.substr(0, version.find('/'));
    std::string plural(model::kind_name(k));
    std::transform(plural.begin(), plural.end(), plural.begin(), ::tolower);
    plural = plural.back() == 'y' ? plural.substr(0, plural.size() - 1) + "ies" : plural + "s";
    out.insert({group, plural});
  }
  return out;
}

TEST_F(Manifests, ClusterRoleGrantsExactlyReadAccessToWhatTheAgentWatches) {
  const YAML::Node role = find_object(docs, "ClusterRole", "ferry-agent");
  std::set<GroupResource> granted;
  for (const YAML::Node& rule : role["rules"]) {
    std::vector<std::string> verbs = strings(rule["verbs"]);
    std::sort(verbs.begin(), verbs.end());
    EXPECT_EQ(verbs, (std::vector<std::string>{"get", "list", "watch"}));
    EXPECT_FALSE(rule["resourceNames"] || rule["nonResourceURLs"]);
    for (const std::string& g : strings(rule["apiGroups"]))
      for (const std::string& r : strings(rule["resources"])) {
        EXPECT_NE(g, "*");
        EXPECT_NE(r, "*");
        granted.insert({g, r});
      }
  }
  EXPECT_EQ(granted, watched_by_model());
#ifdef FERRY_HAVE_K8S
  // And the collections the Kubernetes source actually lists and watches.
  std::set<GroupResource> watched;
  for (const k8s::Resource& r : k8s::default_resources()) {
    std::string p = r.path;  // /api/v1/pods, /apis/<group>/<version>/<plural>
    std::string group = p.rfind("/apis/", 0) == 0 ? p.substr(6, p.find('/', 6) - 6) : "";
    watched.insert({group, p.substr(p.rfind('/') + 1)});
  }
  EXPECT_EQ(granted, watched);
#endif

  const YAML::Node binding = find_object(docs, "ClusterRoleBinding", "ferry-agent");
  EXPECT_EQ(binding["roleRef"]["kind"].as<std::string>(""), "ClusterRole");
  EXPECT_EQ(binding["roleRef"]["name"].as<std::string>(""), "ferry-agent");
  ASSERT_EQ(binding["subjects"].size(), 1u);
  EXPECT_EQ(binding["subjects"][0]["kind"].as<std::string>(""), "ServiceAccount");
  EXPECT_EQ(binding["subjects"][0]["name"].as<std::string>(""), pod_spec["serviceAccountName"].as<std::string>(""));
  EXPECT_EQ(binding["subjects"][0]["namespace"].as<std::string>(""), kNamespace);
}

// ---------------------------------------------------------------------------------------
// kind

TEST(DeployKind, ConfigsLeaveTheCniToFerryAndKubeProxyAsDocumented) {
  const YAML::Node with_kube_proxy = load_documents("kind-config.yaml")[0].node;
  const YAML::Node without = load_documents("kind-config-no-kube-proxy.yaml")[0].node;
  for (const YAML::Node& c : {with_kube_proxy, without}) {
    EXPECT_TRUE(c["networking"]["disableDefaultCNI"].as<bool>(false));
    EXPECT_FALSE(c["networking"]["podSubnet"].as<std::string>("").empty());  // Nodes get spec.podCIDR
  }
  // ferry load-balances Services: the default cluster (install.sh --create) has no kube-proxy;
  // the other keeps it (--kube-proxy).
  EXPECT_EQ(without["networking"]["kubeProxyMode"].as<std::string>(""), "none");
  EXPECT_EQ(with_kube_proxy["networking"]["kubeProxyMode"].as<std::string>("iptables"), "iptables");
}

}  // namespace
}  // namespace ferry::deploy_test
