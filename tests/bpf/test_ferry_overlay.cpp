// The direct overlay path under BPF_PROG_TEST_RUN: ferry_from_pod sending remote-pod traffic to
// the overlay device (ferry_tun_v1 longest-prefix match, ferry_cfg_v3 switch), and
// ferry_from_overlay delivering decapsulated packets to local pods. Each test: build the frame,
// set up the maps, check the verdict, the bytes that come out, counters, conntrack and events.
#include <arpa/inet.h>
#include <linux/pkt_cls.h>
#include <sys/socket.h>

#include <fstream>
#include <string>

#include "datapath.h"

namespace ferry::bpftest {
namespace {

// Addresses of one family: local pods a and b (in this node's pod CIDR), a pod of node 2 (in
// remote_cidr), a pod of node 3 inside node 2's wider aggregate, the underlay addresses.
struct Family {
  std::string name;
  Addr a, b, remote_pod, other_pod, outside;
  std::string remote_cidr, wide_cidr, other_cidr;
  Addr node2, node3;
  bool v6() const { return a.family == AF_INET6; }
};

void PrintTo(const Family& family, std::ostream* os) { *os << family.name; }

Family ipv4_family() {
  return {"ipv4",
          Addr::parse("10.244.1.5"),
          Addr::parse("10.244.1.6"),
          Addr::parse("10.244.2.7"),
          Addr::parse("10.244.3.9"),
          Addr::parse("192.0.2.10"),
          "10.244.2.0/24",
          "10.244.0.0/16",
          "10.244.3.0/24",
          Addr::parse("172.18.0.2"),
          Addr::parse("172.18.0.3")};
}
Family ipv6_family() {
  return {"ipv6",
          Addr::parse("fd00:10:244:1::5"),
          Addr::parse("fd00:10:244:1::6"),
          Addr::parse("fd00:10:244:2::7"),
          Addr::parse("fd00:10:244:3::9"),
          Addr::parse("2001:db8::10"),
          "fd00:10:244:2::/64",
          "fd00:10:244::/48",
          "fd00:10:244:3::/64",
          Addr::parse("fd00:172:18::2"),
          Addr::parse("fd00:172:18::3")};
}

std::string family_name(const ::testing::TestParamInfo<Family>& info) { return info.param.name; }

const MacAddr kLocalVtep{0x0e, 0xfe, 172, 18, 0, 1};
const MacAddr kNode2Vtep{0x0e, 0xfe, 172, 18, 0, 2};
const MacAddr kNode3Vtep{0x0e, 0xfe, 172, 18, 0, 3};

MacAddr dst_mac(const Bytes& frame) { return {frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]}; }
MacAddr src_mac(const Bytes& frame) { return {frame[6], frame[7], frame[8], frame[9], frame[10], frame[11]}; }
Bytes after_macs(const Bytes& frame) { return Bytes(frame.begin() + 12, frame.end()); }

class FerryOverlay : public DatapathTest, public ::testing::WithParamInterface<Family> {
 protected:
  const Family& f() const { return GetParam(); }
  // A frame pod A sends (to its gateway's MAC).
  Bytes from_a(const Addr& dst, const L4& l4) const {
    return ip_frame(pod_a_.host_mac, pod_a_.pod_mac, f().a, dst, l4);
  }
  // A frame as the VXLAN device hands it up after decapsulation: inner MACs as the sending
  // node's from-pod wrote them (its VTEP -> ours).
  Bytes from_tunnel(const Addr& src, const Addr& dst, const L4& l4) const {
    return ip_frame(kLocalVtep, kNode2Vtep, src, dst, l4);
  }
  // Node 2's pod CIDR behind its VTEP, overlay on.
  void node2_tunnel() {
    set_overlay(overlay_ifindex_, kLocalVtep);
    add_tunnel(f().remote_cidr, kNode2Vtep, f().node2);
  }
};

// ------------------------------------------------------------------------------------------
// from-pod: to the tunnel

TEST_P(FerryOverlay, RemotePodCidrIsRedirectedToTheOverlayWithVtepMacs) {
  add_endpoint(pod_a_, f().a);
  node2_tunnel();
  const Bytes frame = from_a(f().remote_pod, tcp(40000, 80, kTcpSyn));

  const RunResult r = from_pod(pod_a_, frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_REDIRECT");
  EXPECT_EQ(dst_mac(r.out), kNode2Vtep) << "inner destination = the remote VTEP (the FDB key)";
  EXPECT_EQ(src_mac(r.out), kLocalVtep) << "inner source = our VTEP";
  EXPECT_EQ(after_macs(r.out), after_macs(frame)) << "only the MACs change";
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_TUNNEL), 1u);
  EXPECT_EQ(counter(FERRY_CTR_REDIRECT_TUNNEL).bytes, frame.size());
  EXPECT_EQ(packets(FERRY_CTR_TO_STACK), 0u);
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_LOCAL), 0u);
  const auto ct_entry = ct(f().a, f().remote_pod, 40000, 80, IPPROTO_TCP);
  ASSERT_TRUE(ct_entry.has_value()) << "the flow is tracked before it leaves";
  EXPECT_EQ(ct_entry->src_endpoint, pod_a_.endpoint_id);
  EXPECT_TRUE(drain_events().empty());
}

