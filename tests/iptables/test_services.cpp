// Services in the iptables backend (kube-proxy's layout). Unit tests of the rendering and the
// partial-restore diff (no root), then root tests (prefix fyips) on the bridge_node fixture:
// pods behind a bridge in a node netns, an outside netns one routed hop away, hand-built
// ServiceSets programmed, real TCP/UDP connections whose accepting socket tells which backend
// was chosen and whose peer address tells whether the source was masqueraded.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <set>
#include <tuple>

#include "agent/iptables/iptables.h"
#include "tests/iptables/bridge_node.h"

namespace ferry::iptables {
namespace {

using dataplane::BackendId;
using dataplane::FrontendKind;
using dataplane::ServiceBackend;
using dataplane::ServiceFrontend;
using dataplane::ServiceSet;
using dataplane::TrafficPolicy;
using testing::Pod;

constexpr uint8_t kTcp = IPPROTO_TCP, kUdp = IPPROTO_UDP;

net::Ip ip(const std::string& s) { return *net::Ip::parse(s); }

// A ServiceSet built by hand: backends by id, frontends by id. Frontends of one Service port
// (service, port_name, protocol) share its chains, so a test's unrelated frontends get their
// own service or port name.
struct SetBuilder {
  ServiceSet set;
  SetBuilder& backend(BackendId id, const std::string& address, uint16_t port, uint8_t proto = kTcp,
                      bool local = true) {
    ServiceBackend b;
    b.address = ip(address);
    b.port = port;
    b.proto = proto;
    b.local = local;
    set.backends[id] = b;
    return *this;
  }
  ServiceFrontend& frontend(dataplane::ServiceId id, const std::string& address, uint16_t port,
                            std::vector<BackendId> backends, uint8_t proto = kTcp) {
    ServiceFrontend& fe = set.frontends[id];
    fe.address = ip(address);
    fe.port = port;
    fe.proto = proto;
    fe.service = "default/web";
    fe.port_name = "http";
    fe.backends = std::move(backends);
    return fe;
  }
};

std::vector<std::string> all_rules(const ChainRules& chains) {
  std::vector<std::string> out;
  for (const auto& [chain, rules] : chains)
    for (const auto& r : rules) out.push_back(chain + " " + r);
  return out;
}

// The restore text's lines that declare a chain (":NAME - [0:0]"), as names.
std::set<std::string> declared(const std::string& restore) {
  std::set<std::string> out;
  size_t pos = 0;
  while ((pos = restore.find("\n:", pos)) != std::string::npos) {
    pos += 2;
    out.insert(restore.substr(pos, restore.find(' ', pos) - pos));
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Rendering (no root)

SetBuilder three_backends() {
  SetBuilder b;
  b.backend(1, "10.1.0.2", 8080).backend(2, "10.1.0.3", 8080).backend(3, "10.1.0.4", 8080);
  b.frontend(10, "10.96.0.10", 80, {1, 2, 3});
  return b;
}

std::string chain_jumping_from(const ChainRules& nat, const std::string& chain, const std::string& needle) {
  for (const auto& r : nat.at(chain))
    if (r.find(needle) != std::string::npos) return r.substr(r.rfind(' ') + 1);
  return "";
}

TEST(ServiceRules, ClusterIpIsKubeProxysLayoutWithProbabilitiesAsIptablesPrintsThem) {
  const ServiceTables t = service_tables(Family::kV4, three_backends().set, {});
  const auto& services = t.nat.at(std::string(kServicesChain));
  ASSERT_EQ(services.size(), 2u);
  EXPECT_EQ(services[0].substr(0, services[0].rfind(' ')),
            "-d 10.96.0.10/32 -p tcp -m comment --comment \"ferry: default/web:http cluster IP\" -m tcp --dport 80 -j");
  EXPECT_EQ(services[1], "-m comment --comment \"ferry: service nodeports; NOTE: this must be the last rule in this "
                         "chain\" -m addrtype --dst-type LOCAL -j FERRY-NODEPORTS");
  const std::string svc = chain_jumping_from(t.nat, std::string(kServicesChain), "cluster IP");
  ASSERT_TRUE(svc.starts_with("FERRY-SVC-")) << svc;
  EXPECT_LE(svc.size(), 28u);
  const auto& picks = t.nat.at(svc);
  ASSERT_EQ(picks.size(), 3u);
  EXPECT_NE(picks[0].find("-m statistic --mode random --probability 0.33333333349 -j FERRY-SEP-"), std::string::npos);
  EXPECT_NE(picks[1].find("-m statistic --mode random --probability 0.50000000000 -j FERRY-SEP-"), std::string::npos);
  EXPECT_EQ(picks[2].find("statistic"), std::string::npos);
  const std::string sep = picks[0].substr(picks[0].rfind(' ') + 1);
  EXPECT_EQ(t.nat.at(sep), (std::vector<std::string>{
                               "-s 10.1.0.2/32 -m comment --comment \"ferry: default/web:http\" -j FERRY-MARK-MASQ",
                               "-p tcp -m comment --comment \"ferry: default/web:http\" -j DNAT --to-destination "
                               "10.1.0.2:8080"}));
  EXPECT_TRUE(t.filter.at(std::string(kServicesChain)).empty());
  // The IPv6 tables get nothing of an IPv4 Service but the base chains.
  const ServiceTables v6 = service_tables(Family::kV6, three_backends().set, {});
  EXPECT_EQ(v6.nat.size(), 4u);
  for (const std::string& rule : all_rules(t.nat)) EXPECT_NE(rule.find("--comment \"ferry: "), std::string::npos) << rule;
}

TEST(ServiceRules, AffinityNoEndpointsAndExternalLocal) {
  SetBuilder b = three_backends();
  b.set.frontends[10].affinity = true;
  b.set.frontends[10].affinity_timeout_seconds = 600;
  b.frontend(11, "10.96.0.11", 81, {}).service = "default/empty";
  ServiceFrontend& drop = b.frontend(12, "10.96.0.12", 82, {});
  drop.service = "default/remote";
  drop.when_empty = dataplane::WhenEmpty::Drop;
  drop.traffic_policy = TrafficPolicy::Local;
  ServiceFrontend& np = b.frontend(13, "192.168.5.1", 30080, {1});
  np.kind = FrontendKind::NodePort;
  np.traffic_policy = TrafficPolicy::Local;
  np.pod_and_host_backends = std::vector<BackendId>{1, 2, 3};
  const ServiceTables t = service_tables(Family::kV4, b.set, {*net::Prefix::parse("10.1.0.0/16")});

  const std::string svc = chain_jumping_from(t.nat, std::string(kServicesChain), "10.96.0.10");
  const auto& picks = t.nat.at(svc);
  // The ClusterIP from outside the cluster CIDR is marked, then 3 affinity checks, 3 picks.
  ASSERT_EQ(picks.size(), 7u);
  EXPECT_TRUE(picks[0].starts_with("! -s 10.1.0.0/16 -d 10.96.0.10/32 -p tcp")) << picks[0];
  EXPECT_NE(picks[1].find("-m recent --rcheck --seconds 600 --reap --name FERRY-SEP-"), std::string::npos) << picks[1];
  const std::string sep = picks[4].substr(picks[4].rfind(' ') + 1);
  EXPECT_NE(t.nat.at(sep)[1].find("-m recent --set --name " + sep + " --mask 255.255.255.255 --rsource"),
            std::string::npos);

  const auto& filter = t.filter.at(std::string(kServicesChain));
  ASSERT_EQ(filter.size(), 2u);
  EXPECT_EQ(filter[0], "-d 10.96.0.11/32 -p tcp -m comment --comment \"ferry: default/empty:http has no endpoints\" "
                       "-m tcp --dport 81 -j REJECT --reject-with icmp-port-unreachable");
  EXPECT_EQ(filter[1], "-d 10.96.0.12/32 -p tcp -m comment --comment \"ferry: default/remote:http has no local "
                       "endpoints\" -m tcp --dport 82 -j DROP");

  const std::string ext = chain_jumping_from(t.nat, std::string(kNodePortsChain), "192.168.5.1");
  ASSERT_TRUE(ext.starts_with("FERRY-EXT-")) << ext;
  const auto& ext_rules = t.nat.at(ext);
  ASSERT_EQ(ext_rules.size(), 4u);
  EXPECT_TRUE(ext_rules[0].starts_with("-s 10.1.0.0/16 ")) << ext_rules[0];
  EXPECT_TRUE(ext_rules[0].ends_with(" -j " + svc));  // pods reach every endpoint
  EXPECT_NE(ext_rules[1].find("--src-type LOCAL -j FERRY-MARK-MASQ"), std::string::npos);
  EXPECT_TRUE(ext_rules[3].find("-j FERRY-SVL-") != std::string::npos) << ext_rules[3];
  // FERRY-SVL- holds the one local endpoint: its affinity check and its pick.
  EXPECT_EQ(t.nat.at(ext_rules[3].substr(ext_rules[3].rfind(' ') + 1)).size(), 2u);
}

// The partial restore, on the table model: a second sync writes nothing, a one-backend change
// declares (rewrites) only the Service's SVC chain and the SEP chains that came or went.
TEST(ServiceRules, OneBackendChangeRewritesOnlyTheAffectedChains) {
  SetBuilder b = three_backends();
  b.backend(4, "10.1.0.9", 53, kUdp).frontend(20, "10.96.0.20", 53, {4}, kUdp).service = "kube-system/dns";
  FilterTable nat = parse_table_save("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                                     ":POSTROUTING ACCEPT [0:0]\nCOMMIT\n",
                                     Table::kNat);
  const std::string first = render_services(Table::kNat, service_tables(Family::kV4, b.set, {}).nat, nat);
  ASSERT_TRUE(first.starts_with("*nat\n"));
  apply_table_restore(nat, Table::kNat, first);
  EXPECT_EQ(render_services(Table::kNat, service_tables(Family::kV4, b.set, {}).nat, nat), "");

  const ChainRules before = service_tables(Family::kV4, b.set, {}).nat;
  b.backend(5, "10.1.0.5", 8080);
  b.set.frontends[10].backends = {1, 2, 5};  // 10.1.0.4 out, 10.1.0.5 in
  b.set.backends.erase(3);
  const ChainRules after = service_tables(Family::kV4, b.set, {}).nat;
  const std::string change = render_services(Table::kNat, after, nat);
  std::set<std::string> expected;
  for (const auto& [chain, rules] : after)
    if (!before.count(chain) || before.at(chain) != rules) expected.insert(chain);
  for (const auto& [chain, rules] : before)
    if (!after.count(chain)) expected.insert(chain);
  EXPECT_EQ(expected.size(), 3u);  // SVC, the new SEP, the old SEP
  EXPECT_EQ(declared(change), expected) << change;
  EXPECT_NE(change.find("\n-X FERRY-SEP-"), std::string::npos);
  apply_table_restore(nat, Table::kNat, change);
  EXPECT_EQ(render_services(Table::kNat, after, nat), "");
  // Cleanup removes every chain and every jump; nothing of ours is left.
  apply_table_restore(nat, Table::kNat, render_services_cleanup(Table::kNat, nat));
  EXPECT_EQ(nat.chains, (std::vector<std::string>{"PREROUTING", "OUTPUT", "POSTROUTING"}));
  EXPECT_TRUE(nat.rules.empty());
}

// At kube-proxy's scale the diff stays partial: among 10,000 Services with 3 endpoints each, one
// endpoint change still touches the same three chains and nothing else.
TEST(ServiceRules, OneChangeAmongTenThousandServicesStaysPartial) {
  SetBuilder b;
  for (uint32_t i = 0; i < 10000; ++i) {
    const std::string net = "10.2." + std::to_string(i / 250) + "." + std::to_string(i % 250);
    for (uint32_t k = 0; k < 3; ++k) b.backend(3 * i + k + 1, "10." + std::to_string(3 + k) + net.substr(4), 8080);
    b.frontend(i + 1, "10.96." + std::to_string(i / 250) + "." + std::to_string(i % 250), 80,
               {3 * i + 1, 3 * i + 2, 3 * i + 3})
        .service = "ns/svc-" + std::to_string(i);
  }
  FilterTable nat = parse_table_save("*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                                     ":POSTROUTING ACCEPT [0:0]\nCOMMIT\n",
                                     Table::kNat);
  apply_table_restore(nat, Table::kNat, render_services(Table::kNat, service_tables(Family::kV4, b.set, {}).nat, nat));
  EXPECT_EQ(nat.chains.size(), 3u + 4u + 10000u * 4u);  // built-ins, base chains, SVC + 3 SEP each
  b.backend(99999, "10.9.9.9", 8080);
  b.set.frontends[5000].backends[1] = 99999;
  const std::string change = render_services(Table::kNat, service_tables(Family::kV4, b.set, {}).nat, nat);
  EXPECT_EQ(declared(change).size(), 3u) << change;
}

TEST(ServiceRules, StaleUdpFlowsAreRemovedBackendsAndRemovedFrontendsOnly) {
  SetBuilder b;
  b.backend(1, "10.1.0.2", 53, kUdp).backend(2, "10.1.0.3", 53, kUdp).backend(3, "10.1.0.4", 8080);
  b.frontend(1, "10.96.0.10", 53, {1, 2}, kUdp);
  b.frontend(2, "10.96.0.11", 53, {1}, kUdp);
  b.frontend(3, "10.96.0.12", 80, {3});
  SetBuilder after = b;
  after.set.frontends[1].backends = {1};
  after.set.frontends.erase(2);
  after.set.frontends.erase(3);
  const auto stale = stale_udp_flows(b.set, after.set);
  ASSERT_EQ(stale.size(), 2u);
  EXPECT_EQ(stale[0].frontend.str(), "10.96.0.10");
  EXPECT_EQ(stale[0].backend->str(), "10.1.0.3");
  EXPECT_EQ(stale[1].frontend.str(), "10.96.0.11");
  EXPECT_FALSE(stale[1].backend);
  // A backend that moves to other_backends (not ready) keeps its flows.
  SetBuilder not_ready = b;
  not_ready.set.frontends[1].backends = {1};
  not_ready.set.frontends[1].other_backends = {2};
  EXPECT_TRUE(stale_udp_flows(b.set, not_ready.set).empty());
}

// ---------------------------------------------------------------------------------------
// Root tests: real traffic

const Pod kPodA{"fyips-pa", "fyips0a", "10.253.0.1", "fd00:fd::1"};
const Pod kPodB{"fyips-pb", "fyips0b", "10.253.0.2", "fd00:fd::2"};
const testing::RoutedHop kOutside{{"fyips-out", "fyips0o", "10.253.1.2", "fd00:fe::2"},
                                  "10.253.1.1", "fd00:fe::1", "10.253.0.254", "fd00:fd::fe"};
// Pod B serves as three backends, one address each.
const std::vector<std::string> kBackendsV4 = {"10.253.0.2", "10.253.0.3", "10.253.0.4"};
const std::vector<std::string> kBackendsV6 = {"fd00:fd::2", "fd00:fd::3", "fd00:fd::4"};
const std::string kClusterIp = "10.96.7.10", kClusterIp6 = "fd00:96::10";
constexpr uint16_t kPort = 80, kTargetPort = 8080, kNodePort = 30080;
// Deadlines: generous where something must happen, short where nothing may.
constexpr int kArriveMs = 10000, kAbsentMs = 2000;

class Socket {
 public:
  explicit Socket(int fd = -1) : fd_(fd) {}
  Socket(Socket&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Socket& operator=(Socket&& o) noexcept {
    std::swap(fd_, o.fd_);
    return *this;
  }
  ~Socket() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }

 private:
  int fd_;
};

sockaddr_storage endpoint(const std::string& address, uint16_t port, socklen_t& len) {
  sockaddr_storage ss{};
  const net::Ip a = ip(address);
  if (a.family == AF_INET6) {
    auto& s6 = reinterpret_cast<sockaddr_in6&>(ss);
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(port);
    std::copy_n(a.bytes.begin(), 16, s6.sin6_addr.s6_addr);
    len = sizeof s6;
  } else {
    auto& s4 = reinterpret_cast<sockaddr_in&>(ss);
    s4.sin_family = AF_INET;
    s4.sin_port = htons(port);
    std::copy_n(a.bytes.begin(), 4, reinterpret_cast<uint8_t*>(&s4.sin_addr));
    len = sizeof s4;
  }
  return ss;
}

std::string address_of(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr, buf, sizeof buf);
  else
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(ss).sin_addr, buf, sizeof buf);
  return buf;
}

bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, timeout_ms) == 1;
}

