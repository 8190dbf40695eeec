// Services in the agent, with a fake datapath and a real manifest directory: what reaches
// program_services() on start, after a change (one call with the new set), nothing when nothing
// changed; ids that survive a restart; --services off; EndpointSlices derived from Pods in a
// manifest directory; services.json for ferryctl; problems logged once; errors retried; the
// NodePort addresses and the new flags.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <fstream>
#include <sstream>
#include <thread>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "agent/model/model.h"
#include "agent/services/services.h"
#include "fakes.h"

namespace ferry::agent::test {
namespace {

using nlohmann::json;

net::Ip ip(const char* text) { return *net::Ip::parse(text); }

size_t count_of(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

// Everything logged while it lives (read it after the loop stopped).
class LogCapture {
 public:
  LogCapture() : previous_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    auto logger = std::make_shared<spdlog::logger>("capture", sink);
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(previous_); }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> previous_;
};

// program_services throws while `fail` is set, like a backend whose maps cannot be written.
class FailingServicesDataplane : public FakeDataplane {
 public:
  FailingServicesDataplane(FakeKernel& kernel, std::atomic<bool>& fail) : FakeDataplane(kernel), fail_(fail) {}
  void program_services(const dataplane::ServiceSet& desired) override {
    if (fail_) throw dataplane::DataplaneError("fake: service maps are full");
    FakeDataplane::program_services(desired);
  }

