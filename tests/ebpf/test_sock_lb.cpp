// Socket LB (bpf/ferry_sock.bpf.c + agent/ebpf/sock_lb.h) on the real kernel: the programs are
// attached to the cgroup v2 root with this test's own bpffs root; the service maps are written
// directly. A test netns "fysk<pid>n" (the node) holds two backends on lo (TCP listeners and UDP
// sockets made inside it) and the frontend address itself with a listener, so an untranslated
// connect is visible as a connection to the frontend. "fysk<pid>o" is another node's netns.
// Links, pins and namespaces are removed at the end, also on failure.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "agent/ebpf/internal.h"
#include "agent/ebpf/sock_lb.h"
#include "ferry/abi.h"
#include "support.h"

namespace ferry::ebpftest {
namespace {

using Sock = ebpf::detail::Fd;  // an owned socket

struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
};

net::Ip ip(const char* text) { return *net::Ip::parse(text); }

// `a` as a sockaddr for a socket of `family` (IPv4 in an AF_INET6 socket: ::ffff:a.b.c.d).
Addr socket_addr(const net::Ip& a, uint16_t port, int family) {
  Addr out;
  if (family == AF_INET) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&out.ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(port);
    std::memcpy(&sin->sin_addr, a.bytes.data(), 4);
    out.len = sizeof(*sin);
  } else {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.ss);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(port);
    if (a.family == AF_INET) {
      sin6->sin6_addr.s6_addr[10] = sin6->sin6_addr.s6_addr[11] = 0xff;
      std::memcpy(&sin6->sin6_addr.s6_addr[12], a.bytes.data(), 4);
    } else {
      std::memcpy(&sin6->sin6_addr, a.bytes.data(), 16);
    }
    out.len = sizeof(*sin6);
  }
  return out;
}

uint16_t port_of(const sockaddr_storage& ss) {
  return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in*>(&ss)->sin_port
                                       : reinterpret_cast<const sockaddr_in6*>(&ss)->sin6_port);
}

Sock bound_socket(const net::Ip& a, uint16_t port, int type) {
  Sock s(::socket(a.family, type | SOCK_CLOEXEC, 0));
  int one = 1;
  ::setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  Addr sa = socket_addr(a, port, a.family);
  if (s.get() < 0 || ::bind(s.get(), reinterpret_cast<sockaddr*>(&sa.ss), sa.len) != 0)
    throw std::runtime_error("bind " + a.str() + ":" + std::to_string(port) + ": " + std::strerror(errno));
  if (type == SOCK_STREAM && ::listen(s.get(), 256) != 0) throw std::runtime_error("listen failed");
  return s;
}

// Waits (bounded, a failure guard rather than a timing assertion) until one of `fds` is
// readable; its index, or -1.
int readable(const std::vector<int>& fds) {
  std::vector<pollfd> p;
  for (int fd : fds) p.push_back({fd, POLLIN, 0});
  if (::poll(p.data(), p.size(), 5000) <= 0) return -1;
  for (size_t i = 0; i < p.size(); ++i)
    if (p[i].revents & POLLIN) return static_cast<int>(i);
  return -1;
}

constexpr uint16_t kFrontPort = 80;
constexpr uint16_t kBackendPort = 8080;
constexpr uint32_t kServiceTcp4 = 11, kServiceUdp4 = 12, kServiceTcp6 = 13, kServiceUdp6 = 14;