// A non-blocking socket created in the netns at `netns_path` (it stays there), bound to
// address:port when address is given.
Socket socket_in(const std::string& netns_path, int type, const std::string& address, uint16_t port = 0) {
  int fd = -1;
  const int family = ip(address).family;
  net::in_netns(net::Netns::open(netns_path), [&] { fd = ::socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0); });
  Socket s(fd);
  if (fd < 0) throw std::runtime_error("socket failed");
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (port != 0) {
    socklen_t len;
    sockaddr_storage a = endpoint(address, port, len);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), len) != 0)
      throw std::runtime_error("bind " + address + " failed: " + strerror(errno));
  }
  return s;
}

// TCP connect from the netns: 0 when established, the socket error (ECONNREFUSED) when
// refused, ETIMEDOUT when nothing happened within timeout_ms.
int connect_from(const std::string& netns_path, const std::string& dst, uint16_t port, int timeout_ms,
                 Socket* keep = nullptr) {
  Socket s = socket_in(netns_path, SOCK_STREAM, dst);
  socklen_t len;
  sockaddr_storage a = endpoint(dst, port, len);
  ::connect(s.fd(), reinterpret_cast<sockaddr*>(&a), len);
  pollfd p{s.fd(), POLLOUT, 0};
  if (::poll(&p, 1, timeout_ms) != 1) return ETIMEDOUT;
  int err = 0;
  socklen_t el = sizeof err;
  getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &err, &el);
  if (keep) *keep = std::move(s);
  return err;
}

