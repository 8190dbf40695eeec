// Service load-balancing in ferry_lxc (bpf/lib/lb.h, nat.h, reject.h) under BPF_PROG_TEST_RUN:
// frontend lookup, backend choice (random spread, Maglev, affinity, Local sets), the SERVICE
// entry that keeps a flow's backend, DNAT and reverse NAT in every hook with checksums recomputed
// from scratch in user space, hairpin, the ICMP/ICMPv6 reject, drop-empty, and the NodePort
// hooks (from-uplink / to-uplink). Both families.
#include <arpa/inet.h>
#include <linux/pkt_cls.h>
#include <sys/socket.h>
#include <time.h>

#include <cstring>
#include <iostream>
#include <map>
#include <string>

#include "datapath.h"

namespace ferry::bpftest {
namespace {

constexpr uint8_t kTcp = IPPROTO_TCP, kUdp = IPPROTO_UDP, kSctp = IPPROTO_SCTP;
constexpr uint16_t kPort = 80, kTarget = 8080, kNodePort = 30080;
constexpr uint32_t kSvc = 7;
const MacAddr kLocalVtep{0x0e, 0xfe, 172, 18, 0, 1};
const MacAddr kRemoteVtep{0x0e, 0xfe, 172, 18, 0, 2};
const MacAddr kUplinkMac{0x02, 0, 0, 0, 0, 0x01}, kRouterMac{0x02, 0, 0, 0, 0, 0xfe};

struct Family {
  std::string name;
  Addr a, b, remote, remote2, vip, node, client, loopback;
  bool v6() const { return a.family == AF_INET6; }
};
void PrintTo(const Family& f, std::ostream* os) { *os << f.name; }
Family ipv4_family() {
  return {"ipv4",
          Addr::parse("10.244.1.5"),
          Addr::parse("10.244.1.6"),
          Addr::parse("10.244.2.7"),
          Addr::parse("10.244.2.8"),
          Addr::parse("10.96.0.10"),
          Addr::parse("172.18.0.2"),
          Addr::parse("198.51.100.9"),
          Addr::parse("169.254.42.1")};
}
Family ipv6_family() {
  return {"ipv6",
          Addr::parse("fd00:10:244:1::5"),
          Addr::parse("fd00:10:244:1::6"),
          Addr::parse("fd00:10:244:2::7"),
          Addr::parse("fd00:10:244:2::8"),
          Addr::parse("fd00:10:96::10"),
          Addr::parse("fc00:172:18::2"),
          Addr::parse("2001:db8::9"),
          Addr::parse("fd66:6572:7279::1")};
}
std::string family_name(const ::testing::TestParamInfo<Family>& info) { return info.param.name; }

// What the frame says: addresses, ports, protocol (offsets as the datapath parses them).
struct Seen {
  Addr src, dst;
  uint16_t sport = 0, dport = 0;
  uint8_t proto = 0;
};
Seen seen(const Bytes& f) {
  Seen s;
  const bool v6 = (f.at(12) << 8 | f.at(13)) == 0x86dd;
  s.src.family = s.dst.family = v6 ? AF_INET6 : AF_INET;
  size_t l4;
  if (v6) {
    std::memcpy(s.src.bytes.data(), &f.at(22), 16);
    std::memcpy(s.dst.bytes.data(), &f.at(38), 16);
    s.proto = f.at(20);
    l4 = 54;
  } else {
    std::memcpy(s.src.bytes.data(), &f.at(26), 4);
    std::memcpy(s.dst.bytes.data(), &f.at(30), 4);
    s.proto = f.at(23);
    l4 = 14 + (f.at(14) & 0x0f) * 4u;
  }
  s.sport = static_cast<uint16_t>(f.at(l4) << 8 | f.at(l4 + 1));
  s.dport = static_cast<uint16_t>(f.at(l4 + 2) << 8 | f.at(l4 + 3));
  return s;
}
bool same(const Addr& x, const Addr& y) { return x.family == y.family && x.bytes == y.bytes; }

// ferry_lb_hash (lib/lb_select.h) in user space: the Maglev index of a flow.
uint32_t lb_hash(const Addr& saddr, const Addr& daddr, uint16_t sport, uint16_t dport, uint8_t proto) {
  uint32_t h = 0x9747b28c ^ proto, w;
  for (int i = 0; i < 16; i += 4) {
    std::memcpy(&w, saddr.bytes.data() + i, 4);
    h ^= w;
    h = (h ^ (h >> 16)) * 0x85ebca6b;
    std::memcpy(&w, daddr.bytes.data() + i, 4);
    h ^= w;
    h = (h ^ (h >> 13)) * 0xc2b2ae35;
  }
  h ^= static_cast<uint32_t>(htons(sport)) << 16 | htons(dport);
  h = (h ^ (h >> 16)) * 0x85ebca6b;
  return h ^ (h >> 16);
}

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

class FerryLb : public DatapathTest, public ::testing::WithParamInterface<Family> {
 protected:
  void SetUp() override {
    DatapathTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    uplink_ifindex_ = netns_->add_veth("fybpfu");
    for (const Family& fam : {ipv4_family(), ipv6_family()}) {
      add_endpoint(pod_a_, fam.a);
      add_endpoint(pod_b_, fam.b);
    }
    set_overlay(overlay_ifindex_, kLocalVtep, FERRY_CFG_F_OVERLAY);
    set_services(true);
    add_tunnel(f().v6() ? "fd00:10:244:2::/64" : "10.244.2.0/24", kRemoteVtep, f().node);
    // backends 1 (local pod b), 2 and 3 (remote pods)
    add_backend(1, f().b, kTarget, kTcp);
    add_backend(2, f().remote, kTarget, kTcp);
    add_backend(3, f().remote2, kTarget, kTcp);
  }

