// The eBPF backend's program_services against a real kernel: two pods on one node (a = client,
// b = backends on several ports), ClusterIP frontends written through the backend and reached
// from pod a over TCP and UDP (IPv4 and IPv6); the maps as the datapath reads them; only the
// differences written (kernel_writes exact), nothing after a restart; an established connection
// survives the removal of another backend; a removed frontend is no longer translated; Maglev
// tables only in Maglev mode; affinity entries of a removed backend go; migrations of the
// config and conntrack of older builds; the masquerade rule for marked NodePort traffic.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <map>

#include "agent/services/services.h"
#include "ferry/abi.h"
#include "support.h"

#ifndef SO_NETNS_COOKIE
#define SO_NETNS_COOKIE 71
#endif

namespace ferry::ebpftest {
namespace {

using dataplane::BackendId;
using dataplane::ServiceBackend;
using dataplane::ServiceFrontend;
using dataplane::ServiceId;
using dataplane::ServiceSet;

net::Ip ip(const std::string& text) { return *net::Ip::parse(text); }

const net::Ip kVip4 = ip("10.96.0.10");
const net::Ip kVip6 = ip("fd96::10");
constexpr uint16_t kTcpPort = 80, kUdpPort = 53;
constexpr uint16_t kBackendPort1 = 18081, kBackendPort2 = 18082, kUdpBackendPort = 18053;

// An owned socket.
struct Sock {
  int fd = -1;
  Sock() = default;
  explicit Sock(int f) : fd(f) {}
  Sock(Sock&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Sock& operator=(Sock&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  ~Sock() {
    if (fd >= 0) ::close(fd);
  }
};

class EbpfServices : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_EBPF();
    node_ = std::make_unique<TwoPodNode>();
    node_->add_gateway();
    dp_ = start(node_->config());
  }
  void TearDown() override {
    dp_.reset();
    node_.reset();  // the node netns takes its nat rules along
  }

  std::unique_ptr<dataplane::Dataplane> start(const ebpf::EbpfConfig& config) {
    auto dp = node_->started_backend(config);
    for (int i = 0; i < 2; ++i) {
      dataplane::Endpoint ep = node_->endpoint(i);
      node_->in_node([&] { dp->program_endpoint(ep); });
    }
    return dp;
  }

  template <typename F>
  auto in_node(F fn) {
    return node_->run_in_node(fn);
  }
  uint64_t writes(dataplane::Dataplane& dp) {
    return in_node([&] { return dp.stats(); }).kernel_writes;
  }
  void program(dataplane::Dataplane& dp, const ServiceSet& set) {
    in_node([&] { dp.program_services(set); });
  }
  ebpf::PinnedMaps maps() { return ebpf::PinnedMaps::open(node_->bpffs_root()); }
  uint64_t entries(const char* map) { return maps().map_fill().at(map).entries; }

  // Backends on pod b: TCP 11 (port 1), 12 (port 2), 13 (v6, port 1); UDP 21 (v4), 22 (v6).
  ServiceBackend backend(BackendId id) const {
    const Pod& b = node_->pod(1);
    switch (id) {
      case 11: return {b.ip4, kBackendPort1, IPPROTO_TCP, dataplane::BackendState::Active, "n", true};
      case 12: return {b.ip4, kBackendPort2, IPPROTO_TCP, dataplane::BackendState::Active, "n", true};
      case 13: return {b.ip6, kBackendPort1, IPPROTO_TCP, dataplane::BackendState::Active, "n", true};
      case 21: return {b.ip4, kUdpBackendPort, IPPROTO_UDP, dataplane::BackendState::Active, "n", true};
      case 22: return {b.ip6, kUdpBackendPort, IPPROTO_UDP, dataplane::BackendState::Active, "n", true};
      default: return {b.ip4, static_cast<uint16_t>(19000 + id), IPPROTO_TCP, dataplane::BackendState::Active, "n", true};
    }
  }
  static ServiceFrontend frontend(const net::Ip& vip, uint16_t port, uint8_t proto, std::vector<BackendId> backends) {
    ServiceFrontend f;
    f.address = vip;
    f.port = port;
    f.proto = proto;
    f.service = "default/web";
    f.backends = std::move(backends);
    return f;
  }
  // Frontends 1 (TCP v4 -> 11, 12), 2 (UDP v4 -> 21), 3 (TCP v6 -> 13), 4 (UDP v6 -> 22).
  ServiceSet services(std::vector<BackendId> tcp4 = {11, 12}) const {
    ServiceSet set;
    set.frontends[1] = frontend(kVip4, kTcpPort, IPPROTO_TCP, std::move(tcp4));
    set.frontends[2] = frontend(kVip4, kUdpPort, IPPROTO_UDP, {21});
    set.frontends[3] = frontend(kVip6, kTcpPort, IPPROTO_TCP, {13});
    set.frontends[4] = frontend(kVip6, kUdpPort, IPPROTO_UDP, {22});
    complete(set);
    return set;
  }
  // set.backends = exactly what the frontends name.
  void complete(ServiceSet& set) const {
    set.backends.clear();
    for (const auto& [id, f] : set.frontends) {
      for (BackendId b : f.backends) set.backends[b] = backend(b);
      if (f.pod_and_host_backends)
        for (BackendId b : *f.pod_and_host_backends) set.backends[b] = backend(b);
      for (BackendId b : f.other_backends) set.backends[b] = backend(b);
    }
  }