// TCP listeners, one per backend address; accept() tells which one a connection reached.
class Listeners {
 public:
  Listeners(const std::string& netns_path, const std::vector<std::string>& addresses, uint16_t port) {
    for (const auto& a : addresses) {
      sockets_.push_back(socket_in(netns_path, SOCK_STREAM, a, port));
      if (::listen(sockets_.back().fd(), 64) != 0) throw std::runtime_error("listen failed");
    }
  }
  // Index of the listener that got the connection and the connection's source address;
  // -1 when none within timeout_ms.
  int accept_one(std::string* peer = nullptr, Socket* keep = nullptr, int timeout_ms = kArriveMs) {
    std::vector<pollfd> p;
    for (const Socket& s : sockets_) p.push_back({s.fd(), POLLIN, 0});
    if (::poll(p.data(), p.size(), timeout_ms) <= 0) return -1;
    for (size_t i = 0; i < p.size(); ++i) {
      if (!(p[i].revents & POLLIN)) continue;
      sockaddr_storage from{};
      socklen_t len = sizeof from;
      Socket c(::accept4(sockets_[i].fd(), reinterpret_cast<sockaddr*>(&from), &len, SOCK_CLOEXEC));
      if (c.fd() < 0) continue;
      if (peer) *peer = address_of(from);
      if (keep) *keep = std::move(c);
      return static_cast<int>(i);
    }
    return -1;
  }

