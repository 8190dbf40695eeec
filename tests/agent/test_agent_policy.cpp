// NetworkPolicy in the agent, with a fake datapath and a real manifest directory: what reaches
// program_policy() on start, after policy / pod label / pod IP changes, after an endpoint ADD
// (before the answer), and nothing when nothing changed (a restart included); errors counted and
// retried; --policy off; policy.json for ferryctl.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "agent/model/model.h"
#include "fakes.h"
#include "policy/policy.h"

namespace ferry::agent::test {
namespace {

using dataplane::Direction;
using nlohmann::json;

net::Ip ip(const char* text) { return *net::Ip::parse(text); }

ino_t inode_of(const std::string& path) {
  struct stat st {};
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

std::string node_yaml() {
  return "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nspec: {podCIDR: 10.244.1.0/24}\n"
         "status: {addresses: [{type: InternalIP, address: 192.168.50.1}]}\n---\n"
         "apiVersion: v1\nkind: Namespace\nmetadata: {name: x, labels: {kubernetes.io/metadata.name: x}}\n";
}

std::string pod_yaml(const std::string& name, const std::string& label, const std::string& pod_ip) {
  return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: x, labels: {pod: " + label +
         "}}\nspec: {nodeName: node-1, containers: [{name: c, image: i, ports: [{name: serve-80-tcp, "
         "containerPort: 80, protocol: TCP}]}]}\nstatus: {phase: Running, podIP: " +
         pod_ip + ", podIPs: [{ip: " + pod_ip + "}]}\n";
}

// Pods labelled pod=a may receive TCP 80 from pods labelled pod=b, nothing else.
constexpr const char* kAllowBToA =
    "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: allow-b, namespace: x}\n"
    "spec:\n  podSelector: {matchLabels: {pod: a}}\n  ingress:\n"
    "  - from: [{podSelector: {matchLabels: {pod: b}}}]\n    ports: [{protocol: TCP, port: 80}]\n";

struct AgentPolicyTest : ::testing::Test {
  TempDir tmp;
  FakeKernel kernel;
  std::map<int, std::string> veths;
  AgentConfig config;
  std::string manifests;
  std::vector<net::Ip> host_ips = {ip("10.244.1.1"), ip("127.0.0.1")};

  AgentPolicyTest() {
    config = config_under(tmp);
    manifests = tmp / "manifests";
    std::filesystem::create_directories(manifests);
    config.manifest_dir = manifests;
    write_manifest("00-node.yaml", node_yaml());
    write_manifest("pod-a.yaml", pod_yaml("a", "a", "10.244.1.5"));
    write_manifest("pod-b.yaml", pod_yaml("b", "b", "10.244.1.6"));
    write_manifest("pod-c.yaml", pod_yaml("c", "c", "10.244.1.7"));
  }

  std::unique_ptr<Agent> make_agent() {
    return make_manifest_agent(
        config, manifests, [this](const std::string& m) { return std::make_unique<FakeDataplane>(kernel, m); },
        [this] { return host_ips; }, &veths);
  }

  void write_manifest(const std::string& name, const std::string& text) { replace_file(manifests, name, text); }
  void remove_manifest(const std::string& name) { std::filesystem::remove(manifests + "/" + name); }

  bridge::EndpointRecord record_of(const std::string& pod, int ifindex, const std::string& cidr) {
    auto rec = make_record(std::string(12, pod[0]), ifindex, cidr);
    rec.pod_namespace = "x";
    rec.pod_name = pod;
    veths[ifindex] = rec.host_veth;
    return rec;
  }
  bridge::EndpointRecord add(const std::string& pod, int ifindex, const std::string& cidr) {
    auto rec = record_of(pod, ifindex, cidr);
    bridge::write_endpoint(config.endpoint_dir, rec);
    return rec;
  }
  uint32_t id_of(const bridge::EndpointRecord& rec) {
    json j = json::parse(slurp(config.state_dir + "/endpoint-ids.json"));
    return j["ids"].value(record_file(rec), 0u);
  }
  json policy_file() {
    std::string text = slurp(config.state_dir + "/policy.json");
    return text.empty() ? json() : json::parse(text);
  }
  // The endpoint's entry in policy.json (null when absent).
  json endpoint_in_file(uint32_t id) {
    json f = policy_file();
    if (f.is_object())
      for (const json& e : f["endpoints"])
        if (e["endpoint_id"] == id) return e;
    return json();
  }
};

TEST_F(AgentPolicyTest, StartProgramsTheCompiledSet) {
  write_manifest("policy.yaml", kAllowBToA);
  auto a = add("a", 7, "10.244.1.5/24");
  auto b = add("b", 8, "10.244.1.6/24");
  auto agent = make_agent();
  agent->start();
  std::string reason;
  EXPECT_TRUE(agent->status().ready(&reason)) << reason;
  const uint32_t ida = id_of(a), idb = id_of(b);
  ASSERT_NE(ida, 0u);

  // Exactly what the compiler makes of the same input.
  model::ClusterState state;
  std::vector<model::Object> objects;
  for (const char* f : {"00-node.yaml", "pod-a.yaml", "pod-b.yaml", "pod-c.yaml", "policy.yaml"})
    for (auto& o : model::decode_manifest(f, slurp(manifests + "/" + f)).objects) objects.push_back(o);
  state.replace_all(objects);
  policy::CompileInput in;
  in.cluster = &state;
  in.node = "node-1";
  in.host_ips = host_ips;
  in.endpoints = {{ida, "x", "a", {ip("10.244.1.5")}}, {idb, "x", "b", {ip("10.244.1.6")}}};
  policy::IdentityAllocator fresh;
  EXPECT_EQ(kernel.policy, policy::compile(in, fresh).set);

  // And what that means for packets.
  EXPECT_TRUE(kernel.policy.enforce);
  EXPECT_TRUE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.6"), IPPROTO_TCP, 80));
  EXPECT_FALSE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.6"), IPPROTO_TCP, 81));
  EXPECT_FALSE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.7"), IPPROTO_TCP, 80));
  EXPECT_TRUE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.1"), IPPROTO_TCP, 80));  // host
  EXPECT_TRUE(policy::allows(kernel.policy, ida, Direction::Egress, ip("10.244.1.7"), IPPROTO_UDP, 53));
  EXPECT_TRUE(policy::allows(kernel.policy, idb, Direction::Ingress, ip("10.244.1.7"), IPPROTO_TCP, 80));

  // policy.json for ferryctl, identities.json for the next start.
  json ea = endpoint_in_file(ida);
  ASSERT_TRUE(ea.is_object()) << policy_file().dump(2);
  EXPECT_EQ(ea["pod"], "x/a");
  EXPECT_EQ(ea["policies"], json::array({"x/allow-b"}));
  EXPECT_EQ(ea["ingress"]["isolated"], true);
  EXPECT_EQ(ea["egress"]["isolated"], false);
  EXPECT_EQ(ea["ingress"]["entries"].size(), kernel.policy.endpoints.at(ida).ingress.size());
  EXPECT_EQ(endpoint_in_file(idb)["ingress"]["isolated"], false);
  EXPECT_EQ(policy_file()["datapath"], "ebpf");
  EXPECT_EQ(policy_file()["bpffs_root"], config.bpffs_root);
  EXPECT_FALSE(slurp(config.state_dir + "/identities.json").empty());

  MetricsSnapshot m = agent->status().metrics();
  EXPECT_EQ(m.policy_isolated_ingress, 1u);
  EXPECT_EQ(m.policy_isolated_egress, 0u);
  EXPECT_EQ(m.policy_entries_ingress, kernel.policy.endpoints.at(ida).ingress.size());
  EXPECT_GE(m.policy_identities, 3u);  // the three pods at least
  EXPECT_EQ(m.policy_compile_duration.count, 1u);
  EXPECT_EQ(m.policy_apply_duration.count, 1u);
  EXPECT_EQ(m.policy_errors_total, 0u);
}

TEST_F(AgentPolicyTest, PolicyManifestChangesReachTheDatapath) {
  auto a = add("a", 7, "10.244.1.5/24");
  auto agent = make_agent();
  agent->start();
  const uint32_t ida = id_of(a);
  EXPECT_TRUE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.7"), IPPROTO_TCP, 80));
  Running loop(*agent);

  write_manifest("policy.yaml", kAllowBToA);
  ASSERT_TRUE(eventually([&] { return endpoint_in_file(ida)["ingress"]["isolated"] == true; }));
  loop.stop();
  EXPECT_TRUE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.6"), IPPROTO_TCP, 80));
  EXPECT_FALSE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.7"), IPPROTO_TCP, 80));

  Running again(*agent);
  remove_manifest("policy.yaml");
  ASSERT_TRUE(eventually([&] { return endpoint_in_file(ida)["ingress"]["isolated"] == false; }));
  again.stop();
  EXPECT_TRUE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.7"), IPPROTO_TCP, 80));
}

TEST_F(AgentPolicyTest, PodLabelAndIpChangesReachTheDatapath) {
  write_manifest("policy.yaml", kAllowBToA);
  auto a = add("a", 7, "10.244.1.5/24");
  auto agent = make_agent();
  agent->start();
  const uint32_t ida = id_of(a);
  ASSERT_TRUE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.6"), IPPROTO_TCP, 80));
  const json entries_before = endpoint_in_file(ida)["ingress"]["entries"];

  // b (a remote pod for this node: no endpoint here) is relabelled: a no longer admits it.
  Running loop(*agent);
  write_manifest("pod-b.yaml", pod_yaml("b", "other", "10.244.1.6"));
  ASSERT_TRUE(eventually([&] { return endpoint_in_file(ida)["ingress"]["entries"] != entries_before; }));
  loop.stop();
  EXPECT_FALSE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.6"), IPPROTO_TCP, 80));

  // c takes the label: a admits c's address.
  Running again(*agent);
  const int programs = agent->status().metrics().policy_applies_total;
  write_manifest("pod-c.yaml", pod_yaml("c", "b", "10.244.1.7"));
  ASSERT_TRUE(eventually([&] { return agent->status().metrics().policy_applies_total > uint64_t(programs); }));
  again.stop();
  EXPECT_TRUE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.7"), IPPROTO_TCP, 80));

  // c moves to another IP: the ipcache follows.
  Running third(*agent);
  const uint64_t applies = agent->status().metrics().policy_applies_total;
  write_manifest("pod-c.yaml", pod_yaml("c", "b", "10.244.1.17"));
  ASSERT_TRUE(eventually([&] { return agent->status().metrics().policy_applies_total > applies; }));
  third.stop();
  EXPECT_TRUE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.17"), IPPROTO_TCP, 80));
  EXPECT_FALSE(policy::allows(kernel.policy, ida, Direction::Ingress, ip("10.244.1.7"), IPPROTO_TCP, 80));
}

TEST_F(AgentPolicyTest, AddIsAnsweredAfterTheEndpointsPolicyIsProgrammed) {
  write_manifest("policy.yaml", kAllowBToA);
  auto agent = make_agent();
  agent->start();

  BridgeClient client;
  std::mutex mu;
  std::vector<std::pair<dataplane::PolicySet, bool>> seen;  // (set, answer already queued)
  kernel.on_policy = [&](const dataplane::PolicySet& set) {
    std::lock_guard lock(mu);
    seen.push_back({set, client.answer_queued()});
  };
  Running loop(*agent);
  // Linked in (IN_CREATE, which the registry does not watch), so only the datagram announces
  // it: the answer path alone must program the endpoint and its policy.
  auto rec = record_of("a", 7, "10.244.1.5/24");
  bridge::write_endpoint(tmp.path(), rec);
  ASSERT_EQ(link((tmp / record_file(rec)).c_str(), (config.endpoint_dir + "/" + record_file(rec)).c_str()), 0);
  client.send(config.agent_socket, record_file(rec));
  ASSERT_EQ(client.receive(), "ok " + record_file(rec));
  const uint32_t ida = id_of(rec);
  {
    std::lock_guard lock(mu);
    ASSERT_FALSE(seen.empty());
    const auto& [set, answered] = seen.back();
    ASSERT_TRUE(set.endpoints.count(ida));
    EXPECT_TRUE(set.endpoints.at(ida).ingress_isolated);
    EXPECT_FALSE(answered) << "the ADD was answered before its policy was programmed";
  }
  // DEL: the endpoint's policy goes with it.
  bridge::remove_endpoint(config.endpoint_dir, rec.container_id, rec.ifname);
  client.send(config.agent_socket, record_file(rec));
  ASSERT_EQ(client.receive(), "ok " + record_file(rec));
  loop.stop();
  EXPECT_FALSE(kernel.policy.endpoints.count(ida));
}

TEST_F(AgentPolicyTest, NothingChangedMeansNoProgramPolicy) {
  write_manifest("policy.yaml", kAllowBToA);
  auto a = add("a", 7, "10.244.1.5/24");
  auto agent = make_agent();
  agent->start();
  EXPECT_EQ(kernel.policy_programs, 1);
  Running loop(*agent);
  // A cluster change that policy does not depend on, and a record rewritten as it was.
  write_manifest("svc.yaml",
                 "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\n"
                 "spec: {clusterIP: 10.96.0.10, ports: [{port: 53, protocol: UDP}]}\n");
  ASSERT_TRUE(eventually([&] { return agent->status().metrics().cluster_objects["Service"] == 1; }));
  bridge::write_endpoint(config.endpoint_dir, a);
  BridgeClient client;
  client.send(config.agent_socket, record_file(a));
  EXPECT_EQ(client.receive(), "ok " + record_file(a));
  loop.stop();
  EXPECT_EQ(kernel.policy_programs, 1);
  MetricsSnapshot m = agent->status().metrics();
  EXPECT_EQ(m.policy_applies_total, 1u);
  EXPECT_GE(m.policy_compile_duration.count, 3u);  // compiled every time, applied once
}

TEST_F(AgentPolicyTest, RestartWithNothingChangedWritesNothing) {
  write_manifest("policy.yaml", kAllowBToA);
  add("a", 7, "10.244.1.5/24");
  add("b", 8, "10.244.1.6/24");
  {
    auto agent = make_agent();
    agent->start();
    // Pod a goes while the agent runs: its identity is freed, the others keep theirs. A fresh
    // allocator would renumber b and c, so only persisted identities make the restart a no-op.
    Running loop(*agent);
    write_manifest("pod-a.yaml", pod_yaml("a", "a2", "10.244.1.5"));
    ASSERT_TRUE(eventually([&] { return agent->status().metrics().policy_applies_total == 2; }));
  }
  const std::string ids_path = config.state_dir + "/identities.json";
  const std::string file_path = config.state_dir + "/policy.json";
  const ino_t ids_inode = inode_of(ids_path), file_inode = inode_of(file_path);
  const dataplane::PolicySet before = kernel.policy;
  {
    auto agent = make_agent();
    agent->start();
    EXPECT_EQ(agent->first_reconcile().kernel_writes, 0u);
    EXPECT_EQ(agent->status().metrics().stats.kernel_writes, 0u);
    EXPECT_EQ(kernel.policy, before);
    EXPECT_EQ(kernel.policy_programs, 3);  // re-applied (a resync heals), writing nothing
  }
  EXPECT_EQ(inode_of(ids_path), ids_inode);  // not rewritten
  EXPECT_EQ(inode_of(file_path), file_inode);

  // The counter-check: without the identity file the same restart does rewrite.
  std::filesystem::remove(ids_path);
  auto agent = make_agent();
  agent->start();
  EXPECT_GT(agent->first_reconcile().kernel_writes, 0u);
}

TEST_F(AgentPolicyTest, ErrorsAreCountedAndRetried) {
  write_manifest("policy.yaml", kAllowBToA);
  auto a = add("a", 7, "10.244.1.5/24");
  kernel.fail_policy = true;
  auto agent = make_agent();
  agent->start();
  std::string reason;
  EXPECT_FALSE(agent->status().ready(&reason));
  EXPECT_NE(reason.find("program of policy failed"), std::string::npos) << reason;
  EXPECT_EQ(agent->status().metrics().policy_errors_total, 1u);
  EXPECT_EQ(kernel.endpoints.size(), 1u);  // endpoints are programmed regardless

  Running loop(*agent);
  // An ADD whose policy cannot be programmed is refused (the pod would be cut off).
  auto b = add("b", 8, "10.244.1.6/24");
  BridgeClient client;
  client.send(config.agent_socket, record_file(b));
  std::string answer = client.receive();
  EXPECT_TRUE(answer.starts_with("error policy: ")) << answer;

  kernel.fail_policy = false;  // retried at the next 5 s tick
  ASSERT_TRUE(eventually([&] { return agent->status().ready(&reason); })) << reason;
  loop.stop();
  EXPECT_GE(agent->status().metrics().policy_errors_total, 2u);
  EXPECT_TRUE(kernel.policy.endpoints.at(id_of(a)).ingress_isolated);
}

TEST_F(AgentPolicyTest, PolicyOffInstallsAnUnenforcedSet) {
  config.policy = "off";
  write_manifest("policy.yaml", kAllowBToA);
  auto a = add("a", 7, "10.244.1.5/24");
  auto agent = make_agent();
  agent->start();
  EXPECT_EQ(kernel.policy_programs, 1);
  EXPECT_FALSE(kernel.policy.enforce);
  EXPECT_TRUE(policy::allows(kernel.policy, id_of(a), Direction::Ingress, ip("10.244.1.7"), IPPROTO_TCP, 80));
  EXPECT_EQ(policy_file()["enforce"], false);
  EXPECT_FALSE(agent->status().metrics().policy_enforced);
}

TEST(PolicyFileJson, ListsEveryEndpointIdentityAndPrefix) {
  policy::CompileResult r;
  r.set.ipcache = {{*net::Prefix::parse("0.0.0.0/0"), dataplane::kIdentityWorld},
                   {*net::Prefix::parse("10.244.1.6/32"), 256}};
  dataplane::EndpointPolicy p;
  p.ingress_isolated = true;
  p.ingress = {{dataplane::kIdentityHost, 0, 0, 65535}, {256, IPPROTO_TCP, 80, 81}};
  r.set.endpoints[1] = p;
  r.endpoint_pods[1] = "x/a";
  r.endpoint_policies[1] = {"x/allow-b"};
  policy::IdentityInfo b;
  b.kind = policy::IdentityInfo::Kind::Pod;
  b.ns = "x";
  b.labels = {{"pod", "b"}};
  r.identities[256] = b;
  std::vector<policy::LocalEndpoint> eps = {{1, "x", "a", {ip("10.244.1.5")}}, {2, "x", "new", {ip("10.244.1.8")}}};
  json j = policy_file_json(r, eps, {"node-1", "ebpf", "/sys/fs/bpf/ferry/node-1"});
  EXPECT_EQ(j["node"], "node-1");
  EXPECT_EQ(j["enforce"], true);
  ASSERT_EQ(j["endpoints"].size(), 2u);
  const json& a = j["endpoints"][0];
  EXPECT_EQ(a["pod"], "x/a");
  EXPECT_EQ(a["pod_known"], true);
  EXPECT_EQ(a["ips"], json::array({"10.244.1.5"}));
  EXPECT_EQ(a["ingress"]["entries"][1], (json{{"peer", 256}, {"proto", 6}, {"port_first", 80}, {"port_last", 81}}));
  EXPECT_EQ(a["egress"], (json{{"isolated", false}, {"entries", json::array()}}));
  const json& unknown = j["endpoints"][1];  // no Pod object yet: not isolated
  EXPECT_EQ(unknown["pod"], "x/new");
  EXPECT_EQ(unknown["pod_known"], false);
  EXPECT_EQ(unknown["ingress"]["isolated"], false);
  ASSERT_EQ(j["identities"].size(), 1u);
  EXPECT_EQ(j["identities"][0]["identity"], 256);
  auto back = policy::IdentityInfo::from_json(j["identities"][0]["info"]);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, b);  // ferryctl reads identities back with the compiler's own code
  EXPECT_EQ(j["ipcache"][1], (json{{"prefix", "10.244.1.6/32"}, {"identity", 256}}));
}

}  // namespace
}  // namespace ferry::agent::test
