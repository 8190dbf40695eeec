// The kernel applier between two node namespaces (fyov-a, fyov-b) joined by a veth underlay:
// device, routes, neighbours, FDB, masquerade; traffic between the pod CIDRs crosses the VXLAN;
// restart writes nothing; a removed / re-addressed node touches only its own entries; cleanup
// leaves nothing. Root only; everything lives in the two namespaces, which go at the end.
#include <gtest/gtest.h>

#include <memory>

#include "agent/overlay/overlay.h"
#include "nodes.h"
#include "tests/support/support.h"

namespace ferry::overlay::test {
namespace {

using ferry::test::sh;
using ferry::test::sh_status;
using ferry::test::TestNetns;

constexpr const char* kUnderlayA = "192.168.77.1";
constexpr const char* kUnderlayB = "192.168.77.2";

nlohmann::json node_a() { return node_json("fyov-a", {"10.77.1.0/24", "fd77:1::/64"}, {kUnderlayA}); }
nlohmann::json node_b(const char* ip = kUnderlayB) {
  return node_json("fyov-b", {"10.77.2.0/24", "fd77:2::/64"}, {ip});
}

OverlayConfig test_config() {
  OverlayConfig c;
  c.vni = 42;
  c.port = 4789;
  return c;
}

class OverlayKernel : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ferry::test::is_root()) GTEST_SKIP() << "needs root to create network namespaces";
    a_ = std::make_unique<TestNetns>("fyov-a");
    b_ = std::make_unique<TestNetns>("fyov-b");
    // Underlay: one veth between the two nodes; the pods' stand-in: a bridge with the gateway
    // address of each node's pod CIDRs (no dummy links on this kernel).
    sh("ip -n fyov-a link add fyovu0 mtu 1500 type veth peer name fyovu0 netns fyov-b");
    setup_node(*a_, kUnderlayA, "10.77.1.1/24", "fd77:1::1/64");
    setup_node(*b_, kUnderlayB, "10.77.2.1/24", "fd77:2::1/64");
  }

  static void setup_node(const TestNetns& ns, const char* underlay, const char* gw4, const char* gw6) {
    const std::string n = "ip -n " + ns.name() + " ";
    sh(n + "addr add " + underlay + "/24 dev fyovu0");
    sh(n + "link set fyovu0 up");
    sh(n + "link add ferry0 type bridge");
    sh(n + "addr add " + gw4 + " dev ferry0");
    sh(n + "addr add " + gw6 + " dev ferry0 nodad");
    sh(n + "link set ferry0 up");
  }

  // Runs fn inside `ns` (the applier binds its netlink socket and runs iptables/ipset there).
  static void in(const TestNetns& ns, const std::function<void()>& fn) {
    net::in_netns(net::Netns::open(ns.path()), fn);
  }

  static ApplyResult apply(const TestNetns& ns, Applier& applier, const model::ClusterState& state) {
    ApplyResult r;
    in(ns, [&] { r = applier.apply(plan_overlay(state, ns.name(), test_config())); });
    return r;
  }

  static std::unique_ptr<KernelOverlay> make(const TestNetns& ns) {
    std::unique_ptr<KernelOverlay> k;
    in(ns, [&] { k = std::make_unique<KernelOverlay>(); });
    return k;
  }

  static bool ping(const TestNetns& from, const char* src, const char* dst) {
    return sh_status("ip netns exec " + from.name() + " ping -c 1 -W 3 -I " + src + " " + dst + " >/dev/null 2>&1")
               .status == 0;
  }

  static uint64_t vxlan_tx_packets(const TestNetns& ns) {
    return std::stoull(sh("ip netns exec " + ns.name() +
                          " cat /sys/class/net/ferry_vxlan/statistics/tx_packets"));
  }

  std::unique_ptr<TestNetns> a_, b_;
};

