// NetworkPolicy in ferry_lxc (bpf/lib/policy.h) under BPF_PROG_TEST_RUN: the peer's identity from
// the ipcache (longest prefix), the four policy-map lookups (exact port, port-range prefixes,
// protocol, any protocol, any peer), which endpoint and direction each hook judges, drops with
// counter and event, replies, revision bumps and the policy switch. Each test: set up the maps,
// send crafted frames, check verdicts, conntrack and events.
#include <arpa/inet.h>
#include <linux/pkt_cls.h>
#include <sys/socket.h>

#include <string>

#include "datapath.h"
#include "policy/policy.h"

namespace ferry::bpftest {
namespace {

// Two local pods (a, b), a pod of another node (remote: its own /32 in the ipcache), another
// address of the cluster's pod range (other: only the range's prefix), a world address.
struct Family {
  std::string name;
  Addr a, b, remote, other, world;
  std::string pod_range, a_host, b_host, remote_host, any;  // ipcache prefixes
  bool v6() const { return a.family == AF_INET6; }
};

void PrintTo(const Family& family, std::ostream* os) { *os << family.name; }

Family ipv4_family() {
  return {"ipv4",          Addr::parse("10.244.1.5"), Addr::parse("10.244.1.6"), Addr::parse("10.244.2.7"),
          Addr::parse("10.244.2.9"), Addr::parse("192.0.2.1"), "10.244.0.0/16", "10.244.1.5/32",
          "10.244.1.6/32", "10.244.2.7/32", "0.0.0.0/0"};
}
Family ipv6_family() {
  return {"ipv6",
          Addr::parse("fd00:10:244:1::5"),
          Addr::parse("fd00:10:244:1::6"),
          Addr::parse("fd00:10:244:2::7"),
          Addr::parse("fd00:10:244:2::9"),
          Addr::parse("2001:db8::1"),
          "fd00:10:244::/48",
          "fd00:10:244:1::5/128",
          "fd00:10:244:1::6/128",
          "fd00:10:244:2::7/128",
          "::/0"};
}

std::string family_name(const ::testing::TestParamInfo<Family>& info) { return info.param.name; }

// Identities as the compiler would hand them out.
constexpr uint32_t kIdA = 256, kIdB = 257, kIdRemote = 258, kIdPodRange = 300;
constexpr uint32_t kWorld = FERRY_IDENTITY_WORLD, kAny = FERRY_IDENTITY_ANY;
constexpr uint8_t kIn = FERRY_DIR_INGRESS, kEg = FERRY_DIR_EGRESS;
constexpr uint8_t kTcp = IPPROTO_TCP, kUdp = IPPROTO_UDP, kSctp = IPPROTO_SCTP;
const MacAddr kLocalVtep{0x0e, 0xfe, 172, 18, 0, 1};
const MacAddr kRemoteVtep{0x0e, 0xfe, 172, 18, 0, 2};

class FerryPolicy : public DatapathTest, public ::testing::WithParamInterface<Family> {
 protected:
  void SetUp() override {
    DatapathTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    for (const Family& fam : {ipv4_family(), ipv6_family()}) {
      add_endpoint(pod_a_, fam.a);
      add_endpoint(pod_b_, fam.b);
      add_ipcache(fam.any, kWorld);
      add_ipcache(fam.pod_range, kIdPodRange);
      add_ipcache(fam.a_host, kIdA);
      add_ipcache(fam.b_host, kIdB);
      add_ipcache(fam.remote_host, kIdRemote);
    }
    set_policy(true, 1);
  }

  const Family& f() const { return GetParam(); }
  uint16_t fresh_port() { return next_port_++; }

