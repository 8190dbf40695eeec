// ferry_lxc (bpf/ferry_lxc.bpf.c) under BPF_PROG_TEST_RUN: every decision of ferry_from_pod and
// ferry_to_pod, each test in three parts — build the frame, set up the maps, check the verdict,
// the bytes that come out and the map state (conntrack, counters, drop events).
#include <arpa/inet.h>
#include <linux/pkt_cls.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "datapath.h"

namespace ferry::bpftest {
namespace {

// Addresses of one IP family: two local pods (a, b), a remote host, an address nobody owns.
struct Family {
  std::string name;
  Addr a, b, remote, stranger;
  bool v6() const { return a.family == AF_INET6; }
};

void PrintTo(const Family& family, std::ostream* os) { *os << family.name; }

Family ipv4_family() {
  return {"ipv4", Addr::parse("10.244.1.5"), Addr::parse("10.244.1.6"),
          Addr::parse("192.0.2.10"), Addr::parse("10.244.1.99")};
}
Family ipv6_family() {
  return {"ipv6", Addr::parse("fd00:10:244:1::5"), Addr::parse("fd00:10:244:1::6"),
          Addr::parse("2001:db8::10"), Addr::parse("fd00:10:244:1::99")};
}

const MacAddr kRemoteMac{0x02, 0x00, 0x00, 0x00, 0x00, 0xaa};

bool addr_eq(const uint8_t* field, const Addr& a) {
  return std::equal(a.bytes.begin(), a.bytes.end(), field);
}

Bytes payload_of(const Bytes& frame) { return Bytes(frame.begin() + 12, frame.end()); }

class FerryLxc : public DatapathTest {};

class FerryLxcFamily : public DatapathTest, public ::testing::WithParamInterface<Family> {
 protected:
  const Family& f() const { return GetParam(); }
  // A frame pod A sends (to its gateway's MAC).
  Bytes from_a(const Addr& src, const Addr& dst, const L4& l4) const {
    return ip_frame(pod_a_.host_mac, pod_a_.pod_mac, src, dst, l4);
  }
  // A frame the bridge hands to pod A.
  Bytes to_a(const Addr& src, const Addr& dst, const L4& l4) const {
    return ip_frame(pod_a_.pod_mac, pod_a_.host_mac, src, dst, l4);
  }
  L4 echo(bool reply, uint16_t id) const { return icmp_echo(f().v6(), reply, id); }
  uint8_t icmp_proto() const { return static_cast<uint8_t>(f().v6() ? int{IPPROTO_ICMPV6} : int{IPPROTO_ICMP}); }
};

std::string family_name(const ::testing::TestParamInfo<Family>& info) { return info.param.name; }

// ------------------------------------------------------------------------------------------
// Loading

TEST_F(FerryLxc, BothProgramsPassTheVerifier) {
  // Loading happened in SetUp; here: both programs exist in the kernel, with their size.
  for (bpf_program* prog : {skel()->progs.ferry_from_pod, skel()->progs.ferry_to_pod}) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    ASSERT_EQ(bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len), 0);
    EXPECT_EQ(info.type, BPF_PROG_TYPE_SCHED_CLS);
    EXPECT_GT(info.verified_insns, 0u);
    std::cout << "[ verifier ] " << bpf_program__name(prog) << ": " << info.xlated_prog_len / 8
              << " insns, " << info.verified_insns << " verified" << std::endl;
    RecordProperty(std::string(bpf_program__name(prog)) + "_verified_insns",
                   std::to_string(info.verified_insns));
  }
}

TEST_F(FerryLxc, MapsArePinnedByNameAndReusedByTheNextLoad) {
  // The agent relies on this: a restart opens the skeleton with the same pin root and finds
  // its endpoints and flows intact.
  add_endpoint(pod_a_, Addr::parse("10.244.1.5"));
  for (const char* name : {FERRY_MAP_ENDPOINTS, FERRY_MAP_CT, FERRY_MAP_COUNTERS, FERRY_MAP_EVENTS}) {
    struct stat st {};
    EXPECT_EQ(stat((datapath_->pin_dir() + "/" + name).c_str(), &st), 0) << name << " not pinned";
  }

  bpf_object_open_opts opts{};
  opts.sz = sizeof(opts);
  opts.pin_root_path = datapath_->pin_dir().c_str();
  ferry_lxc* second = ferry_lxc__open_opts(&opts);
  ASSERT_NE(second, nullptr);
  bpf_map__set_max_entries(second->maps.ferry_ct_v2, bpf_map__max_entries(skel()->maps.ferry_ct_v2));
  ASSERT_EQ(ferry_lxc__load(second), 0);

  auto map_id = [](bpf_map* map) {
    bpf_map_info info{};
    uint32_t len = sizeof(info);
    bpf_obj_get_info_by_fd(bpf_map__fd(map), &info, &len);
    return info.id;
  };
  EXPECT_EQ(map_id(second->maps.ferry_ep_v1), map_id(skel()->maps.ferry_ep_v1));
  EXPECT_EQ(map_id(second->maps.ferry_ct_v2), map_id(skel()->maps.ferry_ct_v2));
  EXPECT_EQ(map_id(second->maps.ferry_ctr_v1), map_id(skel()->maps.ferry_ctr_v1));
  EXPECT_EQ(map_id(second->maps.ferry_ev_v1), map_id(skel()->maps.ferry_ev_v1));
  ferry_lxc__destroy(second);  // closes fds only; the pins stay (TearDown removes them)
}