class SockLb : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_EBPF();
    ebpf::ensure_bpffs();
    const std::string tag = "fysk" + std::to_string(::getpid() % 100000);
    root_ = std::make_unique<BpffsRootGuard>("/sys/fs/bpf/ferry-test-socklb-" + std::to_string(::getpid()));
    node_ = std::make_unique<TestNetns>(tag + "n");
    other_ = std::make_unique<TestNetns>(tag + "o");
    for (const TestNetns* ns : {node_.get(), other_.get()}) {
      sh("ip -n " + ns->name() + " link set lo up");
      sh("ip -n " + ns->name() + " addr add 10.96.0.10/32 dev lo");
      sh("ip -n " + ns->name() + " addr add fd96::10/128 dev lo nodad");
    }
    for (const char* a : {"10.78.0.1/32", "10.78.0.2/32", "fd78::1/128", "fd78::2/128"})
      sh("ip -n " + node_->name() + " addr add " + a + " dev lo" + (std::strchr(a, ':') ? " nodad" : ""));
    node_ns_ = net::Netns::open(node_->path());
    other_ns_ = net::Netns::open(other_->path());

    change_ = ebpf::attach_sock_lb({root_->path(), "", ""});
    attached_ = true;
    auto open_map = [&](const char* name) {
      int fd = bpf_obj_get((root_->path() + "/" + name).c_str());
      if (fd < 0) throw std::runtime_error(std::string("map not pinned: ") + name);
      fds_.emplace_back(fd);
      return fd;
    };
    svc_fd_ = open_map(FERRY_MAP_SERVICES);
    slot_fd_ = open_map(FERRY_MAP_SLOTS);
    be_fd_ = open_map(FERRY_MAP_BACKENDS);
    rnat_fd_ = open_map(FERRY_MAP_REVNAT);
    cfg_fd_ = open_map(FERRY_MAP_CONFIG);
    ctr_fd_ = open_map(FERRY_MAP_COUNTERS);
    net::in_netns(node_ns_, [&] { cookie_ = ebpf::current_netns_cookie(); });
    write_config(FERRY_CFG_F_SERVICES, cookie_);

    // Backends 1, 2 (IPv4) and 3, 4 (IPv6) for TCP and UDP: ids 1..4 TCP, 11..14 UDP.
    const char* addrs[4] = {"10.78.0.1", "10.78.0.2", "fd78::1", "fd78::2"};
    for (uint32_t i = 0; i < 4; ++i) {
      add_backend(1 + i, ip(addrs[i]), IPPROTO_TCP);
      add_backend(11 + i, ip(addrs[i]), IPPROTO_UDP);
    }
    add_service(kServiceTcp4, ip("10.96.0.10"), IPPROTO_TCP, {1, 2});
    add_service(kServiceUdp4, ip("10.96.0.10"), IPPROTO_UDP, {11, 12});
    add_service(kServiceTcp6, ip("fd96::10"), IPPROTO_TCP, {3, 4});
    add_service(kServiceUdp6, ip("fd96::10"), IPPROTO_UDP, {13, 14});

    net::in_netns(node_ns_, [&] {
      for (const char* a : addrs) {
        tcp_backends_.push_back(bound_socket(ip(a), kBackendPort, SOCK_STREAM));
        udp_backends_.push_back(bound_socket(ip(a), kBackendPort, SOCK_DGRAM));
      }
      frontend4_ = bound_socket(ip("10.96.0.10"), kFrontPort, SOCK_STREAM);
      frontend6_ = bound_socket(ip("fd96::10"), kFrontPort, SOCK_STREAM);
    });
    net::in_netns(other_ns_, [&] { other_frontend_ = bound_socket(ip("10.96.0.10"), kFrontPort, SOCK_STREAM); });
  }

  void TearDown() override {
    fds_.clear();
    if (attached_) ebpf::detach_sock_lb(root_->path());
    root_.reset();
    other_.reset();
    node_.reset();
  }

  void write_config(uint32_t flags, uint64_t cookie) {
    uint32_t zero = 0;
    ferry_config cfg{};
    cfg.flags = flags;
    cfg.netns_cookie = cookie;
    ASSERT_EQ(bpf_map_update_elem(cfg_fd_, &zero, &cfg, BPF_ANY), 0);
  }

  void add_backend(uint32_t id, const net::Ip& a, uint8_t proto) {
    ferry_backend_value be{};
    std::memcpy(be.addr, a.bytes.data(), 16);
    be.port = htons(kBackendPort);
    be.proto = proto;
    be.family = static_cast<uint8_t>(a.family);
    be.state = FERRY_BACKEND_ACTIVE;
    ASSERT_EQ(bpf_map_update_elem(be_fd_, &id, &be, BPF_ANY), 0);
  }

  // The frontend a:80/proto with set 0 = `backends` (dense slots), as the agent writes it.
  void add_service(uint32_t id, const net::Ip& a, uint8_t proto, const std::vector<uint32_t>& backends,
                   uint32_t flags = 0, uint32_t affinity_s = 0) {
    ferry_service_key key{};
    std::memcpy(key.addr, a.bytes.data(), 16);
    key.port = htons(kFrontPort);
    key.proto = proto;
    key.family = static_cast<uint8_t>(a.family);
    ferry_service_value value{};
    value.service_id = id;
    value.count = static_cast<uint16_t>(backends.size());
    value.flags = flags;
    value.affinity_timeout_s = affinity_s;
    for (uint16_t slot = 0; slot < backends.size(); ++slot) {
      ferry_slot_key skey{id, slot, 0, 0};
      ASSERT_EQ(bpf_map_update_elem(slot_fd_, &skey, &backends[slot], BPF_ANY), 0);
    }
    ferry_revnat_value rnat{};
    std::memcpy(rnat.addr, a.bytes.data(), 16);
    rnat.port = key.port;
    rnat.family = key.family;
    ASSERT_EQ(bpf_map_update_elem(rnat_fd_, &id, &rnat, BPF_ANY), 0);
    ASSERT_EQ(bpf_map_update_elem(svc_fd_, &key, &value, BPF_ANY), 0);
  }

  // A TCP connect from `ns` (socket family `family`) to dst:80. On success *sock holds the
  // connected socket; returns 0 or the errno.
  int tcp_connect(const net::Netns& ns, int family, const net::Ip& dst, Sock* sock) {
    int err = 0;
    net::in_netns(ns, [&] {
      Sock s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
      Addr sa = socket_addr(dst, kFrontPort, family);
      if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sa.ss), sa.len) != 0) err = errno;
      *sock = std::move(s);
    });
    return err;
  }

  // Which listener got the connection of `client` (accepted and closed): 0..3 = backends in
  // `addrs` order, 4 = the frontend itself (v4), 5 = (v6), -1 none.
  int accepted_by(const Sock& client) {
    std::vector<int> fds;
    for (const Sock& s : tcp_backends_) fds.push_back(s.get());
    fds.push_back(frontend4_.get());
    fds.push_back(frontend6_.get());
    int i = readable(fds);
    if (i < 0) return -1;
    sockaddr_storage peer{}, local{};
    socklen_t len = sizeof(peer);
    Sock conn(::accept4(fds[i], reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC));
    len = sizeof(local);
    ::getsockname(client.get(), reinterpret_cast<sockaddr*>(&local), &len);
    EXPECT_EQ(port_of(peer), port_of(local)) << "the accepted connection is not this client's";
    return i;
  }

  std::string peer_of(const Sock& s) {
    sockaddr_storage peer{};
    socklen_t len = sizeof(peer);
    if (::getpeername(s.get(), reinterpret_cast<sockaddr*>(&peer), &len) != 0) return std::strerror(errno);
    return sockaddr_str(peer);
  }

  // Connects `n` times over IPv4; how many connections each backend (0, 1) got.
  std::map<int, int> spread(int n) {
    std::map<int, int> got;
    for (int i = 0; i < n; ++i) {
      Sock c;
      EXPECT_EQ(tcp_connect(node_ns_, AF_INET, ip("10.96.0.10"), &c), 0);
      ++got[accepted_by(c)];
    }
    return got;
  }

  uint64_t lb_new() {
    uint32_t key = FERRY_CTR_LB_NEW;
    std::vector<ferry_counter_value> per_cpu(static_cast<size_t>(libbpf_num_possible_cpus()));
    if (bpf_map_lookup_elem(ctr_fd_, &key, per_cpu.data()) != 0) return 0;
    uint64_t sum = 0;
    for (const auto& v : per_cpu) sum += v.packets;
    return sum;
  }

  std::unique_ptr<BpffsRootGuard> root_;
  std::unique_ptr<TestNetns> node_, other_;
  net::Netns node_ns_, other_ns_;
  ebpf::SockLbChange change_;
  bool attached_ = false;
  std::vector<Sock> fds_;
  int svc_fd_ = -1, slot_fd_ = -1, be_fd_ = -1, rnat_fd_ = -1, cfg_fd_ = -1, ctr_fd_ = -1;
  uint64_t cookie_ = 0;
  std::vector<Sock> tcp_backends_, udp_backends_;
  Sock frontend4_, frontend6_, other_frontend_;
};