 private:
  std::vector<Socket> sockets_;
};

class IptablesServices : public testing::BridgeNode {
 protected:
  void SetUp() override {
    build("fyips", kPodA, kPodB);
    if (IsSkipped()) return;
    add_routed_hop(kOutside, {&kPodA, &kPodB});
    // The node's default route leads out (as a real node's does): untranslated Service
    // addresses are routed, so a missing rule shows as a wrong backend, not as "unreachable".
    test::sh("ip -n " + node_->name() + " route add default via " + kOutside.peer.v4);
    test::sh("ip -n " + node_->name() + " -6 route add default via " + kOutside.peer.v6);
    for (size_t i = 1; i < kBackendsV4.size(); ++i) {
      test::sh("ip -n " + kPodB.netns + " addr add " + kBackendsV4[i] + "/24 dev eth0");
      test::sh("ip -n " + kPodB.netns + " addr add " + kBackendsV6[i] + "/64 dev eth0 nodad");
    }
    config_.cluster_cidrs = {*net::Prefix::parse("10.253.0.0/24"), *net::Prefix::parse("fd00:fd::/64")};
    dp_ = make_iptables_dataplane(config_);
    // The endpoint datapath runs too (anti-spoofing, policy chains): services must pass it.
    dataplane::Endpoint b = endpoint_of(2, kPodB);
    for (size_t i = 1; i < kBackendsV4.size(); ++i) b.ips.push_back(ip(kBackendsV4[i]));
    for (size_t i = 1; i < kBackendsV6.size(); ++i) b.ips.push_back(ip(kBackendsV6[i]));
    std::sort(b.ips.begin(), b.ips.end(), [](const net::Ip& x, const net::Ip& y) {
      return std::tie(x.family, x.bytes) < std::tie(y.family, y.bytes);
    });
    in_node([&] {
      dp_->start();
      dp_->program_endpoint(endpoint_of(1, kPodA));
      dp_->program_endpoint(b);
    });
  }