TEST_F(OverlayKernel, DeviceRoutesNeighboursFdbAndTraffic) {
  auto state = state_of({node_a(), node_b()});
  auto ka = make(*a_);
  auto kb = make(*b_);
  ApplyResult ra = apply(*a_, *ka, state);
  ApplyResult rb = apply(*b_, *kb, state);
  EXPECT_TRUE(ra.device_created);
  EXPECT_EQ(ra.remote_nodes, 1u);
  EXPECT_EQ(ra.mtu, 1450);
  EXPECT_GT(ra.kernel_writes, 0u);
  EXPECT_GT(rb.kernel_writes, 0u);

  // The device: classic VXLAN with our VNI, port, local address, underlay, nolearning, MTU, MAC.
  std::string link = a_->exec("ip -d link show ferry_vxlan");
  EXPECT_NE(link.find("vxlan id 42"), std::string::npos) << link;
  EXPECT_NE(link.find("local 192.168.77.1"), std::string::npos) << link;
  EXPECT_NE(link.find("dev fyovu0"), std::string::npos) << link;
  EXPECT_NE(link.find("dstport 4789"), std::string::npos) << link;
  EXPECT_NE(link.find("nolearning"), std::string::npos) << link;
  EXPECT_NE(link.find("mtu 1450"), std::string::npos) << link;
  EXPECT_NE(link.find("link/ether 0e:fe:c0:a8:4d:01"), std::string::npos) << link;
  EXPECT_EQ(link.find("external"), std::string::npos) << link;  // not collect-metadata

  std::string addrs = a_->exec("ip -o addr show dev ferry_vxlan scope global");
  EXPECT_NE(addrs.find("inet 10.77.1.0/32"), std::string::npos) << addrs;
  EXPECT_NE(addrs.find("inet6 fd77:1::/128"), std::string::npos) << addrs;

  std::string routes = a_->exec("ip -o route show proto 254") + a_->exec("ip -o -6 route show proto 254");
  EXPECT_NE(routes.find("10.77.2.0/24 via 10.77.2.0 dev ferry_vxlan onlink"), std::string::npos) << routes;
  EXPECT_NE(routes.find("fd77:2::/64 via fd77:2:: dev ferry_vxlan"), std::string::npos) << routes;

  std::string neigh = a_->exec("ip neigh show dev ferry_vxlan nud permanent");
  EXPECT_NE(neigh.find("10.77.2.0 lladdr 0e:fe:c0:a8:4d:02 PERMANENT"), std::string::npos) << neigh;
  EXPECT_NE(neigh.find("fd77:2:: lladdr 0e:fe:c0:a8:4d:02 PERMANENT"), std::string::npos) << neigh;

  std::string fdb = a_->exec("bridge fdb show dev ferry_vxlan");
  EXPECT_NE(fdb.find("0e:fe:c0:a8:4d:02 dst 192.168.77.2 self permanent"), std::string::npos) << fdb;

  // The dataplane view for the eBPF backend.
  dataplane::Overlay view = ka->dataplane_view();
  EXPECT_EQ(view.device, "ferry_vxlan");
  EXPECT_GT(view.ifindex, 0);
  EXPECT_EQ(net::mac_str(view.local_vtep_mac), "0e:fe:c0:a8:4d:01");
  ASSERT_EQ(view.routes.size(), 2u);
  EXPECT_EQ(view.routes[0].pod_cidr.str(), "10.77.2.0/24");
  EXPECT_EQ(view.routes[1].pod_cidr.str(), "fd77:2::/64");
  EXPECT_EQ(view.routes[0].node_ip.str(), kUnderlayB);
  EXPECT_EQ(net::mac_str(view.routes[0].vtep_mac), "0e:fe:c0:a8:4d:02");

  // Pod CIDR to pod CIDR: the only path is the VXLAN device (no routes on the underlay).
  uint64_t tx0 = vxlan_tx_packets(*a_);
  EXPECT_TRUE(ping(*a_, "10.77.1.1", "10.77.2.1"));
  EXPECT_TRUE(ping(*b_, "10.77.2.1", "10.77.1.1"));
  EXPECT_TRUE(ping(*a_, "fd77:1::1", "fd77:2::1"));
  EXPECT_GT(vxlan_tx_packets(*a_), tx0);
  // Node-originated traffic leaves with the VTEP address (a pod-CIDR source).
  EXPECT_TRUE(ping(*a_, "10.77.1.0", "10.77.2.1"));
}

TEST_F(OverlayKernel, RestartWritesNothingAndReportsTheSameView) {
  auto state = state_of({node_a(), node_b()});
  auto first = make(*a_);
  apply(*a_, *first, state);
  auto second = make(*a_);  // the agent restarted
  ApplyResult r = apply(*a_, *second, state);
  EXPECT_EQ(r.kernel_writes, 0u);
  EXPECT_FALSE(r.device_created);
  EXPECT_EQ(second->kernel_writes(), 0u);
  EXPECT_EQ(second->dataplane_view(), first->dataplane_view());
}