// ------------------------------------------------------------------------------------------
// Non-IP

TEST_F(FerryLxc, ArpPassesUntouchedBothWays) {
  const Bytes arp = arp_request(pod_a_.pod_mac, Addr::parse("10.244.1.5"), Addr::parse("10.244.1.1"));

  const RunResult out = from_pod(pod_a_, arp);
  EXPECT_EQ(tc_act_name(out.retval), "TC_ACT_OK");
  EXPECT_EQ(out.out, arp);
  const RunResult in = to_pod(pod_a_, arp);
  EXPECT_EQ(tc_act_name(in.retval), "TC_ACT_OK");
  EXPECT_EQ(in.out, arp);

  EXPECT_EQ(packets(FERRY_CTR_PASS_NON_IP), 2u);
  EXPECT_EQ(counter(FERRY_CTR_PASS_NON_IP).bytes, 2 * arp.size());
  EXPECT_EQ(packets(FERRY_CTR_FROM_POD), 1u);
  EXPECT_EQ(packets(FERRY_CTR_TO_POD), 1u);
  EXPECT_EQ(ct_entries(), 0u);
  EXPECT_TRUE(drain_events().empty());
}

// ------------------------------------------------------------------------------------------
// Invalid packets

// BPF_PROG_TEST_RUN itself (kernel 6.18) refuses, with EINVAL, a frame whose ethertype says IP
// but which is shorter than Ethernet + 20 (IPv4) or + 40 (IPv6) bytes, so the shortest
// truncations cannot be fed in. A pod can still send them; parse.h checks every header against
// data_end. Here: the IPv4 header announces more bytes (IHL) than the frame has, and an IPv6
// fixed header that is not version 6.
Bytes short_ipv4_header(const Pod& pod, const Addr& src, const Addr& dst) {
  Bytes frame = ethernet(pod.host_mac, pod.pod_mac, kEthIp, ipv4(src, dst, udp(40000, 53)));
  frame[14] = 0x4f;  // IHL 15: a 60-byte header, but only 20 + 8 bytes follow
  return frame;
}

TEST_F(FerryLxc, TruncatedIpv4HeaderIsDroppedAndReported) {
  const Addr a = Addr::parse("10.244.1.5"), remote = Addr::parse("192.0.2.10");
  add_endpoint(pod_a_, a);
  const Bytes frame = short_ipv4_header(pod_a_, a, remote);

  const RunResult r = from_pod(pod_a_, frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_SHOT");
  EXPECT_EQ(drops(FERRY_DROP_INVALID), 1u);
  EXPECT_EQ(counter(uint32_t{FERRY_CTR_DROP_BASE} + FERRY_DROP_INVALID).bytes, frame.size());
  EXPECT_EQ(packets(FERRY_CTR_TO_STACK), 0u);
  EXPECT_EQ(ct_entries(), 0u);
  const auto events = drain_events();
  ASSERT_EQ(events.size(), 1u);
  const ferry_drop_event& ev = events[0];
  EXPECT_EQ(ev.type, uint32_t{FERRY_EVENT_DROP});
  EXPECT_EQ(ev.reason, uint32_t{FERRY_DROP_INVALID});
  EXPECT_EQ(ev.hook, FERRY_HOOK_FROM_POD);
  EXPECT_EQ(ev.ifindex, pod_a_.ifindex);
  EXPECT_EQ(ev.endpoint_id, 0u) << "the sender is not known before the source check";
  EXPECT_EQ(ev.pkt_len, frame.size());
  EXPECT_EQ(ev.family, 0) << "the header was not accepted, so no tuple";
  EXPECT_EQ(ev.source_file, FERRY_SRC_PARSE);
  EXPECT_NE(bpf_source_line(ev.source_file, ev.source_line).find("FERRY_DROP"), std::string::npos)
      << "line " << ev.source_line << " of parse.h is not a drop";
}

TEST_F(FerryLxc, Ipv6HeaderWithAnotherVersionIsInvalid) {
  const Addr a = Addr::parse("fd00:10:244:1::5");
  add_endpoint(pod_a_, a);
  Bytes frame = ip_frame(pod_a_.host_mac, pod_a_.pod_mac, a, Addr::parse("2001:db8::10"),
                         udp(40000, 53));
  frame[14] = 0x40;  // version 4 behind ethertype IPv6

  EXPECT_EQ(tc_act_name(from_pod(pod_a_, frame).retval), "TC_ACT_SHOT");
  EXPECT_EQ(drops(FERRY_DROP_INVALID), 1u);
  const auto events = drain_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, uint32_t{FERRY_DROP_INVALID});
  EXPECT_EQ(events[0].source_file, FERRY_SRC_PARSE);
}

