// `ferryctl services` on a services.json the agent's own code wrote from a built ServiceSet:
// frontends -> backends with their state, table and JSON; and, as root, each frontend checked
// against a pinned ferry_svc_v1 (one present, one missing, one under another id).
#include <gtest/gtest.h>
#include <bpf/bpf.h>
#include <netinet/in.h>
#include <unistd.h>

#include <cstring>
#include <fstream>

#include "agent/model/model.h"
#include "agent/services/services.h"
#include "fakes.h"
#include "ferry/abi.h"
#include "net/net.h"
#include "tests/support/support.h"

namespace ferry::agent::test {
namespace {

using nlohmann::json;

// web: 2 ready backends + 1 terminating; empty: no endpoint (rejects); v6: an IPv6 Service.
constexpr const char* kCluster = R"(
apiVersion: v1
kind: Service
metadata: {name: web, namespace: x}
spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: x, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.244.1.5], nodeName: node-1}
- {addresses: [10.244.2.5], nodeName: node-2}
- {addresses: [10.244.2.6], nodeName: node-2, conditions: {ready: false, serving: true, terminating: true}}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: x}
spec: {clusterIP: 10.96.0.11, ports: [{port: 53, protocol: UDP}]}
---
apiVersion: v1
kind: Service
metadata: {name: v6, namespace: x}
spec: {clusterIPs: ['fd00:96::12'], ipFamilies: [IPv6], ports: [{port: 443}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: v6-1, namespace: x, labels: {kubernetes.io/service-name: v6}}
addressType: IPv6
ports: [{port: 8443}]
endpoints:
- {addresses: ['fd00:244:1::5'], nodeName: node-1}
)";

struct FerryctlServicesTest : ::testing::Test {
  TempDir tmp;
  dataplane::ServiceSet set;

  void SetUp() override {
    if (std::string(kFerryctl).empty()) GTEST_SKIP() << "ferryctl was not built";
    model::ClusterState state;
    state.replace_all(model::decode_manifest("cluster.yaml", kCluster).objects);
    services::ServiceIds ids;
    set = services::build_services(state, "node-1", {}, ids).set;
    write_fixture("iptables", tmp / "no-bpffs");
  }

  void write_fixture(const std::string& datapath, const std::string& bpffs_root) {
    ServicesFileContext ctx{"node-1", datapath, bpffs_root, true, "maglev", {*net::Ip::parse("192.168.50.1")},
                            {"Service x/b port http: frontend 10.96.0.10:80/TCP is already Service x/a's"}};
    std::ofstream(tmp / "services.json") << services_file_json(set, ctx).dump(2);
  }

  CtlResult ctl(std::vector<std::string> args) { return run_ferryctl(std::move(args), tmp.path()); }
  json ctl_json() {
    CtlResult r = ctl({"services", "-o", "json"});
    EXPECT_EQ(r.status, 0) << r.err;
    return json::parse(r.out, nullptr, false);
  }
  dataplane::ServiceId id_of(const std::string& key) const {
    for (const auto& [id, f] : set.frontends)
      if (services::frontend_key(f) == key) return id;
    ADD_FAILURE() << "no frontend " << key;
    return 0;
  }
};

