// ferry-agent configuration: flags, YAML file, precedence, derived defaults, errors.
#include <gtest/gtest.h>

#include <fstream>

#include "agent/core/agent.h"
#include "fakes.h"

namespace ferry::agent::test {
namespace {

AgentConfig parse(std::vector<std::string> args) {
  args.insert(args.begin(), "ferry-agent");
  auto c = parse_config(args);
  if (!c) throw std::runtime_error("printed help instead of parsing");
  return *c;
}

std::string error_of(std::vector<std::string> args) {
  try {
    parse(std::move(args));
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string write_file(const TempDir& dir, const std::string& name, const std::string& text) {
  std::ofstream(dir / name) << text;
  return dir / name;
}

TEST(AgentConfig, DefaultsDeriveFromTheNodeName) {
  AgentConfig c = parse({"--node", "node-1"});
  EXPECT_EQ(c.node, "node-1");
  EXPECT_EQ(c.bpffs_root, "/sys/fs/bpf/ferry/node-1");
  EXPECT_EQ(c.state_dir, "/run/ferry/node-1");
  EXPECT_EQ(c.endpoint_dir, "/run/ferry/node-1/endpoints");
  EXPECT_EQ(c.agent_socket, "/run/ferry/node-1/agent.sock");
  EXPECT_EQ(c.listen, "127.0.0.1:9400");
  EXPECT_EQ(c.datapath, "auto");
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.resync_interval, std::chrono::seconds(30));
}

TEST(AgentConfig, PolicyFlagAndKey) {
  EXPECT_EQ(parse({"--node", "n"}).policy, "on");
  EXPECT_EQ(parse({"--node", "n", "--policy", "off"}).policy, "off");
  TempDir dir;
  std::string file = write_file(dir, "agent.yaml", "node: n\npolicy: off\n");
  EXPECT_EQ(parse({"--config", file}).policy, "off");
  EXPECT_EQ(parse({"--config", file, "--policy", "on"}).policy, "on");  // the flag wins
  std::string e = error_of({"--node", "n", "--policy", "maybe"});
  EXPECT_NE(e.find("policy \"maybe\""), std::string::npos) << e;
}

TEST(AgentConfig, NodeDefaultsToTheHostname) {
  char host[256] = {};
  gethostname(host, sizeof host - 1);
  EXPECT_EQ(parse({}).node, host);
}

TEST(AgentConfig, StateDirMovesEndpointDirAndSocket) {
  AgentConfig c = parse({"--node", "n", "--state-dir", "/tmp/x"});
  EXPECT_EQ(c.endpoint_dir, "/tmp/x/endpoints");
  EXPECT_EQ(c.agent_socket, "/tmp/x/agent.sock");
}

TEST(AgentConfig, EveryFlag) {
  AgentConfig c = parse({"--node", "n2", "--datastore", "dir:/tmp/m", "--datapath", "iptables", "--bpffs-root",
                         "/sys/fs/bpf/x", "--state-dir", "/tmp/s", "--endpoint-dir", "/tmp/e", "--agent-socket",
                         "/tmp/a.sock", "--listen", "[::1]:9500", "--log-level", "debug", "--resync-interval", "2m"});
  EXPECT_EQ(c.manifest_dir, "/tmp/m");
  EXPECT_EQ(c.datapath, "iptables");
  EXPECT_EQ(c.bpffs_root, "/sys/fs/bpf/x");
  EXPECT_EQ(c.endpoint_dir, "/tmp/e");
  EXPECT_EQ(c.agent_socket, "/tmp/a.sock");
  EXPECT_EQ(c.listen, "[::1]:9500");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.resync_interval, std::chrono::minutes(2));
}

TEST(AgentConfig, YamlFileAndFlagsWin) {
  TempDir dir;
  std::string file = write_file(dir, "agent.yaml",
                                "node: from-file\n"
                                "datastore: dir:/srv/manifests\n"
                                "datapath: ebpf\n"
                                "listen: 127.0.0.1:9999\n"
                                "resync-interval: 10s\n"
                                "log-level: warn\n");
  AgentConfig c = parse({"--config", file, "--datapath", "iptables"});
  EXPECT_EQ(c.node, "from-file");
  EXPECT_EQ(c.manifest_dir, "/srv/manifests");
  EXPECT_EQ(c.datapath, "iptables");  // the flag wins over the file
  EXPECT_EQ(c.listen, "127.0.0.1:9999");
  EXPECT_EQ(c.resync_interval, std::chrono::seconds(10));
  EXPECT_EQ(c.log_level, "warn");
  EXPECT_EQ(c.state_dir, "/run/ferry/from-file");
  EXPECT_EQ(c.config_file, file);
}

TEST(AgentConfig, UnknownYamlKeyIsAnErrorNamingTheKey) {
  TempDir dir;
  std::string file = write_file(dir, "agent.yaml", "node: a\nresync_interval: 5s\n");
  std::string err = error_of({"--config", file});
  EXPECT_NE(err.find("unknown key \"resync_interval\""), std::string::npos) << err;
  EXPECT_NE(err.find(file), std::string::npos) << err;
}

TEST(AgentConfig, YamlErrors) {
  TempDir dir;
  EXPECT_NE(error_of({"--config", write_file(dir, "list.yaml", "- a\n- b\n")}).find("expected a mapping"),
            std::string::npos);
  EXPECT_NE(error_of({"--config", write_file(dir, "nested.yaml", "node: {a: b}\n")}).find("single value"),
            std::string::npos);
  EXPECT_NE(error_of({"--config", write_file(dir, "broken.yaml", "node: [a\n")}).find("broken.yaml"),
            std::string::npos);
  EXPECT_NE(error_of({"--config", dir / "missing.yaml"}).find("missing.yaml"), std::string::npos);
  // An empty file is an empty configuration.
  EXPECT_EQ(parse({"--config", write_file(dir, "empty.yaml", ""), "--node", "n"}).node, "n");
}

TEST(AgentConfig, KubernetesDatastoreWithKubeconfigOrInCluster) {
  EXPECT_EQ(parse({"--node", "n", "--datastore", "kubernetes"}).kubeconfig, "");  // in-cluster
  EXPECT_EQ(parse({"--node", "n", "--datastore", "kubernetes", "--kubeconfig", "/k/config"}).kubeconfig, "/k/config");
  TempDir dir;
  AgentConfig c = parse({"--config", write_file(dir, "a.yaml", "node: n\ndatastore: kubernetes\nkubeconfig: /k/c\n")});
  EXPECT_EQ(c.datastore, "kubernetes");
  EXPECT_EQ(c.kubeconfig, "/k/c");
  std::string err = error_of({"--datastore", "dir:/m", "--kubeconfig", "/k/config"});
  EXPECT_NE(err.find("only used with --datastore kubernetes"), std::string::npos) << err;
}

TEST(AgentConfig, BadValuesAreErrorsNamingTheValue) {
  EXPECT_NE(error_of({"--datastore", "etcd:/x"}).find("etcd:/x"), std::string::npos);
  EXPECT_NE(error_of({"--datapath", "xdp"}).find("\"xdp\""), std::string::npos);
  EXPECT_NE(error_of({"--log-level", "loud"}).find("\"loud\""), std::string::npos);
  EXPECT_NE(error_of({"--resync-interval", "soon"}).find("\"soon\""), std::string::npos);
  EXPECT_NE(error_of({"--resync-interval", "0s"}).find("positive"), std::string::npos);
  EXPECT_NE(error_of({"--listen", "localhost"}).find("port"), std::string::npos);
  EXPECT_NE(error_of({"--listen", "127.0.0.1:99999"}).find("99999"), std::string::npos);
  EXPECT_NE(error_of({"--node", "a/b"}).find("a/b"), std::string::npos);
  EXPECT_NE(error_of({"--no-such-flag"}).find("--no-such-flag"), std::string::npos);
}

TEST(AgentConfig, HelpAndVersionPrintAndReturnNothing) {
  std::string out;
  EXPECT_FALSE(parse_config({"ferry-agent", "--help"}, &out));
  EXPECT_NE(out.find("--datapath"), std::string::npos);
  EXPECT_NE(out.find("--resync-interval"), std::string::npos);
  EXPECT_FALSE(parse_config({"ferry-agent", "--version"}, &out));
  EXPECT_EQ(out, std::string("ferry-agent ") + FERRY_VERSION + "\n");
}

TEST(AgentConfig, OverlayDefaults) {
  AgentConfig c = parse({"--node", "n"});
  EXPECT_EQ(c.overlay, "vxlan");
  EXPECT_EQ(c.vxlan_vni, 1u);
  EXPECT_EQ(c.vxlan_port, 8472);
  EXPECT_EQ(c.underlay_interface, "");
  EXPECT_EQ(c.mtu, 0);  // underlay MTU - 50, resolved at run time
  EXPECT_EQ(c.cni_conflist, "");
  EXPECT_EQ(c.cni_network, "ferry");
  EXPECT_EQ(c.ipam_dir, "/var/lib/cni/networks");
}

TEST(AgentConfig, OverlayFlagsAndYaml) {
  AgentConfig c = parse({"--node", "n", "--overlay", "none", "--vxlan-vni", "42", "--vxlan-port", "4789",
                         "--underlay-interface", "eth1", "--mtu", "1400", "--cni-conflist", "/etc/cni/net.d/10-ferry.conflist",
                         "--cni-network", "pods", "--ipam-dir", "/tmp/ipam"});
  EXPECT_EQ(c.overlay, "none");
  EXPECT_EQ(c.vxlan_vni, 42u);
  EXPECT_EQ(c.vxlan_port, 4789);
  EXPECT_EQ(c.underlay_interface, "eth1");
  EXPECT_EQ(c.mtu, 1400);
  EXPECT_EQ(c.cni_conflist, "/etc/cni/net.d/10-ferry.conflist");
  EXPECT_EQ(c.cni_network, "pods");
  EXPECT_EQ(c.ipam_dir, "/tmp/ipam");

  TempDir dir;
  std::string file = write_file(dir, "agent.yaml", "node: y\nvxlan-vni: 7\nmtu: 1350\ncni-conflist: /x.conflist\n");
  c = parse({"--config", file, "--mtu", "1300"});
  EXPECT_EQ(c.vxlan_vni, 7u);
  EXPECT_EQ(c.mtu, 1300);  // the flag wins
  EXPECT_EQ(c.cni_conflist, "/x.conflist");
}

TEST(AgentConfig, BadOverlayValuesAreErrorsNamingTheValue) {
  EXPECT_NE(error_of({"--overlay", "geneve"}).find("\"geneve\""), std::string::npos);
  EXPECT_NE(error_of({"--vxlan-vni", "0"}).find("vxlan-vni"), std::string::npos);
  EXPECT_NE(error_of({"--vxlan-vni", "16777216"}).find("16777216"), std::string::npos);
  EXPECT_NE(error_of({"--vxlan-port", "70000"}).find("vxlan-port"), std::string::npos);
  EXPECT_NE(error_of({"--mtu", "big"}).find("\"big\""), std::string::npos);
  EXPECT_NE(error_of({"--mtu", "100"}).find("mtu"), std::string::npos);
  EXPECT_NE(error_of({"--cni-network", ""}).find("cni-network"), std::string::npos);
}

TEST(AgentConfig, Durations) {
  EXPECT_EQ(parse_duration("30", "x"), std::chrono::seconds(30));
  EXPECT_EQ(parse_duration("30s", "x"), std::chrono::seconds(30));
  EXPECT_EQ(parse_duration("250ms", "x"), std::chrono::milliseconds(250));
  EXPECT_EQ(parse_duration("1h", "x"), std::chrono::hours(1));
  EXPECT_THROW(parse_duration("", "x"), ConfigError);
  EXPECT_THROW(parse_duration("-1s", "x"), ConfigError);
  EXPECT_THROW(parse_duration("1d", "x"), ConfigError);
}

TEST(AgentConfig, ListenAddresses) {
  ListenAddress a = parse_listen("127.0.0.1:9400");
  EXPECT_EQ(a.host, "127.0.0.1");
  EXPECT_EQ(a.port, 9400);
  a = parse_listen("[::1]:80");
  EXPECT_EQ(a.host, "::1");
  EXPECT_EQ(a.port, 80);
  a = parse_listen(":9400");
  EXPECT_EQ(a.host, "0.0.0.0");
}

}  // namespace
}  // namespace ferry::agent::test