  // Backends 1..3: pod B's addresses on kTargetPort (proto); 11..13 the IPv6 ones; 4: pod A.
  static SetBuilder backends(uint8_t proto = kTcp) {
    SetBuilder s;
    for (size_t i = 0; i < kBackendsV4.size(); ++i) {
      s.backend(static_cast<BackendId>(1 + i), kBackendsV4[i], kTargetPort, proto);
      s.backend(static_cast<BackendId>(11 + i), kBackendsV6[i], kTargetPort, proto);
    }
    s.backend(4, kPodA.v4, kTargetPort, proto);
    return s;
  }

  void program(const ServiceSet& set) {
    in_node([&] { dp_->program_services(set); });
  }
  uint64_t writes(dataplane::Dataplane& dp) {
    uint64_t w = 0;
    in_node([&] { w = dp.stats().kernel_writes; });
    return w;
  }
  std::string pod_path(const Pod& p) const { return "/run/netns/" + p.netns; }

  // How many of `n` connections from `from` to dst:port each backend listener accepted.
  std::vector<int> spread(const std::string& from, const std::string& dst, uint16_t port, int n,
                          const std::vector<std::string>& backend_addresses) {
    Listeners listeners(pod_path(kPodB), backend_addresses, kTargetPort);
    std::vector<int> counts(backend_addresses.size(), 0);
    for (int i = 0; i < n; ++i) {
      if (connect_from(from, dst, port, kArriveMs) != 0) {
        ADD_FAILURE() << "connection " << i << " to " << dst << " failed";
        break;
      }
      const int which = listeners.accept_one();
      if (which < 0) {
        ADD_FAILURE() << "connection " << i << " reached no backend";
        break;
      }
      ++counts[which];
    }
    return counts;
  }

  IptablesConfig config_;
  std::unique_ptr<dataplane::Dataplane> dp_;
};

TEST_F(IptablesServices, ClusterIpSpreadsNewConnectionsOverThreeBackendsOnTheTargetPort) {
  SetBuilder s = backends();
  s.frontend(1, kClusterIp, kPort, {1, 2, 3});
  program(s.set);
  const std::vector<int> counts = spread(pod_path(kPodA), kClusterIp, kPort, 300, kBackendsV4);
  // 100 each expected; below 50 would be a broken probability ladder (p < 1e-8 by chance).
  for (size_t i = 0; i < counts.size(); ++i) EXPECT_GE(counts[i], 50) << kBackendsV4[i] << " got " << counts[i];
  EXPECT_EQ(counts[0] + counts[1] + counts[2], 300);
}

