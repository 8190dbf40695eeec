// Root tests of NetworkPolicy in the iptables backend (prefix fyipp): two pods on a bridge in a
// node netns, endpoints and hand-built PolicySets programmed, real TCP/UDP traffic (IPv4 and
// IPv6) between sockets opened inside the pods' namespaces.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <tuple>

#include "tests/iptables/bridge_node.h"

namespace ferry::iptables {
namespace {

using dataplane::EndpointPolicy;
using dataplane::Identity;
using dataplane::PolicySet;
using testing::Pod;
using testing::save_without_noise;

const Pod kPodA{"fyipp-pa", "fyipp0a", "10.251.0.1", "fd00:fb::1"};
const Pod kPodB{"fyipp-pb", "fyipp0b", "10.251.0.2", "fd00:fb::2"};
constexpr Identity kIdA = 257, kIdB = 258, kIdOther = 259, kIdBlock = 300;
constexpr uint8_t kTcp = IPPROTO_TCP, kUdp = IPPROTO_UDP;
// Deadlines: generous where something must arrive (the machine is shared), short where
// nothing may (absence cannot be proven faster than by waiting).
constexpr int kArriveMs = 10000, kAbsentMs = 2000;

net::Prefix prefix(const std::string& s) { return *net::Prefix::parse(s); }

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

sockaddr_storage sockaddr_of(const std::string& ip, uint16_t port, socklen_t* len) {
  sockaddr_storage ss{};
  if (ip.find(':') != std::string::npos) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    s6->sin6_port = htons(port);
    inet_pton(AF_INET6, ip.c_str(), &s6->sin6_addr);
    *len = sizeof(sockaddr_in6);
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    s4->sin_port = htons(port);
    inet_pton(AF_INET, ip.c_str(), &s4->sin_addr);
    *len = sizeof(sockaddr_in);
  }
  return ss;
}

// A non-blocking socket opened inside the pod's netns (it stays there), bound to ip:port.
Fd bound_socket(const Pod& pod, int type, const std::string& ip, uint16_t port = 0) {
  int fd = -1;
  net::in_netns(net::Netns::open("/run/netns/" + pod.netns), [&] {
    fd = ::socket(ip.find(':') != std::string::npos ? AF_INET6 : AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  });
  if (fd < 0) throw std::runtime_error("socket failed");
  Fd s(fd);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  socklen_t len;
  sockaddr_storage a = sockaddr_of(ip, port, &len);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0)
    throw std::runtime_error("bind " + ip + ":" + std::to_string(port) + " failed: " + strerror(errno));
  return s;
}

bool wait_for(int fd, short events, int timeout_ms) {
  pollfd p{fd, events, 0};
  return ::poll(&p, 1, timeout_ms) == 1 && (p.revents & events);
}

// A TCP listener in `pod` on ip:port.
Fd listener(const Pod& pod, const std::string& ip, uint16_t port) {
  Fd s = bound_socket(pod, SOCK_STREAM, ip, port);
  if (::listen(s.get(), 16) != 0) throw std::runtime_error("listen failed");
  return s;
}

// Connects from `pod` (source address `src`) to dst:port; nullopt when the handshake does not
// complete within `timeout_ms`.
std::optional<Fd> tcp_connect(const Pod& pod, const std::string& src, const std::string& dst, uint16_t port,
                              int timeout_ms) {
  Fd s = bound_socket(pod, SOCK_STREAM, src);
  socklen_t len;
  sockaddr_storage a = sockaddr_of(dst, port, &len);
  ::connect(s.get(), reinterpret_cast<sockaddr*>(&a), len);
  if (!wait_for(s.get(), POLLOUT, timeout_ms)) return std::nullopt;
  int err = 0;
  socklen_t el = sizeof err;
  getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &el);
  if (err != 0) return std::nullopt;
  return s;
}

// True when `text` arrives on the connected socket within `timeout_ms`.
bool receives(const Fd& s, const std::string& text, int timeout_ms) {
  std::string got;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (got.size() < text.size()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !wait_for(s.get(), POLLIN, static_cast<int>(left.count()))) return false;
    char buf[256];
    ssize_t n = ::recv(s.get(), buf, sizeof buf, 0);
    if (n <= 0) return false;
    got.append(buf, static_cast<size_t>(n));
  }
  return got == text;
}

