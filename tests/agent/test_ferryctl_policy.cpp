// `ferryctl policy <ns/pod>` and `ferryctl identities` on a policy.json the agent's own code
// wrote from a compiled cluster (no root, no kernel: the eBPF check reports why it was skipped).
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <fstream>
#include <sstream>

#include "agent/model/model.h"
#include "fakes.h"
#include "net/net.h"
#include "policy/policy.h"

namespace ferry::agent::test {
namespace {

using nlohmann::json;

constexpr const char* kCluster = R"(
apiVersion: v1
kind: Node
metadata: {name: node-1}
spec: {podCIDR: 10.244.1.0/24}
status: {addresses: [{type: InternalIP, address: 192.168.50.1}]}
---
apiVersion: v1
kind: Namespace
metadata: {name: x, labels: {kubernetes.io/metadata.name: x}}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x, labels: {pod: a}}
spec: {nodeName: node-1, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.1.5}
---
apiVersion: v1
kind: Pod
metadata: {name: b, namespace: x, labels: {pod: b}}
spec: {nodeName: node-2, containers: [{name: c, image: i}]}
status: {phase: Running, podIP: 10.244.2.6}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: b}}}]
    ports: [{protocol: TCP, port: 80, endPort: 81}]
  - from: [{ipBlock: {cidr: 172.16.0.0/16, except: [172.16.1.0/24]}}]
    ports: [{protocol: UDP, port: 53}]
)";

struct FerryctlPolicyTest : ::testing::Test {
  TempDir tmp;

  void SetUp() override {
    if (std::string(kFerryctl).empty()) GTEST_SKIP() << "ferryctl was not built";
    write_fixture("ebpf");
  }

  // The node's policy.json as the agent writes it: endpoint 3 is pod x/a, endpoint 4 a pod
  // the cluster state does not know yet.
  void write_fixture(const std::string& datapath) {
    model::ClusterState state;
    state.replace_all(model::decode_manifest("cluster.yaml", kCluster).objects);
    policy::CompileInput in;
    in.cluster = &state;
    in.node = "node-1";
    in.host_ips = {*net::Ip::parse("10.244.1.1")};
    in.endpoints = {{3, "x", "a", {*net::Ip::parse("10.244.1.5")}}, {4, "x", "new", {*net::Ip::parse("10.244.1.9")}}};
    policy::IdentityAllocator ids;
    policy::CompileResult r = policy::compile(in, ids);
    std::ofstream(tmp / "policy.json")
        << policy_file_json(r, in.endpoints, {"node-1", datapath, tmp / "no-bpffs"}).dump(2);
  }