  static ferry_service_key svc_key(const net::Ip& vip, uint16_t port, uint8_t proto) {
    ferry_service_key key{};
    std::memcpy(key.addr, vip.bytes.data(), static_cast<size_t>(vip.size()));
    key.port = htons(port);
    key.proto = proto;
    key.family = static_cast<uint8_t>(vip.family);
    return key;
  }
  std::optional<ferry_service_value> svc_entry(const net::Ip& vip, uint16_t port, uint8_t proto) {
    ebpf::PinnedMaps m = maps();
    ferry_service_key key = svc_key(vip, port, proto);
    ferry_service_value value{};
    if (bpf_map_lookup_elem(m.services_fd(), &key, &value) != 0) return std::nullopt;
    return value;
  }
  std::optional<uint32_t> slot(uint32_t service_id, uint16_t index, uint8_t set = 0) {
    ebpf::PinnedMaps m = maps();
    ferry_slot_key key{service_id, index, set, 0};
    uint32_t value = 0;
    if (bpf_map_lookup_elem(m.slots_fd(), &key, &value) != 0) return std::nullopt;
    return value;
  }
  ferry_config config() {
    ebpf::PinnedMaps m = maps();
    ferry_config cfg{};
    uint32_t zero = 0;
    EXPECT_EQ(bpf_map_lookup_elem(m.config_fd(), &zero, &cfg), 0);
    return cfg;
  }

  // ---- traffic ----