  // Pod a / pod b sends (from-pod on its veth).
  int from_a(const Addr& dst, const L4& l4) {
    return from_pod(pod_a_, ip_frame(pod_a_.host_mac, pod_a_.pod_mac, f().a, dst, l4)).retval;
  }
  int from_b(const Addr& dst, const L4& l4) {
    return from_pod(pod_b_, ip_frame(pod_b_.host_mac, pod_b_.pod_mac, f().b, dst, l4)).retval;
  }
  // The bridge delivers to pod b (to-pod), another node's packet arrives for pod b (from-overlay).
  int to_b(const Addr& src, const L4& l4) {
    return to_pod(pod_b_, ip_frame(pod_b_.pod_mac, pod_b_.host_mac, src, f().b, l4)).retval;
  }
  int overlay_to_b(const Addr& src, const L4& l4) {
    return from_overlay(ip_frame(kLocalVtep, kRemoteVtep, src, f().b, l4)).retval;
  }
  // A new TCP connection to pod b's port `port` from `src` through to-pod: allowed?
  bool b_accepts(const Addr& src, uint8_t proto, uint16_t port) {
    L4 l4 = proto == kTcp ? tcp(fresh_port(), port, kTcpSyn) : proto == kUdp ? udp(fresh_port(), port) : sctp(fresh_port(), port);
    const int verdict = to_b(src, l4);
    EXPECT_TRUE(verdict == TC_ACT_OK || verdict == TC_ACT_SHOT) << tc_act_name(verdict);
    return verdict == TC_ACT_OK;
  }
  L4 echo(uint16_t id) const { return icmp_echo(f().v6(), false, id); }

  // The one policy drop event since the last call; checks what every policy event must say.
  ferry_drop_event policy_event(uint8_t hook, uint32_t endpoint_id, uint8_t direction) {
    const auto events = drain_events();
    EXPECT_EQ(events.size(), 1u);
    if (events.empty()) return {};
    const ferry_drop_event& ev = events.back();
    EXPECT_EQ(ev.reason, uint32_t{FERRY_DROP_POLICY});
    EXPECT_EQ(ev.hook, hook);
    EXPECT_EQ(ev.endpoint_id, endpoint_id);
    EXPECT_EQ(ev.direction, direction);
    EXPECT_EQ(ev.source_file, FERRY_SRC_POLICY);
    EXPECT_NE(bpf_source_line(ev.source_file, ev.source_line).find("FERRY_DROP_POLICY"), std::string::npos)
        << "line " << ev.source_line << " of policy.h is not the policy drop";
    return ev;
  }