TEST_F(IptablesServices, Ipv6ClusterIpAndUdpWithRepliesFromTheServiceAddress) {
  SetBuilder s = backends(kUdp);
  s.backend(21, kBackendsV6[0], kTargetPort, kTcp).backend(22, kBackendsV6[1], kTargetPort, kTcp);
  s.frontend(1, kClusterIp, 53, {1}, kUdp).port_name = "dns";
  s.frontend(2, kClusterIp6, kPort, {21, 22});
  program(s.set);

  const std::vector<int> counts = spread(pod_path(kPodA), kClusterIp6, kPort, 40, {kBackendsV6[0], kBackendsV6[1]});
  EXPECT_GT(counts[0], 0);
  EXPECT_GT(counts[1], 0);

  // UDP: the backend echoes; the client's socket is connected to the ClusterIP, so it only
  // takes the reply if it comes back from the ClusterIP (reverse NAT).
  Socket server = socket_in(pod_path(kPodB), SOCK_DGRAM, kBackendsV4[0], kTargetPort);
  Socket client = socket_in(pod_path(kPodA), SOCK_DGRAM, kPodA.v4);
  socklen_t len;
  sockaddr_storage svc = endpoint(kClusterIp, 53, len);
  ASSERT_EQ(::connect(client.fd(), reinterpret_cast<sockaddr*>(&svc), len), 0);
  bool echoed = false;
  for (int tries = 0; tries < kArriveMs / 200 && !echoed; ++tries) {
    ::send(client.fd(), "query", 5, 0);
    if (readable(server.fd(), 200)) {
      char buf[16];
      sockaddr_storage from{};
      socklen_t flen = sizeof from;
      ssize_t n = ::recvfrom(server.fd(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &flen);
      EXPECT_EQ(address_of(from), kPodA.v4);  // pod to pod: the source is kept
      ::sendto(server.fd(), buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), flen);
    }
    echoed = readable(client.fd(), 200) && ::recv(client.fd(), nullptr, 0, MSG_TRUNC) == 5;
  }
  EXPECT_TRUE(echoed);
}

TEST_F(IptablesServices, SessionAffinityKeepsAClientOnOneBackend) {
  SetBuilder s = backends();
  ServiceFrontend& fe = s.frontend(1, kClusterIp, kPort, {1, 2, 3});
  fe.affinity = true;
  fe.affinity_timeout_seconds = 600;
  program(s.set);
  const std::vector<int> counts = spread(pod_path(kPodA), kClusterIp, kPort, 30, kBackendsV4);
  EXPECT_EQ(*std::max_element(counts.begin(), counts.end()), 30) << counts[0] << "/" << counts[1] << "/" << counts[2];
}

TEST_F(IptablesServices, NoEndpointRejectsAndDropTimesOut) {
  SetBuilder s = backends();
  s.frontend(1, kClusterIp, kPort, {});
  ServiceFrontend& drop = s.frontend(2, kClusterIp, 81, {});
  drop.when_empty = dataplane::WhenEmpty::Drop;
  s.frontend(3, kClusterIp6, kPort, {});
  program(s.set);
  EXPECT_EQ(connect_from(pod_path(kPodA), kClusterIp, kPort, kArriveMs), ECONNREFUSED);
  EXPECT_EQ(connect_from(pod_path(kPodA), kClusterIp6, kPort, kArriveMs), ECONNREFUSED);
  EXPECT_EQ(connect_from(node_->path(), kClusterIp, kPort, kArriveMs), ECONNREFUSED);  // OUTPUT
  EXPECT_EQ(connect_from(pod_path(kPodA), kClusterIp, 81, kAbsentMs), ETIMEDOUT);
  EXPECT_GE(drop_counter(*dp_, "drop_no_service"), 3u);
}

TEST_F(IptablesServices, HairpinAndTheNodeItselfReachTheService) {
  SetBuilder s = backends();
  s.frontend(1, kClusterIp, kPort, {4});  // pod A only
  s.frontend(2, kClusterIp, 81, {1}).port_name = "metrics";  // pod B
  program(s.set);
  // What the CNI bridge plugin's hairpinMode does: the reply, un-NATed in the bridge, leaves
  // by the port it came in.
  test::sh("ip -n " + node_->name() + " link set " + kPodA.veth + " type bridge_slave hairpin on");
  {
    Listeners self(pod_path(kPodA), {kPodA.v4}, kTargetPort);
    ASSERT_EQ(connect_from(pod_path(kPodA), kClusterIp, kPort, kArriveMs), 0);
    std::string peer;
    EXPECT_EQ(self.accept_one(&peer), 0);
    EXPECT_EQ(peer, kOutside.bridge_v4);  // masqueraded, so the reply comes back through the node
  }
  Listeners b(pod_path(kPodB), {kBackendsV4[0]}, kTargetPort);
  ASSERT_EQ(connect_from(node_->path(), kClusterIp, 81, kArriveMs), 0);
  EXPECT_EQ(b.accept_one(), 0);
}