 private:
  std::atomic<bool>& fail_;
};

constexpr const char* kNode =
    "apiVersion: v1\nkind: Node\nmetadata: {name: node-1}\nspec: {podCIDR: 10.244.1.0/24}\n"
    "status: {addresses: [{type: InternalIP, address: 192.168.50.1}]}\n";

std::string service_yaml(const std::string& name, const std::string& cluster_ip, const std::string& extra = "",
                         int port = 80, int node_port = 30080) {
  return "apiVersion: v1\nkind: Service\nmetadata: {name: " + name + ", namespace: x}\nspec: {clusterIP: " +
         cluster_ip + ", ports: [{name: http, port: " + std::to_string(port) + ", targetPort: 8080, nodePort: " +
         std::to_string(node_port) + "}], type: NodePort" + extra + "}\n";
}

// A slice as the endpointslice controller writes it: one endpoint per address.
std::string slice_yaml(const std::string& service, const std::vector<std::pair<std::string, std::string>>& eps) {
  std::string out = "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: " + service +
                    "-abc, namespace: x, labels: {kubernetes.io/service-name: " + service +
                    "}}\naddressType: IPv4\nports: [{name: http, port: 8080, protocol: TCP}]\nendpoints:\n";
  for (const auto& [addr, node] : eps)
    out += "- {addresses: [" + addr + "], nodeName: " + node + ", conditions: {ready: true}}\n";
  return out;
}

std::string pod_yaml(const std::string& name, const std::string& app, const std::string& pod_ip) {
  return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: x, labels: {app: " + app +
         "}}\nspec: {nodeName: node-1, containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]}\n"
         "status: {phase: Running, podIP: " + pod_ip + "}\n";
}

struct AgentServicesTest : ::testing::Test {
  TempDir tmp;
  FakeKernel kernel;
  AgentConfig config;
  std::string manifests;
  std::vector<net::Ip> host_ips = {ip("10.244.1.1"), ip("127.0.0.1"), ip("192.168.50.1")};
  std::atomic<bool> fail_services = false;

  AgentServicesTest() {
    config = config_under(tmp);
    manifests = tmp / "manifests";
    std::filesystem::create_directories(manifests);
    config.datastore = "dir:" + manifests;
    config.manifest_dir = manifests;
    write_manifest("00-node.yaml", kNode);
  }

  std::unique_ptr<Agent> make_agent() {
    return make_manifest_agent(
        config, manifests,
        [this](const std::string&) { return std::make_unique<FailingServicesDataplane>(kernel, fail_services); },
        [this] { return host_ips; });
  }

  void write_manifest(const std::string& name, const std::string& text) { replace_file(manifests, name, text); }
  void remove_manifest(const std::string& name) { std::filesystem::remove(manifests + "/" + name); }

  json services_file() {
    std::string text = slurp(config.state_dir + "/services.json");
    return text.empty() ? json() : json::parse(text);
  }

  // frontend key -> its backends' keys, as the datapath was given them.
  std::map<std::string, std::vector<std::string>> programmed() const {
    std::map<std::string, std::vector<std::string>> out;
    for (const auto& [id, f] : kernel.services.frontends) {
      auto& backends = out[services::frontend_key(f)];
      for (dataplane::BackendId b : f.backends) backends.push_back(services::backend_key(kernel.services.backends.at(b)));
    }
    return out;
  }
  std::optional<dataplane::ServiceId> frontend_id(const std::string& key) const {
    for (const auto& [id, f] : kernel.services.frontends)
      if (services::frontend_key(f) == key) return id;
    return std::nullopt;
  }
};

TEST_F(AgentServicesTest, StartProgramsTheServicesOfTheManifests) {
  write_manifest("web.yaml", service_yaml("web", "10.96.0.10"));
  write_manifest("web-slice.yaml", slice_yaml("web", {{"10.244.1.5", "node-1"}, {"10.244.2.5", "node-2"}}));
  auto agent = make_agent();
  agent->start();

  // NodePort on the node's address only: not on loopback, nor on the bridge gateway (pod CIDR).
  using Backends = std::vector<std::string>;
  const Backends both = {"10.244.1.5:8080/TCP", "10.244.2.5:8080/TCP"};
  EXPECT_EQ(programmed(), (std::map<std::string, Backends>{{"10.96.0.10:80/TCP", both},
                                                            {"192.168.50.1:30080/TCP", both}}));
  EXPECT_EQ(kernel.service_programs, 1);

  // Exactly what build_services makes of the same input with fresh ids.
  model::ClusterState state;
  std::vector<model::Object> objects;
  for (const char* f : {"00-node.yaml", "web.yaml", "web-slice.yaml"})
    for (auto& o : model::decode_manifest(f, slurp(manifests + "/" + f)).objects) objects.push_back(o);
  state.replace_all(objects);
  services::ServiceIds fresh;
  EXPECT_EQ(kernel.services, services::build_services(state, "node-1", {ip("192.168.50.1")}, fresh).set);

  // services.json for ferryctl.
  json file = services_file();
  ASSERT_TRUE(file.is_object());
  EXPECT_EQ(file["node"], "node-1");
  EXPECT_EQ(file["datapath"], "ebpf");
  EXPECT_EQ(file["bpffs_root"], config.bpffs_root);
  EXPECT_EQ(file["enabled"], true);
  EXPECT_EQ(file["lb_algorithm"], "random");
  EXPECT_EQ(file["nodeport_addresses"], json::array({"192.168.50.1"}));
  EXPECT_EQ(file["problems"], json::array());
  ASSERT_EQ(file["frontends"].size(), 2u);
  for (const json& f : file["frontends"]) {
    EXPECT_EQ(f["service"], "x/web");
    EXPECT_EQ(f["port_name"], "http");
    ASSERT_EQ(f["backends"].size(), 2u);
    EXPECT_EQ(f["backends"][0]["address"], "10.244.1.5");
    EXPECT_EQ(f["backends"][0]["state"], "active");
    EXPECT_EQ(f["backends"][0]["local"], true);
    EXPECT_EQ(f["backends"][1]["node"], "node-2");
  }
  EXPECT_EQ(file["frontends"], services::to_json(kernel.services)["frontends"]);
  EXPECT_FALSE(slurp(config.state_dir + "/services-ids.json").empty());

  MetricsSnapshot m = agent->status().metrics();
  EXPECT_EQ(m.services_frontends, 2u);
  EXPECT_EQ(m.services_backends, 2u);
  EXPECT_EQ(m.services_applies_total, 1u);
  EXPECT_EQ(m.services_errors_total, 0u);
  EXPECT_EQ(m.services_build_duration.count, 1u);
  EXPECT_EQ(m.services_apply_duration.count, 1u);
  const std::string text = render_metrics(m);
  EXPECT_NE(text.find("\nferry_services_frontends 2\n"), std::string::npos);
  EXPECT_NE(text.find("\nferry_services_applies_total 1\n"), std::string::npos);
  EXPECT_NE(text.find("ferry_services_apply_seconds_count 1\n"), std::string::npos);
}

TEST_F(AgentServicesTest, AChangeIsOneProgramCallWithTheNewSetAndNoChangeIsNone) {
  write_manifest("web.yaml", service_yaml("web", "10.96.0.10"));
  write_manifest("web-slice.yaml", slice_yaml("web", {{"10.244.1.5", "node-1"}}));
  auto agent = make_agent();
  agent->start();
  ASSERT_EQ(kernel.service_programs, 1);

  Running loop(*agent);
  write_manifest("web-slice.yaml", slice_yaml("web", {{"10.244.1.5", "node-1"}, {"10.244.1.6", "node-1"}}));
  ASSERT_TRUE(eventually([&] { return agent->status().metrics().services_backends == 2; }));
  // A cluster change that leaves the services alone: no call.
  write_manifest("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n");
  ASSERT_TRUE(eventually([&] { return agent->status().metrics().cluster_objects["Namespace"] == 1; }));
  loop.stop();
  EXPECT_EQ(kernel.service_programs, 2);
  EXPECT_EQ(programmed()["10.96.0.10:80/TCP"], (std::vector<std::string>{"10.244.1.5:8080/TCP", "10.244.1.6:8080/TCP"}));
  EXPECT_EQ(agent->status().metrics().services_applies_total, 2u);
  EXPECT_EQ(services_file()["frontends"][0]["backends"].size(), 2u);

  // The Service goes: one call with an empty set.
  Running again(*agent);
  remove_manifest("web.yaml");
  ASSERT_TRUE(eventually([&] { return agent->status().metrics().services_frontends == 0; }));
  again.stop();
  EXPECT_EQ(kernel.service_programs, 3);
  EXPECT_TRUE(kernel.services.frontends.empty());
  EXPECT_TRUE(kernel.services.backends.empty());
}

TEST_F(AgentServicesTest, IdsSurviveARestart) {
  write_manifest("a.yaml", service_yaml("a", "10.96.0.10"));
  write_manifest("b.yaml", service_yaml("b", "10.96.0.11", "", 81, 30081));
  std::optional<dataplane::ServiceId> b_id;
  {
    auto agent = make_agent();
    agent->start();
    ASSERT_TRUE(frontend_id("10.96.0.10:80/TCP") && frontend_id("10.96.0.11:81/TCP"));
    Running loop(*agent);
    remove_manifest("a.yaml");
    ASSERT_TRUE(eventually([&] { return agent->status().metrics().services_frontends == 2; }));
    loop.stop();
    b_id = frontend_id("10.96.0.11:81/TCP");
  }
  // What a fresh allocator would give b alone: a restart that lost the ids renumbers it.
  services::ServiceIds fresh;
  ASSERT_NE(fresh.frontends.allocate("10.96.0.11:81/TCP"), *b_id);

  const dataplane::ServiceSet before = kernel.services;
  const int programs = kernel.service_programs;
  auto agent = make_agent();
  agent->start();
  EXPECT_EQ(frontend_id("10.96.0.11:81/TCP"), b_id);
  EXPECT_EQ(kernel.services, before);
  EXPECT_EQ(kernel.service_programs, programs + 1);            // the first pass always applies ...
  EXPECT_EQ(agent->status().metrics().stats.kernel_writes, 0u);  // ... and changes nothing
}

TEST_F(AgentServicesTest, ServicesOffProgramsAnEmptySet) {
  write_manifest("web.yaml", service_yaml("web", "10.96.0.10"));
  write_manifest("web-slice.yaml", slice_yaml("web", {{"10.244.1.5", "node-1"}}));
  config.services = "off";
  auto agent = make_agent();
  agent->start();
  EXPECT_EQ(kernel.service_programs, 1);
  EXPECT_TRUE(kernel.services.frontends.empty());
  EXPECT_EQ(services_file()["enabled"], false);
  EXPECT_TRUE(services_file()["frontends"].empty());
  EXPECT_EQ(agent->status().metrics().services_frontends, 0u);
}

TEST_F(AgentServicesTest, ManifestDirectoryDerivesSlicesFromPodsAndExplicitSlicesWin) {
  write_manifest("web.yaml", service_yaml("web", "10.96.0.10", ", selector: {app: web}"));
  write_manifest("pod-a.yaml", pod_yaml("a", "web", "10.244.1.5"));
  write_manifest("pod-b.yaml", pod_yaml("b", "web", "10.244.1.6"));
  write_manifest("pod-c.yaml", pod_yaml("c", "db", "10.244.1.7"));
  auto agent = make_agent();
  agent->start();
  EXPECT_EQ(programmed()["10.96.0.10:80/TCP"], (std::vector<std::string>{"10.244.1.5:8080/TCP", "10.244.1.6:8080/TCP"}));

  Running loop(*agent);
  write_manifest("pod-c.yaml", pod_yaml("c", "web", "10.244.1.7"));  // relabelled into the Service
  ASSERT_TRUE(eventually([&] { return agent->status().metrics().services_backends == 3; }));
  write_manifest("web-slice.yaml", slice_yaml("web", {{"10.244.9.9", "node-9"}}));
  ASSERT_TRUE(eventually([&] { return agent->status().metrics().services_backends == 1; }));
  loop.stop();
  EXPECT_EQ(programmed()["10.96.0.10:80/TCP"], (std::vector<std::string>{"10.244.9.9:8080/TCP"}));
}

TEST_F(AgentServicesTest, KubernetesDatastoreDoesNotDeriveSlices) {
  write_manifest("web.yaml", service_yaml("web", "10.96.0.10", ", selector: {app: web}"));
  write_manifest("pod-a.yaml", pod_yaml("a", "web", "10.244.1.5"));
  config.datastore = "kubernetes";  // the feed is still the directory: only the rule changes
  auto agent = make_agent();
  agent->start();
  EXPECT_EQ(programmed()["10.96.0.10:80/TCP"], std::vector<std::string>{});
}

TEST_F(AgentServicesTest, ProblemsAreLoggedOnceEach) {
  LogCapture log;
  write_manifest("noip.yaml",
                 "apiVersion: v1\nkind: Service\nmetadata: {name: noip, namespace: x}\n"
                 "spec: {selector: {app: web}, ports: [{port: 80}]}\n");
  write_manifest("a.yaml", service_yaml("a", "10.96.0.10"));
  write_manifest("b.yaml", service_yaml("b", "10.96.0.10"));  // the same frontends as a
  auto agent = make_agent();
  agent->start();
  Running loop(*agent);
  write_manifest("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: y}\n");
  ASSERT_TRUE(eventually([&] { return agent->status().metrics().cluster_objects["Namespace"] == 1; }));
  write_manifest("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: y, labels: {a: b}}\n");
  ASSERT_TRUE(eventually([&] { return agent->status().metrics().services_build_duration.count >= 3; }));
  loop.stop();

  const std::string text = log.text();
  EXPECT_EQ(count_of(text, "Service x/noip has no spec.clusterIP: skipped"), 1u) << text;
  EXPECT_EQ(count_of(text, "is already Service x/a's"), 2u) << text;  // ClusterIP and NodePort frontends
  EXPECT_EQ(agent->status().metrics().services_problems, 3u);
  EXPECT_EQ(services_file()["problems"].size(), 3u);
  EXPECT_EQ(programmed().size(), 2u);  // a's frontends; b's lose, noip is skipped
}

TEST_F(AgentServicesTest, FailuresAreCountedLoggedOnceAndRetried) {
  LogCapture log;
  write_manifest("web.yaml", service_yaml("web", "10.96.0.10"));
  write_manifest("web-slice.yaml", slice_yaml("web", {{"10.244.1.5", "node-1"}}));
  fail_services = true;
  auto agent = make_agent();
  agent->start();
  std::string reason;
  EXPECT_TRUE(agent->status().ready(&reason)) << reason;  // services do not gate readiness
  EXPECT_EQ(agent->status().metrics().services_errors_total, 1u);
  EXPECT_TRUE(kernel.services.frontends.empty());

  Running loop(*agent);  // the 5 s tick retries
  ASSERT_TRUE(eventually([&] { return agent->status().metrics().services_errors_total >= 2; }));
  fail_services = false;
  ASSERT_TRUE(eventually([&] { return !kernel.services.frontends.empty(); }));
  loop.stop();
  EXPECT_EQ(programmed().size(), 2u);
  EXPECT_EQ(count_of(log.text(), "services: fake: service maps are full"), 1u) << log.text();
}

// ---- pieces ----------------------------------------------------------------------------

TEST(NodePortAddresses, DefaultIsTheNodesOwnAddressesWithoutLoopbackLinkLocalAndPodCidrs) {
  model::Node node;
  node.internal_ips = {*cni::IPAddr::parse("192.168.50.1"), *cni::IPAddr::parse("fd00:50::1")};
  node.pod_cidrs = {*cni::IPNet::parse("10.244.1.0/24")};
  const std::vector<net::Ip> host = {ip("127.0.0.1"), ip("::1"),         ip("fe80::1"), ip("10.244.1.1"),
                                     ip("10.244.1.0"), ip("192.168.60.1"), ip("192.168.50.1")};
  EXPECT_EQ(nodeport_addresses_of(host, &node, {}),
            (std::vector<net::Ip>{ip("192.168.50.1"), ip("192.168.60.1"), ip("fd00:50::1")}));
  // No Node object: its pod CIDRs are unknown, so the bridge gateway counts too.
  EXPECT_EQ(nodeport_addresses_of(host, nullptr, {}), (std::vector<net::Ip>{ip("10.244.1.0"), ip("10.244.1.1"),
                                                                             ip("192.168.50.1"), ip("192.168.60.1")}));
  // Given prefixes choose among every known address, loopback included.
  EXPECT_EQ(nodeport_addresses_of(host, &node, {*net::Prefix::parse("192.168.60.0/24"), *net::Prefix::parse("127.0.0.0/8")}),
            (std::vector<net::Ip>{ip("127.0.0.1"), ip("192.168.60.1")}));
}

TEST(AgentConfigServices, FlagsAndKeys) {
  auto parse = [](std::vector<std::string> args) {
    args.insert(args.begin(), "ferry-agent");
    args.insert(args.begin() + 1, {"--node", "n"});
    return *parse_config(args);
  };
  AgentConfig d = parse({});
  EXPECT_EQ(d.services, "on");
  EXPECT_EQ(d.lb_algorithm, "random");
  EXPECT_TRUE(d.nodeport_addresses.empty());
  EXPECT_TRUE(d.nodeport_devices.empty());

  AgentConfig c = parse({"--services", "off", "--lb-algorithm", "maglev", "--nodeport-addresses",
                         "192.168.50.7/24, fd00::1", "--nodeport-devices", "eth0,eth1"});
  EXPECT_EQ(c.services, "off");
  EXPECT_EQ(c.lb_algorithm, "maglev");
  EXPECT_EQ(c.nodeport_addresses, (std::vector<net::Prefix>{*net::Prefix::parse("192.168.50.0/24"),
                                                            *net::Prefix::parse("fd00::1/128")}));
  EXPECT_EQ(c.nodeport_devices, (std::vector<std::string>{"eth0", "eth1"}));

  TempDir dir;
  std::ofstream(dir / "agent.yaml") << "services: off\nlb-algorithm: maglev\nnodeport-addresses: 10.0.0.0/8\n";
  AgentConfig y = parse({"--config", dir / "agent.yaml"});
  EXPECT_EQ(y.services, "off");
  EXPECT_EQ(y.lb_algorithm, "maglev");
  EXPECT_EQ(y.nodeport_addresses.size(), 1u);

  auto error_of = [&](std::vector<std::string> args) -> std::string {
    try {
      parse(std::move(args));
    } catch (const ConfigError& e) {
      return e.what();
    }
    return "(no error)";
  };
  EXPECT_NE(error_of({"--services", "maybe"}).find("services \"maybe\""), std::string::npos);
  EXPECT_NE(error_of({"--lb-algorithm", "rr"}).find("lb-algorithm \"rr\""), std::string::npos);
  EXPECT_NE(error_of({"--nodeport-addresses", "10.0.0.0/8,bogus"}).find("\"bogus\""), std::string::npos);
}

}  // namespace
}  // namespace ferry::agent::test