  const Family& f() const { return GetParam(); }
  uint16_t fresh_port() { return next_port_++; }
  L4 l4(uint8_t proto, uint16_t sport, uint16_t dport, uint8_t tcp_flags = kTcpSyn) const {
    return proto == kTcp ? tcp(sport, dport, tcp_flags, 12) : proto == kUdp ? udp(sport, dport, 12) : sctp(sport, dport, 20);
  }
  // Pod a sends to dst:dport (valid checksums).
  RunResult from_a(const Addr& dst, uint16_t sport, uint16_t dport, uint8_t proto = kTcp, uint8_t flags = kTcpSyn) {
    return from_pod(pod_a_, with_checksums(ip_frame(pod_a_.host_mac, pod_a_.pod_mac, f().a, dst, l4(proto, sport, dport, flags))));
  }
  // Which backend (by address) a new connection from pod a to the frontend reached.
  Addr backend_of_new_flow(uint16_t sport) {
    const RunResult r = from_a(f().vip, sport, kPort);
    EXPECT_TRUE(r.retval == TC_ACT_OK || r.retval == TC_ACT_REDIRECT) << tc_act_name(r.retval);
    return seen(r.out).dst;
  }
  std::optional<ferry_ct_value> service_entry(const Addr& client, uint16_t sport, const Addr& frontend, uint16_t port,
                                              uint8_t proto = kTcp) {
    return ct(client, frontend, sport, port, proto);
  }