  Sock socket_in(int pod, int family, int type) {
    Sock s;
    net::Netns ns = net::Netns::open(node_->pod_netns(pod).path());
    net::in_netns(ns, [&] { s.fd = ::socket(family, type | SOCK_CLOEXEC, 0); });
    timeval tv{3, 0};
    ::setsockopt(s.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(s.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    return s;
  }
  Sock listener(int family, uint16_t port) {
    Sock s = socket_in(1, family, SOCK_STREAM);
    int one = 1;
    ::setsockopt(s.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t len = 0;
    sockaddr_storage a = sockaddr_of(family == AF_INET6 ? node_->pod(1).ip6 : node_->pod(1).ip4, port, &len);
    EXPECT_EQ(::bind(s.fd, reinterpret_cast<sockaddr*>(&a), len), 0) << std::strerror(errno);
    EXPECT_EQ(::listen(s.fd, 16), 0);
    return s;
  }
  // Listeners of TCP backends 11 and 12 (13 for IPv6) on pod b, by port.
  std::map<uint16_t, Sock> tcp_backends(int family) {
    std::map<uint16_t, Sock> out;
    for (uint16_t port : {kBackendPort1, kBackendPort2}) out.emplace(port, listener(family, port));
    return out;
  }
  // A connection from pod a to vip:port; fd -1 when connect failed.
  Sock connect_to(const net::Ip& vip, uint16_t port) {
    Sock c = socket_in(0, vip.family, SOCK_STREAM);
    socklen_t len = 0;
    sockaddr_storage a = sockaddr_of(vip, port, &len);
    if (::connect(c.fd, reinterpret_cast<sockaddr*>(&a), len) != 0) return Sock();
    return c;
  }
  // The connection waiting on one of `listeners` (by backend port); port 0 when none arrives.
  std::pair<uint16_t, Sock> accept_one(std::map<uint16_t, Sock>& listeners) {
    std::vector<pollfd> fds;
    std::vector<uint16_t> ports;
    for (auto& [port, s] : listeners) {
      fds.push_back({s.fd, POLLIN, 0});
      ports.push_back(port);
    }
    if (::poll(fds.data(), fds.size(), 3000) <= 0) return {0, Sock()};
    for (size_t i = 0; i < fds.size(); ++i)
      if (fds[i].revents & POLLIN) return {ports[i], Sock(::accept(fds[i].fd, nullptr, nullptr))};
    return {0, Sock()};
  }
  // One request and one response over an established pair.
  static bool exchange(const Sock& client, const Sock& server) {
    const char request[] = "ferry-request", response[] = "ferry-response";
    char buf[32] = {};
    if (::send(client.fd, request, sizeof(request), 0) != sizeof(request)) return false;
    if (::recv(server.fd, buf, sizeof(request), MSG_WAITALL) != sizeof(request) || std::strcmp(buf, request) != 0)
      return false;
    if (::send(server.fd, response, sizeof(response), 0) != sizeof(response)) return false;
    std::memset(buf, 0, sizeof(buf));
    return ::recv(client.fd, buf, sizeof(response), MSG_WAITALL) == sizeof(response) && std::strcmp(buf, response) == 0;
  }
  // A UDP datagram from pod a to vip:port answered by the backend on pod b; returns where the
  // answer came from as pod a saw it ("" when no answer), and in *seen_by_backend where the
  // request came from as the backend saw it.
  std::string udp_round_trip(const net::Ip& vip, uint16_t port, std::string* seen_by_backend) {
    const int family = vip.family;
    Sock server = socket_in(1, family, SOCK_DGRAM);
    socklen_t len = 0;
    sockaddr_storage a = sockaddr_of(family == AF_INET6 ? node_->pod(1).ip6 : node_->pod(1).ip4, kUdpBackendPort, &len);
    if (::bind(server.fd, reinterpret_cast<sockaddr*>(&a), len) != 0) return "";
    Sock client = socket_in(0, family, SOCK_DGRAM);
    sockaddr_storage to = sockaddr_of(vip, port, &len);
    if (::sendto(client.fd, "q", 1, 0, reinterpret_cast<sockaddr*>(&to), len) != 1) return "";
    char buf[8];
    sockaddr_storage from{};
    socklen_t from_len = sizeof(from);
    if (::recvfrom(server.fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &from_len) != 1) return "";
    *seen_by_backend = sockaddr_str(from);
    if (::sendto(server.fd, "r", 1, 0, reinterpret_cast<sockaddr*>(&from), from_len) != 1) return "";
    from_len = sizeof(from);
    if (::recvfrom(client.fd, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &from_len) != 1) return "";
    return sockaddr_str(from);
  }
  // Pins a map of an older build's layout under the node root, holding `entries` (key, value).
  void pin_old_map(bpf_map_type type, const char* name, uint32_t key_size, uint32_t value_size, uint32_t max_entries,
                   const std::vector<std::pair<const void*, const void*>>& entries) {
    int fd = bpf_map_create(type, name, key_size, value_size, max_entries, nullptr);
    ASSERT_GE(fd, 0) << name << ": " << std::strerror(errno);
    for (const auto& [key, value] : entries) EXPECT_EQ(bpf_map_update_elem(fd, key, value, BPF_ANY), 0);
    EXPECT_EQ(bpf_obj_pin(fd, (node_->bpffs_root() + "/" + name).c_str()), 0) << std::strerror(errno);
    ::close(fd);
  }

  std::unique_ptr<TwoPodNode> node_;
  std::unique_ptr<dataplane::Dataplane> dp_;
};

TEST_F(EbpfServices, FrontendsBackendsSlotsAndReverseNatAreWritten) {
  ServiceSet set = services();
  set.frontends[1].affinity = true;
  set.frontends[1].affinity_timeout_seconds = 600;
  program(*dp_, set);

  auto tcp4 = svc_entry(kVip4, kTcpPort, IPPROTO_TCP);
  ASSERT_TRUE(tcp4) << "the TCP frontend is in " << FERRY_MAP_SERVICES;
  EXPECT_EQ(tcp4->service_id, 1u);
  EXPECT_EQ(tcp4->count, 2u);
  EXPECT_EQ(tcp4->flags, static_cast<uint32_t>(FERRY_SVC_F_AFFINITY));
  EXPECT_EQ(tcp4->affinity_timeout_s, 600u);
  EXPECT_EQ(slot(1, 0), 11u) << "slots dense in IR order";
  EXPECT_EQ(slot(1, 1), 12u);
  EXPECT_FALSE(slot(1, 2));
  EXPECT_TRUE(svc_entry(kVip6, kUdpPort, IPPROTO_UDP));
  EXPECT_FALSE(svc_entry(kVip4, kTcpPort, IPPROTO_UDP)) << "the protocol is part of the key";
  EXPECT_EQ(entries(FERRY_MAP_SERVICES), 4u);
  EXPECT_EQ(entries(FERRY_MAP_SLOTS), 5u);
  EXPECT_EQ(entries(FERRY_MAP_BACKENDS), 5u);
  EXPECT_EQ(entries(FERRY_MAP_REVNAT), 4u);
  EXPECT_EQ(entries(FERRY_MAP_MAGLEV), 0u) << "random mode writes no Maglev table";

  ebpf::PinnedMaps m = maps();
  uint32_t id = 12;
  ferry_backend_value be{};
  ASSERT_EQ(bpf_map_lookup_elem(m.backends_fd(), &id, &be), 0);
  EXPECT_EQ(ntohs(be.port), kBackendPort2);
  EXPECT_EQ(be.family, AF_INET);
  EXPECT_EQ(std::memcmp(be.addr, node_->pod(1).ip4.bytes.data(), 4), 0);
  EXPECT_EQ(be.flags, FERRY_BACKEND_F_LOCAL);
  uint32_t sid = 3;
  ferry_revnat_value rn{};
  ASSERT_EQ(bpf_map_lookup_elem(m.revnat_fd(), &sid, &rn), 0);
  EXPECT_EQ(std::memcmp(rn.addr, kVip6.bytes.data(), 16), 0);
  EXPECT_EQ(ntohs(rn.port), kTcpPort);

  const ferry_config cfg = config();
  EXPECT_EQ(cfg.flags & (FERRY_CFG_F_SERVICES | FERRY_CFG_F_MAGLEV), static_cast<uint32_t>(FERRY_CFG_F_SERVICES));
  EXPECT_EQ(std::memcmp(cfg.loopback4, ip("169.254.42.1").bytes.data(), 4), 0);
  EXPECT_EQ(std::memcmp(cfg.loopback6, ip("fd66:6572:7279::1").bytes.data(), 16), 0);
  EXPECT_NE(cfg.netns_cookie, 0u) << "the node netns' cookie";
  uint64_t host_cookie = 0;
  socklen_t len = sizeof(host_cookie);
  Sock probe(::socket(AF_INET, SOCK_DGRAM, 0));
  ASSERT_EQ(::getsockopt(probe.fd, SOL_SOCKET, SO_NETNS_COOKIE, &host_cookie, &len), 0);
  EXPECT_NE(cfg.netns_cookie, host_cookie) << "not the test's own netns";
}

TEST_F(EbpfServices, NodePortLocalAndDropFlagsAndTheSecondSet) {
  ServiceSet set = services();
  ServiceFrontend np = frontend(ip("10.77.0.1"), 30080, IPPROTO_TCP, {12});
  np.kind = dataplane::FrontendKind::NodePort;
  np.traffic_policy = dataplane::TrafficPolicy::Local;
  np.pod_and_host_backends = std::vector<BackendId>{11, 12, 14};
  np.when_empty = dataplane::WhenEmpty::Drop;
  set.frontends[5] = np;
  complete(set);
  program(*dp_, set);

  auto v = svc_entry(ip("10.77.0.1"), 30080, IPPROTO_TCP);
  ASSERT_TRUE(v);
  EXPECT_EQ(v->flags, static_cast<uint32_t>(FERRY_SVC_F_NODEPORT | FERRY_SVC_F_LOCAL | FERRY_SVC_F_DROP_EMPTY));
  EXPECT_EQ(v->count, 1u);
  EXPECT_EQ(v->count_internal, 3u);
  EXPECT_EQ(slot(5, 0, 0), 12u);
  EXPECT_EQ(slot(5, 2, 1), 14u) << "set 1 = pod_and_host_backends";
}

TEST_F(EbpfServices, OnlyTheDifferencesAreWrittenAndNothingTwice) {
  program(*dp_, services());
  uint64_t before = writes(*dp_);
  program(*dp_, services());
  EXPECT_EQ(writes(*dp_), before) << "the same set again writes nothing";

  // Backend 12 leaves frontend 1 (and the set): its slot, the new count, the backend itself.
  program(*dp_, services({11}));
  EXPECT_EQ(writes(*dp_) - before, 3u);
  EXPECT_EQ(svc_entry(kVip4, kTcpPort, IPPROTO_TCP)->count, 1u);
  EXPECT_FALSE(slot(1, 1));
  EXPECT_EQ(entries(FERRY_MAP_BACKENDS), 4u);

  // A new frontend with a new backend: backend, rev-NAT, slot, frontend.
  before = writes(*dp_);
  ServiceSet more = services({11});
  more.frontends[6] = frontend(ip("10.96.0.66"), 8080, IPPROTO_TCP, {15});
  complete(more);
  program(*dp_, more);
  EXPECT_EQ(writes(*dp_) - before, 4u);

  // Backend 15 replaces 11 in frontend 1 (same count): the slot is rewritten in place.
  before = writes(*dp_);
  ServiceSet swapped = more;
  swapped.frontends[1].backends = {15};
  complete(swapped);
  program(*dp_, swapped);
  EXPECT_EQ(writes(*dp_) - before, 2u) << "one slot update + one backend delete";
  EXPECT_EQ(slot(1, 0), 15u);

  // Everything goes: frontends, slots, rev-NAT and backends.
  program(*dp_, ServiceSet{});
  for (const char* map : {FERRY_MAP_SERVICES, FERRY_MAP_SLOTS, FERRY_MAP_BACKENDS, FERRY_MAP_REVNAT})
    EXPECT_EQ(entries(map), 0u) << map;
}

TEST_F(EbpfServices, ARestartedBackendWithTheSameSetWritesNothing) {
  program(*dp_, services());
  dp_.reset();
  auto restarted = start(node_->config());
  const uint64_t after_start = writes(*restarted);
  program(*restarted, services());
  EXPECT_EQ(writes(*restarted), after_start) << "read back from the maps: nothing differs";
  program(*restarted, services({11}));
  EXPECT_EQ(writes(*restarted) - after_start, 3u) << "and the diff after a restart is exact";
}

TEST_F(EbpfServices, MaglevModeWritesTablesAndRandomModeNone) {
  ebpf::EbpfConfig maglev = node_->config();
  maglev.lb_algorithm = "maglev";
  dp_.reset();
  auto dp = start(maglev);
  const ServiceSet set = services();
  program(*dp, set);

  EXPECT_EQ(entries(FERRY_MAP_MAGLEV), 4u) << "one table per frontend (set 0)";
  EXPECT_TRUE(config().flags & FERRY_CFG_F_MAGLEV);
  auto table = std::make_unique<ferry_maglev_value>();
  ferry_maglev_key key{1, 0};
  ASSERT_EQ(bpf_map_lookup_elem(maps().maglev_fd(), &key, table.get()), 0);
  const std::vector<BackendId> want = services::maglev_table_for(set, set.frontends.at(1), FERRY_MAGLEV_TABLE_SIZE);
  ASSERT_EQ(want.size(), static_cast<size_t>(FERRY_MAGLEV_TABLE_SIZE));
  EXPECT_TRUE(std::equal(want.begin(), want.end(), table->backend_id)) << "the agent's Maglev table";
  const uint64_t w = writes(*dp);
  program(*dp, set);
  EXPECT_EQ(writes(*dp), w) << "an unchanged table is not written again";

  dp.reset();
  auto random = start(node_->config());
  program(*random, set);
  EXPECT_EQ(entries(FERRY_MAP_MAGLEV), 0u) << "random mode removes the tables";
  EXPECT_FALSE(config().flags & FERRY_CFG_F_MAGLEV);
}

TEST_F(EbpfServices, AffinityEntriesOfABackendThatLeftAreDeleted) {
  ServiceSet set = services();
  set.frontends[1].affinity = true;
  set.frontends[1].affinity_timeout_seconds = 60;
  program(*dp_, set);
  // As the datapath would have written them: client a -> backend 12, client b -> backend 11.
  ebpf::PinnedMaps m = maps();
  auto put = [&](const net::Ip& client, uint32_t backend) {
    ferry_affinity_key key{};
    key.service_id = 1;
    key.family = AF_INET;
    std::memcpy(key.client, client.bytes.data(), 4);
    ferry_affinity_value value{};
    value.backend_id = backend;
    EXPECT_EQ(bpf_map_update_elem(m.affinity_fd(), &key, &value, BPF_ANY), 0);
    return key;
  };
  ferry_affinity_key to_12 = put(ip("10.1.0.1"), 12);
  ferry_affinity_key to_11 = put(ip("10.1.0.2"), 11);

  set.frontends[1].backends = {11};
  complete(set);
  program(*dp_, set);

  ferry_affinity_value v{};
  EXPECT_NE(bpf_map_lookup_elem(m.affinity_fd(), &to_12, &v), 0) << "the client of backend 12 chooses again";
  EXPECT_EQ(bpf_map_lookup_elem(m.affinity_fd(), &to_11, &v), 0) << "backend 11's client stays";
}

TEST_F(EbpfServices, ClusterIpTcpFromAPodReachesTheBackends) {
  program(*dp_, services());
  for (int family : {AF_INET, AF_INET6}) {
    std::map<uint16_t, Sock> listeners = tcp_backends(family);
    const net::Ip& vip = family == AF_INET ? kVip4 : kVip6;
    Sock client = connect_to(vip, kTcpPort);
    ASSERT_GE(client.fd, 0) << "connect to " << vip.str() << ":" << kTcpPort << ": " << std::strerror(errno);
    auto [port, server] = accept_one(listeners);
    ASSERT_NE(port, 0) << "no backend got the connection";
    EXPECT_TRUE(exchange(client, server)) << "request and response through " << vip.str();
  }
}

TEST_F(EbpfServices, ClusterIpUdpRepliesComeFromTheFrontend) {
  program(*dp_, services());
  std::string seen;
  EXPECT_EQ(udp_round_trip(kVip4, kUdpPort, &seen), "10.96.0.10:53");
  EXPECT_EQ(seen.rfind(node_->pod(0).ip4.str() + ":", 0), 0u) << "the backend sees the client: " << seen;
  EXPECT_EQ(udp_round_trip(kVip6, kUdpPort, &seen), "[fd96::10]:53");
}

TEST_F(EbpfServices, AnEstablishedConnectionSurvivesTheRemovalOfAnotherBackend) {
  program(*dp_, services());
  std::map<uint16_t, Sock> listeners = tcp_backends(AF_INET);
  Sock client = connect_to(kVip4, kTcpPort);
  ASSERT_GE(client.fd, 0) << std::strerror(errno);
  auto [port, server] = accept_one(listeners);
  ASSERT_NE(port, 0);
  ASSERT_TRUE(exchange(client, server));

  const BackendId used = port == kBackendPort1 ? 11 : 12;
  program(*dp_, services({used}));  // the other backend goes

  EXPECT_TRUE(exchange(client, server)) << "the established connection keeps going";
  for (int i = 0; i < 4; ++i) {
    Sock again = connect_to(kVip4, kTcpPort);
    ASSERT_GE(again.fd, 0);
    auto [p, s] = accept_one(listeners);
    EXPECT_EQ(p, port) << "new connections go to the remaining backend";
  }
}

TEST_F(EbpfServices, ARemovedFrontendIsNoLongerTranslated) {
  program(*dp_, services());
  std::map<uint16_t, Sock> listeners = tcp_backends(AF_INET);
  {
    Sock c = connect_to(kVip4, kTcpPort);
    ASSERT_GE(c.fd, 0);
    ASSERT_NE(accept_one(listeners).first, 0);
  }
  ServiceSet without = services();
  without.frontends.erase(1);
  complete(without);
  program(*dp_, without);

  EXPECT_FALSE(svc_entry(kVip4, kTcpPort, IPPROTO_TCP));
  Sock c = connect_to(kVip4, kTcpPort);
  EXPECT_LT(c.fd, 0) << "nothing answers on the former frontend";
}

// A build before services pinned ferry_ct_v1 (the value without backend_id and rev_nat): the
// new build's start copies every flow into ferry_ct_v2 (new fields zero; a flow the new programs
// already track keeps its entry) and unpins the old map.
TEST_F(EbpfServices, ConntrackOfTheLayoutBeforeServicesIsCarriedOver) {
  constexpr size_t kV1Size = offsetof(ferry_ct_value, backend_id);
  const std::string v1 = node_->bpffs_root() + "/" + FERRY_MAP_CT_V1;
  auto flow = [](uint8_t last, uint16_t sport) {
    ferry_ct_key key{};
    key.saddr[0] = 10, key.saddr[1] = 77, key.saddr[3] = last;
    key.daddr[0] = 10, key.daddr[1] = 77, key.daddr[3] = 3;
    key.sport = htons(sport);
    key.dport = htons(80);
    key.proto = IPPROTO_TCP;
    key.family = AF_INET;
    return key;
  };
  ferry_ct_value old{};
  old.created_ns = 1000;
  old.last_seen_ns = 2000;
  old.packets_fwd = 7;
  old.lifetime_s = FERRY_CT_TIMEOUT_TCP;
  old.state = FERRY_CT_ESTABLISHED;
  old.src_endpoint = 101;
  old.policy_rev = 3;
  const ferry_ct_key carried = flow(2, 40000), kept = flow(2, 40001);
  pin_old_map(BPF_MAP_TYPE_LRU_HASH, FERRY_MAP_CT_V1, sizeof(ferry_ct_key), kV1Size, 1024,
              {{&carried, &old}, {&kept, &old}});
  ebpf::PinnedMaps m = maps();
  ferry_ct_value newer{};
  newer.packets_fwd = 99;
  newer.backend_id = 5;
  ASSERT_EQ(bpf_map_update_elem(m.conntrack_fd(), &kept, &newer, BPF_ANY), 0);

  dp_.reset();
  auto upgraded = start(node_->config());

  EXPECT_NE(::access(v1.c_str(), F_OK), 0) << FERRY_MAP_CT_V1 << " is still pinned";
  ferry_ct_value got{};
  ASSERT_EQ(bpf_map_lookup_elem(m.conntrack_fd(), &carried, &got), 0) << "the flow is in " << FERRY_MAP_CT;
  EXPECT_EQ(std::memcmp(&got, &old, kV1Size), 0) << "state, counters and timestamps carried over";
  EXPECT_EQ(got.backend_id, 0u);
  EXPECT_EQ(got.rev_nat, 0u);
  ASSERT_EQ(bpf_map_lookup_elem(m.conntrack_fd(), &kept, &got), 0);
  EXPECT_EQ(got.packets_fwd, 99u) << "the new build's own entry wins";
  EXPECT_EQ(got.backend_id, 5u);
}

// A build before services had ferry_cfg_v2 (28 bytes: overlay + policy): its settings move into
// ferry_cfg_v3 and the old pin goes, so policy stays enforced under the same revision.
TEST_F(EbpfServices, ConfigOfTheLayoutBeforeServicesIsMigrated) {
  constexpr size_t kV2Size = offsetof(ferry_config, pad3);
  static_assert(kV2Size == 28);
  const std::string v2 = node_->bpffs_root() + "/" + FERRY_MAP_CONFIG_V2;
  const std::string v3 = node_->bpffs_root() + "/" + FERRY_MAP_CONFIG;
  ferry_config old{};
  old.overlay_ifindex = 0;
  old.flags = FERRY_CFG_F_POLICY;
  old.policy_rev = 7;
  const uint32_t zero = 0;
  pin_old_map(BPF_MAP_TYPE_ARRAY, FERRY_MAP_CONFIG_V2, 4, kV2Size, 1, {{&zero, &old}});
  dp_.reset();
  ASSERT_EQ(::unlink(v3.c_str()), 0);

  auto upgraded = start(node_->config());

  EXPECT_NE(::access(v2.c_str(), F_OK), 0) << FERRY_MAP_CONFIG_V2 << " is still pinned";
  const ebpf::PolicyState state = maps().policy_state();
  EXPECT_TRUE(state.enforced);
  EXPECT_EQ(state.revision, 7u);
}

TEST_F(EbpfServices, TheMasqueradeRuleForMarkedTrafficComesAndGoes) {
  program(*dp_, services());
  auto nat = [&](const std::string& args) { return sh_status("ip netns exec " + node_->node().name() + " iptables -t nat " + args + " 2>&1"); };
  ShellResult chain = nat("-S FERRY-EBPF-MASQ");
  ASSERT_EQ(chain.status, 0) << chain.out;
  EXPECT_NE(chain.out.find("--mark 0x4000/0x4000"), std::string::npos) << chain.out;
  EXPECT_NE(chain.out.find("-j MASQUERADE"), std::string::npos) << chain.out;
  EXPECT_NE(chain.out.find("ferry:"), std::string::npos) << chain.out;
  ShellResult post = nat("-S POSTROUTING");
  EXPECT_NE(post.out.find("-j FERRY-EBPF-MASQ"), std::string::npos) << post.out;

  in_node([&] { dp_->cleanup_all(); });
  EXPECT_NE(nat("-S FERRY-EBPF-MASQ").status, 0) << "the chain is gone";
  EXPECT_EQ(nat("-S POSTROUTING").out.find("FERRY-EBPF-MASQ"), std::string::npos);
  for (const char* pin : {FERRY_MAP_SERVICES, FERRY_MAP_BACKENDS, FERRY_MAP_MAGLEV})
    EXPECT_NE(::access((node_->bpffs_root() + "/" + pin).c_str(), F_OK), 0) << pin << " still pinned";
}


// ---- NodePort: an "outside" client netns on a veth to the node (the NodePort device) ----

constexpr const char* kUplink = "fyebup0";
const net::Ip kNodeIp = ip("192.168.77.1");
const net::Ip kOutsideIp = ip("192.168.77.2");
constexpr uint16_t kNodePort = 30080;

class EbpfNodePort : public EbpfServices {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_EBPF();
    node_ = std::make_unique<TwoPodNode>();
    node_->add_gateway();
    outside_ = std::make_unique<TestNetns>("fysv" + std::to_string(::getpid() % 100000) + "o");
    const std::string n = node_->node().name(), o = outside_->name();
    sh("ip -n " + n + " link add " + kUplink + " type veth peer name eth0 netns " + o);
    sh("ip -n " + n + " addr add " + kNodeIp.str() + "/24 dev " + kUplink);
    sh("ip -n " + n + " link set " + kUplink + " up");
    sh("ip -n " + o + " addr add " + kOutsideIp.str() + "/24 dev eth0");
    sh("ip -n " + o + " link set eth0 up");
    sh("ip netns exec " + n + " sysctl -qw net.ipv4.ip_forward=1");
    dp_ = start(uplink_config());
  }
  void TearDown() override {
    EbpfServices::TearDown();
    outside_.reset();
  }
  ebpf::EbpfConfig uplink_config() const {
    ebpf::EbpfConfig c = node_->config();
    c.nodeport_devices = {kUplink};
    return c;
  }
  int uplink_ifindex() {
    return in_node([&] { return static_cast<int>(::if_nametoindex(kUplink)); });
  }
  std::string prog_name(uint32_t id) {
    int fd = bpf_prog_get_fd_by_id(id);
    if (fd < 0) return "";
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    std::string name = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.name : "";
    ::close(fd);
    return name;
  }
  ServiceSet nodeport(dataplane::TrafficPolicy policy) const {
    ServiceSet set;
    ServiceFrontend f = frontend(kNodeIp, kNodePort, IPPROTO_TCP, {11});
    f.kind = dataplane::FrontendKind::NodePort;
    f.traffic_policy = policy;
    if (policy == dataplane::TrafficPolicy::Local) f.pod_and_host_backends = std::vector<BackendId>{11};
    set.frontends[7] = f;
    complete(set);
    return set;
  }
  // A TCP connection from the outside netns to the NodePort, accepted by backend 11 on pod b;
  // returns the client address the backend saw ("" when nothing arrived) after one exchange.
  std::string outside_connection(bool* exchanged) {
    *exchanged = false;
    Sock server = listener(AF_INET, kBackendPort1);
    Sock client;
    net::Netns ns = net::Netns::open(outside_->path());
    net::in_netns(ns, [&] { client.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); });
    timeval tv{3, 0};
    ::setsockopt(client.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    ::setsockopt(client.fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    socklen_t len = 0;
    sockaddr_storage a = sockaddr_of(kNodeIp, kNodePort, &len);
    if (::connect(client.fd, reinterpret_cast<sockaddr*>(&a), len) != 0) return "";
    pollfd p{server.fd, POLLIN, 0};
    if (::poll(&p, 1, 3000) <= 0) return "";
    sockaddr_storage peer{};
    socklen_t peer_len = sizeof(peer);
    Sock conn(::accept(server.fd, reinterpret_cast<sockaddr*>(&peer), &peer_len));
    timeval ctv{3, 0};
    ::setsockopt(conn.fd, SOL_SOCKET, SO_RCVTIMEO, &ctv, sizeof(ctv));
    *exchanged = exchange(client, conn);
    const std::string seen = sockaddr_str(peer);
    return seen.substr(0, seen.rfind(':'));
  }

  std::unique_ptr<TestNetns> outside_;
};

TEST_F(EbpfNodePort, UplinkProgramsRunOnTheNodePortDevicesOnly) {
  const ebpf::TcFilters f = in_node([&] { return ebpf::tc_filters(uplink_ifindex()); });
  EXPECT_EQ(prog_name(f.ingress), "ferry_from_upli");
  EXPECT_EQ(prog_name(f.egress), "ferry_to_uplink");
  program(*dp_, nodeport(dataplane::TrafficPolicy::Cluster));
  EXPECT_EQ(in_node([&] { return ebpf::tc_filters(uplink_ifindex()); }).ingress, f.ingress) << "kept, not reattached";

  // A restart without NodePort devices takes the programs off the former one.
  dp_.reset();
  dp_ = start(node_->config());
  const ebpf::TcFilters after = in_node([&] { return ebpf::tc_filters(uplink_ifindex()); });
  EXPECT_EQ(after.ingress, 0u);
  EXPECT_EQ(after.egress, 0u);
  // And cleanup_all removes them too.
  dp_.reset();
  dp_ = start(uplink_config());
  ASSERT_NE(in_node([&] { return ebpf::tc_filters(uplink_ifindex()); }).ingress, 0u);
  in_node([&] { dp_->cleanup_all(); });
  EXPECT_EQ(in_node([&] { return ebpf::tc_filters(uplink_ifindex()); }).ingress, 0u);
}

TEST_F(EbpfNodePort, ClusterPolicyReachesTheBackendMasqueraded) {
  program(*dp_, nodeport(dataplane::TrafficPolicy::Cluster));
  bool exchanged = false;
  const std::string seen = outside_connection(&exchanged);
  EXPECT_TRUE(exchanged) << "request and response between the outside client and the backend";
  EXPECT_EQ(seen, "10.77.0.1") << "the kernel masqueraded the marked connection to the node's bridge address";
}

TEST_F(EbpfNodePort, LocalPolicyKeepsTheClientSource) {
  program(*dp_, nodeport(dataplane::TrafficPolicy::Local));
  bool exchanged = false;
  const std::string seen = outside_connection(&exchanged);
  EXPECT_TRUE(exchanged) << "request and response between the outside client and the backend";
  EXPECT_EQ(seen, kOutsideIp.str()) << "externalTrafficPolicy Local keeps the client's address";
}

TEST(EbpfNodePortDevices, TheInterfacesHoldingTheNodeAddresses) {
  FERRY_REQUIRE_EBPF();
  TestNetns ns("fysv" + std::to_string(::getpid() % 100000) + "d");
  ns.exec("ip link add fysvd0 type veth peer name fysvd1");
  ns.exec("ip addr add 192.168.78.1/24 dev fysvd0");
  ns.exec("ip addr add 192.168.79.1/24 dev fysvd1");
  std::vector<std::string> devices;
  net::in_netns(net::Netns::open(ns.path()),
                [&] { devices = ebpf::nodeport_devices_for({ip("192.168.79.1"), ip("10.9.9.9")}); });
  EXPECT_EQ(devices, std::vector<std::string>{"fysvd1"});
}

}  // namespace
}  // namespace ferry::ebpftest