TEST_P(FerryLxcFamily, TruncatedTcpHeaderIsDroppedWithItsAddressesInTheEvent) {
  add_endpoint(pod_a_, f().a);
  const Bytes full = from_a(f().a, f().remote, tcp(40000, 443, kTcpSyn));
  const Bytes frame = truncated(full, full.size() - 1);  // TCP header 19 bytes

  const RunResult r = from_pod(pod_a_, frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_SHOT");
  EXPECT_EQ(drops(FERRY_DROP_INVALID), 1u);
  EXPECT_EQ(ct_entries(), 0u);
  const auto events = drain_events();
  ASSERT_EQ(events.size(), 1u);
  const ferry_drop_event& ev = events[0];
  EXPECT_EQ(ev.reason, uint32_t{FERRY_DROP_INVALID});
  EXPECT_EQ(ev.hook, FERRY_HOOK_FROM_POD);
  EXPECT_EQ(ev.family, f().a.family);
  EXPECT_EQ(ev.proto, IPPROTO_TCP);
  EXPECT_TRUE(addr_eq(ev.saddr, f().a));
  EXPECT_TRUE(addr_eq(ev.daddr, f().remote));
  EXPECT_EQ(ev.sport, 0) << "ports were not readable";
  EXPECT_EQ(ev.source_file, FERRY_SRC_PARSE);
  EXPECT_NE(bpf_source_line(ev.source_file, ev.source_line).find("FERRY_DROP"), std::string::npos);
}

TEST_P(FerryLxcFamily, TruncatedTcpHeaderIsDroppedInToPodToo) {
  const Bytes full = to_a(f().remote, f().a, tcp(443, 40000, kTcpSyn | kTcpAck));
  const Bytes frame = truncated(full, full.size() - 4);

  const RunResult r = to_pod(pod_a_, frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_SHOT");
  EXPECT_EQ(drops(FERRY_DROP_INVALID), 1u);
  EXPECT_EQ(packets(FERRY_CTR_TO_POD), 1u);
  const auto events = drain_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].hook, FERRY_HOOK_TO_POD);
  EXPECT_EQ(events[0].ifindex, pod_a_.ifindex);
  EXPECT_TRUE(addr_eq(events[0].saddr, f().remote));
}

TEST_F(FerryLxc, Ipv4HeaderLengthBelowFiveWordsIsInvalid) {
  const Addr a = Addr::parse("10.244.1.5");
  add_endpoint(pod_a_, a);
  Bytes frame = ip_frame(pod_a_.host_mac, pod_a_.pod_mac, a, Addr::parse("192.0.2.1"), udp(1, 2));
  frame[14] = 0x44;  // IHL 4

  EXPECT_EQ(tc_act_name(from_pod(pod_a_, frame).retval), "TC_ACT_SHOT");
  EXPECT_EQ(drops(FERRY_DROP_INVALID), 1u);
  EXPECT_EQ(drain_events().size(), 1u);
}

TEST_F(FerryLxc, Ipv4OptionsAreSkippedToFindThePorts) {
  const Addr a = Addr::parse("10.244.1.5"), dst = Addr::parse("192.0.2.1");
  add_endpoint(pod_a_, a);
  // IHL 7: 8 bytes of options (NOPs and an end-of-list) before the UDP header.
  const Bytes options{1, 1, 1, 1, 1, 1, 1, 0};
  const Bytes frame = ethernet(pod_a_.host_mac, pod_a_.pod_mac, kEthIp,
                               ipv4(a, dst, udp(5353, 5354), options));

  EXPECT_EQ(tc_act_name(from_pod(pod_a_, frame).retval), "TC_ACT_OK");
  EXPECT_TRUE(ct(a, dst, 5353, 5354, IPPROTO_UDP).has_value());
  EXPECT_EQ(ct_entries(), 1u);
}

// ------------------------------------------------------------------------------------------
// Source check (anti-spoofing)

