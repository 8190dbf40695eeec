#include "support.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <regex>

namespace ferry::ebpftest {

static void remove_pins(const std::string& root) {
  if (DIR* dir = ::opendir(root.c_str())) {
    std::vector<std::string> names;
    while (dirent* de = ::readdir(dir)) {
      std::string n = de->d_name;
      if (n != "." && n != "..") names.push_back(n);
    }
    ::closedir(dir);
    for (const auto& n : names) ::unlink((root + "/" + n).c_str());
    ::rmdir(root.c_str());
  }
}

BpffsRootGuard::BpffsRootGuard(std::string root) : root_(std::move(root)) { remove_pins(root_); }
BpffsRootGuard::~BpffsRootGuard() { remove_pins(root_); }

static std::string tag() { return "fyeb" + std::to_string(::getpid() % 100000); }

TwoPodNode::TwoPodNode() {
  ebpf::ensure_bpffs();
  root_ = std::make_unique<BpffsRootGuard>("/sys/fs/bpf/ferry-test-ebpf-" + std::to_string(::getpid()));
  node_ = std::make_unique<TestNetns>(tag() + "n");
  pod_a_ = std::make_unique<TestNetns>(tag() + "a");
  pod_b_ = std::make_unique<TestNetns>(tag() + "b");
  const std::string n = node_->name();
  sh("ip -n " + n + " link add fyebbr0 type bridge");
  sh("ip -n " + n + " link set fyebbr0 up");
  const char* last[2] = {"2", "3"};
  const char* veth[2] = {"fyebva", "fyebvb"};
  for (int i = 0; i < 2; ++i) {
    const TestNetns& pod = pod_netns(i);
    sh("ip -n " + n + " link add " + veth[i] + " type veth peer name eth0 netns " + pod.name());
    sh("ip -n " + n + " link set " + veth[i] + " master fyebbr0 up");
    sh("ip -n " + pod.name() + " addr add 10.77.0." + last[i] + "/24 dev eth0");
    sh("ip -n " + pod.name() + " addr add fd77::" + last[i] + "/64 dev eth0 nodad");
    sh("ip -n " + pod.name() + " link set eth0 up");
    pods_[i].netns = pod.name();
    pods_[i].host_veth = veth[i];
    pods_[i].ip4 = *net::Ip::parse(std::string("10.77.0.") + last[i]);
    pods_[i].ip6 = *net::Ip::parse(std::string("fd77::") + last[i]);
  }
  node_ns_ = net::Netns::open(node_->path());
}

TwoPodNode::~TwoPodNode() {
  pod_b_.reset();
  pod_a_.reset();
  node_.reset();
  root_.reset();
}

void TwoPodNode::in_node(const std::function<void()>& fn) const { net::in_netns(node_ns_, fn); }

int TwoPodNode::host_ifindex(int i) const {
  net::Socket s = net::Socket::open_in(node_ns_);
  return net::get_link(s, pods_[i].host_veth).index;
}

dataplane::Endpoint TwoPodNode::endpoint(int i) const {
  net::Socket node_sock = net::Socket::open_in(node_ns_);
  net::Netns pod_ns = net::Netns::open(pod_netns(i).path());
  net::Socket pod_sock = net::Socket::open_in(pod_ns);
  dataplane::Endpoint ep;
  ep.endpoint_id = 101 + static_cast<uint32_t>(i);
  ep.host_veth = pods_[i].host_veth;
  ep.host_ifindex = net::get_link(node_sock, pods_[i].host_veth).index;
  ep.ips = {pods_[i].ip4, pods_[i].ip6};  // v4 before v6: the backend's order
  ep.pod_mac = *net::get_link(pod_sock, "eth0").mac;
  ep.host_mac = *net::get_link(node_sock, "fyebbr0").mac;
  return ep;
}

ebpf::EbpfConfig TwoPodNode::config() const {
  ebpf::EbpfConfig c;
  c.bpffs_root = bpffs_root();
  c.ct_max = 4096;
  c.endpoints_max = 1024;
  return c;
}

int TwoPodNode::ping(int from, const net::Ip& dst, int count, const std::string& extra) const {
  std::string cmd = "ip netns exec " + pod_netns(from).name() + " ping " + (dst.family == AF_INET6 ? "-6 " : "-4 ") +
                    "-c " + std::to_string(count) + " -i 0.05 -W 2 " + extra + " " + dst.str() + " 2>&1";
  ShellResult r = sh_status(cmd);
  std::smatch m;
  static const std::regex received(R"((\d+) (packets )?received)");
  if (std::regex_search(r.out, m, received)) return std::stoi(m[1]);
  return 0;
}

namespace {
struct SockFd {
  int fd = -1;
  ~SockFd() {
    if (fd >= 0) ::close(fd);
  }
};
sockaddr_storage make_addr(const net::Ip& ip, uint16_t port, socklen_t* len) {
  sockaddr_storage ss{};
  if (ip.family == AF_INET) {
    auto* a = reinterpret_cast<sockaddr_in*>(&ss);
    a->sin_family = AF_INET;
    a->sin_port = htons(port);
    std::memcpy(&a->sin_addr, ip.bytes.data(), 4);
    *len = sizeof(sockaddr_in);
  } else {
    auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    std::memcpy(&a->sin6_addr, ip.bytes.data(), 16);
    *len = sizeof(sockaddr_in6);
  }
  return ss;
}
void set_timeouts(int fd) {
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}
}  // namespace

void TwoPodNode::add_gateway() const {
  sh("ip -n " + node_->name() + " addr add 10.77.0.1/24 dev fyebbr0");
  sh("ip -n " + node_->name() + " addr add fd77::1/64 dev fyebbr0 nodad");
  for (int i = 0; i < 2; ++i) {
    sh("ip -n " + pods_[i].netns + " route add default via 10.77.0.1");
    sh("ip -n " + pods_[i].netns + " -6 route add default via fd77::1");
  }
}

sockaddr_storage sockaddr_of(const net::Ip& ip, uint16_t port, socklen_t* len) { return make_addr(ip, port, len); }

std::string sockaddr_str(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
    return std::string(text) + ":" + std::to_string(ntohs(a->sin_port));
  }
  const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
  ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
  return "[" + std::string(text) + "]:" + std::to_string(ntohs(a->sin6_port));
}