TEST_F(IptablesServices, NodePortFromOutsideMasqueradesUnderClusterAndKeepsTheSourceUnderLocal) {
  SetBuilder s = backends();
  ServiceFrontend& cluster = s.frontend(1, kOutside.node_v4, kNodePort, {1, 2, 3});
  cluster.kind = FrontendKind::NodePort;
  ServiceFrontend& local = s.frontend(2, kOutside.node_v4, kNodePort + 1, {1});  // 2, 3 "on other nodes"
  local.service = "default/local";
  local.kind = FrontendKind::NodePort;
  local.traffic_policy = TrafficPolicy::Local;
  local.pod_and_host_backends = std::vector<BackendId>{1, 2, 3};
  local.other_backends = {2, 3};
  program(s.set);

  const std::string outside = "/run/netns/" + kOutside.peer.netns;
  Listeners listeners(pod_path(kPodB), kBackendsV4, kTargetPort);
  std::set<std::string> sources;
  std::vector<int> local_counts(3, 0);
  for (int i = 0; i < 10; ++i) {
    std::string peer;
    ASSERT_EQ(connect_from(outside, kOutside.node_v4, kNodePort, kArriveMs), 0);
    ASSERT_GE(listeners.accept_one(&peer), 0);
    sources.insert(peer);
    ASSERT_EQ(connect_from(outside, kOutside.node_v4, kNodePort + 1, kArriveMs), 0);
    const int which = listeners.accept_one(&peer);
    ASSERT_GE(which, 0);
    ++local_counts[which];
    EXPECT_EQ(peer, kOutside.peer.v4);
  }
  EXPECT_EQ(sources, std::set<std::string>{kOutside.bridge_v4});
  EXPECT_EQ(local_counts[0], 10);
  // Pods (the cluster CIDR) reach every endpoint of the Local NodePort.
  std::set<int> reached;
  for (int i = 0; i < 30; ++i) {
    ASSERT_EQ(connect_from(pod_path(kPodA), kOutside.node_v4, kNodePort + 1, kArriveMs), 0);
    reached.insert(listeners.accept_one());
  }
  EXPECT_GE(reached.size(), 2u);
  EXPECT_FALSE(reached.count(-1));
}

// Sends datagrams from `client` (connected to the Service) until one arrives at a socket of
// `servers`; its index, -1 when none within kArriveMs.
int udp_lands_on(const Socket& client, const std::vector<Socket>& servers) {
  std::vector<pollfd> p;
  for (const Socket& s : servers) p.push_back({s.fd(), POLLIN, 0});
  for (int waited = 0; waited < kArriveMs; waited += 200) {
    ::send(client.fd(), "q", 1, 0);
    if (::poll(p.data(), p.size(), 200) <= 0) continue;
    for (size_t i = 0; i < p.size(); ++i)
      if (p[i].revents & POLLIN) {
        char buf[8];
        while (::recv(servers[i].fd(), buf, sizeof buf, 0) > 0) {
        }
        return static_cast<int>(i);
      }
  }
  return -1;
}

TEST_F(IptablesServices, UdpFlowsOfARemovedBackendMoveToTheRemainingOnes) {
  if (!net::find_executable("conntrack")) GTEST_SKIP() << "needs the conntrack tool (Debian package conntrack)";
  SetBuilder s = backends(kUdp);
  s.frontend(1, kClusterIp, 53, {1}, kUdp);
  program(s.set);
  std::vector<Socket> servers;
  for (size_t i = 0; i < 2; ++i) servers.push_back(socket_in(pod_path(kPodB), SOCK_DGRAM, kBackendsV4[i], kTargetPort));
  Socket client = socket_in(pod_path(kPodA), SOCK_DGRAM, kPodA.v4);
  socklen_t len;
  sockaddr_storage svc = endpoint(kClusterIp, 53, len);
  ASSERT_EQ(::connect(client.fd(), reinterpret_cast<sockaddr*>(&svc), len), 0);
  ASSERT_EQ(udp_lands_on(client, servers), 0);
  // Backend 1 goes away (still listening: only the stale conntrack entry could reach it).
  s.set.frontends[1].backends = {2};
  program(s.set);
  EXPECT_EQ(udp_lands_on(client, servers), 1);
}

// Rule counters of one nat chain in the node (iptables-save -c), summed.
uint64_t chain_packets(const std::string& save_c, const std::string& chain) {
  uint64_t sum = 0;
  for (const Rule* r : parse_table_save(save_c, Table::kNat).rules_of(chain)) sum += r->packets;
  return sum;
}