TEST_P(FerryLxcFamily, UnknownSourceAddressIsDroppedAsSpoofed) {
  add_endpoint(pod_a_, f().a);
  const Bytes frame = from_a(f().stranger, f().remote, udp(40000, 53));

  const RunResult r = from_pod(pod_a_, frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_SHOT");
  EXPECT_EQ(drops(FERRY_DROP_SPOOFED), 1u);
  EXPECT_EQ(drops(FERRY_DROP_INVALID), 0u);
  EXPECT_EQ(ct_entries(), 0u);
  const auto events = drain_events();
  ASSERT_EQ(events.size(), 1u);
  const ferry_drop_event& ev = events[0];
  EXPECT_EQ(ev.reason, uint32_t{FERRY_DROP_SPOOFED});
  EXPECT_EQ(ev.hook, FERRY_HOOK_FROM_POD);
  EXPECT_EQ(ev.ifindex, pod_a_.ifindex);
  EXPECT_EQ(ev.family, f().a.family);
  EXPECT_EQ(ev.proto, IPPROTO_UDP);
  EXPECT_TRUE(addr_eq(ev.saddr, f().stranger));
  EXPECT_TRUE(addr_eq(ev.daddr, f().remote));
  EXPECT_EQ(ntohs(ev.sport), 40000);
  EXPECT_EQ(ntohs(ev.dport), 53);
  EXPECT_EQ(ev.source_file, FERRY_SRC_LXC);
  EXPECT_NE(bpf_source_line(ev.source_file, ev.source_line).find("FERRY_DROP_SPOOFED"),
            std::string::npos);
}

TEST_P(FerryLxcFamily, AnotherPodsAddressOnThisVethIsSpoofed) {
  add_endpoint(pod_a_, f().a);
  add_endpoint(pod_b_, f().b);
  const Bytes frame = from_a(f().b, f().remote, tcp(40000, 80, kTcpSyn));  // B's IP from A

  EXPECT_EQ(tc_act_name(from_pod(pod_a_, frame).retval), "TC_ACT_SHOT");
  EXPECT_EQ(drops(FERRY_DROP_SPOOFED), 1u);
  EXPECT_EQ(ct_entries(), 0u);
}

TEST_F(FerryLxc, Ipv6LinkLocalAndUnspecifiedSourcesPassUnchecked) {
  add_endpoint(pod_a_, Addr::parse("fd00:10:244:1::5"));
  const MacAddr all_routers{0x33, 0x33, 0, 0, 0, 2};
  // Router solicitation from fe80::, and a DAD neighbour solicitation from ::.
  const Bytes rs = ethernet(all_routers, pod_a_.pod_mac, kEthIpv6,
                            ipv6(Addr::parse("fe80::858:aff:fef4:105"), Addr::parse("ff02::2"),
                                 icmp_other(true, 133, 0, 8)));
  const Bytes dad = ethernet(all_routers, pod_a_.pod_mac, kEthIpv6,
                             ipv6(Addr::parse("::"), Addr::parse("ff02::1:ff00:5"),
                                  icmp_other(true, 135, 0, 20)));

  const RunResult r1 = from_pod(pod_a_, rs);
  const RunResult r2 = from_pod(pod_a_, dad);

  EXPECT_EQ(tc_act_name(r1.retval), "TC_ACT_OK");
  EXPECT_EQ(tc_act_name(r2.retval), "TC_ACT_OK");
  EXPECT_EQ(r1.out, rs);
  EXPECT_EQ(r2.out, dad);
  EXPECT_EQ(drops(FERRY_DROP_SPOOFED), 0u);
  EXPECT_EQ(packets(FERRY_CTR_TO_STACK), 2u);
  EXPECT_EQ(packets(FERRY_CTR_CT_RELATED), 2u) << "NDP is control traffic: no flow entry";
  EXPECT_EQ(ct_entries(), 0u);
  EXPECT_TRUE(drain_events().empty());
}

TEST_F(FerryLxc, Ipv6LinkLocalSourceToAPeerIsTracked) {
  // A link-local flow (no endpoint entry needed) is tracked like any other.
  const Addr ll = Addr::parse("fe80::1"), peer = Addr::parse("fe80::2");
  const Bytes frame = ethernet(pod_a_.host_mac, pod_a_.pod_mac, kEthIpv6,
                               ipv6(ll, peer, udp(546, 547)));

  EXPECT_EQ(tc_act_name(from_pod(pod_a_, frame).retval), "TC_ACT_OK");
  const auto entry = ct(ll, peer, 546, 547, IPPROTO_UDP);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->src_endpoint, 0u) << "an unchecked source belongs to no endpoint";
}