void send_text(const Fd& s, const std::string& text) {
  ASSERT_EQ(::send(s.get(), text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()));
}

// A datagram from `from` (source src) to dst:port arrives within `timeout_ms` (resent every
// 200 ms, a lost first datagram is not a verdict).
bool udp_arrives(const Pod& from, const std::string& src, const Pod& to, const std::string& dst, uint16_t port,
                 int timeout_ms) {
  Fd rx = bound_socket(to, SOCK_DGRAM, dst, port);
  Fd tx = bound_socket(from, SOCK_DGRAM, src);
  socklen_t len;
  sockaddr_storage a = sockaddr_of(dst, port, &len);
  for (int waited = 0; waited < timeout_ms; waited += 200) {
    ::sendto(tx.get(), "ping", 4, 0, reinterpret_cast<sockaddr*>(&a), len);
    if (wait_for(rx.get(), POLLIN, 200)) return true;
  }
  return false;
}

class IptablesPolicy : public testing::BridgeNode {
 protected:
  void SetUp() override {
    build("fyipp", kPodA, kPodB);
    if (IsSkipped()) return;
    if (!net::find_executable("ipset")) GTEST_SKIP() << "needs ipset (Debian package ipset)";
    dp_ = make_iptables_dataplane();
  }

  // Endpoints 1 (pod A) and 2 (pod B) programmed.
  void program_endpoints() {
    in_node([&] {
      dp_->start();
      dp_->program_endpoint(endpoint_of(1, kPodA));
      dp_->program_endpoint(endpoint_of(2, kPodB));
    });
  }

  // The ipcache of the two pods (A = 257, B = 258) plus whatever `extra` adds.
  static PolicySet base_set(std::vector<dataplane::IpcacheEntry> extra = {}) {
    PolicySet set;
    set.ipcache = {{prefix("0.0.0.0/0"), dataplane::kIdentityWorld},
                   {prefix("::/0"), dataplane::kIdentityWorld},
                   {prefix(kPodA.v4 + "/32"), kIdA},
                   {prefix(kPodA.v6 + "/128"), kIdA},
                   {prefix(kPodB.v4 + "/32"), kIdB},
                   {prefix(kPodB.v6 + "/128"), kIdB}};
    for (auto& e : extra) set.ipcache.push_back(e);
    return set;
  }

  // base_set() with pod B's ingress isolated to `entries`.
  static PolicySet b_ingress(std::vector<dataplane::PolicyEntry> entries, std::vector<dataplane::IpcacheEntry> extra = {}) {
    PolicySet set = base_set(std::move(extra));
    set.endpoints[2].ingress_isolated = true;
    set.endpoints[2].ingress = std::move(entries);
    return set;
  }

  void program(const PolicySet& set) {
    in_node([&] { dp_->program_policy(set); });
  }
  uint64_t writes() {
    uint64_t w = 0;
    in_node([&] { w = dp_->stats().kernel_writes; });
    return w;
  }
  std::string ipsets() { return node_->exec("ipset list -n"); }

  std::unique_ptr<dataplane::Dataplane> dp_;
};