TEST_F(OverlayKernel, RemovedAndReaddressedNodeTouchOnlyTheirEntries) {
  auto ka = make(*a_);
  apply(*a_, *ka, state_of({node_a(), node_b()}));
  const std::string ifindex_before = a_->exec("cat /sys/class/net/ferry_vxlan/ifindex");

  // B leaves: its 2 routes, 2 neighbours, FDB entry and 2 ipset members go; nothing else.
  ApplyResult r = apply(*a_, *ka, state_of({node_a()}));
  EXPECT_EQ(r.kernel_writes, 7u);
  EXPECT_EQ(r.remote_nodes, 0u);
  EXPECT_EQ(a_->exec("ip -o route show proto 254") + a_->exec("ip -o -6 route show proto 254"), "");
  EXPECT_EQ(a_->exec("ip neigh show dev ferry_vxlan nud permanent"), "");
  EXPECT_EQ(a_->exec("bridge fdb show dev ferry_vxlan"), "");
  EXPECT_EQ(a_->exec("cat /sys/class/net/ferry_vxlan/ifindex"), ifindex_before);
  EXPECT_NE(a_->exec("ip -o addr show dev ferry_vxlan").find("10.77.1.0/32"), std::string::npos);
  EXPECT_TRUE(ka->dataplane_view().routes.empty());

  // B comes back under a new underlay address: new FDB entry and neighbour MAC, routes as before.
  apply(*a_, *ka, state_of({node_a(), node_b()}));
  r = apply(*a_, *ka, state_of({node_a(), node_b("192.168.77.9")}));
  // FDB: delete old + add new; neighbours: 2 replaced; routes unchanged.
  EXPECT_EQ(r.kernel_writes, 4u);
  std::string fdb = a_->exec("bridge fdb show dev ferry_vxlan");
  EXPECT_NE(fdb.find("0e:fe:c0:a8:4d:09 dst 192.168.77.9 self permanent"), std::string::npos) << fdb;
  EXPECT_EQ(fdb.find("0e:fe:c0:a8:4d:02"), std::string::npos) << fdb;
  std::string neigh = a_->exec("ip neigh show dev ferry_vxlan nud permanent");
  EXPECT_NE(neigh.find("10.77.2.0 lladdr 0e:fe:c0:a8:4d:09"), std::string::npos) << neigh;
}

TEST_F(OverlayKernel, MasqueradeRulesAndIpsets) {
  auto ka = make(*a_);
  apply(*a_, *ka, state_of({node_a(), node_b()}));
  std::string nat = a_->exec("iptables-save -t nat");
  EXPECT_NE(nat.find("-A POSTROUTING -m comment --comment \"ferry: overlay masquerade\" -j FERRY-POSTROUTING"),
            std::string::npos)
      << nat;
  EXPECT_NE(nat.find("--match-set ferry-pods-v4 src"), std::string::npos) << nat;
  EXPECT_NE(nat.find("! --match-set ferry-pods-v4 dst"), std::string::npos) << nat;
  EXPECT_NE(nat.find("-j MASQUERADE"), std::string::npos) << nat;
  std::string nat6 = a_->exec("ip6tables-save -t nat");
  EXPECT_NE(nat6.find("ferry-pods-v6"), std::string::npos) << nat6;
  std::string set4 = a_->exec("ipset list ferry-pods-v4");
  EXPECT_NE(set4.find("10.77.1.0/24"), std::string::npos) << set4;
  EXPECT_NE(set4.find("10.77.2.0/24"), std::string::npos) << set4;
  std::string set6 = a_->exec("ipset list ferry-pods-v6");
  EXPECT_NE(set6.find("fd77:2::/64"), std::string::npos) << set6;

  // Cleanup (--overlay none / uninstall) leaves nothing of ours.
  uint64_t writes = 0;
  in(*a_, [&] { writes = ka->cleanup(); });
  EXPECT_GT(writes, 0u);
  EXPECT_EQ(a_->exec_status("ip link show ferry_vxlan 2>/dev/null"), 1);
  EXPECT_EQ(a_->exec("iptables-save -t nat").find("FERRY"), std::string::npos);
  EXPECT_EQ(a_->exec("ip6tables-save -t nat").find("FERRY"), std::string::npos);
  EXPECT_NE(a_->exec_status("ipset list ferry-pods-v4 >/dev/null 2>&1"), 0);
  EXPECT_NE(a_->exec_status("ipset list ferry-pods-v6 >/dev/null 2>&1"), 0);
  EXPECT_EQ(a_->exec("ip -o route show proto 254"), "");
  EXPECT_EQ(ka->dataplane_view(), dataplane::Overlay{});
  // A second cleanup has nothing to do.
  in(*a_, [&] { writes = ka->cleanup(); });
  EXPECT_EQ(writes, 0u);
}

TEST_F(OverlayKernel, ChangedVniRecreatesTheDevice) {
  auto state = state_of({node_a(), node_b()});
  auto ka = make(*a_);
  apply(*a_, *ka, state);
  OverlayConfig c = test_config();
  c.vni = 43;
  ApplyResult r;
  in(*a_, [&] { r = ka->apply(plan_overlay(state, "fyov-a", c)); });
  EXPECT_TRUE(r.device_created);
  EXPECT_NE(a_->exec("ip -d link show ferry_vxlan").find("vxlan id 43"), std::string::npos);
  EXPECT_NE(a_->exec("bridge fdb show dev ferry_vxlan").find("dst 192.168.77.2"), std::string::npos);
}

}  // namespace
}  // namespace ferry::overlay::test
