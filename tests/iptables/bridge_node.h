// The root fixture of the iptables backend tests: a node netns (<prefix>-node) with a bridge
// (<prefix>br0), two pod netns attached by veth (IPv4 + IPv6 in one subnet), optionally a peer
// netns routed to them through the node (add_routed_hop), and the backend running inside the
// node netns. Everything lives in those namespaces (ipsets and conntrack
// included) and goes with them, also when a test fails.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/iptables/iptables.h"
#include "tests/support/support.h"

namespace ferry::iptables::testing {

struct Pod {
  std::string netns;
  std::string veth;  // host side, in the node netns
  std::string v4, v6;
};

inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  while (!s.empty() && s.back() == '\n') s.pop_back();
  return s;
}

// iptables-save output without its timestamp comments and chain counters.
inline std::string save_without_noise(const std::string& save) {
  std::string out;
  size_t pos = 0;
  while (pos < save.size()) {
    size_t nl = save.find('\n', pos);
    std::string line = save.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    pos = nl == std::string::npos ? save.size() : nl + 1;
    if (line.starts_with("#")) continue;
    if (line.starts_with(":")) line = line.substr(0, line.find(" ["));
    out += line + "\n";
  }
  return out;
}

// A namespace one routed hop away from the pods, as another node is over the overlay: a veth
// into the node netns (`peer.veth` is its node end), the node routing between it and the
// bridge. peer.v4/v6 are the peer's addresses (/24, /64 with the node end's).
struct RoutedHop {
  Pod peer;
  std::string node_v4, node_v6;      // the node end of the link: the peer's gateway
  std::string bridge_v4, bridge_v6;  // the bridge's addresses: the pods' gateway
};

class BridgeNode : public ::testing::Test {
 protected:
  // Call from SetUp(); skips (GTEST_SKIP in the caller's SetUp) when not root or tools lack.
  void build(const std::string& prefix, const Pod& a, const Pod& b) {
    if (!test::is_root()) GTEST_SKIP() << "needs root to create network namespaces";
    if (test::sh_status("command -v iptables-restore >/dev/null && command -v ip6tables-restore >/dev/null").status != 0)
      GTEST_SKIP() << "needs iptables-restore and ip6tables-restore (Debian package iptables)";
    host_call_iptables_ = read_file("/proc/sys/net/bridge/bridge-nf-call-iptables");
    bridge_ = prefix + "br0";
    node_ = std::make_unique<test::TestNetns>(prefix + "-node");
    pods_.push_back(std::make_unique<test::TestNetns>(a.netns));
    pods_.push_back(std::make_unique<test::TestNetns>(b.netns));
    const std::string n = "ip -n " + node_->name() + " ";
    test::sh(n + "link add " + bridge_ + " type bridge");
    test::sh(n + "link set " + bridge_ + " up");
    for (const Pod* pod : {&a, &b}) {
      test::sh(n + "link add " + pod->veth + " type veth peer name eth0 netns " + pod->netns);
      test::sh(n + "link set " + pod->veth + " master " + bridge_ + " up");
      test::sh("ip -n " + pod->netns + " addr add " + pod->v4 + "/24 dev eth0");
      test::sh("ip -n " + pod->netns + " addr add " + pod->v6 + "/64 dev eth0 nodad");
      test::sh("ip -n " + pod->netns + " link set eth0 up");
    }
  }

  // Builds `hop` and gives `pods` default routes through the bridge, so traffic between them
  // and the peer is routed into and out of the bridge by the node (IP forwarding on).
  void add_routed_hop(const RoutedHop& hop, const std::vector<const Pod*>& pods) {
    pods_.push_back(std::make_unique<test::TestNetns>(hop.peer.netns));
    const std::string n = "ip -n " + node_->name() + " ", p = "ip -n " + hop.peer.netns + " ";
    test::sh(n + "link add " + hop.peer.veth + " type veth peer name eth0 netns " + hop.peer.netns);
    test::sh(n + "addr add " + hop.node_v4 + "/24 dev " + hop.peer.veth);
    test::sh(n + "addr add " + hop.node_v6 + "/64 dev " + hop.peer.veth + " nodad");
    test::sh(n + "link set " + hop.peer.veth + " up");
    test::sh(n + "addr add " + hop.bridge_v4 + "/24 dev " + bridge_);
    test::sh(n + "addr add " + hop.bridge_v6 + "/64 dev " + bridge_ + " nodad");
    node_->exec("sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1");
    test::sh(p + "addr add " + hop.peer.v4 + "/24 dev eth0");
    test::sh(p + "addr add " + hop.peer.v6 + "/64 dev eth0 nodad");
    test::sh(p + "link set eth0 up");
    test::sh(p + "route add default via " + hop.node_v4);
    test::sh(p + "-6 route add default via " + hop.node_v6);
    for (const Pod* pod : pods) {
      test::sh("ip -n " + pod->netns + " route add default via " + hop.bridge_v4);
      test::sh("ip -n " + pod->netns + " -6 route add default via " + hop.bridge_v6);
    }
  }

  void TearDown() override {
    pods_.clear();
    node_.reset();
    // The node's sysctls went with its netns; the host's must never have changed.
    if (!host_call_iptables_.empty()) {
      EXPECT_EQ(read_file("/proc/sys/net/bridge/bridge-nf-call-iptables"), host_call_iptables_);
    }
  }

  // Runs `fn` with this thread (and the iptables processes it starts) in the node netns.
  void in_node(const std::function<void()>& fn) { net::in_netns(net::Netns::open(node_->path()), fn); }

  dataplane::Endpoint endpoint_of(uint32_t id, const Pod& pod) {
    net::Socket node_sock = net::Socket::open_in(net::Netns::open(node_->path()));
    net::Socket pod_sock = net::Socket::open_in(net::Netns::open("/run/netns/" + pod.netns));
    dataplane::Endpoint ep;
    ep.endpoint_id = id;
    ep.host_veth = pod.veth;
    ep.host_ifindex = net::get_link(node_sock, pod.veth).index;
    ep.pod_mac = *net::get_link(pod_sock, "eth0").mac;
    ep.host_mac = *net::get_link(node_sock, bridge_).mac;
    ep.ips = {*net::Ip::parse(pod.v4), *net::Ip::parse(pod.v6)};
    return ep;
  }

  // Positive reachability: one reply within a generous deadline (the machine is noisy).
  bool ping(const Pod& from, const std::string& to, const std::string& source = "") {
    std::string opts = source.empty() ? "" : " -I " + source;
    return test::sh_status("ip netns exec " + from.netns + " ping -q -c 1 -w 10" + opts + " " + to + " >/dev/null 2>&1")
               .status == 0;
  }
  // Negative reachability: no reply to a few requests.
  bool ping_fails(const Pod& from, const std::string& to, const std::string& source) {
    return test::sh_status("ip netns exec " + from.netns + " ping -q -c 3 -i 0.3 -W 1 -I " + source + " " + to +
                           " >/dev/null 2>&1")
               .status != 0;
  }

  std::string node_save(const char* tool, const char* table) { return node_->exec(std::string(tool) + " -t " + table); }

  uint64_t drop_counter(dataplane::Dataplane& dp, const std::string& name) {
    uint64_t packets = 0;
    in_node([&] {
      for (const auto& c : dp.stats().counters)
        if (c.name == name) packets = c.packets;
    });
    return packets;
  }

  std::unique_ptr<test::TestNetns> node_;
  std::vector<std::unique_ptr<test::TestNetns>> pods_;
  std::string bridge_;
  std::string host_call_iptables_;
};

}  // namespace ferry::iptables::testing
