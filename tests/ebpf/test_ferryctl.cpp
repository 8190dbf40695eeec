// ferryctl against a node programmed by the backend: JSON output parses and matches the maps,
// monitor prints the drop events, errors are clear.
#include <nlohmann/json.hpp>
#include <sstream>

#include "support.h"

namespace ferry::ebpftest {
namespace {

using json = nlohmann::json;

class Ferryctl : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_EBPF();
    node_ = std::make_unique<TwoPodNode>();
    dp_ = ebpf::make_ebpf_dataplane(node_->config());
    node_->in_node([&] {
      dp_->start();
      dp_->program_endpoint(node_->endpoint(0));
      dp_->program_endpoint(node_->endpoint(1));
    });
  }
  void TearDown() override {
    dp_.reset();
    node_.reset();
  }

  // Runs ferryctl in the node netns (nsenter keeps the host's /sys, so bpffs stays visible).
  ShellResult ferryctl(const std::string& args) {
    return sh_status("nsenter --net=" + node_->node().path() + " " + FERRY_BIN_DIR + "/ferryctl --bpffs-root " +
                     node_->bpffs_root() + " " + args + " 2>&1");
  }
  json ferryctl_json(const std::string& args) {
    ShellResult r = ferryctl("-o json " + args);
    EXPECT_EQ(r.status, 0) << r.out;
    return json::parse(r.out);
  }

  std::unique_ptr<TwoPodNode> node_;
  std::unique_ptr<dataplane::Dataplane> dp_;
};

TEST_F(Ferryctl, EndpointsJsonMatchesTheMap) {
  json eps = ferryctl_json("endpoints");
  ASSERT_TRUE(eps.is_array());
  ASSERT_EQ(eps.size(), 4u);
  for (int pod : {0, 1}) {
    dataplane::Endpoint want = node_->endpoint(pod);
    for (const net::Ip& ip : want.ips) {
      auto it = std::find_if(eps.begin(), eps.end(), [&](const json& e) { return e["ip"] == ip.str(); });
      ASSERT_NE(it, eps.end()) << ip.str();
      EXPECT_EQ((*it)["endpoint_id"], want.endpoint_id);
      EXPECT_EQ((*it)["ifindex"], want.host_ifindex);
      EXPECT_EQ((*it)["ifname"], want.host_veth);
      EXPECT_EQ((*it)["pod_mac"], net::mac_str(want.pod_mac));
      EXPECT_EQ((*it)["host_mac"], net::mac_str(want.host_mac));
      EXPECT_EQ((*it)["programmed"], true);
    }
  }
  ShellResult table = ferryctl("endpoints");
  EXPECT_EQ(table.status, 0);
  EXPECT_NE(table.out.find("fyebva"), std::string::npos) << table.out;
}

TEST_F(Ferryctl, CountersAndConntrackFollowTraffic) {
  ASSERT_EQ(node_->ping(0, node_->pod(1).ip4, 3), 3);
  json counters = ferryctl_json("counters");
  auto find = [&](const std::string& name) {
    auto it = std::find_if(counters.begin(), counters.end(), [&](const json& c) { return c["name"] == name; });
    return it == counters.end() ? json() : *it;
  };
  ASSERT_FALSE(find("redirect_local").is_null());
  EXPECT_GE(find("redirect_local")["packets"].get<uint64_t>(), 6u);
  EXPECT_EQ(find("redirect_local")["drop"], false);
  ASSERT_FALSE(find("drop_spoofed").is_null());
  EXPECT_EQ(find("drop_spoofed")["drop"], true);
  EXPECT_EQ(find("drop_spoofed")["packets"], 0);

  json ct = ferryctl_json("ct list");
  ASSERT_TRUE(ct.is_array());
  auto flow = std::find_if(ct.begin(), ct.end(), [&](const json& c) {
    return c["proto"] == "icmp" && c["src"] == node_->pod(0).ip4.str() && c["dst"] == node_->pod(1).ip4.str();
  });
  ASSERT_NE(flow, ct.end()) << ct.dump(2);
  EXPECT_EQ((*flow)["state"], "established");
  EXPECT_GE((*flow)["packets_fwd"].get<uint64_t>(), 3u);
  EXPECT_GE((*flow)["packets_rev"].get<uint64_t>(), 3u);
  EXPECT_EQ((*flow)["src_endpoint"], 101);
  EXPECT_GT((*flow)["expires_in_s"].get<double>(), 0.0);

  ShellResult table = ferryctl("ct list");
  EXPECT_EQ(table.status, 0);
  EXPECT_NE(table.out.find("established"), std::string::npos) << table.out;

  json flushed = ferryctl_json("ct flush");
  EXPECT_GE(flushed["deleted"].get<uint64_t>(), 1u);
  // The pods' own IPv6 chatter (MLD, RS) may create entries meanwhile; the ping flow is gone.
  json after = ferryctl_json("ct list");
  for (const json& c : after)
    EXPECT_FALSE(c["proto"] == "icmp" && c["src"] == node_->pod(0).ip4.str()) << after.dump(2);
}