TEST_F(FerryLxc, Ipv4UnspecifiedSourcePassesUnchecked) {
  // DHCP discover: 0.0.0.0:68 -> 255.255.255.255:67, no endpoint entry for the pod yet.
  const MacAddr broadcast{0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  const Bytes frame = ethernet(broadcast, pod_a_.pod_mac, kEthIp,
                               ipv4(Addr::parse("0.0.0.0"), Addr::parse("255.255.255.255"),
                                    udp(68, 67, 240)));

  const RunResult r = from_pod(pod_a_, frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_OK");
  EXPECT_EQ(r.out, frame);
  EXPECT_EQ(drops(FERRY_DROP_SPOOFED), 0u);
  EXPECT_EQ(packets(FERRY_CTR_TO_STACK), 1u);
}

// ------------------------------------------------------------------------------------------
// Forwarding

TEST_P(FerryLxcFamily, UnknownDestinationGoesToTheStackUnchanged) {
  add_endpoint(pod_a_, f().a);
  const Bytes frame = from_a(f().a, f().remote, tcp(40000, 443, kTcpSyn));

  const RunResult r = from_pod(pod_a_, frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_OK");
  EXPECT_EQ(r.out, frame);
  EXPECT_EQ(packets(FERRY_CTR_TO_STACK), 1u);
  EXPECT_EQ(counter(FERRY_CTR_TO_STACK).bytes, frame.size());
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_LOCAL), 0u);
  EXPECT_EQ(packets(FERRY_CTR_FROM_POD), 1u);
}

TEST_P(FerryLxcFamily, LocalProgrammedEndpointIsRedirectedWithRewrittenMacs) {
  add_endpoint(pod_a_, f().a);
  add_endpoint(pod_b_, f().b);
  // Pod A addresses the gateway MAC; the datapath must put B's MAC and the gateway's in.
  const Bytes frame = from_a(f().a, f().b, tcp(40000, 8080, kTcpSyn, 10));

  const RunResult r = from_pod(pod_a_, frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_REDIRECT");
  ASSERT_EQ(r.out.size(), frame.size());
  MacAddr dst{}, src{};
  std::copy(r.out.begin(), r.out.begin() + 6, dst.begin());
  std::copy(r.out.begin() + 6, r.out.begin() + 12, src.begin());
  EXPECT_EQ(dst, pod_b_.pod_mac);
  EXPECT_EQ(src, pod_b_.host_mac);
  EXPECT_EQ(payload_of(r.out), payload_of(frame)) << "only the MACs change";
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_LOCAL), 1u);
  EXPECT_EQ(packets(FERRY_CTR_TO_STACK), 0u);
  const auto entry = ct(f().a, f().b, 40000, 8080, IPPROTO_TCP);
  ASSERT_TRUE(entry.has_value());
  EXPECT_EQ(entry->src_endpoint, pod_a_.endpoint_id);
}

TEST_P(FerryLxcFamily, EndpointNotYetProgrammedIsNotRedirected) {
  add_endpoint(pod_a_, f().a);
  add_endpoint(pod_b_, f().b, /*flags=*/0);  // the agent has not finished with B
  const Bytes frame = from_a(f().a, f().b, udp(40000, 53));

  const RunResult r = from_pod(pod_a_, frame);

  EXPECT_EQ(tc_act_name(r.retval), "TC_ACT_OK");
  EXPECT_EQ(r.out, frame);
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_LOCAL), 0u);
  EXPECT_EQ(packets(FERRY_CTR_TO_STACK), 1u);
}

// ------------------------------------------------------------------------------------------
// Conntrack