TEST_F(IptablesPolicy, IngressAllowsListedPeerPortRangeAndProtocolOnly) {
  program_endpoints();
  Fd l4 = listener(kPodB, kPodB.v4, 8011), l6 = listener(kPodB, kPodB.v6, 8011);
  // Without policy everything is reachable; what follows is the policy's doing.
  ASSERT_TRUE(tcp_connect(kPodA, kPodA.v4, kPodB.v4, 8011, kArriveMs));
  ASSERT_TRUE(tcp_connect(kPodA, kPodA.v6, kPodB.v6, 8011, kArriveMs));

  PolicySet set = b_ingress({{kIdA, kTcp, 8000, 8010}, {kIdA, kUdp, 5000, 5000}});
  program(set);
  const uint64_t drops = drop_counter(*dp_, "drop_policy");

  for (const auto& [a, bip] : {std::pair{kPodA.v4, kPodB.v4}, std::pair{kPodA.v6, kPodB.v6}}) {
    Fd in_range = listener(kPodB, bip, 8005), low = listener(kPodB, bip, 7999), last = listener(kPodB, bip, 8010);
    EXPECT_TRUE(tcp_connect(kPodA, a, bip, 8005, kArriveMs)) << bip;
    EXPECT_TRUE(tcp_connect(kPodA, a, bip, 8010, kArriveMs)) << bip;
    EXPECT_FALSE(tcp_connect(kPodA, a, bip, 8011, kAbsentMs)) << bip;
    EXPECT_FALSE(tcp_connect(kPodA, a, bip, 7999, kAbsentMs)) << bip;
    EXPECT_TRUE(udp_arrives(kPodA, a, kPodB, bip, 5000, kArriveMs)) << bip;
    EXPECT_FALSE(udp_arrives(kPodA, a, kPodB, bip, 5001, kAbsentMs)) << bip;
  }
  EXPECT_GT(drop_counter(*dp_, "drop_policy"), drops);
  // ICMP is not allowed into B; B's own pings to A come back (replies are not judged).
  EXPECT_TRUE(ping_fails(kPodA, kPodB.v4, kPodA.v4));
  EXPECT_TRUE(ping(kPodB, kPodA.v4));
  EXPECT_TRUE(ping(kPodB, kPodA.v6));
  // proto 0 = any protocol.
  set.endpoints[2].ingress.push_back({kIdA, 0, 0, 65535});
  program(set);
  EXPECT_TRUE(ping(kPodA, kPodB.v4));
  EXPECT_TRUE(tcp_connect(kPodA, kPodA.v4, kPodB.v4, 8011, kArriveMs));
}

TEST_F(IptablesPolicy, EgressIsolationWithAnyPeerAndIpv6NeighbourDiscovery) {
  program_endpoints();
  // Isolated before any IPv6 packet: neighbour discovery itself must pass the policy.
  PolicySet set = base_set();
  EndpointPolicy a;
  a.egress_isolated = true;
  a.egress = {{kIdB, kUdp, 5000, 5000}, {dataplane::kIdentityAny, kTcp, 8080, 8080}};
  set.endpoints[1] = a;
  program(set);

  for (const auto& [aip, bip] : {std::pair{kPodA.v6, kPodB.v6}, std::pair{kPodA.v4, kPodB.v4}}) {
    EXPECT_TRUE(udp_arrives(kPodA, aip, kPodB, bip, 5000, kArriveMs)) << bip;
    EXPECT_FALSE(udp_arrives(kPodA, aip, kPodB, bip, 5001, kAbsentMs)) << bip;
    Fd l = listener(kPodB, bip, 8080), other = listener(kPodB, bip, 8081);
    EXPECT_TRUE(tcp_connect(kPodA, aip, bip, 8080, kArriveMs)) << bip;
    EXPECT_FALSE(tcp_connect(kPodA, aip, bip, 8081, kAbsentMs)) << bip;
    // A's ingress is open; its replies to B leave through its isolated egress unjudged.
    Fd la = listener(kPodA, aip, 9000);
    EXPECT_TRUE(tcp_connect(kPodB, bip, aip, 9000, kArriveMs)) << aip;
  }
}

TEST_F(IptablesPolicy, IpBlockWithExceptIsLongestPrefixMatch) {
  // Pod A has two more addresses: .5 inside the block, .9 inside its except.
  const std::string in_block = "10.251.0.5", in_except = "10.251.0.9";
  for (const std::string& addr : {in_block, in_except}) test::sh("ip -n " + kPodA.netns + " addr add " + addr + "/24 dev eth0");
  dataplane::Endpoint ep_a = endpoint_of(1, kPodA);
  ep_a.ips = {*net::Ip::parse(kPodA.v4), *net::Ip::parse(in_block), *net::Ip::parse(in_except), *net::Ip::parse(kPodA.v6)};
  in_node([&] {
    dp_->start();
    dp_->program_endpoint(ep_a);
    dp_->program_endpoint(endpoint_of(2, kPodB));
  });
  // ipBlock 10.251.0.0/24 except 10.251.0.8/29: the block's region is identity 300, the except
  // region is world again, the pods keep their own identities.
  PolicySet set = b_ingress({{kIdBlock, kTcp, 8080, 8080}},
                            {{prefix("10.251.0.0/24"), kIdBlock}, {prefix("10.251.0.8/29"), dataplane::kIdentityWorld}});
  program(set);
  EXPECT_NE(node_->exec("ipset list ferry-id-300-4").find("10.251.0.8/29 nomatch"), std::string::npos);

  Fd l = listener(kPodB, kPodB.v4, 8080);
  EXPECT_TRUE(tcp_connect(kPodA, in_block, kPodB.v4, 8080, kArriveMs));
  EXPECT_FALSE(tcp_connect(kPodA, in_except, kPodB.v4, 8080, kAbsentMs));  // /29 nomatch
  EXPECT_FALSE(tcp_connect(kPodA, kPodA.v4, kPodB.v4, 8080, kAbsentMs));   // /32 of pod A
  // Allowing world (3) lets the except region in, still not pod A's own address.
  set.endpoints[2].ingress.push_back({dataplane::kIdentityWorld, kTcp, 8080, 8080});
  program(set);
  EXPECT_TRUE(tcp_connect(kPodA, in_except, kPodB.v4, 8080, kArriveMs));
  EXPECT_FALSE(tcp_connect(kPodA, kPodA.v4, kPodB.v4, 8080, kAbsentMs));
}