  uint16_t next_port_ = 40000;
};

// ------------------------------------------------------------------------------------------
// What is looked up

TEST_P(FerryPolicy, PeerIdentityIsTheLongestIpcachePrefix) {
  allow(pod_b_.endpoint_id, kIn, kIdRemote, kTcp, 80, 80);
  // remote has its own /32 (/128) inside the pod range: that prefix wins.
  EXPECT_TRUE(b_accepts(f().remote, kTcp, 80));
  EXPECT_FALSE(b_accepts(f().other, kTcp, 80)) << "only the pod range covers it";
  EXPECT_FALSE(b_accepts(f().world, kTcp, 80)) << "only 0/0 covers it";

  allow(pod_b_.endpoint_id, kIn, kIdPodRange, kTcp, 80, 80);
  EXPECT_TRUE(b_accepts(f().other, kTcp, 80));
  EXPECT_FALSE(b_accepts(f().world, kTcp, 80));
  allow(pod_b_.endpoint_id, kIn, kWorld, kTcp, 80, 80);
  EXPECT_TRUE(b_accepts(f().world, kTcp, 80));
}

TEST_P(FerryPolicy, AnAddressNoPrefixCoversIsTheWorld) {
  // Without 0/0 (::/0) in the ipcache a miss still has an identity: world.
  ferry_ipcache_key key{};
  key.prefixlen = 32;
  key.family = f().a.family;
  ASSERT_EQ(bpf_map_delete_elem(bpf_map__fd(skel()->maps.ferry_ipc_v1), &key), 0);
  allow(pod_b_.endpoint_id, kIn, kWorld, kTcp, 80, 80);
  EXPECT_TRUE(b_accepts(f().world, kTcp, 80));
  EXPECT_FALSE(b_accepts(f().remote, kTcp, 80));
}

TEST_P(FerryPolicy, PortRangesMatchExactlyAtTheirEdges) {
  ASSERT_GT(policy::port_range_prefixes(1000, 2000).size(), 3u) << "a range of several prefixes";
  allow(pod_b_.endpoint_id, kIn, kAny, kTcp, 80, 80);
  allow(pod_b_.endpoint_id, kIn, kAny, kTcp, 1000, 2000);
  allow(pod_b_.endpoint_id, kIn, kAny, kTcp, 65000, 65535);
  allow(pod_b_.endpoint_id, kIn, kAny, kTcp, 0, 0);
  const std::pair<uint16_t, bool> cases[] = {
      {0, true},     {1, false},     {79, false},   {80, true},    {81, false},   {999, false},
      {1000, true},  {1023, true},   {1024, true},  {1536, true},  {1999, true},  {2000, true},
      {2001, false}, {2048, false},  {64999, false}, {65000, true}, {65535, true}};
  for (const auto& [port, allowed] : cases) EXPECT_EQ(b_accepts(f().remote, kTcp, port), allowed) << "port " << port;
}

TEST_P(FerryPolicy, ProtocolMustMatch) {
  allow(pod_b_.endpoint_id, kIn, kAny, kTcp, 80, 80);
  allow(pod_b_.endpoint_id, kIn, kAny, kUdp, 53, 53);
  EXPECT_TRUE(b_accepts(f().remote, kTcp, 80));
  EXPECT_FALSE(b_accepts(f().remote, kUdp, 80));
  EXPECT_FALSE(b_accepts(f().remote, kSctp, 80));
  EXPECT_TRUE(b_accepts(f().remote, kUdp, 53));
  EXPECT_FALSE(b_accepts(f().remote, kTcp, 53));
  EXPECT_EQ(to_b(f().remote, echo(7)), TC_ACT_SHOT) << "ICMP echo has no entry";
}

TEST_P(FerryPolicy, AnyProtocolEntryAllowsEveryProtocolAndPortOfItsPeer) {
  allow(pod_b_.endpoint_id, kIn, kIdRemote, 0);
  EXPECT_TRUE(b_accepts(f().remote, kTcp, 1));
  EXPECT_TRUE(b_accepts(f().remote, kUdp, 9999));
  EXPECT_TRUE(b_accepts(f().remote, kSctp, 5000));
  EXPECT_EQ(to_b(f().remote, echo(7)), TC_ACT_OK);
  EXPECT_FALSE(b_accepts(f().other, kTcp, 1)) << "another peer";
}

TEST_P(FerryPolicy, AnyPeerEntryAllowsEveryPeer) {
  allow(pod_b_.endpoint_id, kIn, kAny, kTcp, 443, 443);
  allow(pod_a_.endpoint_id, kEg, kAny, 0);  // a is local: its egress is asked too
  for (const Addr& peer : {f().remote, f().other, f().world, f().a}) {
    EXPECT_TRUE(b_accepts(peer, kTcp, 443)) << peer.str();
    EXPECT_FALSE(b_accepts(peer, kTcp, 444)) << peer.str();
  }
}

// ------------------------------------------------------------------------------------------
// Who is judged where

TEST_P(FerryPolicy, FromPodJudgesTheSendersEgress) {
  allow(pod_a_.endpoint_id, kEg, kWorld, kTcp, 443, 443);
  allow(pod_b_.endpoint_id, kIn, kAny, 0);  // b's ingress is not isolated

  EXPECT_EQ(from_a(f().world, tcp(fresh_port(), 443, kTcpSyn)), TC_ACT_OK);
  const uint16_t port = fresh_port();
  EXPECT_EQ(from_a(f().world, tcp(port, 80, kTcpSyn)), TC_ACT_SHOT);
  EXPECT_EQ(drops(FERRY_DROP_POLICY), 1u);
  const ferry_drop_event ev = policy_event(FERRY_HOOK_FROM_POD, pod_a_.endpoint_id, kEg);
  EXPECT_TRUE(std::equal(f().a.bytes.begin(), f().a.bytes.end(), ev.saddr));
  EXPECT_TRUE(std::equal(f().world.bytes.begin(), f().world.bytes.end(), ev.daddr));
  EXPECT_EQ(ntohs(ev.dport), 80);
  EXPECT_FALSE(ct(f().a, f().world, port, 80, kTcp)) << "a denied flow leaves no entry";

  // Pod b is not the world: a's egress denies it too, before b's ingress is asked.
  EXPECT_EQ(from_a(f().b, tcp(fresh_port(), 443, kTcpSyn)), TC_ACT_SHOT);
  policy_event(FERRY_HOOK_FROM_POD, pod_a_.endpoint_id, kEg);
  EXPECT_EQ(drops(FERRY_DROP_POLICY), 2u);
}

TEST_P(FerryPolicy, FromPodJudgesALocalDestinationsIngressBeforeTheRedirect) {
  allow(pod_a_.endpoint_id, kEg, kAny, 0);  // a's egress is not isolated
  allow(pod_b_.endpoint_id, kIn, kIdRemote, 0);
  EXPECT_EQ(from_a(f().b, tcp(fresh_port(), 80, kTcpSyn)), TC_ACT_SHOT) << "the redirect skips b's to-pod";
  policy_event(FERRY_HOOK_FROM_POD, pod_b_.endpoint_id, kIn);

  allow(pod_b_.endpoint_id, kIn, kIdA, kTcp, 80, 80);
  const uint16_t port = fresh_port();
  EXPECT_EQ(from_a(f().b, tcp(port, 80, kTcpSyn)), TC_ACT_REDIRECT);
  ASSERT_TRUE(ct(f().a, f().b, port, 80, kTcp));
  EXPECT_EQ(ct(f().a, f().b, port, 80, kTcp)->policy_rev, 1u) << "the verdict is cached with the revision";
}

TEST_P(FerryPolicy, ToPodAndFromOverlayJudgeTheDestinationsIngress) {
  allow(pod_b_.endpoint_id, kIn, kIdRemote, kTcp, 80, 80);
  EXPECT_EQ(to_b(f().remote, tcp(fresh_port(), 80, kTcpSyn)), TC_ACT_OK);
  EXPECT_EQ(to_b(f().other, tcp(fresh_port(), 80, kTcpSyn)), TC_ACT_SHOT);
  policy_event(FERRY_HOOK_TO_POD, pod_b_.endpoint_id, kIn);

  EXPECT_EQ(overlay_to_b(f().remote, tcp(fresh_port(), 80, kTcpSyn)), TC_ACT_REDIRECT);
  EXPECT_EQ(overlay_to_b(f().other, tcp(fresh_port(), 80, kTcpSyn)), TC_ACT_SHOT);
  policy_event(FERRY_HOOK_FROM_OVERLAY, pod_b_.endpoint_id, kIn);
  EXPECT_EQ(drops(FERRY_DROP_POLICY), 2u);
}

TEST_P(FerryPolicy, AnEndpointWithoutEntriesDeniesBothDirections) {
  // b has no entry at all (its policy not written yet): closed, not open.
  EXPECT_EQ(to_b(f().remote, tcp(fresh_port(), 80, kTcpSyn)), TC_ACT_SHOT);
  policy_event(FERRY_HOOK_TO_POD, pod_b_.endpoint_id, kIn);
  EXPECT_EQ(from_b(f().world, udp(fresh_port(), 53)), TC_ACT_SHOT);
  policy_event(FERRY_HOOK_FROM_POD, pod_b_.endpoint_id, kEg);
}

// ------------------------------------------------------------------------------------------
// Flows: replies, revisions, the switch

TEST_P(FerryPolicy, RepliesPassAsPartOfTheFlowTheyAnswer) {
  // a may open b:80; nothing else: a's ingress and b's egress are isolated with no entries.
  allow(pod_a_.endpoint_id, kEg, kIdB, kTcp, 80, 80);
  allow(pod_b_.endpoint_id, kIn, kIdA, kTcp, 80, 80);
  const uint16_t port = fresh_port();
  ASSERT_EQ(from_a(f().b, tcp(port, 80, kTcpSyn)), TC_ACT_REDIRECT);
  EXPECT_EQ(from_b(f().a, tcp(80, port, kTcpSyn | kTcpAck)), TC_ACT_REDIRECT) << "the reply";
  EXPECT_TRUE(drain_events().empty());

  EXPECT_EQ(from_b(f().a, tcp(fresh_port(), 80, kTcpSyn)), TC_ACT_SHOT) << "b opening a flow to a";
  policy_event(FERRY_HOOK_FROM_POD, pod_b_.endpoint_id, kEg);

  // After a policy change the reply is judged as the flow it belongs to (a -> b:80): allowed.
  set_policy(true, 2);
  EXPECT_EQ(from_b(f().a, tcp(80, port, kTcpAck)), TC_ACT_REDIRECT);
  EXPECT_EQ(ct(f().a, f().b, port, 80, kTcp)->policy_rev, 2u);
}

TEST_P(FerryPolicy, ARevisionBumpKeepsAllowedFlowsAndStopsRevokedOnes) {
  allow(pod_a_.endpoint_id, kEg, kAny, 0);
  allow(pod_a_.endpoint_id, kIn, kAny, 0);
  allow(pod_b_.endpoint_id, kEg, kAny, 0);
  allow(pod_b_.endpoint_id, kIn, kIdA, kTcp, 80, 80);
  const uint16_t port = fresh_port();
  ASSERT_EQ(from_a(f().b, tcp(port, 80, kTcpSyn)), TC_ACT_REDIRECT);
  ASSERT_EQ(from_b(f().a, tcp(80, port, kTcpSyn | kTcpAck)), TC_ACT_REDIRECT);

  // An unrelated change: the flow is judged again at its next packet and kept.
  allow(pod_b_.endpoint_id, kIn, kIdRemote, kUdp, 53, 53);
  set_policy(true, 2);
  EXPECT_EQ(from_a(f().b, tcp(port, 80, kTcpAck)), TC_ACT_REDIRECT);
  ASSERT_TRUE(ct(f().a, f().b, port, 80, kTcp));
  EXPECT_EQ(ct(f().a, f().b, port, 80, kTcp)->policy_rev, 2u);

  // Revoked: until the agent bumps the revision the cached verdict stands...
  clear_policy_entries();
  allow(pod_a_.endpoint_id, kEg, kAny, 0);
  allow(pod_a_.endpoint_id, kIn, kAny, 0);
  allow(pod_b_.endpoint_id, kEg, kAny, 0);
  allow(pod_b_.endpoint_id, kIn, kIdRemote, kUdp, 53, 53);
  EXPECT_EQ(from_a(f().b, tcp(port, 80, kTcpAck)), TC_ACT_REDIRECT);
  // ...then the next packet, whichever side sends it, stops the flow and forgets it.
  set_policy(true, 3);
  EXPECT_EQ(from_b(f().a, tcp(80, port, kTcpAck)), TC_ACT_SHOT) << "a reply of the revoked flow";
  policy_event(FERRY_HOOK_FROM_POD, pod_b_.endpoint_id, kIn);
  EXPECT_FALSE(ct(f().a, f().b, port, 80, kTcp)) << "the entry is deleted";
  EXPECT_EQ(from_a(f().b, tcp(port, 80, kTcpAck)), TC_ACT_SHOT) << "and stays stopped";
  policy_event(FERRY_HOOK_FROM_POD, pod_b_.endpoint_id, kIn);
  EXPECT_FALSE(ct(f().a, f().b, port, 80, kTcp));
}

TEST_P(FerryPolicy, PolicyOffAllowsEverythingAndSwitchingOnJudgesKnownFlows) {
  set_policy(false, 0);  // no entries at all: with the switch off nothing is judged
  const uint16_t port = fresh_port();
  EXPECT_EQ(from_a(f().b, tcp(port, 80, kTcpSyn)), TC_ACT_REDIRECT);
  EXPECT_EQ(to_b(f().world, udp(fresh_port(), 53)), TC_ACT_OK);
  EXPECT_EQ(overlay_to_b(f().other, tcp(fresh_port(), 22, kTcpSyn)), TC_ACT_REDIRECT);
  EXPECT_EQ(ct(f().a, f().b, port, 80, kTcp)->policy_rev, 0u) << "never judged";
  EXPECT_EQ(drops(FERRY_DROP_POLICY), 0u);

  set_policy(true, 1);
  EXPECT_EQ(from_a(f().b, tcp(port, 80, kTcpAck)), TC_ACT_SHOT) << "the known flow is judged now";
  EXPECT_EQ(drops(FERRY_DROP_POLICY), 1u);
}

TEST_P(FerryPolicy, UntrackedPacketsAreNotJudged) {
  // ICMP errors carry no flow of their own: they pass as related even to a closed endpoint.
  EXPECT_EQ(to_b(f().remote, icmp_other(f().v6(), f().v6() ? 1 : 3, 1)), TC_ACT_OK);
  EXPECT_EQ(drops(FERRY_DROP_POLICY), 0u);
}

INSTANTIATE_TEST_SUITE_P(Families, FerryPolicy, ::testing::Values(ipv4_family(), ipv6_family()), family_name);

}  // namespace
}  // namespace ferry::bpftest