TEST_P(FerryOverlay, DestinationOutsideEveryPodCidrGoesToTheStack) {
  add_endpoint(pod_a_, f().a);
  node2_tunnel();
  const Bytes frame = from_a(f().outside, udp(40000, 53, 10));

  const RunResult r = from_pod(pod_a_, frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_OK");
  EXPECT_EQ(r.out, frame) << "untouched";
  EXPECT_EQ(packets(FERRY_CTR_TO_STACK), 1u);
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_TUNNEL), 0u);
}

TEST_P(FerryOverlay, OverlayOffMeansTheStackEvenWithTunnelEntries) {
  add_endpoint(pod_a_, f().a);
  add_tunnel(f().remote_cidr, kNode2Vtep, f().node2);
  const Bytes frame = from_a(f().remote_pod, udp(40000, 53));

  // No config at all (the array's zero entry), then an ifindex without the flag.
  EXPECT_EQ(tc_act_name(from_pod(pod_a_, frame).retval), "TC_ACT_OK");
  set_overlay(overlay_ifindex_, kLocalVtep, /*flags=*/0);
  EXPECT_EQ(tc_act_name(from_pod(pod_a_, frame).retval), "TC_ACT_OK");
  // Flag without an ifindex: still off.
  set_overlay(0, kLocalVtep);
  const RunResult r = from_pod(pod_a_, frame);
  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_OK");
  EXPECT_EQ(r.out, frame);
  EXPECT_EQ(packets(FERRY_CTR_TO_STACK), 3u);
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_TUNNEL), 0u);
}

TEST_P(FerryOverlay, LongestPrefixWins) {
  add_endpoint(pod_a_, f().a);
  set_overlay(overlay_ifindex_, kLocalVtep);
  add_tunnel(f().wide_cidr, kNode3Vtep, f().node3);      // an aggregate (say, node 3's)
  add_tunnel(f().remote_cidr, kNode2Vtep, f().node2);    // node 2's CIDR inside it

  const RunResult to_node2 = from_pod(pod_a_, from_a(f().remote_pod, udp(40000, 53)));
  const RunResult to_node3 = from_pod(pod_a_, from_a(f().other_pod, udp(40000, 53)));

  EXPECT_EQ(tc_act_name(to_node2.retval), "TC_ACT_REDIRECT");
  EXPECT_EQ(dst_mac(to_node2.out), kNode2Vtep) << "the /24 (/64) beats the /16 (/48)";
  EXPECT_EQ(tc_act_name(to_node3.retval), "TC_ACT_REDIRECT");
  EXPECT_EQ(dst_mac(to_node3.out), kNode3Vtep) << "outside the longer prefix: the aggregate";
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_TUNNEL), 2u);
}