// Packets of the routed dispatch rule of `pod_ip` in the node's FERRY-FORWARD (iptables-save -c).
uint64_t routed_dispatch_packets(const test::TestNetns& node, const std::string& pod_ip) {
  const bool v6 = pod_ip.find(':') != std::string::npos;
  const FilterTable t = parse_save(node.exec(std::string(v6 ? "ip6tables-save" : "iptables-save") + " -c -t filter"));
  const std::string match = "-d " + pod_ip + (v6 ? "/128 " : "/32 ");
  uint64_t packets = 0;
  for (const Rule* r : t.rules_of(kForwardChain))
    if (r->spec.starts_with(match)) packets += r->packets;
  return packets;
}

// Traffic routed into the bridge (here from a peer one routed hop away; across nodes from the
// VXLAN device) passes FORWARD with no bridge port known: it must meet the ingress policy too.
TEST_F(IptablesPolicy, IngressIsJudgedForTrafficRoutedIntoTheBridge) {
  const testing::RoutedHop hop{{"fyipp-rt", "fyipp0r", "10.251.9.2", "fd00:fc::2"},
                               "10.251.9.1", "fd00:fc::1", "10.251.0.254", "fd00:fb::fe"};
  const Pod& peer = hop.peer;
  // The peer's second address is a peer the policy does not allow (world).
  const std::string denied_v4 = "10.251.9.3", denied_v6 = "fd00:fc::3";
  add_routed_hop(hop, {&kPodA, &kPodB});
  test::sh("ip -n " + peer.netns + " addr add " + denied_v4 + "/24 dev eth0");
  test::sh("ip -n " + peer.netns + " addr add " + denied_v6 + "/64 dev eth0 nodad");
  program_endpoints();
  constexpr Identity kIdPeer = 260;
  PolicySet set = b_ingress({{kIdPeer, kTcp, 8080, 8080}, {kIdA, kTcp, 8080, 8080}},
                            {{prefix(peer.v4 + "/32"), kIdPeer}, {prefix(peer.v6 + "/128"), kIdPeer}});

  for (const auto& [allowed, denied, bip, aip] : {std::tuple{peer.v4, denied_v4, kPodB.v4, kPodA.v4},
                                                  std::tuple{peer.v6, denied_v6, kPodB.v6, kPodA.v6}}) {
    Fd l = listener(kPodB, bip, 8080), other = listener(kPodB, bip, 8081);
    // Reachable over the hop without policy: what follows is the policy's doing.
    program(base_set());
    ASSERT_TRUE(tcp_connect(peer, denied, bip, 8080, kArriveMs)) << bip;
    ASSERT_TRUE(tcp_connect(peer, allowed, bip, 8081, kArriveMs)) << bip;

    program(set);
    // Bridged traffic does not take the routed dispatch (judged once, by its output port).
    const uint64_t routed = routed_dispatch_packets(*node_, bip);
    EXPECT_TRUE(tcp_connect(kPodA, aip, bip, 8080, kArriveMs)) << bip;
    EXPECT_FALSE(tcp_connect(kPodA, aip, bip, 8081, kAbsentMs)) << bip;
    EXPECT_EQ(routed_dispatch_packets(*node_, bip), routed) << bip;

    const uint64_t drops = drop_counter(*dp_, "drop_policy");
    EXPECT_TRUE(tcp_connect(peer, allowed, bip, 8080, kArriveMs)) << bip;
    EXPECT_FALSE(tcp_connect(peer, allowed, bip, 8081, kAbsentMs)) << bip;
    EXPECT_FALSE(tcp_connect(peer, denied, bip, 8080, kAbsentMs)) << bip;
    EXPECT_GT(drop_counter(*dp_, "drop_policy"), drops) << bip;
    EXPECT_GT(routed_dispatch_packets(*node_, bip), routed) << bip;

    // B's own connection to the peer: its replies, routed in, are not judged.
    Fd pl = listener(peer, denied, 9000);
    EXPECT_TRUE(tcp_connect(kPodB, bip, denied, 9000, kArriveMs)) << bip;
    // The node itself (Host) reaches B on any port: OUTPUT is not FORWARD.
    const Pod node{node_->name(), "", "", ""};
    EXPECT_TRUE(tcp_connect(node, bip == kPodB.v4 ? hop.bridge_v4 : hop.bridge_v6, bip, 8081, kArriveMs)) << bip;
  }

  // Removing B removes its routed dispatch with it; B is then open again.
  in_node([&] { dp_->remove_endpoint(endpoint_of(2, kPodB)); });
  for (const char* tool : {"iptables-save", "ip6tables-save"}) {
    const std::string save = node_save(tool, "filter");
    EXPECT_EQ(save.find(kPodB.v4 + "/32"), std::string::npos) << save;
    EXPECT_EQ(save.find(kPodB.v6 + "/128"), std::string::npos) << save;
  }
  Fd l = listener(kPodB, kPodB.v4, 8081);
  EXPECT_TRUE(tcp_connect(peer, denied_v4, kPodB.v4, 8081, kArriveMs));
}