TEST_P(FerryLxcFamily, TcpHandshakeWithARemotePeerThroughToPod) {
  add_endpoint(pod_a_, f().a);
  const Bytes syn = from_a(f().a, f().remote, tcp(40000, 443, kTcpSyn));
  const Bytes synack = to_a(f().remote, f().a, tcp(443, 40000, kTcpSyn | kTcpAck));
  const Bytes ack = from_a(f().a, f().remote, tcp(40000, 443, kTcpAck, 100));
  const Bytes fin = from_a(f().a, f().remote, tcp(40000, 443, kTcpFin | kTcpAck));

  // SYN: a NEW entry with the short SYN lifetime, owned by pod A.
  EXPECT_EQ(tc_act_name(from_pod(pod_a_, syn).retval), "TC_ACT_OK");
  auto e = ct(f().a, f().remote, 40000, 443, IPPROTO_TCP);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->state, FERRY_CT_NEW);
  EXPECT_EQ(e->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_TCP_SYN});
  EXPECT_EQ(e->src_endpoint, pod_a_.endpoint_id);
  EXPECT_EQ(e->packets_fwd, 1u);
  EXPECT_EQ(e->bytes_fwd, syn.size());
  EXPECT_EQ(e->packets_rev, 0u);
  EXPECT_EQ(e->tcp_flags_fwd, kTcpSyn);
  EXPECT_GT(e->created_ns, 0u);
  EXPECT_EQ(e->last_seen_ns, e->created_ns);
  EXPECT_EQ(e->flags, 0) << "nothing is cached in ct flags yet";

  // SYN-ACK arrives for A through to-pod: the reverse tuple matches, the flow is ESTABLISHED.
  EXPECT_EQ(tc_act_name(to_pod(pod_a_, synack).retval), "TC_ACT_OK");
  e = ct(f().a, f().remote, 40000, 443, IPPROTO_TCP);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->state, FERRY_CT_ESTABLISHED);
  EXPECT_EQ(e->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_TCP});
  EXPECT_EQ(e->packets_rev, 1u);
  EXPECT_EQ(e->bytes_rev, synack.size());
  EXPECT_EQ(e->tcp_flags_rev, kTcpSyn | kTcpAck);
  EXPECT_GE(e->last_seen_ns, e->created_ns);
  EXPECT_FALSE(ct(f().remote, f().a, 443, 40000, IPPROTO_TCP).has_value())
      << "the reply must not create an entry of its own";

  // ACK with data: counted forward.
  EXPECT_EQ(tc_act_name(from_pod(pod_a_, ack).retval), "TC_ACT_OK");
  e = ct(f().a, f().remote, 40000, 443, IPPROTO_TCP);
  EXPECT_EQ(e->packets_fwd, 2u);
  EXPECT_EQ(e->bytes_fwd, syn.size() + ack.size());
  EXPECT_EQ(e->state, FERRY_CT_ESTABLISHED);

  // FIN: CLOSING with the close timeout.
  EXPECT_EQ(tc_act_name(from_pod(pod_a_, fin).retval), "TC_ACT_OK");
  e = ct(f().a, f().remote, 40000, 443, IPPROTO_TCP);
  EXPECT_EQ(e->state, FERRY_CT_CLOSING);
  EXPECT_EQ(e->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_TCP_CLOSE});
  EXPECT_EQ(e->packets_fwd, 3u);
  EXPECT_EQ(e->tcp_flags_fwd, kTcpSyn | kTcpAck | kTcpFin);

  EXPECT_EQ(ct_entries(), 1u);
  EXPECT_EQ(packets(FERRY_CTR_CT_NEW), 1u);
  EXPECT_EQ(packets(FERRY_CTR_CT_REPLY), 1u);
  EXPECT_EQ(packets(FERRY_CTR_CT_ESTABLISHED), 2u);
  EXPECT_EQ(packets(FERRY_CTR_TO_POD), 1u);
  EXPECT_EQ(packets(FERRY_CTR_FROM_POD), 3u);
}

TEST_P(FerryLxcFamily, TcpBetweenLocalPodsRepliesThroughTheOtherPodsFromPod) {
  add_endpoint(pod_a_, f().a);
  add_endpoint(pod_b_, f().b);
  const Bytes syn = from_a(f().a, f().b, tcp(40000, 8080, kTcpSyn));
  const Bytes synack = ip_frame(pod_b_.host_mac, pod_b_.pod_mac, f().b, f().a,
                                tcp(8080, 40000, kTcpSyn | kTcpAck));
  const Bytes rst = ip_frame(pod_b_.host_mac, pod_b_.pod_mac, f().b, f().a,
                             tcp(8080, 40000, kTcpRst));

  EXPECT_EQ(tc_act_name(from_pod(pod_a_, syn).retval), "TC_ACT_REDIRECT");
  EXPECT_EQ(tc_act_name(from_pod(pod_b_, synack).retval), "TC_ACT_REDIRECT");
  auto e = ct(f().a, f().b, 40000, 8080, IPPROTO_TCP);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->state, FERRY_CT_ESTABLISHED);
  EXPECT_EQ(e->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_TCP});
  EXPECT_EQ(e->src_endpoint, pod_a_.endpoint_id) << "the opener owns the flow";
  EXPECT_EQ(e->packets_fwd, 1u);
  EXPECT_EQ(e->packets_rev, 1u);
  EXPECT_EQ(e->bytes_rev, synack.size());

  EXPECT_EQ(tc_act_name(from_pod(pod_b_, rst).retval), "TC_ACT_REDIRECT");
  e = ct(f().a, f().b, 40000, 8080, IPPROTO_TCP);
  EXPECT_EQ(e->state, FERRY_CT_CLOSING) << "RST from the reply side closes too";
  EXPECT_EQ(e->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_TCP_CLOSE});
  EXPECT_EQ(e->tcp_flags_rev, kTcpSyn | kTcpAck | kTcpRst);
  EXPECT_EQ(packets(FERRY_CTR_REDIRECT_LOCAL), 3u);
  EXPECT_EQ(ct_entries(), 1u);
}

