// The direct overlay path attached for real: two node netns joined by a veth "underlay", a
// classic VXLAN device in each (FDB entry: the other node's VTEP MAC -> its underlay address,
// made with `bridge fdb`), a bridge and one pod per node, each node with its own copy of the
// maps. No route to the other node's pod CIDR exists and forwarding is off in both nodes, so a
// ping between the pods can only cross through ferry_from_pod -> bpf_redirect to the VXLAN
// device -> (underlay) -> ferry_from_overlay -> bpf_redirect_peer into the pod.
#include <linux/pkt_cls.h>

#include <csignal>
#include <chrono>
#include <cstring>
#include <future>
#include <stdexcept>
#include <thread>

#include "datapath.h"

namespace ferry::bpftest {
namespace {

std::string mac_text(const MacAddr& mac) {
  char buf[18];
  snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
           mac[4], mac[5]);
  return buf;
}

void must(const std::vector<std::string>& argv) {
  const auto res = net::run_command(argv);
  if (res.status != 0) {
    std::string cmd;
    for (const auto& a : argv) cmd += a + " ";
    throw std::runtime_error(cmd + "failed: " + res.err);
  }
}

void ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  must(argv);
}

bool ping(const PrivateNetns& ns, const std::string& dst, const std::string& size = "56") {
  return net::run_command({"ip", "netns", "exec", ns.name(), "ping", "-n", "-q", "-c", "3", "-i",
                           "0.2", "-W", "2", "-s", size, dst})
             .status == 0;
}

uint64_t node_packets(ferry_lxc* skel, uint32_t index) {
  const int cpus = libbpf_num_possible_cpus();
  std::vector<ferry_counter_value> per_cpu(static_cast<size_t>(cpus > 0 ? cpus : 1));
  if (bpf_map_lookup_elem(bpf_map__fd(skel->maps.ferry_ctr_v1), &index, per_cpu.data()) != 0)
    throw std::runtime_error("ferry_ctr_v1 lookup failed");
  uint64_t sum = 0;
  for (const auto& v : per_cpu) sum += v.packets;
  return sum;
}

// One node: netns, underlay end, VXLAN device, bridge, one pod; its own loaded maps.
struct Node {
  int index = 0;  // 1 or 2
  PrivateNetns* netns = nullptr;
  ferry_lxc* skel = nullptr;
  std::unique_ptr<PrivateNetns> pod_ns;
  Pod pod;
  uint32_t vxlan_ifindex = 0;
  MacAddr vtep{};
  std::string underlay_ip, pod_ip4, pod_ip6, cidr4, cidr6;
};