TEST_F(FerryctlServicesTest, TableListsFrontendsWithOneBackendPerLine) {
  CtlResult r = ctl({"services"});
  ASSERT_EQ(r.status, 0) << r.err;
  const std::string web = std::to_string(id_of("10.96.0.10:80/TCP"));
  const std::string empty = std::to_string(id_of("10.96.0.11:53/UDP"));
  const std::string v6 = std::to_string(id_of("[fd00:96::12]:443/TCP"));
  // Columns are padded: compare rows with runs of spaces squeezed.
  std::string squeezed;
  for (char c : r.out)
    if (!(c == ' ' && !squeezed.empty() && squeezed.back() == ' ')) squeezed += c;
  EXPECT_NE(squeezed.find("node node-1 (iptables datapath, services on, lb-algorithm maglev)"), std::string::npos)
      << r.out;
  EXPECT_NE(squeezed.find("ID FRONTEND TYPE SERVICE BACKENDS KERNEL\n"), std::string::npos) << r.out;
  EXPECT_NE(squeezed.find(web + " 10.96.0.10:80/TCP ClusterIP x/web:http 10.244.1.5:8080 (active) -\n"
                                " 10.244.2.5:8080 (active)\n"
                                " 10.244.2.6:8080 (terminating, existing flows only)\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(squeezed.find(empty + " 10.96.0.11:53/UDP ClusterIP x/empty none: new connections rejected -\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(squeezed.find(v6 + " [fd00:96::12]:443/TCP ClusterIP x/v6 [fd00:244:1::5]:8443 (active) -\n"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("problem: Service x/b port http: frontend 10.96.0.10:80/TCP is already Service x/a's"),
            std::string::npos);
  EXPECT_NE(r.out.find("kernel: not checked: iptables datapath"), std::string::npos) << r.out;
}

TEST_F(FerryctlServicesTest, JsonHasEveryFrontendAndSaysWhyTheKernelWasNotChecked) {
  json out = ctl_json();
  ASSERT_TRUE(out.is_object());
  EXPECT_EQ(out["node"], "node-1");
  EXPECT_EQ(out["datapath"], "iptables");
  EXPECT_EQ(out["lb_algorithm"], "maglev");
  EXPECT_EQ(out["nodeport_addresses"], json::array({"192.168.50.1"}));
  EXPECT_EQ(out["kernel_checked"], false);
  EXPECT_EQ(out["kernel_not_checked"], "iptables datapath (only eBPF maps are checked)");
  ASSERT_EQ(out["frontends"].size(), 3u);
  json expected = services::to_json(set)["frontends"];
  for (json& f : expected) f["in_kernel"] = nullptr;
  EXPECT_EQ(out["frontends"], expected);
}

TEST_F(FerryctlServicesTest, EbpfModeWithoutPinsSaysSo) {
  write_fixture("ebpf", tmp / "no-bpffs");
  json out = ctl_json();
  EXPECT_EQ(out["kernel_checked"], false);
  EXPECT_EQ(out["kernel_not_checked"], "ferry_svc_v1 is not pinned under " + (tmp / "no-bpffs"));
}

TEST_F(FerryctlServicesTest, MissingFileSaysWhere) {
  std::filesystem::remove(tmp / "services.json");
  CtlResult r = ctl({"services"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("cannot read " + (tmp / "services.json")), std::string::npos) << r.err;
}

// A ferry_svc_v1 as the eBPF datapath pins it, in a bpffs directory of this test's own.
class PinnedServiceMap {
 public:
  explicit PinnedServiceMap(std::string dir) : dir_(std::move(dir)) {
    std::filesystem::create_directories(dir_);
    fd_ = bpf_map_create(BPF_MAP_TYPE_HASH, nullptr, sizeof(ferry_service_key), sizeof(ferry_service_value), 64,
                         nullptr);
    if (fd_ >= 0 && bpf_obj_pin(fd_, path().c_str()) != 0) ADD_FAILURE() << "pin: " << std::strerror(errno);
  }
  ~PinnedServiceMap() {
    if (fd_ >= 0) close(fd_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  bool ok() const { return fd_ >= 0; }
  std::string path() const { return dir_ + "/" + FERRY_MAP_SERVICES; }
  void put(const dataplane::ServiceFrontend& f, uint32_t service_id) {
    ferry_service_key key{};
    std::memcpy(key.addr, f.address.bytes.data(), static_cast<size_t>(f.address.size()));
    key.port = htons(f.port);
    key.proto = f.proto;
    key.family = static_cast<__u8>(f.address.family);
    ferry_service_value value{};
    value.service_id = service_id;
    ASSERT_EQ(bpf_map_update_elem(fd_, &key, &value, BPF_ANY), 0) << std::strerror(errno);
  }

 private:
  std::string dir_;
  int fd_ = -1;
};

TEST_F(FerryctlServicesTest, EbpfModeChecksEachFrontendAgainstThePinnedMap) {
  FERRY_REQUIRE_ROOT();
  PinnedServiceMap map("/sys/fs/bpf/fyag-svc-" + std::to_string(getpid()));
  ASSERT_TRUE(map.ok()) << "bpf_map_create: " << std::strerror(errno);
  const dataplane::ServiceId web = id_of("10.96.0.10:80/TCP"), v6 = id_of("[fd00:96::12]:443/TCP");
  map.put(set.frontends.at(web), web);
  map.put(set.frontends.at(v6), v6 + 100);  // there, but under another service id
  write_fixture("ebpf", std::filesystem::path(map.path()).parent_path());

  json out = ctl_json();
  EXPECT_EQ(out["kernel_checked"], true);
  EXPECT_EQ(out["missing_in_kernel"], 2);
  for (const json& f : out["frontends"]) EXPECT_EQ(f["in_kernel"], f["id"] == web) << f.dump();

  CtlResult r = ctl({"services"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("kernel: 2 frontends MISSING from ferry_svc_v1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("MISSING"), std::string::npos);
}

}  // namespace
}  // namespace ferry::agent::test