TEST_F(SockLb, FirstAttachCreatesEveryLinkOnTheCgroupRoot) {
  EXPECT_TRUE(change_.loaded);
  EXPECT_EQ(change_.created, 8);
  std::vector<ebpf::SockLbLink> links = ebpf::sock_lb_links(root_->path());
  ASSERT_EQ(links.size(), 8u);
  std::set<std::string> programs;
  for (const auto& l : links) {
    EXPECT_TRUE(l.current) << l.pin;
    EXPECT_NE(l.cgroup_id, 0u) << l.pin;
    programs.insert(l.program);
  }
  EXPECT_EQ(programs, (std::set<std::string>{"ferry_sock4_connect", "ferry_sock6_connect", "ferry_sock4_sendmsg",
                                             "ferry_sock6_sendmsg", "ferry_sock4_recvmsg", "ferry_sock6_recvmsg",
                                             "ferry_sock4_getpeername", "ferry_sock6_getpeername"}));
}

TEST_F(SockLb, TcpConnectReachesABackendAndGetpeernameShowsTheFrontend) {
  const uint64_t before = lb_new();
  Sock c4;
  ASSERT_EQ(tcp_connect(node_ns_, AF_INET, ip("10.96.0.10"), &c4), 0);
  int got = accepted_by(c4);
  EXPECT_TRUE(got == 0 || got == 1) << "accepted by listener " << got;
  EXPECT_EQ(peer_of(c4), "10.96.0.10:80");

  Sock c6;
  ASSERT_EQ(tcp_connect(node_ns_, AF_INET6, ip("fd96::10"), &c6), 0);
  got = accepted_by(c6);
  EXPECT_TRUE(got == 2 || got == 3) << "accepted by listener " << got;
  EXPECT_EQ(peer_of(c6), "[fd96::10]:80");

  // An IPv6 socket to ::ffff:10.96.0.10 is translated as IPv4 and shows the mapped frontend.
  Sock mapped;
  ASSERT_EQ(tcp_connect(node_ns_, AF_INET6, ip("10.96.0.10"), &mapped), 0);
  got = accepted_by(mapped);
  EXPECT_TRUE(got == 0 || got == 1) << "accepted by listener " << got;
  EXPECT_EQ(peer_of(mapped), "[::ffff:10.96.0.10]:80");
  EXPECT_EQ(lb_new() - before, 3u);
}