class FerryOverlayAttached : public DatapathTest {
 protected:
  void SetUp() override {
    DatapathTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    const std::string pid = std::to_string(getpid());
    node2_ns_ = std::make_unique<PrivateNetns>("fybpfn2" + pid);
    const std::string pin2 = "/sys/fs/bpf/ferry-test-" + pid + "-n2";
    remove_pin_dir(pin2);
    node2_maps_ = std::make_unique<LoadedDatapath>(pin2, LoadedDatapath::Sizes{});

    n1_.index = 1;
    n1_.netns = netns_.get();
    n1_.skel = skel();
    n2_.index = 2;
    n2_.netns = node2_ns_.get();
    n2_.skel = node2_maps_->skel();

    // The underlay: one veth between the nodes.
    ip({"-n", n1_.netns->name(), "link", "add", "fyu1", "type", "veth", "peer", "name", "fyu2", "netns",
        n2_.netns->name()});
    for (Node* n : {&n1_, &n2_}) {
      const std::string i = std::to_string(n->index);
      n->underlay_ip = "192.168.77." + i;
      n->vtep = {0x0e, 0xfe, 192, 168, 77, static_cast<uint8_t>(n->index)};
      n->pod_ip4 = "10.201." + i + ".5";
      n->pod_ip6 = "fd77:" + i + "::5";
      n->cidr4 = "10.201." + i + ".0/24";
      n->cidr6 = "fd77:" + i + "::/64";
      const std::string& ns = n->netns->name();
      // A new netns may inherit forwarding from the host: switch it off, so no host routing.
      for (const char* key : {"net.ipv4.ip_forward=0", "net.ipv6.conf.all.forwarding=0"})
        must({"ip", "netns", "exec", ns, "sysctl", "-q", "-w", key});
      ip({"-n", ns, "link", "set", "lo", "up"});
      ip({"-n", ns, "addr", "add", n->underlay_ip + "/24", "dev", "fyu" + i});
      ip({"-n", ns, "link", "set", "fyu" + i, "up"});
      ip({"-n", ns, "link", "add", "fyt" + i, "address", mac_text(n->vtep), "mtu", "1450", "type", "vxlan", "id",
          "42", "local", n->underlay_ip, "dev", "fyu" + i, "dstport", "4789", "nolearning"});
      ip({"-n", ns, "link", "set", "fyt" + i, "up"});
      auto sock = net::Socket::open_in(n->netns->ns());
      n->vxlan_ifindex = static_cast<uint32_t>(net::get_link(sock, "fyt" + i).index);
      // The bridge and the pod, as ferry-bridge would make them.
      const MacAddr gw{0x0a, 0x58, 10, 201, static_cast<uint8_t>(n->index), 1};
      ip({"-n", ns, "link", "add", "fybr0", "address", mac_text(gw), "type", "bridge"});
      ip({"-n", ns, "addr", "add", "10.201." + i + ".1/24", "dev", "fybr0"});
      ip({"-n", ns, "addr", "add", "fd77:" + i + "::1/64", "dev", "fybr0", "nodad"});
      ip({"-n", ns, "link", "set", "fybr0", "up"});
      n->pod_ns = std::make_unique<PrivateNetns>("fybpfp" + i + pid);
      const std::string& pns = n->pod_ns->name();
      const std::string veth = "fyv" + i;
      ip({"-n", ns, "link", "add", veth, "mtu", "1450", "type", "veth", "peer", "name", "eth0", "netns", pns});
      ip({"-n", ns, "link", "set", veth, "master", "fybr0", "up"});
      n->pod = Pod{veth, static_cast<uint32_t>(net::get_link(sock, veth).index), 100u + static_cast<uint32_t>(n->index),
                   {0x0a, 0x58, 10, 201, static_cast<uint8_t>(n->index), 5}, gw};
      ip({"-n", pns, "link", "set", "lo", "up"});
      ip({"-n", pns, "link", "set", "eth0", "address", mac_text(n->pod.pod_mac), "mtu", "1450", "up"});
      ip({"-n", pns, "addr", "add", n->pod_ip4 + "/24", "dev", "eth0"});
      ip({"-n", pns, "addr", "add", n->pod_ip6 + "/64", "dev", "eth0", "nodad"});
      ip({"-n", pns, "route", "add", "default", "via", "10.201." + i + ".1"});
      ip({"-n", pns, "-6", "route", "add", "default", "via", "fd77:" + i + "::1"});
    }
    // Each node's FDB: the other node's VTEP MAC lives at its underlay address.
    must({"bridge", "-n", n1_.netns->name(), "fdb", "append", mac_text(n2_.vtep), "dev", "fyt1", "dst",
         n2_.underlay_ip, "self", "permanent"});
    must({"bridge", "-n", n2_.netns->name(), "fdb", "append", mac_text(n1_.vtep), "dev", "fyt2", "dst",
         n1_.underlay_ip, "self", "permanent"});
  }

  void TearDown() override {
    n1_.pod_ns.reset();
    n2_.pod_ns.reset();
    node2_ns_.reset();     // takes its devices and filters along
    node2_maps_.reset();
    DatapathTest::TearDown();
  }

  static void put(bpf_map* map, const void* key, const void* value) {
    if (bpf_map_update_elem(bpf_map__fd(map), key, value, BPF_ANY) != 0)
      throw std::runtime_error(std::string("update of ") + bpf_map__name(map) + " failed");
  }

  // The agent's job for node `n`: its pod in ferry_ep_v1, the overlay config, the other node's
  // pod CIDRs in ferry_tun_v1, programs on the pod veth and on the VXLAN device.
  void program(Node& n, const Node& other) {
    for (const std::string& ipt : {n.pod_ip4, n.pod_ip6}) {
      const Addr a = Addr::parse(ipt);
      ferry_endpoint_key key{};
      key.family = a.family;
      std::memcpy(key.addr, a.bytes.data(), a.size());
      ferry_endpoint_value value{};
      value.ifindex = n.pod.ifindex;
      value.endpoint_id = n.pod.endpoint_id;
      std::memcpy(value.pod_mac, n.pod.pod_mac.data(), 6);
      std::memcpy(value.host_mac, n.pod.host_mac.data(), 6);
      value.flags = FERRY_EP_F_PROGRAMMED;
      put(n.skel->maps.ferry_ep_v1, &key, &value);
    }
    ferry_config cfg{};
    cfg.overlay_ifindex = n.vxlan_ifindex;
    std::memcpy(cfg.vtep_mac, n.vtep.data(), 6);
    cfg.flags = FERRY_CFG_F_OVERLAY;
    uint32_t zero = 0;
    put(n.skel->maps.ferry_cfg_v3, &zero, &cfg);
    for (const std::string& cidr : {other.cidr4, other.cidr6}) {
      const auto key = lpm_addr_key<ferry_tunnel_key>(cidr);
      ferry_tunnel_value value{};
      std::memcpy(value.vtep_mac, other.vtep.data(), 6);
      value.node_family = AF_INET;
      const Addr node = Addr::parse(other.underlay_ip);
      std::memcpy(value.node_ip, node.bytes.data(), 4);
      put(n.skel->maps.ferry_tun_v1, &key, &value);
    }
    net::in_netns(n.netns->ns(), [&] {
      attach(n.pod.ifindex, BPF_TC_INGRESS, n.skel->progs.ferry_from_pod);
      attach(n.pod.ifindex, BPF_TC_EGRESS, n.skel->progs.ferry_to_pod);
      attach(n.vxlan_ifindex, BPF_TC_INGRESS, n.skel->progs.ferry_from_overlay);
    });
  }