TEST_P(FerryLxcFamily, SynOnAClosingFlowStartsItAgain) {
  add_endpoint(pod_a_, f().a);
  from_pod(pod_a_, from_a(f().a, f().remote, tcp(40000, 443, kTcpSyn)));
  to_pod(pod_a_, to_a(f().remote, f().a, tcp(443, 40000, kTcpSyn | kTcpAck)));
  from_pod(pod_a_, from_a(f().a, f().remote, tcp(40000, 443, kTcpRst)));
  ASSERT_EQ(ct(f().a, f().remote, 40000, 443, IPPROTO_TCP)->state, FERRY_CT_CLOSING);

  from_pod(pod_a_, from_a(f().a, f().remote, tcp(40000, 443, kTcpSyn)));

  const auto e = ct(f().a, f().remote, 40000, 443, IPPROTO_TCP);
  EXPECT_EQ(e->state, FERRY_CT_NEW);
  EXPECT_EQ(e->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_TCP_SYN});
  EXPECT_EQ(e->tcp_flags_fwd, kTcpSyn);
  EXPECT_EQ(e->tcp_flags_rev, 0);
}

TEST_P(FerryLxcFamily, UdpFlowAndItsReply) {
  add_endpoint(pod_a_, f().a);
  const Bytes query = from_a(f().a, f().remote, udp(40001, 53, 30));
  const Bytes answer = to_a(f().remote, f().a, udp(53, 40001, 90));

  EXPECT_EQ(tc_act_name(from_pod(pod_a_, query).retval), "TC_ACT_OK");
  auto e = ct(f().a, f().remote, 40001, 53, IPPROTO_UDP);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->state, FERRY_CT_NEW);
  EXPECT_EQ(e->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_UDP});

  EXPECT_EQ(tc_act_name(to_pod(pod_a_, answer).retval), "TC_ACT_OK");
  e = ct(f().a, f().remote, 40001, 53, IPPROTO_UDP);
  EXPECT_EQ(e->state, FERRY_CT_ESTABLISHED);
  EXPECT_EQ(e->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_UDP});
  EXPECT_EQ(e->packets_fwd, 1u);
  EXPECT_EQ(e->bytes_fwd, query.size());
  EXPECT_EQ(e->packets_rev, 1u);
  EXPECT_EQ(e->bytes_rev, answer.size());
  EXPECT_EQ(e->tcp_flags_fwd, 0);
  EXPECT_EQ(ct_entries(), 1u);
}

TEST_P(FerryLxcFamily, SctpPortsAreTracked) {
  add_endpoint(pod_a_, f().a);
  EXPECT_EQ(tc_act_name(from_pod(pod_a_, from_a(f().a, f().remote, sctp(5000, 38412, 16))).retval),
            "TC_ACT_OK");
  EXPECT_EQ(tc_act_name(to_pod(pod_a_, to_a(f().remote, f().a, sctp(38412, 5000, 16))).retval),
            "TC_ACT_OK");

  const auto e = ct(f().a, f().remote, 5000, 38412, IPPROTO_SCTP);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->state, FERRY_CT_ESTABLISHED);
  EXPECT_EQ(e->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_OTHER});
  EXPECT_EQ(e->packets_rev, 1u);
  EXPECT_EQ(ct_entries(), 1u);
}

TEST_P(FerryLxcFamily, TruncatedSctpHeaderIsInvalid) {
  add_endpoint(pod_a_, f().a);
  const Bytes full = from_a(f().a, f().remote, sctp(5000, 38412));
  EXPECT_EQ(tc_act_name(from_pod(pod_a_, truncated(full, full.size() - 1)).retval), "TC_ACT_SHOT");
  EXPECT_EQ(drops(FERRY_DROP_INVALID), 1u);
}

TEST_P(FerryLxcFamily, EchoIdentifierIsThePortAndTheReplyMatches) {
  add_endpoint(pod_a_, f().a);
  const Bytes request = from_a(f().a, f().remote, echo(false, 0x1234));
  const Bytes reply = to_a(f().remote, f().a, echo(true, 0x1234));
  const Bytes other_id = to_a(f().remote, f().a, echo(true, 0x9999));

  EXPECT_EQ(tc_act_name(from_pod(pod_a_, request).retval), "TC_ACT_OK");
  auto e = ct(f().a, f().remote, 0x1234, 0x1234, icmp_proto());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->state, FERRY_CT_NEW);
  EXPECT_EQ(e->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_ICMP});

  EXPECT_EQ(tc_act_name(to_pod(pod_a_, reply).retval), "TC_ACT_OK");
  e = ct(f().a, f().remote, 0x1234, 0x1234, icmp_proto());
  EXPECT_EQ(e->state, FERRY_CT_ESTABLISHED);
  EXPECT_EQ(e->packets_rev, 1u);
  EXPECT_EQ(packets(FERRY_CTR_CT_REPLY), 1u);

  // A reply with another identifier is another flow.
  to_pod(pod_a_, other_id);
  EXPECT_TRUE(ct(f().remote, f().a, 0x9999, 0x9999, icmp_proto()).has_value());
  EXPECT_EQ(ct_entries(), 2u);
}