bool TwoPodNode::tcp_exchange(int from, int to, int family, uint16_t port) const {
  const net::Ip& dst = family == AF_INET6 ? pods_[to].ip6 : pods_[to].ip4;
  SockFd server, client, conn;
  net::Netns to_ns = net::Netns::open(pod_netns(to).path());
  net::Netns from_ns = net::Netns::open(pod_netns(from).path());
  net::in_netns(to_ns, [&] { server.fd = ::socket(family, SOCK_STREAM, 0); });
  net::in_netns(from_ns, [&] { client.fd = ::socket(family, SOCK_STREAM, 0); });
  if (server.fd < 0 || client.fd < 0) return false;
  int one = 1;
  ::setsockopt(server.fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  set_timeouts(server.fd);
  set_timeouts(client.fd);
  socklen_t len = 0;
  sockaddr_storage addr = make_addr(dst, port, &len);
  if (::bind(server.fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) return false;
  if (::listen(server.fd, 1) != 0) return false;
  // The handshake completes against the backlog, so connect before accept on one thread.
  if (::connect(client.fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) return false;
  conn.fd = ::accept(server.fd, nullptr, nullptr);
  if (conn.fd < 0) return false;
  set_timeouts(conn.fd);
  const char request[] = "ferry-request";
  const char response[] = "ferry-response";
  char buf[64] = {};
  if (::send(client.fd, request, sizeof(request), 0) != sizeof(request)) return false;
  if (::recv(conn.fd, buf, sizeof(request), MSG_WAITALL) != sizeof(request) || std::strcmp(buf, request) != 0) return false;
  if (::send(conn.fd, response, sizeof(response), 0) != sizeof(response)) return false;
  std::memset(buf, 0, sizeof(buf));
  if (::recv(client.fd, buf, sizeof(response), MSG_WAITALL) != sizeof(response)) return false;
  return std::strcmp(buf, response) == 0;
}

uint64_t counter(const std::vector<dataplane::Counter>& counters, const std::string& name) {
  for (const auto& c : counters)
    if (c.name == name) return c.packets;
  return 0;
}

uint64_t counter(const dataplane::Stats& stats, const std::string& name) { return counter(stats.counters, name); }

}  // namespace ferry::ebpftest