  static void attach(uint32_t ifindex, bpf_tc_attach_point point, bpf_program* prog) {
    bpf_tc_hook hook{};
    hook.sz = sizeof(hook);
    hook.ifindex = static_cast<int>(ifindex);
    hook.attach_point = point;
    int err = bpf_tc_hook_create(&hook);
    if (err && err != -EEXIST) throw std::runtime_error("bpf_tc_hook_create failed");
    bpf_tc_opts opts{};
    opts.sz = sizeof(opts);
    opts.handle = FERRY_TC_HANDLE;
    opts.priority = FERRY_TC_PRIORITY;
    opts.prog_fd = bpf_program__fd(prog);
    err = bpf_tc_attach(&hook, &opts);
    if (err) throw std::runtime_error(std::string("bpf_tc_attach of ") + bpf_program__name(prog) + " failed");
  }

  std::unique_ptr<PrivateNetns> node2_ns_;
  std::unique_ptr<LoadedDatapath> node2_maps_;
  Node n1_, n2_;
};

TEST_F(FerryOverlayAttached, PodsOnTwoNodesReachEachOtherOnlyThroughTheDatapath) {
  // Without the programs there is no way across: no routes to the other pod CIDR, forwarding off.
  for (Node* n : {&n1_, &n2_})
    for (const char* key : {"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding"})
      EXPECT_EQ(net::run_command({"ip", "netns", "exec", n->netns->name(), "sysctl", "-n", key}).out, "0\n") << key;
  EXPECT_FALSE(ping(*n1_.pod_ns, n2_.pod_ip4)) << "crossed without the datapath: the test proves nothing";

  program(n1_, n2_);
  program(n2_, n1_);
  const uint64_t n1_tunnel_before = node_packets(n1_.skel, FERRY_CTR_REDIRECT_TUNNEL);

  EXPECT_TRUE(ping(*n1_.pod_ns, n2_.pod_ip4)) << "IPv4 pod 1 -> pod 2";
  EXPECT_TRUE(ping(*n2_.pod_ns, n1_.pod_ip4)) << "IPv4 pod 2 -> pod 1";
  EXPECT_TRUE(ping(*n1_.pod_ns, n2_.pod_ip6)) << "IPv6 pod 1 -> pod 2";
  EXPECT_TRUE(ping(*n1_.pod_ns, n2_.pod_ip4, "1400")) << "a frame near the overlay MTU";

  // 1 MiB over TCP: segmentation offload through the redirect and the encapsulation. A client
  // started before the listener exits early: its stdin pipe breaks, which must not kill us.
  ::signal(SIGPIPE, SIG_IGN);
  const std::string payload(1 << 20, 'x');
  auto received = std::async(std::launch::async, [&] {
    return net::run_command({"timeout", "30", "ip", "netns", "exec", n2_.pod_ns->name(), "nc", "-l", "5001"}).out.size();
  });
  bool sent = false;
  for (int attempt = 0; attempt < 50 && !sent; ++attempt) {  // until the listener is up
    sent = net::run_command({"ip", "netns", "exec", n1_.pod_ns->name(), "nc", "-N", "-w", "10", n2_.pod_ip4, "5001"},
                            payload)
               .status == 0;
    if (!sent) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(sent);
  EXPECT_EQ(received.get(), payload.size()) << "1 MiB crossed intact";

  // Every echo request and reply went through the tunnel on one side and out of it on the other.
  for (Node* n : {&n1_, &n2_}) {
    SCOPED_TRACE("node " + std::to_string(n->index));
    EXPECT_GE(node_packets(n->skel, FERRY_CTR_REDIRECT_TUNNEL), 9u);
    EXPECT_GE(node_packets(n->skel, FERRY_CTR_FROM_OVERLAY), 9u);
    EXPECT_GE(node_packets(n->skel, FERRY_CTR_REDIRECT_LOCAL), 9u) << "delivered by from-overlay into the pod";
    EXPECT_EQ(node_packets(n->skel, uint32_t{FERRY_CTR_DROP_BASE} + FERRY_DROP_INVALID), 0u);
    EXPECT_EQ(node_packets(n->skel, uint32_t{FERRY_CTR_DROP_BASE} + FERRY_DROP_SPOOFED), 0u);
  }
  EXPECT_GT(node_packets(n1_.skel, FERRY_CTR_REDIRECT_TUNNEL), n1_tunnel_before);
}

}  // namespace
}  // namespace ferry::bpftest