TEST_F(IptablesPolicy, RevokingStopsAnEstablishedConnectionAnUnrelatedChangeDoesNot) {
  program_endpoints();
  PolicySet set = b_ingress({{kIdA, kTcp, 8080, 8080}}, {{prefix("10.251.0.200/32"), kIdOther}});
  program(set);

  Fd l = listener(kPodB, kPodB.v4, 8080);
  auto client = tcp_connect(kPodA, kPodA.v4, kPodB.v4, 8080, kArriveMs);
  ASSERT_TRUE(client);
  ASSERT_TRUE(wait_for(l.get(), POLLIN, kArriveMs));
  Fd server(::accept4(l.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  send_text(*client, "one");
  EXPECT_TRUE(receives(server, "one", kArriveMs));

  // Unrelated: another peer gets UDP 53. The established connection goes on.
  const uint64_t before = writes();
  set.endpoints[2].ingress.push_back({kIdOther, kUdp, 53, 53});
  program(set);
  EXPECT_GT(writes(), before);
  send_text(*client, "two");
  EXPECT_TRUE(receives(server, "two", kArriveMs));

  // Revoked: A's next packets are dropped; B's (the reply direction) still arrive.
  const uint64_t drops = drop_counter(*dp_, "drop_policy");
  set.endpoints[2].ingress = {{kIdOther, kUdp, 53, 53}};
  program(set);
  send_text(*client, "three");
  EXPECT_FALSE(receives(server, "three", kAbsentMs));
  EXPECT_GT(drop_counter(*dp_, "drop_policy"), drops);
  send_text(server, "back");
  EXPECT_TRUE(receives(*client, "back", kArriveMs));
}

TEST_F(IptablesPolicy, SameSetTwiceOrAfterRestartWritesNothingAndEnforceFalseRemovesAll) {
  program_endpoints();
  PolicySet set = base_set();
  EndpointPolicy a, b;
  a.egress_isolated = true;
  a.egress = {{kIdB, kTcp, 80, 80}};
  b.ingress_isolated = true;
  b.ingress = {{kIdA, 0, 0, 65535}};
  set.endpoints[1] = a;
  set.endpoints[2] = b;
  program(set);
  const uint64_t w = writes();
  program(set);
  EXPECT_EQ(writes(), w);
  const std::string v4 = save_without_noise(node_save("iptables-save", "filter"));
  const std::string v6 = save_without_noise(node_save("ip6tables-save", "filter"));
  const std::string sets = node_->exec("ipset save");
  EXPECT_NE(sets.find("ferry-id-258-4"), std::string::npos) << sets;
  EXPECT_NE(sets.find("ferry-id-257-6"), std::string::npos) << sets;

  // A restarted agent: new backend, same desired state.
  dp_ = make_iptables_dataplane();
  dataplane::EndpointDiff diff;
  in_node([&] {
    dp_->start();
    diff = dataplane::diff_endpoints({endpoint_of(1, kPodA), endpoint_of(2, kPodB)}, dp_->installed_endpoints());
    dp_->program_policy(set);
  });
  EXPECT_TRUE(diff.program.empty() && diff.remove.empty());
  EXPECT_EQ(writes(), 0u);
  EXPECT_EQ(save_without_noise(node_save("iptables-save", "filter")), v4);
  EXPECT_EQ(save_without_noise(node_save("ip6tables-save", "filter")), v6);
  EXPECT_EQ(node_->exec("ipset save"), sets);
  EXPECT_TRUE(ping_fails(kPodA, kPodB.v4, kPodA.v4));  // A's egress allows TCP 80 only

  // A changed peer set is rewritten in place, the chains stay.
  set.ipcache.push_back({prefix("10.251.0.3/32"), kIdB});
  program(set);
  EXPECT_NE(node_->exec("ipset list ferry-id-258-4").find("10.251.0.3"), std::string::npos);
  EXPECT_EQ(save_without_noise(node_save("iptables-save", "filter")), v4);

  set.enforce = false;
  program(set);
  EXPECT_EQ(ipsets().find("ferry-id-"), std::string::npos) << ipsets();
  for (const char* tool : {"iptables-save", "ip6tables-save"}) {
    const std::string save = node_save(tool, "filter");
    EXPECT_EQ(save.find("-A FERRY-PI-"), std::string::npos) << save;
    EXPECT_EQ(save.find("-A FERRY-PE-"), std::string::npos) << save;
    EXPECT_NE(save.find(":FERRY-PI-"), std::string::npos) << save;  // empty = not isolated
  }
  EXPECT_TRUE(ping(kPodA, kPodB.v4));
}

TEST_F(IptablesPolicy, AnEndpointProgrammedAfterThePolicyIsEnforcedAtOnce) {
  program_endpoints();
  const PolicySet set = b_ingress({{kIdA, kUdp, 5000, 5000}});
  program(set);
  // B's interface is replaced (a new endpoint on the same pod), no program_policy follows.
  dataplane::Endpoint ep_b = endpoint_of(2, kPodB);
  in_node([&] {
    dp_->remove_endpoint(ep_b);
    dp_->program_endpoint(ep_b);
  });
  Fd l = listener(kPodB, kPodB.v4, 8080);
  EXPECT_FALSE(tcp_connect(kPodA, kPodA.v4, kPodB.v4, 8080, kAbsentMs));
  EXPECT_TRUE(udp_arrives(kPodA, kPodA.v4, kPodB, kPodB.v4, 5000, kArriveMs));
  // And the next program_policy of the same set finds nothing to do.
  const uint64_t w = writes();
  program(set);
  EXPECT_EQ(writes(), w);
}

TEST_F(IptablesPolicy, CleanupAllLeavesNoChainAndNoIpset) {
  program_endpoints();
  program(b_ingress({{kIdA, kTcp, 80, 80}}));
  ASSERT_NE(ipsets().find("ferry-id-257-4"), std::string::npos);
  in_node([&] { dp_->cleanup_all(); });
  for (const char* tool : {"iptables-save", "ip6tables-save"}) {
    const std::string save = node_save(tool, "filter");
    EXPECT_EQ(save.find("FERRY-"), std::string::npos) << save;
    EXPECT_EQ(save.find("ferry"), std::string::npos) << save;
  }
  EXPECT_EQ(ipsets().find("ferry-id-"), std::string::npos) << ipsets();
  EXPECT_TRUE(ping(kPodA, kPodB.v4));
}

}  // namespace
}  // namespace ferry::iptables