  uint32_t uplink_ifindex_ = 0;
  uint16_t next_port_ = 40000;
};

// ------------------------------------------------------------------------------------------
// Lookup and switches

TEST_P(FerryLb, AnAddressThatIsNoFrontendIsLeftAlone) {
  add_service(kSvc, f().vip, kPort, kTcp, 0, {2});
  for (uint16_t port : {uint16_t{81}, kPort}) {
    const Addr dst = port == kPort ? f().remote2 : f().vip;  // other port of the VIP; a plain pod
    const Bytes in = with_checksums(ip_frame(pod_a_.host_mac, pod_a_.pod_mac, f().a, dst, tcp(41000, port, kTcpSyn)));
    const RunResult r = from_pod(pod_a_, in);
    // a remote pod goes to the tunnel, the VIP's other port to the stack: both unchanged
    EXPECT_EQ(r.retval, port == kPort ? TC_ACT_REDIRECT : TC_ACT_OK) << tc_act_name(r.retval);
    if (port == kPort) {
      EXPECT_TRUE(same(seen(r.out).dst, dst));
      EXPECT_EQ(Bytes(r.out.begin() + 12, r.out.end()), Bytes(in.begin() + 12, in.end())) << "only MACs change";
    } else {
      EXPECT_EQ(r.out, in);
    }
  }
  // UDP to the TCP frontend's port is another frontend: none.
  const RunResult r = from_a(f().vip, 41001, kPort, kUdp);
  EXPECT_TRUE(same(seen(r.out).dst, f().vip));
  EXPECT_EQ(packets(FERRY_CTR_LB_NEW), 0u);
}

TEST_P(FerryLb, ServicesSwitchedOffTranslateNothing) {
  add_service(kSvc, f().vip, kPort, kTcp, 0, {2});
  set_services(false);
  const Bytes in = with_checksums(ip_frame(pod_a_.host_mac, pod_a_.pod_mac, f().a, f().vip, tcp(41000, kPort, kTcpSyn)));
  const RunResult r = from_pod(pod_a_, in);
  EXPECT_EQ(r.retval, TC_ACT_OK);
  EXPECT_EQ(r.out, in);
  EXPECT_EQ(packets(FERRY_CTR_LB_NEW), 0u);
  // from-uplink too (a NodePort frontend)
  add_service(kSvc + 1, f().node, kNodePort, kTcp, FERRY_SVC_F_NODEPORT, {2});
  const Bytes np = with_checksums(ip_frame(kUplinkMac, kRouterMac, f().client, f().node, tcp(41000, kNodePort, kTcpSyn)));
  const RunResult u = from_uplink(uplink_ifindex_, np);
  EXPECT_EQ(u.retval, TC_ACT_OK);
  EXPECT_EQ(u.out, np);
  EXPECT_EQ(u.mark, 0u);
}

// ------------------------------------------------------------------------------------------
// DNAT

TEST_P(FerryLb, DnatOfTcpUdpSctpKeepsEveryChecksumRight) {
  uint32_t id = kSvc;
  for (uint8_t proto : {kTcp, kUdp, kSctp}) {
    SCOPED_TRACE("proto " + std::to_string(proto));
    add_backend(10 + proto, f().remote, kTarget, proto);
    add_service(++id, f().vip, kPort, proto, 0, {10u + proto});
    const uint16_t sport = fresh_port();
    const Bytes in = with_checksums(ip_frame(pod_a_.host_mac, pod_a_.pod_mac, f().a, f().vip, l4(proto, sport, kPort)));
    ASSERT_EQ(checksum_errors(in), "");
    const RunResult r = from_pod(pod_a_, in);
    EXPECT_EQ(r.retval, TC_ACT_REDIRECT) << tc_act_name(r.retval);  // to the tunnel
    const Seen s = seen(r.out);
    EXPECT_TRUE(same(s.src, f().a));
    EXPECT_TRUE(same(s.dst, f().remote)) << s.dst.str();
    EXPECT_EQ(s.sport, sport);
    EXPECT_EQ(s.dport, kTarget);
    EXPECT_EQ(checksum_errors(r.out), "");
    EXPECT_EQ(r.out.size(), in.size());

    // The SERVICE entry (original tuple) and the flow's entry (translated tuple).
    const auto svc = service_entry(f().a, sport, f().vip, kPort, proto);
    ASSERT_TRUE(svc.has_value());
    EXPECT_EQ(svc->flags, FERRY_CT_F_SERVICE);
    EXPECT_EQ(svc->backend_id, 10u + proto);
    EXPECT_EQ(svc->rev_nat, id);
    EXPECT_EQ(svc->lifetime_s, proto == kTcp ? uint32_t{FERRY_CT_TIMEOUT_TCP} : uint32_t{FERRY_CT_TIMEOUT_UDP});
    const auto flow = ct(f().a, f().remote, sport, kTarget, proto);
    ASSERT_TRUE(flow.has_value());
    EXPECT_EQ(flow->rev_nat, id);
    EXPECT_EQ(flow->flags, 0u);
    EXPECT_EQ(flow->src_endpoint, pod_a_.endpoint_id);
  }
  EXPECT_EQ(packets(FERRY_CTR_LB_NEW), 3u);
}

TEST_P(FerryLb, UdpOverIpv4WithoutChecksumStaysWithout) {
  add_backend(20, f().remote, kTarget, kUdp);
  add_service(kSvc, f().vip, kPort, kUdp, 0, {20});
  const Bytes in = with_checksums(ip_frame(pod_a_.host_mac, pod_a_.pod_mac, f().a, f().vip, udp(41000, kPort, 12)), true);
  const RunResult r = from_pod(pod_a_, in);
  const size_t field = (f().v6() ? 54 : 34) + 6;
  const uint16_t sum = static_cast<uint16_t>(r.out.at(field) << 8 | r.out.at(field + 1));
  if (f().v6())
    EXPECT_NE(sum, 0u) << "IPv6 UDP always has a checksum";
  else
    EXPECT_EQ(sum, 0u);
  EXPECT_TRUE(same(seen(r.out).dst, f().remote));
  EXPECT_EQ(checksum_errors(r.out), "");
}

// ------------------------------------------------------------------------------------------
// Keeping and choosing backends

TEST_P(FerryLb, AFlowKeepsItsBackendUntilTheBackendIsGone) {
  add_service(kSvc, f().vip, kPort, kTcp, 0, {1, 2, 3});
  const uint16_t sport = fresh_port();
  const Addr first = backend_of_new_flow(sport);
  for (int i = 0; i < 20; ++i)
    EXPECT_TRUE(same(seen(from_a(f().vip, sport, kPort, kTcp, kTcpAck).out).dst, first));
  EXPECT_EQ(packets(FERRY_CTR_LB_NEW), 1u);

  // The slots change (scale down to another backend): the flow stays where it is.
  const uint32_t first_id = same(first, f().b) ? 1 : same(first, f().remote) ? 2 : 3;
  const uint32_t other_id = first_id == 3 ? 2 : 3;
  add_service(kSvc, f().vip, kPort, kTcp, 0, {other_id});
  EXPECT_TRUE(same(seen(from_a(f().vip, sport, kPort, kTcp, kTcpAck).out).dst, first));

  // The backend disappears from ferry_be_v1: the next packet is sent to a live one.
  remove_backend(first_id);
  const Addr now = seen(from_a(f().vip, sport, kPort, kTcp, kTcpAck).out).dst;
  EXPECT_FALSE(same(now, first));
  EXPECT_EQ(service_entry(f().a, sport, f().vip, kPort)->backend_id, other_id);
  EXPECT_EQ(packets(FERRY_CTR_LB_NEW), 2u);
}

TEST_P(FerryLb, FinShortensTheServiceEntry) {
  add_service(kSvc, f().vip, kPort, kTcp, 0, {2});
  const uint16_t sport = fresh_port();
  from_a(f().vip, sport, kPort);
  from_a(f().vip, sport, kPort, kTcp, kTcpFin | kTcpAck);
  EXPECT_EQ(service_entry(f().a, sport, f().vip, kPort)->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_TCP_CLOSE});
  from_a(f().vip, sport, kPort, kTcp, kTcpSyn);  // the tuple is reused
  EXPECT_EQ(service_entry(f().a, sport, f().vip, kPort)->lifetime_s, uint32_t{FERRY_CT_TIMEOUT_TCP});
}

TEST_P(FerryLb, RandomChoiceSpreadsNewFlowsOverThreeBackends) {
  add_service(kSvc, f().vip, kPort, kTcp, 0, {1, 2, 3});
  std::map<std::string, int> per_backend;
  constexpr int kFlows = 3000;
  for (int i = 0; i < kFlows; ++i) per_backend[backend_of_new_flow(fresh_port()).str()]++;
  ASSERT_EQ(per_backend.size(), 3u);
  // Expected 1000 each (binomial, sd ~26): 700 is more than 11 sd away, so this cannot flake.
  for (const auto& [addr, n] : per_backend) EXPECT_GE(n, 700) << addr;
}

TEST_P(FerryLb, MaglevTakesTheTableEntryOfTheFlowHash) {
  set_services(true, true);
  add_service(kSvc, f().vip, kPort, kTcp, 0, {1, 2, 3});
  const uint16_t sport = fresh_port(), other = fresh_port();
  const uint32_t idx = lb_hash(f().a, f().vip, sport, kPort, kTcp) % FERRY_MAGLEV_TABLE_SIZE;
  ASSERT_NE(idx, lb_hash(f().a, f().vip, other, kPort, kTcp) % FERRY_MAGLEV_TABLE_SIZE);
  ferry_maglev_key key{kSvc, 0};
  ferry_maglev_value table{};
  for (uint32_t& id : table.backend_id) id = 2;
  table.backend_id[idx] = 3;
  ASSERT_EQ(bpf_map_update_elem(bpf_map__fd(skel()->maps.ferry_mglv_v1), &key, &table, BPF_ANY), 0);
  for (int i = 0; i < 5; ++i) {
    EXPECT_TRUE(same(backend_of_new_flow(sport), f().remote2));
    EXPECT_TRUE(same(backend_of_new_flow(other), f().remote));
    // forget the flows: each round is a new choice from the table
    for (uint16_t p : {sport, other}) {
      const ferry_ct_key k = ct_key(f().a, f().vip, p, kPort, kTcp);
      bpf_map_delete_elem(bpf_map__fd(skel()->maps.ferry_ct_v2), &k);
    }
  }
}

TEST_P(FerryLb, AffinityKeepsAClientOnOneBackendUntilItExpires) {
  add_service(kSvc, f().vip, kPort, kTcp, FERRY_SVC_F_AFFINITY, {1, 2, 3}, {}, 10800);
  const Addr first = backend_of_new_flow(fresh_port());
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(same(backend_of_new_flow(fresh_port()), first));
  EXPECT_EQ(packets(FERRY_CTR_LB_AFFINITY_HIT), 20u);

  // An entry naming backend 4 (not in the slots): fresh -> used, expired -> a new choice.
  add_backend(4, f().remote, 9090, kTcp);
  ferry_affinity_key key{};
  key.service_id = kSvc;
  key.family = f().a.family;
  std::memcpy(key.client, f().a.bytes.data(), 16);
  ferry_affinity_value value{};
  value.backend_id = 4;
  value.last_used_ns = monotonic_ns();
  const int fd = bpf_map__fd(skel()->maps.ferry_aff_v1);
  ASSERT_EQ(bpf_map_update_elem(fd, &key, &value, BPF_ANY), 0);
  RunResult r = from_a(f().vip, fresh_port(), kPort);
  EXPECT_EQ(seen(r.out).dport, 9090);
  value.last_used_ns = 1;  // long expired
  ASSERT_EQ(bpf_map_update_elem(fd, &key, &value, BPF_ANY), 0);
  r = from_a(f().vip, fresh_port(), kPort);
  EXPECT_EQ(seen(r.out).dport, kTarget) << "expired affinity must not pin the client";
  ASSERT_EQ(bpf_map_lookup_elem(fd, &key, &value), 0);
  EXPECT_NE(value.backend_id, 4u) << "the new choice replaces the entry";
}

TEST_P(FerryLb, LocalFrontendGivesPodsTheInternalSet) {
  // set 0 (outside clients): remote only; set 1 (pods and the node): local pod b only.
  add_service(kSvc, f().node, kNodePort, kTcp, FERRY_SVC_F_NODEPORT | FERRY_SVC_F_LOCAL, {2}, {1});
  for (int i = 0; i < 10; ++i) {
    const RunResult r = from_a(f().node, fresh_port(), kNodePort);
    EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
    EXPECT_TRUE(same(seen(r.out).dst, f().b));
  }
  const RunResult u = from_uplink(
      uplink_ifindex_, with_checksums(ip_frame(kUplinkMac, kRouterMac, f().client, f().node, tcp(41000, kNodePort, kTcpSyn))));
  EXPECT_TRUE(same(seen(u.out).dst, f().remote));
}

// ------------------------------------------------------------------------------------------
// Reverse NAT

TEST_P(FerryLb, RepliesGetTheFrontendBackInEveryHook) {
  add_service(kSvc, f().vip, kPort, kTcp, 0, {1});
  // local backend: pod b answers through its from-pod
  uint16_t sport = fresh_port();
  RunResult r = from_a(f().vip, sport, kPort);
  EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
  const auto reply = [&](const Addr& from) {
    return with_checksums(ip_frame(pod_b_.host_mac, pod_b_.pod_mac, from, f().a, tcp(kTarget, sport, kTcpSyn | kTcpAck, 7)));
  };
  r = from_pod(pod_b_, reply(f().b));
  EXPECT_EQ(r.retval, TC_ACT_REDIRECT) << "delivered into pod a";
  Seen s = seen(r.out);
  EXPECT_TRUE(same(s.src, f().vip));
  EXPECT_EQ(s.sport, kPort);
  EXPECT_TRUE(same(s.dst, f().a));
  EXPECT_EQ(s.dport, sport);
  EXPECT_EQ(checksum_errors(r.out), "");
  // the same reply coming through the bridge to pod a (to-pod)
  r = to_pod(pod_a_, reply(f().b));
  EXPECT_EQ(r.retval, TC_ACT_OK);
  EXPECT_TRUE(same(seen(r.out).src, f().vip));
  EXPECT_EQ(checksum_errors(r.out), "");
  EXPECT_EQ(packets(FERRY_CTR_LB_REVNAT), 2u);

  // remote backend: the reply comes out of the overlay
  add_service(kSvc, f().vip, kPort, kTcp, 0, {2});
  sport = fresh_port();
  from_a(f().vip, sport, kPort);
  r = from_overlay(with_checksums(ip_frame(kLocalVtep, kRemoteVtep, f().remote, f().a, tcp(kTarget, sport, kTcpSyn | kTcpAck))));
  EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
  s = seen(r.out);
  EXPECT_TRUE(same(s.src, f().vip));
  EXPECT_EQ(s.sport, kPort);
  EXPECT_EQ(checksum_errors(r.out), "");
  EXPECT_EQ(packets(FERRY_CTR_LB_REVNAT), 3u);
}

TEST_P(FerryLb, SctpAndUdpRepliesAreTranslatedBackWithValidChecksums) {
  for (uint8_t proto : {kUdp, kSctp}) {
    add_backend(30 + proto, f().b, kTarget, proto);
    add_service(kSvc + proto, f().vip, kPort, proto, 0, {30u + proto});
    const uint16_t sport = fresh_port();
    from_a(f().vip, sport, kPort, proto);
    const RunResult r = from_pod(pod_b_, with_checksums(ip_frame(pod_b_.host_mac, pod_b_.pod_mac, f().b, f().a,
                                                                  l4(proto, kTarget, sport))));
    const Seen s = seen(r.out);
    EXPECT_TRUE(same(s.src, f().vip));
    EXPECT_EQ(s.sport, kPort);
    EXPECT_EQ(checksum_errors(r.out), "") << "proto " << int{proto};
  }
}

TEST_P(FerryLb, HairpinUsesTheLoopbackSourceAndComesBackAsTheFrontend) {
  add_backend(5, f().a, kTarget, kTcp);  // pod a is the backend of the service it calls
  add_service(kSvc, f().vip, kPort, kTcp, 0, {5});
  const uint16_t sport = fresh_port();
  RunResult r = from_a(f().vip, sport, kPort);
  EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
  Seen s = seen(r.out);
  EXPECT_TRUE(same(s.src, f().loopback)) << s.src.str();
  EXPECT_TRUE(same(s.dst, f().a));
  EXPECT_EQ(s.dport, kTarget);
  EXPECT_EQ(checksum_errors(r.out), "");
  const auto flow = ct(f().loopback, f().a, sport, kTarget, kTcp);
  ASSERT_TRUE(flow.has_value());
  EXPECT_EQ(flow->flags, FERRY_CT_F_HAIRPIN);

  // pod a answers itself: a:8080 -> loopback:sport becomes vip:80 -> a:sport
  r = from_pod(pod_a_, with_checksums(ip_frame(pod_a_.host_mac, pod_a_.pod_mac, f().a, f().loopback,
                                               tcp(kTarget, sport, kTcpSyn | kTcpAck))));
  EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
  s = seen(r.out);
  EXPECT_TRUE(same(s.src, f().vip));
  EXPECT_EQ(s.sport, kPort);
  EXPECT_TRUE(same(s.dst, f().a));
  EXPECT_EQ(s.dport, sport);
  EXPECT_EQ(checksum_errors(r.out), "");
}

// ------------------------------------------------------------------------------------------
// No backend

TEST_P(FerryLb, NoBackendRejectsWithPortUnreachable) {
  add_service(kSvc, f().vip, kPort, kTcp, 0, {});
  const uint16_t sport = fresh_port();
  const Bytes in = with_checksums(ip_frame(pod_a_.host_mac, pod_a_.pod_mac, f().a, f().vip, tcp(sport, kPort, kTcpSyn, 40)));
  const RunResult r = from_pod(pod_a_, in);
  ASSERT_EQ(r.retval, TC_ACT_REDIRECT) << tc_act_name(r.retval);
  const Bytes& out = r.out;
  // Ethernet: back to the pod, from the gateway
  EXPECT_EQ(Bytes(out.begin(), out.begin() + 6), Bytes(pod_a_.pod_mac.begin(), pod_a_.pod_mac.end()));
  EXPECT_EQ(Bytes(out.begin() + 6, out.begin() + 12), Bytes(pod_a_.host_mac.begin(), pod_a_.host_mac.end()));
  const Seen s = seen(out);
  EXPECT_TRUE(same(s.src, f().vip));
  EXPECT_TRUE(same(s.dst, f().a));
  const Bytes orig_ip(in.begin() + 14, in.end());
  if (!f().v6()) {
    // small packet: all of it fits in 576 bytes, so the TCP checksum field is quoted too
    ASSERT_EQ(out.size(), 14u + 20 + 8 + orig_ip.size());
    EXPECT_EQ(out[14], 0x45);
    EXPECT_EQ(out[16] << 8 | out[17], static_cast<int>(20 + 8 + orig_ip.size()));  // total length
    EXPECT_EQ(out[22], 64);                          // TTL
    EXPECT_EQ(s.proto, IPPROTO_ICMP);
    EXPECT_EQ(out[34], 3);  // destination unreachable
    EXPECT_EQ(out[35], 3);  // port unreachable
    EXPECT_EQ(Bytes(out.begin() + 38, out.begin() + 42), Bytes(4, 0));
    EXPECT_EQ(Bytes(out.begin() + 42, out.end()), orig_ip) << "quote";
  } else {
    ASSERT_EQ(out.size(), 14u + 40 + 8 + orig_ip.size());  // small packet: all of it fits
    EXPECT_EQ(out[14] >> 4, 6);
    EXPECT_EQ(out[18] << 8 | out[19], static_cast<int>(8 + orig_ip.size()));  // payload length
    EXPECT_EQ(out[21], 64);                                                  // hop limit
    EXPECT_EQ(s.proto, IPPROTO_ICMPV6);
    EXPECT_EQ(out[54], 1);  // destination unreachable
    EXPECT_EQ(out[55], 4);  // port unreachable
    EXPECT_EQ(Bytes(out.begin() + 58, out.begin() + 62), Bytes(4, 0));
    EXPECT_EQ(Bytes(out.begin() + 62, out.end()), orig_ip) << "quote";
  }
  EXPECT_EQ(checksum_errors(out), "");
  EXPECT_EQ(packets(FERRY_CTR_LB_REJECT_SENT), 1u);
  EXPECT_EQ(drops(FERRY_DROP_NO_SERVICE), 1u);
  EXPECT_EQ(packets(FERRY_CTR_LB_NEW), 0u);
  const auto events = drain_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, uint32_t{FERRY_DROP_NO_SERVICE});
  EXPECT_EQ(events[0].hook, FERRY_HOOK_FROM_POD);
  EXPECT_EQ(events[0].endpoint_id, pod_a_.endpoint_id);
  EXPECT_EQ(ntohs(events[0].dport), kPort);
  EXPECT_EQ(events[0].source_file, FERRY_SRC_LB);
  EXPECT_NE(bpf_source_line(events[0].source_file, events[0].source_line).find("FERRY_DROP_NO_SERVICE"), std::string::npos);
}

