// ferry_lxc attached for real: a node netns with a bridge, two pod netns behind veths, the
// programs on tc ingress/egress of the host-side veths. Checks what BPF_PROG_TEST_RUN cannot:
// that bpf_redirect_peer with the rewritten MACs really delivers into the other pod, and that
// the source check really stops a spoofed packet on the wire.
#include <linux/pkt_cls.h>

#include <stdexcept>

#include "datapath.h"

namespace ferry::bpftest {
namespace {

std::string mac_text(const MacAddr& mac) {
  char buf[18];
  snprintf(buf, sizeof(buf), "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
           mac[4], mac[5]);
  return buf;
}

void ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  const auto res = net::run_command(argv);
  if (res.status != 0) {
    std::string cmd;
    for (const auto& a : argv) cmd += a + " ";
    throw std::runtime_error(cmd + "failed: " + res.err);
  }
}

// True when `count` pings from `ns` to `dst` got at least one answer.
bool ping(const PrivateNetns& ns, const std::string& dst, const std::string& src = "") {
  std::vector<std::string> argv{"ip", "netns", "exec", ns.name(), "ping", "-n", "-q", "-c", "3",
                                "-i", "0.2", "-W", "2"};
  if (!src.empty()) {
    argv.push_back("-I");
    argv.push_back(src);
  }
  argv.push_back(dst);
  return net::run_command(argv).status == 0;
}

class FerryLxcAttached : public DatapathTest {
 protected:
  void SetUp() override {
    DatapathTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    const std::string node = netns_->name();
    const std::string pid = std::to_string(getpid());
    ip({"-n", node, "link", "add", "fybr0", "address", mac_text(pod_a_.host_mac), "type", "bridge"});
    ip({"-n", node, "addr", "add", "10.244.1.1/24", "dev", "fybr0"});
    ip({"-n", node, "link", "set", "fybr0", "up"});
    pod_ns_a_ = std::make_unique<PrivateNetns>("fybpfpa" + pid);
    pod_ns_b_ = std::make_unique<PrivateNetns>("fybpfpb" + pid);
    real_a_ = add_pod(*pod_ns_a_, "fybpfva", pod_a_, "10.244.1.5/24");
    real_b_ = add_pod(*pod_ns_b_, "fybpfvb", pod_b_, "10.244.1.6/24");
  }

  void TearDown() override {
    pod_ns_a_.reset();
    pod_ns_b_.reset();
    DatapathTest::TearDown();  // the node netns takes bridge, veths and tc filters with it
  }

  // A pod: netns `ns`, eth0 with `model`'s MAC and `cidr`, its host side `veth` on fybr0.
  Pod add_pod(const PrivateNetns& ns, const std::string& veth, const Pod& model,
              const std::string& cidr) {
    const std::string node = netns_->name();
    ip({"-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns",
        ns.name()});
    ip({"-n", node, "link", "set", veth, "master", "fybr0", "up"});
    ip({"-n", ns.name(), "link", "set", "eth0", "address", mac_text(model.pod_mac), "up"});
    ip({"-n", ns.name(), "link", "set", "lo", "up"});
    ip({"-n", ns.name(), "addr", "add", cidr, "dev", "eth0"});
    ip({"-n", ns.name(), "route", "add", "default", "via", "10.244.1.1"});
    Pod pod = model;
    pod.veth = veth;
    auto sock = net::Socket::open_in(netns_->ns());
    pod.ifindex = static_cast<uint32_t>(net::get_link(sock, veth).index);
    return pod;
  }

  // ferry_from_pod on tc ingress and ferry_to_pod on tc egress of `pod`'s host-side veth.
  void attach(const Pod& pod) {
    net::in_netns(netns_->ns(), [&] {
      const std::pair<bpf_tc_attach_point, bpf_program*> hooks[] = {
          {BPF_TC_INGRESS, skel()->progs.ferry_from_pod},
          {BPF_TC_EGRESS, skel()->progs.ferry_to_pod}};
      for (const auto& [point, prog] : hooks) {
        bpf_tc_hook hook{};
        hook.sz = sizeof(hook);
        hook.ifindex = static_cast<int>(pod.ifindex);
        hook.attach_point = point;
        int err = bpf_tc_hook_create(&hook);
        if (err && err != -EEXIST) throw std::runtime_error("bpf_tc_hook_create failed");
        bpf_tc_opts opts{};
        opts.sz = sizeof(opts);
        opts.handle = FERRY_TC_HANDLE;
        opts.priority = FERRY_TC_PRIORITY;
        opts.prog_fd = bpf_program__fd(prog);
        err = bpf_tc_attach(&hook, &opts);
        if (err) throw std::runtime_error("bpf_tc_attach on " + pod.veth + " failed");
      }
    });
  }

  std::unique_ptr<PrivateNetns> pod_ns_a_, pod_ns_b_;
  Pod real_a_, real_b_;
};

TEST_F(FerryLxcAttached, PodToPodIsRedirectedPeerToPeerAndSpoofingIsStopped) {
  add_endpoint(real_a_, Addr::parse("10.244.1.5"));
  add_endpoint(real_b_, Addr::parse("10.244.1.6"));
  attach(real_a_);
  attach(real_b_);

  // A pings B: ARP goes over the bridge, the ICMP echo and its reply are redirected.
  ASSERT_TRUE(ping(*pod_ns_a_, "10.244.1.6"));
  EXPECT_GE(packets(FERRY_CTR_REDIRECT_LOCAL), 2u) << "request and reply took the peer redirect";
  EXPECT_GE(packets(FERRY_CTR_PASS_NON_IP), 1u) << "ARP passed through";
  EXPECT_EQ(drops(FERRY_DROP_SPOOFED), 0u);
  // The echo flow exists (identifier unknown here: any ICMP entry from A to B).
  EXPECT_GE(packets(FERRY_CTR_CT_NEW), 1u);
  EXPECT_GE(packets(FERRY_CTR_CT_REPLY), 1u);

  // A claims an address that is not its own: every packet stops at A's veth.
  ip({"-n", pod_ns_a_->name(), "addr", "add", "10.244.1.77/24", "dev", "eth0"});
  EXPECT_FALSE(ping(*pod_ns_a_, "10.244.1.6", "10.244.1.77"));
  EXPECT_GE(drops(FERRY_DROP_SPOOFED), 1u);
  bool saw_event = false;
  for (const auto& ev : drain_events())
    saw_event |= ev.reason == FERRY_DROP_SPOOFED && ev.ifindex == real_a_.ifindex;
  EXPECT_TRUE(saw_event) << "no SPOOFED event for A's veth";
}

TEST_F(FerryLxcAttached, NotYetProgrammedDestinationIsReachedOverTheBridge) {
  add_endpoint(real_a_, Addr::parse("10.244.1.5"));
  add_endpoint(real_b_, Addr::parse("10.244.1.6"), /*flags=*/0);
  attach(real_a_);
  attach(real_b_);

  ASSERT_TRUE(ping(*pod_ns_a_, "10.244.1.6"));
  EXPECT_GE(packets(FERRY_CTR_TO_STACK), 1u) << "A's echo requests went to the bridge";
  EXPECT_GE(packets(FERRY_CTR_REDIRECT_LOCAL), 1u) << "B's replies to the programmed A did not";
}

}  // namespace
}  // namespace ferry::bpftest