TEST_P(FerryOverlay, LocalEndpointIsDeliveredLocallyEvenInsideATunnelPrefix) {
  // An aggregate covering our own pod CIDR must not pull local traffic into the tunnel.
  add_endpoint(pod_a_, f().a);
  add_endpoint(pod_b_, f().b);
  set_overlay(overlay_ifindex_, kLocalVtep);
  add_tunnel(f().wide_cidr, kNode3Vtep, f().node3);

  const RunResult r = from_pod(pod_a_, from_a(f().b, udp(40000, 53)));

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_REDIRECT");
  EXPECT_EQ(dst_mac(r.out), pod_b_.pod_mac);
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_LOCAL), 1u);
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_TUNNEL), 0u);
}

TEST_P(FerryOverlay, SpoofedSourceIsDroppedBeforeTheTunnel) {
  add_endpoint(pod_a_, f().a);
  node2_tunnel();
  const Bytes frame = ip_frame(pod_a_.host_mac, pod_a_.pod_mac, f().b, f().remote_pod, udp(40000, 53));

  EXPECT_EQ(tc_act_name(from_pod(pod_a_, frame).retval), "TC_ACT_SHOT");
  EXPECT_EQ(drops(FERRY_DROP_SPOOFED), 1u);
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_TUNNEL), 0u);
}

TEST_P(FerryOverlay, FamiliesDoNotMatchEachOther) {
  // A v4 tunnel covering everything (0.0.0.0/0) must not catch v6 traffic, and vice versa.
  add_endpoint(pod_a_, f().a);
  set_overlay(overlay_ifindex_, kLocalVtep);
  add_tunnel(f().v6() ? "0.0.0.0/0" : "::/0", kNode2Vtep, f().node2);

  const RunResult r = from_pod(pod_a_, from_a(f().remote_pod, udp(40000, 53)));

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_OK");
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_TUNNEL), 0u);
}

// ------------------------------------------------------------------------------------------
// from-overlay: out of the tunnel

TEST_P(FerryOverlay, TunnelledPacketForALocalEndpointIsDeliveredIntoThePod) {
  add_endpoint(pod_a_, f().a);
  const Bytes frame = from_tunnel(f().remote_pod, f().a, tcp(40000, 80, kTcpSyn));

  const RunResult r = from_overlay(frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_REDIRECT") << "bpf_redirect_peer into the pod";
  EXPECT_EQ(dst_mac(r.out), pod_a_.pod_mac);
  EXPECT_EQ(src_mac(r.out), pod_a_.host_mac) << "as if the gateway had routed it";
  EXPECT_EQ(after_macs(r.out), after_macs(frame));
  EXPECT_EQ(packets(FERRY_CTR_FROM_OVERLAY), 1u);
  EXPECT_EQ(counter(FERRY_CTR_FROM_OVERLAY).bytes, frame.size());
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_LOCAL), 1u);
  EXPECT_EQ(packets(FERRY_CTR_FROM_POD), 0u);
  const auto entry = ct(f().remote_pod, f().a, 40000, 80, IPPROTO_TCP);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->src_endpoint, 0u) << "the sender is not a local pod";
  EXPECT_EQ(entry->state, FERRY_CT_NEW);
}

TEST_P(FerryOverlay, ReplyFromTheTunnelMatchesTheFlowFromPodOpened) {
  add_endpoint(pod_a_, f().a);
  node2_tunnel();
  ASSERT_EQ(tc_act_name(from_pod(pod_a_, from_a(f().remote_pod, tcp(40000, 80, kTcpSyn))).retval),
            "TC_ACT_REDIRECT");

  const RunResult r = from_overlay(from_tunnel(f().remote_pod, f().a, tcp(80, 40000, kTcpSyn | kTcpAck)));

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_REDIRECT");
  EXPECT_EQ(packets(FERRY_CTR_CT_REPLY), 1u);
  EXPECT_EQ(ct_entries(), 1u);
  const auto entry = ct(f().a, f().remote_pod, 40000, 80, IPPROTO_TCP);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->state, FERRY_CT_ESTABLISHED);
  EXPECT_EQ(entry->packets_rev, 1u);
}