// sendto the frontend; the backend that got it answers; `client` must see the frontend as the source.
void udp_round_trip(const net::Netns& ns, std::vector<Sock>& backends, int family, const net::Ip& front,
                    const std::vector<int>& allowed, const std::string& want_source) {
  Sock client;
  net::in_netns(ns, [&] { client = Sock(::socket(family, SOCK_DGRAM | SOCK_CLOEXEC, 0)); });
  Addr dst = socket_addr(front, kFrontPort, family);
  ASSERT_EQ(::sendto(client.get(), "ping", 4, 0, reinterpret_cast<sockaddr*>(&dst.ss), dst.len), 4)
      << std::strerror(errno);
  std::vector<int> fds;
  for (const Sock& s : backends) fds.push_back(s.get());
  int i = readable(fds);
  ASSERT_TRUE(std::find(allowed.begin(), allowed.end(), i) != allowed.end()) << "received by backend " << i;
  char buf[16];
  sockaddr_storage from{};
  socklen_t len = sizeof(from);
  ASSERT_EQ(::recvfrom(fds[i], buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len), 4);
  ASSERT_EQ(::sendto(fds[i], "pong", 4, 0, reinterpret_cast<sockaddr*>(&from), len), 4);
  ASSERT_EQ(readable({client.get()}), 0);
  len = sizeof(from);
  ASSERT_EQ(::recvfrom(client.get(), buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &len), 4);
  EXPECT_EQ(std::string(buf, 4), "pong");
  EXPECT_EQ(sockaddr_str(from), want_source);
}

TEST_F(SockLb, UdpRepliesComeFromTheFrontend) {
  udp_round_trip(node_ns_, udp_backends_, AF_INET, ip("10.96.0.10"), {0, 1}, "10.96.0.10:80");
  udp_round_trip(node_ns_, udp_backends_, AF_INET6, ip("fd96::10"), {2, 3}, "[fd96::10]:80");
  udp_round_trip(node_ns_, udp_backends_, AF_INET6, ip("10.96.0.10"), {0, 1}, "[::ffff:10.96.0.10]:80");
}

TEST_F(SockLb, ConnectedUdpSocketShowsTheFrontendAsPeer) {
  Sock client;
  net::in_netns(node_ns_, [&] { client = Sock(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)); });
  Addr dst = socket_addr(ip("10.96.0.10"), kFrontPort, AF_INET);
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&dst.ss), dst.len), 0) << std::strerror(errno);
  EXPECT_EQ(peer_of(client), "10.96.0.10:80");
  ASSERT_EQ(::send(client.get(), "ping", 4, 0), 4);
  int i = readable({udp_backends_[0].get(), udp_backends_[1].get()});
  EXPECT_TRUE(i == 0 || i == 1) << "received by backend " << i;
}