// IPv6: the reply fits the minimum MTU (1280); IPv4: 576 bytes (RFC 1812 4.3.2.3).
TEST_P(FerryLb, LargeRejectQuotesUpToTheMinimumSize) {
  add_service(kSvc, f().vip, kPort, kUdp, 0, {});
  const Bytes in = with_checksums(ip_frame(pod_a_.host_mac, pod_a_.pod_mac, f().a, f().vip, udp(41000, kPort, 1400)));
  const RunResult r = from_pod(pod_a_, in);
  ASSERT_EQ(r.retval, TC_ACT_REDIRECT);
  const size_t limit = f().v6() ? 1280 : 576, head = f().v6() ? 48 : 28;
  EXPECT_EQ(r.out.size(), 14u + limit);
  EXPECT_EQ(Bytes(r.out.begin() + 14 + head, r.out.end()), Bytes(in.begin() + 14, in.begin() + 14 + limit - head));
  EXPECT_EQ(checksum_errors(r.out), "");
}

TEST_P(FerryLb, DropEmptyFrontendDropsWithoutReply) {
  add_service(kSvc, f().vip, kPort, kTcp, FERRY_SVC_F_DROP_EMPTY, {});
  const RunResult r = from_a(f().vip, fresh_port(), kPort);
  EXPECT_EQ(r.retval, TC_ACT_SHOT);
  EXPECT_EQ(drops(FERRY_DROP_NO_SERVICE), 1u);
  EXPECT_EQ(packets(FERRY_CTR_LB_REJECT_SENT), 0u);
  const auto events = drain_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].reason, uint32_t{FERRY_DROP_NO_SERVICE});
}