TEST_F(IptablesServices, OneBackendChangeRewritesOnlyItsChainsKeepsFlowsAndARestartWritesNothing) {
  SetBuilder s = backends();
  s.frontend(1, kClusterIp, kPort, {1, 2});
  s.frontend(2, kClusterIp, 81, {3}).service = "default/other";
  program(s.set);
  Listeners listeners(pod_path(kPodB), kBackendsV4, kTargetPort);
  Socket established, accepted;
  ASSERT_EQ(connect_from(pod_path(kPodA), kClusterIp, kPort, kArriveMs, &established), 0);
  const int first = listeners.accept_one(nullptr, &accepted);
  ASSERT_GE(first, 0);
  ASSERT_EQ(connect_from(pod_path(kPodA), kClusterIp, 81, kArriveMs), 0);
  ASSERT_EQ(listeners.accept_one(), 2);

  const std::string before = node_->exec("iptables-save -c -t nat");
  const ServiceTables tables = service_tables(Family::kV4, s.set, {});
  auto svc_of = [&](const ServiceTables& t, const std::string& needle) {
    for (const auto& r : t.nat.at(std::string(kServicesChain)))
      if (r.find(needle) != std::string::npos) return r.substr(r.rfind(' ') + 1);
    return std::string();
  };
  const std::string svc80 = svc_of(tables, "--dport 80 "), svc81 = svc_of(tables, "--dport 81 ");
  ASSERT_GT(chain_packets(before, svc80), 0u);
  ASSERT_GT(chain_packets(before, svc81), 0u);
  ASSERT_GT(chain_packets(before, std::string(kServicesChain)), 0u);

  // The backend the established connection did not pick is replaced by backend 3.
  const uint64_t writes_before = writes(*dp_);
  s.set.frontends[1].backends = {static_cast<BackendId>(1 + first), 3};
  program(s.set);
  EXPECT_EQ(writes(*dp_) - writes_before, 1u);  // one nat restore, IPv4 only
  const std::string after = node_->exec("iptables-save -c -t nat");
  EXPECT_EQ(chain_packets(after, svc80), 0u);  // rewritten: counters start over
  EXPECT_EQ(chain_packets(after, svc81), chain_packets(before, svc81));  // untouched
  EXPECT_EQ(chain_packets(after, std::string(kServicesChain)), chain_packets(before, std::string(kServicesChain)));

  // The established connection still carries data both ways.
  ASSERT_EQ(::send(established.fd(), "ping", 4, MSG_NOSIGNAL), 4);
  ASSERT_TRUE(readable(accepted.fd(), kArriveMs));
  char buf[8];
  EXPECT_EQ(::recv(accepted.fd(), buf, sizeof buf, 0), 4);
  ASSERT_EQ(::send(accepted.fd(), "pong", 4, MSG_NOSIGNAL), 4);
  ASSERT_TRUE(readable(established.fd(), kArriveMs));
  EXPECT_EQ(::recv(established.fd(), buf, sizeof buf, 0), 4);

  // Same set again, and a restarted agent: nothing written, the tables unchanged.
  const std::string settled = testing::save_without_noise(node_->exec("iptables-save -t nat")) +
                              testing::save_without_noise(node_->exec("iptables-save -t filter"));
  const uint64_t writes_settled = writes(*dp_);
  program(s.set);
  EXPECT_EQ(writes(*dp_), writes_settled);
  auto restarted = make_iptables_dataplane(config_);
  in_node([&] { restarted->program_services(s.set); });
  EXPECT_EQ(writes(*restarted), 0u);
  EXPECT_EQ(testing::save_without_noise(node_->exec("iptables-save -t nat")) +
                testing::save_without_noise(node_->exec("iptables-save -t filter")),
            settled);
}

TEST_F(IptablesServices, EveryRuleIsCommentedAndCleanupAllLeavesNoFerryChain) {
  SetBuilder s = backends();
  ServiceFrontend& fe = s.frontend(1, kClusterIp, kPort, {1, 2, 3});
  fe.affinity = true;
  fe.affinity_timeout_seconds = 60;
  s.frontend(2, kClusterIp, 81, {});
  ServiceFrontend& np = s.frontend(3, kOutside.node_v4, kNodePort, {1});
  np.kind = FrontendKind::NodePort;
  np.traffic_policy = TrafficPolicy::Local;
  np.pod_and_host_backends = std::vector<BackendId>{1, 2, 3};
  s.frontend(4, kClusterIp6, kPort, {11, 12});
  program(s.set);
  for (const char* tool : {"iptables-save", "ip6tables-save"})
    for (const char* table : {"nat", "filter"}) {
      const std::string save = node_save(tool, table);
      int ours = 0;
      for (const Rule& r : parse_table_save(save, std::string(table) == "nat" ? Table::kNat : Table::kFilter).rules) {
        if (!r.chain.starts_with("FERRY-") && !r.target.starts_with("FERRY-")) continue;
        ++ours;
        EXPECT_TRUE(r.comment.starts_with("ferry: ")) << tool << " " << table << ": -A " << r.chain << " " << r.spec;
      }
      EXPECT_GT(ours, 0) << tool << " " << table;
    }
  in_node([&] { dp_->cleanup_all(); });
  for (const char* tool : {"iptables-save", "ip6tables-save"})
    for (const char* table : {"nat", "filter"})
      EXPECT_EQ(node_save(tool, table).find("FERRY"), std::string::npos) << tool << " -t " << table;
}

}  // namespace
}  // namespace ferry::iptables