TEST_F(SockLb, NewConnectionsSpreadOverBothBackends) {
  std::map<int, int> got = spread(60);
  EXPECT_EQ(got[0] + got[1], 60) << "some connections went elsewhere";
  // Binomial(60, 1/2): fewer than 10 on one side happens with probability ~1e-7.
  EXPECT_GE(got[0], 10);
  EXPECT_GE(got[1], 10);
}

TEST_F(SockLb, AffinityKeepsTheNodeOnOneBackend) {
  add_service(kServiceTcp4, ip("10.96.0.10"), IPPROTO_TCP, {1, 2}, FERRY_SVC_F_AFFINITY, 600);
  std::map<int, int> got = spread(30);
  ASSERT_EQ(got.size(), 1u) << "backend 0: " << got[0] << ", backend 1: " << got[1];
  EXPECT_TRUE(got.count(0) || got.count(1));
}

TEST_F(SockLb, MaglevTableChoosesTheBackend) {
  // A table naming only backend 2 (10.78.0.2): with FERRY_CFG_F_MAGLEV every connect lands there.
  int mglv_fd = bpf_obj_get((root_->path() + "/" FERRY_MAP_MAGLEV).c_str());
  ASSERT_GE(mglv_fd, 0);
  fds_.emplace_back(mglv_fd);
  ferry_maglev_key key{kServiceTcp4, 0};
  auto table = std::make_unique<ferry_maglev_value>();
  for (uint32_t& id : table->backend_id) id = 2;
  ASSERT_EQ(bpf_map_update_elem(mglv_fd, &key, table.get(), BPF_ANY), 0);
  write_config(FERRY_CFG_F_SERVICES | FERRY_CFG_F_MAGLEV, cookie_);
  std::map<int, int> got = spread(20);
  EXPECT_EQ(got[1], 20) << "backend 0: " << got[0];
}

TEST_F(SockLb, FrontendWithoutBackendsRefusesConnectAndSendmsg) {
  add_service(kServiceTcp4, ip("10.96.0.10"), IPPROTO_TCP, {});
  add_service(kServiceUdp6, ip("fd96::10"), IPPROTO_UDP, {});
  Sock c;
  EXPECT_EQ(tcp_connect(node_ns_, AF_INET, ip("10.96.0.10"), &c), ECONNREFUSED);
  Sock udp;
  net::in_netns(node_ns_, [&] { udp = Sock(::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0)); });
  Addr dst = socket_addr(ip("fd96::10"), kFrontPort, AF_INET6);
  EXPECT_EQ(::sendto(udp.get(), "x", 1, 0, reinterpret_cast<sockaddr*>(&dst.ss), dst.len), -1);
  EXPECT_EQ(errno, ECONNREFUSED);
  // Neither reached the frontend's own listener.
  std::vector<pollfd> p{{frontend4_.get(), POLLIN, 0}};
  EXPECT_EQ(::poll(p.data(), 1, 0), 0);
}

TEST_F(SockLb, SocketsOfAnotherNetnsAreNotTranslated) {
  Sock c;
  ASSERT_EQ(tcp_connect(other_ns_, AF_INET, ip("10.96.0.10"), &c), 0);
  ASSERT_EQ(readable({other_frontend_.get()}), 0) << "the other netns' frontend listener got nothing";
  EXPECT_EQ(peer_of(c), "10.96.0.10:80");
}

TEST_F(SockLb, NothingIsTranslatedWithServicesOffOrAnotherCookie) {
  write_config(0, cookie_);
  Sock off;
  ASSERT_EQ(tcp_connect(node_ns_, AF_INET, ip("10.96.0.10"), &off), 0);
  EXPECT_EQ(accepted_by(off), 4) << "services off: the frontend's own listener gets the connection";

  write_config(FERRY_CFG_F_SERVICES, cookie_ + 1000000);
  Sock other_cookie;
  ASSERT_EQ(tcp_connect(node_ns_, AF_INET, ip("10.96.0.10"), &other_cookie), 0);
  EXPECT_EQ(accepted_by(other_cookie), 4) << "another node's cookie: not translated";

  write_config(FERRY_CFG_F_SERVICES, cookie_);
  Sock on;
  ASSERT_EQ(tcp_connect(node_ns_, AF_INET, ip("10.96.0.10"), &on), 0);
  int got = accepted_by(on);
  EXPECT_TRUE(got == 0 || got == 1) << "services on again: accepted by listener " << got;
}