// ------------------------------------------------------------------------------------------
// NodePort hooks

TEST_P(FerryLb, FromUplinkTranslatesNodePortsAndMarksClusterTraffic) {
  add_service(kSvc, f().node, kNodePort, kTcp, FERRY_SVC_F_NODEPORT, {2});
  add_service(kSvc + 1, f().node, kNodePort + 1, kTcp, FERRY_SVC_F_NODEPORT | FERRY_SVC_F_LOCAL, {1}, {1});
  add_service(kSvc + 2, f().vip, kPort, kTcp, 0, {2});  // ClusterIP: not from outside
  const auto np = [&](const Addr& dst, uint16_t port) {
    return with_checksums(ip_frame(kUplinkMac, kRouterMac, f().client, dst, tcp(41000, port, kTcpSyn)));
  };
  RunResult r = from_uplink(uplink_ifindex_, np(f().node, kNodePort));
  EXPECT_EQ(r.retval, TC_ACT_OK);
  EXPECT_EQ(r.mark & FERRY_MARK_MASQ, uint32_t{FERRY_MARK_MASQ}) << "Cluster: masquerade";
  EXPECT_TRUE(same(seen(r.out).dst, f().remote));
  EXPECT_TRUE(same(seen(r.out).src, f().client));
  EXPECT_EQ(checksum_errors(r.out), "");
  auto flow = ct(f().client, f().remote, 41000, kTarget, kTcp);
  ASSERT_TRUE(flow.has_value());
  EXPECT_EQ(flow->flags, FERRY_CT_F_NODEPORT);
  EXPECT_EQ(flow->rev_nat, kSvc);

  r = from_uplink(uplink_ifindex_, np(f().node, kNodePort + 1));
  EXPECT_EQ(r.mark & FERRY_MARK_MASQ, 0u) << "Local keeps the client's source";
  EXPECT_TRUE(same(seen(r.out).dst, f().b));

  const Bytes cluster_ip = np(f().vip, kPort);
  r = from_uplink(uplink_ifindex_, cluster_ip);
  EXPECT_EQ(r.out, cluster_ip);
  EXPECT_EQ(packets(FERRY_CTR_LB_NEW), 2u);

  // The reply leaves through the uplink (the kernel undid the masquerade): source := node:port.
  const Bytes reply =
      with_checksums(ip_frame(kRouterMac, kUplinkMac, f().remote, f().client, tcp(kTarget, 41000, kTcpSyn | kTcpAck)));
  r = to_uplink(uplink_ifindex_, reply);
  EXPECT_EQ(r.retval, TC_ACT_OK);
  EXPECT_TRUE(same(seen(r.out).src, f().node));
  EXPECT_EQ(seen(r.out).sport, kNodePort);
  EXPECT_EQ(checksum_errors(r.out), "");
  flow = ct(f().client, f().remote, 41000, kTarget, kTcp);
  EXPECT_EQ(flow->state, FERRY_CT_ESTABLISHED);

  // A reply already translated elsewhere (source = the frontend): its reverse key is the SERVICE
  // entry, which is no flow: untouched.
  const Bytes done = with_checksums(ip_frame(kRouterMac, kUplinkMac, f().node, f().client, tcp(kNodePort, 41000, kTcpAck)));
  r = to_uplink(uplink_ifindex_, done);
  EXPECT_EQ(r.out, done);
  EXPECT_EQ(packets(FERRY_CTR_LB_REVNAT), 1u);
}