  CtlResult ctl(std::vector<std::string> args) { return run_ferryctl(std::move(args), tmp.path()); }
  json ctl_json(std::vector<std::string> args) {
    args.insert(args.end(), {"-o", "json"});
    CtlResult r = ctl(args);
    EXPECT_EQ(r.status, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }
};

// The entry of `dir` whose peer description is `peer` (null if none).
json entry(const json& endpoint, const char* dir, const std::string& peer) {
  for (const json& e : endpoint[dir]["entries"])
    if (e["peer_description"] == peer) return e;
  return json();
}

TEST_F(FerryctlPolicyTest, PolicyShowsIsolationPoliciesAndDescribedEntries) {
  json out = ctl_json({"policy", "x/a"});
  ASSERT_TRUE(out.is_object()) << out;
  EXPECT_EQ(out["pod"], "x/a");
  EXPECT_EQ(out["node"], "node-1");
  EXPECT_EQ(out["enforce"], true);
  ASSERT_EQ(out["endpoints"].size(), 1u);
  const json& ep = out["endpoints"][0];
  EXPECT_EQ(ep["endpoint_id"], 3);
  EXPECT_EQ(ep["ips"], json::array({"10.244.1.5"}));
  EXPECT_EQ(ep["policies"], json::array({"x/allow-b"}));
  EXPECT_EQ(ep["ingress"]["isolated"], true);

  json from_b = entry(ep, "ingress", "pod x {pod=b}");
  ASSERT_TRUE(from_b.is_object()) << ep.dump(2);
  EXPECT_EQ(from_b["protocol"], "tcp");
  EXPECT_EQ(from_b["port_first"], 80);
  EXPECT_EQ(from_b["port_last"], 81);
  EXPECT_GE(from_b["peer"].get<uint32_t>(), dataplane::kFirstAllocatedIdentity);
  json host = entry(ep, "ingress", "host (this node)");
  ASSERT_TRUE(host.is_object()) << ep.dump(2);  // node -> pod always allowed on isolated ingress
  EXPECT_EQ(host["peer"], dataplane::kIdentityHost);
  bool block_seen = false;
  for (const json& e : ep["ingress"]["entries"])
    if (e["peer_description"].get<std::string>().find("ipBlock 172.16.0.0/16 except 172.16.1.0/24") !=
        std::string::npos) {
      block_seen = true;
      EXPECT_EQ(e["protocol"], "udp");
      EXPECT_EQ(e["port_first"], 53);
    }
  EXPECT_TRUE(block_seen) << ep.dump(2);

  // Egress is not isolated: one implicit allow-everything entry.
  EXPECT_EQ(ep["egress"]["isolated"], false);
  ASSERT_EQ(ep["egress"]["entries"].size(), 1u);
  EXPECT_EQ(ep["egress"]["entries"][0]["peer_description"], "any peer");
  EXPECT_EQ(ep["egress"]["entries"][0]["implicit"], true);

  // eBPF mode without pins: said so, nothing claimed about the kernel.
  EXPECT_EQ(out["kernel_checked"], false);
  EXPECT_NE(out["kernel_not_checked"].get<std::string>().find("no ferry maps under"), std::string::npos) << out;
  EXPECT_TRUE(from_b["in_kernel"].is_null());
}

TEST_F(FerryctlPolicyTest, PolicyTable) {
  CtlResult r = ctl({"policy", "x/a"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("pod x/a on node node-1 (ebpf datapath, policy enforced)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("policies: x/allow-b"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("egress: not isolated"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("DIRECTION  PEER"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pod x {pod=b}"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("80-81"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("kernel: not checked"), std::string::npos) << r.out;
}

TEST_F(FerryctlPolicyTest, UnknownPodsAndPodsWithoutObjects) {
  CtlResult r = ctl({"policy", "x/zzz"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("no endpoint of pod x/zzz"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("x/a"), std::string::npos) << r.err;  // says which pods are here

  json out = ctl_json({"policy", "x/new"});  // record names a pod the cluster does not have
  ASSERT_EQ(out["endpoints"].size(), 1u);
  EXPECT_EQ(out["endpoints"][0]["pod_known"], false);
  EXPECT_EQ(out["endpoints"][0]["ingress"]["isolated"], false);
}

TEST_F(FerryctlPolicyTest, IptablesModeIsNotCheckedAgainstBpfMaps) {
  write_fixture("iptables");
  json out = ctl_json({"policy", "x/a"});
  EXPECT_EQ(out["kernel_checked"], false);
  EXPECT_NE(out["kernel_not_checked"].get<std::string>().find("iptables"), std::string::npos) << out;
}

TEST_F(FerryctlPolicyTest, IdentitiesListKindsLabelsBlocksAndPrefixes) {
  json out = ctl_json({"identities"});
  ASSERT_TRUE(out.is_array()) << out;
  bool pod_b = false, block = false, host = false;
  for (const json& id : out) {
    if (id["kind"] == "pod" && id["labels"] == json{{"pod", "b"}}) {
      pod_b = true;
      EXPECT_EQ(id["namespace"], "x");
      EXPECT_EQ(id["prefixes"], json::array({"10.244.2.6/32"}));
      EXPECT_EQ(id["prefix_count"], 1);
      EXPECT_EQ(id["namespace_labels"], (json{{"kubernetes.io/metadata.name", "x"}}));
    }
    for (const json& b : id["ip_blocks"])
      if (b == "172.16.0.0/16 except 172.16.1.0/24") block = true;
    if (id["identity"] == dataplane::kIdentityHost) {
      host = true;
      EXPECT_EQ(id["kind"], "host");
    }
  }
  EXPECT_TRUE(pod_b) << out.dump(2);
  EXPECT_TRUE(block) << out.dump(2);
  EXPECT_TRUE(host) << out.dump(2);

  CtlResult table = ctl({"identities"});
  ASSERT_EQ(table.status, 0) << table.err;
  EXPECT_TRUE(table.out.starts_with("IDENTITY  KIND")) << table.out;
  EXPECT_NE(table.out.find("pod=b"), std::string::npos) << table.out;
}

TEST_F(FerryctlPolicyTest, MissingPolicyFileSaysWhere) {
  std::filesystem::remove(tmp / "policy.json");
  CtlResult r = ctl({"identities"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find(tmp / "policy.json"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace ferry::agent::test