// Program ids attached to the cgroup v2 root for `type` (bpf_prog_query, no bpftool).
std::set<uint32_t> root_programs(bpf_attach_type type) {
  int cg = ::open(ebpf::cgroup2_root().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  std::vector<uint32_t> ids(1024);
  uint32_t count = static_cast<uint32_t>(ids.size()), flags = 0;
  int err = bpf_prog_query(cg, type, 0, &flags, ids.data(), &count);
  ::close(cg);
  if (err != 0) throw std::runtime_error(std::string("bpf_prog_query: ") + std::strerror(errno));
  return {ids.begin(), ids.begin() + count};
}

std::map<uint32_t, uint32_t> attached_of(const std::vector<ebpf::SockLbLink>& links) {
  std::map<uint32_t, uint32_t> out;  // attach type -> program id
  for (const auto& l : links) out[l.attach_type] = l.prog_id;
  return out;
}

TEST_F(SockLb, DetachRemovesEveryLinkFromTheCgroup) {
  std::map<uint32_t, uint32_t> ours = attached_of(ebpf::sock_lb_links(root_->path()));
  ASSERT_EQ(ours.size(), 8u);
  for (auto [type, prog] : ours)
    EXPECT_TRUE(root_programs(static_cast<bpf_attach_type>(type)).count(prog)) << "type " << type;
  EXPECT_EQ(ebpf::detach_sock_lb(root_->path()), 8u);
  attached_ = false;
  for (auto [type, prog] : ours)
    EXPECT_FALSE(root_programs(static_cast<bpf_attach_type>(type)).count(prog)) << "type " << type;
  EXPECT_TRUE(ebpf::sock_lb_links(root_->path()).empty());
  EXPECT_EQ(ebpf::detach_sock_lb(root_->path()), 0u);

  Sock c;  // and connects are no longer translated
  ASSERT_EQ(tcp_connect(node_ns_, AF_INET, ip("10.96.0.10"), &c), 0);
  EXPECT_EQ(accepted_by(c), 4);
}

TEST_F(SockLb, RestartOfTheSameBuildAttachesNothing) {
  std::vector<ebpf::SockLbLink> before = ebpf::sock_lb_links(root_->path());
  ebpf::SockLbChange again = ebpf::attach_sock_lb({root_->path(), "", ""});
  EXPECT_FALSE(again.loaded);
  EXPECT_EQ(again.created + again.updated + again.removed, 0);
  EXPECT_EQ(again.kernel_writes, 0u);
  std::vector<ebpf::SockLbLink> after = ebpf::sock_lb_links(root_->path());
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].link_id, before[i].link_id);
    EXPECT_EQ(after[i].prog_id, before[i].prog_id);
  }
}

TEST_F(SockLb, NewBuildSwapsItsProgramsIntoTheSameLinks) {
  std::map<uint32_t, uint32_t> old_progs = attached_of(ebpf::sock_lb_links(root_->path()));
  std::map<uint32_t, uint32_t> old_links;
  for (const auto& l : ebpf::sock_lb_links(root_->path())) old_links[l.attach_type] = l.link_id;

  ebpf::SockLbChange upgrade = ebpf::attach_sock_lb({root_->path(), "", "0123456789abcdef"});
  EXPECT_TRUE(upgrade.loaded);
  EXPECT_EQ(upgrade.updated, 8);
  EXPECT_EQ(upgrade.created, 0);
  std::vector<ebpf::SockLbLink> links = ebpf::sock_lb_links(root_->path(), "0123456789abcdef");
  ASSERT_EQ(links.size(), 8u) << "old pins left behind";
  for (const auto& l : links) {
    EXPECT_TRUE(l.current) << l.pin;
    EXPECT_EQ(l.link_id, old_links[l.attach_type]) << l.pin << ": not the same link";
    EXPECT_NE(l.prog_id, old_progs[l.attach_type]) << l.pin << ": program not replaced";
    std::set<uint32_t> attached = root_programs(static_cast<bpf_attach_type>(l.attach_type));
    EXPECT_TRUE(attached.count(l.prog_id));
    EXPECT_FALSE(attached.count(old_progs[l.attach_type]));
  }
  Sock c;  // the new programs translate
  ASSERT_EQ(tcp_connect(node_ns_, AF_INET, ip("10.96.0.10"), &c), 0);
  int got = accepted_by(c);
  EXPECT_TRUE(got == 0 || got == 1) << "accepted by listener " << got;
}

}  // namespace
}  // namespace ferry::ebpftest