TEST_F(Ferryctl, MonitorPrintsDropEvents) {
  node_->pod_netns(0).exec("ip addr add 10.77.0.99/32 dev eth0");
  EXPECT_EQ(node_->ping(0, node_->pod(1).ip4, 1, "-I 10.77.0.99"), 0);
  // Events wait in the ring buffer until a reader takes them.
  ShellResult r = ferryctl("-o json monitor --count 1 --timeout 20");
  ASSERT_EQ(r.status, 0) << r.out;
  std::istringstream lines(r.out);
  std::string line;
  std::vector<json> events;
  while (std::getline(lines, line))
    if (!line.empty()) events.push_back(json::parse(line));
  ASSERT_EQ(events.size(), 1u) << r.out;
  EXPECT_EQ(events[0]["reason"], "spoofed");
  EXPECT_EQ(events[0]["hook"], "from-pod");
  EXPECT_EQ(events[0]["src"], "10.77.0.99");
  EXPECT_EQ(events[0]["dst"], node_->pod(1).ip4.str());
  EXPECT_EQ(events[0]["ifindex"], node_->host_ifindex(0));

  EXPECT_EQ(node_->ping(0, node_->pod(1).ip4, 1, "-I 10.77.0.99"), 0);
  ShellResult human = ferryctl("monitor --count 1 --timeout 20");
  ASSERT_EQ(human.status, 0) << human.out;
  EXPECT_NE(human.out.find("drop spoofed from-pod icmp 10.77.0.99 -> 10.77.0.3"), std::string::npos) << human.out;
  // Nothing pending: --timeout ends the wait.
  EXPECT_EQ(ferryctl("monitor --timeout 0.3").status, 0);
}

TEST_F(Ferryctl, StatusWorksWithTheAgentDown) {
  json status = ferryctl_json("status --agent http://127.0.0.1:1");
  EXPECT_EQ(status["agent"]["reachable"], false);
  int programs = 0;
  for (const json& pin : status["pins"]) {
    if (pin["kind"] != "program") continue;
    ++programs;
    // from-pod and to-pod: both pods' veths; from-overlay and the uplink programs: no overlay
    // device and no NodePort device on this node.
    const std::string name = pin["name"].get<std::string>();
    bool pod = name.rfind("prog_from_pod_", 0) == 0 || name.rfind("prog_to_pod_", 0) == 0;
    EXPECT_EQ(pin["attachments"], pod ? 2 : 0) << pin.dump();
  }
  EXPECT_EQ(programs, 5);
  EXPECT_EQ(status["maps"]["ferry_ep_v1"]["entries"], 4);
  ShellResult table = ferryctl("status --agent http://127.0.0.1:1");
  EXPECT_EQ(table.status, 0);
  EXPECT_NE(table.out.find("not reachable"), std::string::npos) << table.out;
}

TEST_F(Ferryctl, MissingMapsAreAClearError) {
  ShellResult r = sh_status(std::string(FERRY_BIN_DIR) + "/ferryctl --bpffs-root /sys/fs/bpf/fyeb-none endpoints 2>&1");
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.out.find("ferryctl: no ferry maps under /sys/fs/bpf/fyeb-none (is the agent running in eBPF mode on "
                       "this node?)"),
            std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace ferry::ebpftest