TEST_P(FerryLxcFamily, IcmpErrorsPassAsRelatedWithoutAnEntry) {
  add_endpoint(pod_a_, f().a);
  // Destination unreachable (v4: type 3, v6: type 1) carrying the start of the failed packet.
  const L4 unreachable = icmp_other(f().v6(), f().v6() ? 1 : 3, f().v6() ? 4 : 3, 48);

  EXPECT_EQ(tc_act_name(to_pod(pod_a_, to_a(f().remote, f().a, unreachable)).retval), "TC_ACT_OK");
  EXPECT_EQ(tc_act_name(from_pod(pod_a_, from_a(f().a, f().remote, unreachable)).retval),
            "TC_ACT_OK");

  EXPECT_EQ(ct_entries(), 0u);
  EXPECT_EQ(packets(FERRY_CTR_CT_RELATED), 2u);
  EXPECT_EQ(packets(FERRY_CTR_CT_NEW), 0u);
}

TEST_P(FerryLxcFamily, OtherProtocolsAreTrackedByAddressesOnly) {
  add_endpoint(pod_a_, f().a);
  EXPECT_EQ(tc_act_name(from_pod(pod_a_, from_a(f().a, f().remote, raw(47, 24))).retval),
            "TC_ACT_OK");  // GRE
  const auto e = ct(f().a, f().remote, 0, 0, 47);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_OTHER});
}

TEST_P(FerryLxcFamily, ToPodCreatesTheFlowOfARemoteSender) {
  // Traffic a remote client opens towards pod A is first seen by to-pod.
  const Bytes syn = to_a(f().remote, f().a, tcp(51000, 80, kTcpSyn));
  const Bytes synack = from_a(f().a, f().remote, tcp(80, 51000, kTcpSyn | kTcpAck));
  add_endpoint(pod_a_, f().a);

  EXPECT_EQ(tc_act_name(to_pod(pod_a_, syn).retval), "TC_ACT_OK");
  auto e = ct(f().remote, f().a, 51000, 80, IPPROTO_TCP);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->state, FERRY_CT_NEW);
  EXPECT_EQ(e->src_endpoint, 0u) << "the opener is not a local pod";

  EXPECT_EQ(tc_act_name(from_pod(pod_a_, synack).retval), "TC_ACT_OK");
  e = ct(f().remote, f().a, 51000, 80, IPPROTO_TCP);
  EXPECT_EQ(e->state, FERRY_CT_ESTABLISHED);
  EXPECT_EQ(e->packets_rev, 1u);
  EXPECT_EQ(ct_entries(), 1u);
}

INSTANTIATE_TEST_SUITE_P(Families, FerryLxcFamily, ::testing::Values(ipv4_family(), ipv6_family()),
                         family_name);

// ------------------------------------------------------------------------------------------
// Events when the ring buffer is full

class FerryLxcSmallRing : public DatapathTest {
 protected:
  LoadedDatapath::Sizes sizes() const override {
    LoadedDatapath::Sizes s;
    s.events_bytes = static_cast<uint32_t>(sysconf(_SC_PAGESIZE));  // the smallest ring
    return s;
  }
};

TEST_F(FerryLxcSmallRing, DropsAreCountedWhenEventsAreLost) {
  const Bytes frame =
      short_ipv4_header(pod_a_, Addr::parse("10.244.1.5"), Addr::parse("192.0.2.1"));
  const uint32_t sent = 200;  // far more events than one page holds; nobody consumes meanwhile

  EXPECT_EQ(tc_act_name(from_pod(pod_a_, frame, sent).retval), "TC_ACT_SHOT");

  EXPECT_EQ(drops(FERRY_DROP_INVALID), sent) << "every drop is counted";
  const uint64_t delivered = drain_events().size();
  const uint64_t lost = packets(FERRY_CTR_EVENT_LOST);
  EXPECT_GT(delivered, 0u);
  EXPECT_GT(lost, 0u);
  EXPECT_EQ(delivered + lost, sent);
}

}  // namespace
}  // namespace ferry::bpftest