TEST_P(FerryLb, NodePortWithoutBackendRejectsBackOutOfTheUplink) {
  add_service(kSvc, f().node, kNodePort, kTcp, FERRY_SVC_F_NODEPORT, {});
  const RunResult r = from_uplink(
      uplink_ifindex_, with_checksums(ip_frame(kUplinkMac, kRouterMac, f().client, f().node, tcp(41000, kNodePort, kTcpSyn))));
  EXPECT_EQ(r.retval, TC_ACT_REDIRECT);
  EXPECT_TRUE(same(seen(r.out).dst, f().client));
  EXPECT_EQ(Bytes(r.out.begin(), r.out.begin() + 6), Bytes(kRouterMac.begin(), kRouterMac.end()));
  EXPECT_EQ(checksum_errors(r.out), "");
  const auto events = drain_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].hook, FERRY_HOOK_FROM_UPLINK);
}

TEST_P(FerryLb, NodePortTrafficIsJudgedByTheBackendsIngressPolicy) {
  // Local: the backend (pod b) sees the client's address; a policy without the world denies it.
  add_service(kSvc, f().node, kNodePort, kTcp, FERRY_SVC_F_NODEPORT | FERRY_SVC_F_LOCAL, {1}, {1});
  set_policy(true, 1);
  add_ipcache(f().v6() ? "::/0" : "0.0.0.0/0", FERRY_IDENTITY_WORLD);
  const auto np = [&](uint16_t sport) {
    return with_checksums(ip_frame(kUplinkMac, kRouterMac, f().client, f().node, tcp(sport, kNodePort, kTcpSyn)));
  };
  allow(pod_b_.endpoint_id, FERRY_DIR_INGRESS, 300, kTcp, kTarget, kTarget);  // not the world
  EXPECT_EQ(from_uplink(uplink_ifindex_, np(41000)).retval, TC_ACT_SHOT);
  EXPECT_EQ(drops(FERRY_DROP_POLICY), 1u);
  allow(pod_b_.endpoint_id, FERRY_DIR_INGRESS, FERRY_IDENTITY_WORLD, kTcp, kTarget, kTarget);
  set_policy(true, 2);
  EXPECT_EQ(from_uplink(uplink_ifindex_, np(41001)).retval, TC_ACT_OK);
  const auto flow = ct(f().client, f().b, 41001, kTarget, kTcp);
  ASSERT_TRUE(flow.has_value());
  EXPECT_EQ(flow->policy_rev, 2u) << "judged: to-pod will not judge it again";
}

TEST_P(FerryLb, AllProgramsPassTheVerifier) {
  if (f().v6()) GTEST_SKIP() << "once is enough";
  for (bpf_program* prog : {skel()->progs.ferry_from_pod, skel()->progs.ferry_to_pod, skel()->progs.ferry_from_overlay,
                            skel()->progs.ferry_from_uplink, skel()->progs.ferry_to_uplink}) {
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    ASSERT_EQ(bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len), 0);
    EXPECT_GT(info.verified_insns, 0u);
    std::cout << "[ verifier ] " << bpf_program__name(prog) << ": " << info.xlated_prog_len / 8 << " insns, "
              << info.verified_insns << " verified" << std::endl;
  }
}

INSTANTIATE_TEST_SUITE_P(Families, FerryLb, ::testing::Values(ipv4_family(), ipv6_family()), family_name);

}  // namespace
}  // namespace ferry::bpftest