TEST_P(FerryOverlay, TunnelledPacketForAnUnknownAddressGoesToTheStack) {
  add_endpoint(pod_a_, f().a);
  // E.g. node-originated traffic answered to our pod CIDR's network address on the device.
  const Bytes frame = from_tunnel(f().remote_pod, f().b, udp(40000, 53));

  const RunResult r = from_overlay(frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_OK");
  EXPECT_EQ(r.out, frame);
  EXPECT_EQ(packets(FERRY_CTR_FROM_OVERLAY), 1u);
  EXPECT_EQ(packets(FERRY_CTR_TO_STACK), 1u);
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_LOCAL), 0u);
  EXPECT_EQ(ct_entries(), 0u) << "tracked by whoever delivers it (to-pod), not twice";
}

TEST_P(FerryOverlay, TunnelledPacketForAnEndpointNotYetProgrammedGoesToTheStack) {
  add_endpoint(pod_a_, f().a, /*flags=*/0);
  const Bytes frame = from_tunnel(f().remote_pod, f().a, udp(40000, 53));

  const RunResult r = from_overlay(frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_OK");
  EXPECT_EQ(r.out, frame);
  EXPECT_EQ(packets(FERRY_CTR_TO_STACK), 1u);
  EXPECT_EQ(ct_entries(), 0u);
}

TEST_P(FerryOverlay, TruncatedTunnelledPacketIsDroppedAndReportedAsFromOverlay) {
  add_endpoint(pod_a_, f().a);
  Bytes frame = from_tunnel(f().remote_pod, f().a, udp(40000, 53));
  if (f().v6())
    frame.resize(14 + 40 + 4);  // half a UDP header
  else
    frame[14] = 0x4f;  // IHL 15: more header than the frame has (see test_ferry_lxc.cpp)

  const RunResult r = from_overlay(frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_SHOT");
  EXPECT_EQ(drops(FERRY_DROP_INVALID), 1u);
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_LOCAL), 0u);
  const auto events = drain_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].hook, FERRY_HOOK_FROM_OVERLAY);
  EXPECT_EQ(events[0].ifindex, overlay_ifindex_);
  EXPECT_EQ(events[0].reason, uint32_t{FERRY_DROP_INVALID});
  EXPECT_NE(bpf_source_line(events[0].source_file, events[0].source_line).find("FERRY_DROP"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Families, FerryOverlay, ::testing::Values(ipv4_family(), ipv6_family()), family_name);

// ------------------------------------------------------------------------------------------

class FerryOverlayHook : public DatapathTest {};

TEST_F(FerryOverlayHook, NonIpFromTheTunnelPassesUntouched) {
  const Bytes arp = arp_request(kNode2Vtep, Addr::parse("10.244.2.0"), Addr::parse("10.244.1.0"));

  const RunResult r = from_overlay(arp);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_OK");
  EXPECT_EQ(r.out, arp);
  EXPECT_EQ(packets(FERRY_CTR_FROM_OVERLAY), 1u);
  EXPECT_EQ(packets(FERRY_CTR_PASS_NON_IP), 1u);
}

TEST_F(FerryOverlayHook, FromOverlayPassesTheVerifier) {
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  ASSERT_EQ(bpf_obj_get_info_by_fd(bpf_program__fd(skel()->progs.ferry_from_overlay), &info, &len), 0);
  EXPECT_EQ(info.type, BPF_PROG_TYPE_SCHED_CLS);
  std::cout << "[ verifier ] ferry_from_overlay: " << info.xlated_prog_len / 8 << " insns, "
            << info.verified_insns << " verified" << std::endl;
}

}  // namespace
}  // namespace ferry::bpftest
