#include "bench_support.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/ebpf/ebpf.h"
#include "agent/iptables/iptables.h"

namespace ferry::bench {

namespace {

volatile sig_atomic_t g_interrupted = 0;

void on_signal(int) { g_interrupted = 1; }

std::string errno_text() { return std::strerror(errno); }

void run(const std::vector<std::string>& argv) {
  net::CommandResult r = net::run_command(argv);
  if (r.status != 0) {
    std::string cmd;
    for (const std::string& a : argv) cmd += (cmd.empty() ? "" : " ") + a;
    throw BenchError(cmd + ": exit " + std::to_string(r.status) + ": " + r.err);
  }
}

// A file descriptor closed on scope exit.
struct Fd {
  int fd = -1;
  explicit Fd(int f) : fd(f) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
};

sockaddr_in ipv4_address(const net::Ip& ip, uint16_t port) {
  if (ip.family != AF_INET) throw BenchError("only IPv4 is measured: " + ip.str());
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  std::memcpy(&a.sin_addr, ip.bytes.data(), 4);
  return a;
}

void set_timeouts(int fd, std::chrono::milliseconds timeout) {
  timeval tv{static_cast<time_t>(timeout.count() / 1000), static_cast<suseconds_t>(timeout.count() % 1000 * 1000)};
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

// A connected TCP socket (created in the calling thread's netns); -1 with errno on failure.
int connect_tcp(const net::Ip& ip, uint16_t port, std::chrono::milliseconds timeout) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  set_timeouts(fd, timeout);
  const sockaddr_in a = ipv4_address(ip, port);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return -1;
  }
  return fd;
}

void close_with_reset(int fd) {
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);
}

void in_named_netns(const std::string& netns, const std::function<void()>& fn) {
  net::in_netns(net::Netns::open("/run/netns/" + netns), fn);
}

// The pid in "<prefix><pid>...", 0 when the name does not have that shape.
pid_t pid_in_name(const std::string& name, const std::string& prefix) {
  if (name.rfind(prefix, 0) != 0) return 0;
  size_t i = prefix.size();
  pid_t pid = 0;
  while (i < name.size() && std::isdigit(static_cast<unsigned char>(name[i])) && pid < 100000000)
    pid = pid * 10 + (name[i++] - '0');
  return pid;
}

bool dead(pid_t pid) { return pid > 0 && ::kill(pid, 0) != 0 && errno == ESRCH; }

}  // namespace

void install_interrupt_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;  // no SA_RESTART: a blocked connect/accept returns EINTR
  sigemptyset(&sa.sa_mask);
  for (int s : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(s, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

void throw_if_interrupted() {
  if (g_interrupted) throw Interrupted();
}

int bench_main(const std::string& name, const std::function<int()>& body) {
  if (::geteuid() != 0) {
    std::fprintf(stderr, "%s: needs root (network namespaces, bpffs, iptables)\n", name.c_str());
    return 77;
  }
  install_interrupt_handlers();
  try {
    return body();
  } catch (const Interrupted&) {
    std::fprintf(stderr, "%s: interrupted; cleaned up\n", name.c_str());
    return 130;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", name.c_str(), e.what());
    return 1;
  }
}

int pin_to_cpu(const std::string& cpu) {
  if (cpu == "none") return -1;
  cpu_set_t allowed;
  if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) throw BenchError("sched_getaffinity: " + errno_text());
  int chosen = -1;
  if (cpu == "last") {
    for (int c = 0; c < CPU_SETSIZE; ++c)
      if (CPU_ISSET(c, &allowed)) chosen = c;
  } else {
    chosen = std::stoi(cpu);
  }
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(chosen, &one);
  if (::sched_setaffinity(0, sizeof one, &one) != 0)
    throw BenchError("pin to CPU " + std::to_string(chosen) + ": " + errno_text());
  return chosen;
}

int sweep_leftovers(const std::string& prefix) {
  int removed = 0;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator("/run/netns", ec)) {
    const std::string name = e.path().filename();
    if (dead(pid_in_name(name, prefix)) && net::run_command({"ip", "netns", "del", name}).status == 0) ++removed;
  }
  for (const auto& e : std::filesystem::directory_iterator(std::string(ebpf::kBpffsMount) + "/ferry", ec)) {
    const std::string name = e.path().filename();
    if (dead(pid_in_name(name, prefix))) removed += std::filesystem::remove_all(e.path(), ec) > 0;
  }
  return removed;
}

std::string run_tag(const std::string& prefix, const std::string& mode) {
  return prefix + std::to_string(::getpid()) + (mode == "ebpf" ? "e" : "i");
}

// ---------------------------------------------------------------------------------------

BenchNode::BenchNode(const NodeOptions& options)
    : options_(options), node_netns_(options.tag + "-node") {
  if (options_.mode != "ebpf" && options_.mode != "iptables") throw BenchError("unknown mode " + options_.mode);
  try {
    set_up();
  } catch (...) {
    remove_all();  // no destructor runs after a throwing constructor
    throw;
  }
}

void BenchNode::set_up() {
  net::run_command({"ip", "netns", "del", node_netns_});
  run({"ip", "netns", "add", node_netns_});
  node_ns_ = net::Netns::open("/run/netns/" + node_netns_);
  net::Socket sock = net::Socket::open_in(node_ns_);
  net::set_link_up(sock, net::get_link(sock, "lo").index);
  net::BridgeSpec br;
  br.name = "fybr0";
  br.mac = net::random_mac();  // fixed, so it does not follow the ports
  const net::Link bridge = net::ensure_bridge(sock, br);
  bridge_index_ = bridge.index;
  bridge_mac_ = *br.mac;
  net::add_address(sock, bridge_index_, {ipv4_plus("10." + std::to_string(options_.subnet) + ".0.0", 1), 16});
  if (options_.mode == "ebpf") bpffs_root_ = std::string(ebpf::kBpffsMount) + "/ferry/" + options_.tag;
  in_node([&] {
    net::write_sysctl("net/ipv4/ip_forward", "1");
    if (options_.mode == "ebpf") {
      ebpf::ensure_bpffs();
      bpffs_root_ = std::string(ebpf::kBpffsMount) + "/ferry/" + options_.tag;
      ebpf::EbpfConfig c;
      c.bpffs_root = bpffs_root_;
      c.ct_max = options_.ebpf_ct_max;
      c.endpoints_max = options_.ebpf_endpoints_max;
      c.socket_lb = false;  // cgroup hooks would reach beyond this node's netns
      dataplane_ = ebpf::make_ebpf_dataplane(c);
    } else {
      iptables::IptablesConfig c;
      c.cluster_cidrs = {pod_cidr()};
      dataplane_ = iptables::make_iptables_dataplane(c);
    }
    dataplane_->start();
  });
}

BenchNode::~BenchNode() { remove_all(); }

void BenchNode::remove_all() noexcept {
  // The netns takes veths, tc programs, iptables rules and ipsets with it; pins stay in bpffs.
  dataplane_.reset();
  for (const auto& p : pods_)
    if (!p->netns.empty()) net::run_command({"ip", "netns", "del", p->netns});
  net::run_command({"ip", "netns", "del", node_netns_});
  std::error_code ec;
  if (!bpffs_root_.empty()) std::filesystem::remove_all(bpffs_root_, ec);
}

net::Prefix BenchNode::pod_cidr() const {
  return {ipv4_plus("10." + std::to_string(options_.subnet) + ".0.0", 0), 16};
}

void BenchNode::in_node(const std::function<void()>& fn) const { net::in_netns(node_ns_, fn); }

const BenchPod& BenchNode::add_pod(const std::string& name) {
  auto pod = std::make_unique<BenchPod>();
  const int index = next_index_++;
  pod->name = name;
  pod->netns = options_.tag + "-" + name;
  pod->ip = ipv4_plus(pod_cidr().ip.str(), static_cast<uint32_t>(index + 2));
  net::run_command({"ip", "netns", "del", pod->netns});
  run({"ip", "netns", "add", pod->netns});
  pods_.push_back(std::move(pod));  // from here on the destructor deletes its netns
  BenchPod& p = *pods_.back();
  net::Netns pod_ns = net::Netns::open("/run/netns/" + p.netns);
  net::Socket node_sock = net::Socket::open_in(node_ns_);
  net::Socket pod_sock = net::Socket::open_in(pod_ns);
  net::VethSpec veth;
  veth.name = "fyv" + std::to_string(index);
  veth.peer_name = "eth0";
  veth.peer_netns_fd = pod_ns.fd();
  veth.master = bridge_index_;
  veth.up = true;
  net::create_veth(node_sock, veth);
  const net::Link eth0 = net::get_link(pod_sock, "eth0");
  net::set_link_up(pod_sock, net::get_link(pod_sock, "lo").index);
  net::add_address(pod_sock, eth0.index, {p.ip, 16});
  net::set_link_up(pod_sock, eth0.index);
  run({"ip", "-n", p.netns, "route", "add", "default", "via", ipv4_plus(pod_cidr().ip.str(), 1).str()});
  p.endpoint.endpoint_id = static_cast<uint32_t>(index + 1);
  p.endpoint.host_veth = veth.name;
  p.endpoint.host_ifindex = net::get_link(node_sock, veth.name).index;
  p.endpoint.ips = {p.ip};
  p.endpoint.pod_mac = *eth0.mac;
  p.endpoint.host_mac = bridge_mac_;
  program_endpoint(p.endpoint);
  return p;
}

dataplane::Endpoint BenchNode::add_bare_endpoint() {
  const int index = next_index_++;
  net::Socket sock = net::Socket::open_in(node_ns_);
  net::VethSpec veth;
  veth.name = "fyv" + std::to_string(index);
  veth.peer_name = "fyp" + std::to_string(index);
  veth.master = bridge_index_;
  veth.up = true;
  net::create_veth(sock, veth);
  dataplane::Endpoint ep;
  ep.endpoint_id = static_cast<uint32_t>(index + 1);
  ep.host_veth = veth.name;
  ep.host_ifindex = net::get_link(sock, veth.name).index;
  ep.ips = {ipv4_plus(pod_cidr().ip.str(), static_cast<uint32_t>(index + 2))};
  ep.pod_mac = *net::get_link(sock, veth.peer_name).mac;
  ep.host_mac = bridge_mac_;
  return ep;
}

void BenchNode::program_policy(const dataplane::PolicySet& set) { in_node([&] { dataplane_->program_policy(set); }); }
void BenchNode::program_services(const dataplane::ServiceSet& set) {
  in_node([&] { dataplane_->program_services(set); });
}
void BenchNode::program_endpoint(const dataplane::Endpoint& ep) { in_node([&] { dataplane_->program_endpoint(ep); }); }
dataplane::Stats BenchNode::stats() {
  dataplane::Stats s;
  in_node([&] { s = dataplane_->stats(); });
  return s;
}

// ---------------------------------------------------------------------------------------

TcpServer::TcpServer(const std::string& netns, uint16_t port, ServerKind kind) {
  in_named_netns(netns, [&] { listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0); });
  if (listen_fd_ < 0) throw BenchError("socket in " + netns + ": " + errno_text());
  const int one = 1;
  ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 4096) != 0) {
    const std::string why = errno_text();
    ::close(listen_fd_);
    throw BenchError("listen on port " + std::to_string(port) + " in " + netns + ": " + why);
  }
  thread_ = std::thread([this, kind] { serve(kind); });
}

TcpServer::~TcpServer() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
  const int conn = conn_fd_.load();
  if (conn >= 0) ::shutdown(conn, SHUT_RDWR);
  thread_.join();
  ::close(listen_fd_);
}

void TcpServer::serve(ServerKind kind) {
  std::vector<char> buf(kind == ServerKind::kSink ? 1 << 18 : 0);
  while (!stop_) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      break;  // shut down
    }
    if (kind == ServerKind::kSink) {
      conn_fd_ = fd;
      uint64_t total = 0;
      ssize_t n;
      while ((n = ::read(fd, buf.data(), buf.size())) > 0 || (n < 0 && errno == EINTR))
        if (n > 0) total += static_cast<uint64_t>(n);
      if (n == 0 && ::write(fd, &total, sizeof total) != sizeof total) {
        // the client went away: nothing to report to
      }
      conn_fd_ = -1;
    }
    ::close(fd);
  }
}

std::vector<double> connect_times_us(const std::string& netns, const net::Ip& ip, uint16_t port, int count) {
  std::vector<double> times;
  times.reserve(static_cast<size_t>(count));
  in_named_netns(netns, [&] {
    for (int i = 0; i < count; ++i) {
      const auto t0 = std::chrono::steady_clock::now();
      const int fd = connect_tcp(ip, port, std::chrono::seconds(3));
      if (fd < 0) {
        throw_if_interrupted();
        throw BenchError("connect " + ip.str() + ":" + std::to_string(port) + " from " + netns + ": " + errno_text());
      }
      close_with_reset(fd);
      times.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
      if (i % 64 == 0) throw_if_interrupted();
    }
  });
  return times;
}

bool can_connect(const std::string& netns, const net::Ip& ip, uint16_t port, std::chrono::milliseconds timeout) {
  int fd = -1;
  in_named_netns(netns, [&] { fd = connect_tcp(ip, port, timeout); });
  if (fd < 0) return false;
  close_with_reset(fd);
  return true;
}

double bulk_gbits(const std::string& netns, const net::Ip& ip, uint16_t port, double seconds) {
  int raw = -1;
  in_named_netns(netns, [&] { raw = connect_tcp(ip, port, std::chrono::seconds(3)); });
  const std::string what = "bulk transfer to " + ip.str() + ":" + std::to_string(port) + " from " + netns;
  if (raw < 0) throw BenchError(what + ": " + errno_text());
  Fd fd(raw);
  set_timeouts(fd.fd, std::chrono::seconds(30));
  const std::vector<char> chunk(1 << 17, 'x');
  const auto t0 = std::chrono::steady_clock::now();
  const auto until = t0 + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (::write(fd.fd, chunk.data(), chunk.size()) < 0 && errno != EINTR)
      throw BenchError(what + ": write: " + errno_text());
    throw_if_interrupted();
  }
  ::shutdown(fd.fd, SHUT_WR);
  uint64_t received = 0;
  if (::read(fd.fd, &received, sizeof received) != sizeof received)
    throw BenchError(what + ": no byte count from the server: " + errno_text());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return static_cast<double>(received) * 8 / s / 1e9;
}

void connect_round(const std::vector<ConnectTarget>& order, int connects, int chunk,
                   std::map<std::string, ConnectSeries>& out) {
  std::map<std::string, std::vector<double>> times;
  std::map<std::string, double> busy_ms;
  for (int done = 0; done < connects; done += chunk)
    for (const ConnectTarget& t : order) {
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<double> batch = connect_times_us(t.client_netns, t.ip, t.port, std::min(chunk, connects - done));
      busy_ms[t.key] += elapsed_ms(t0);
      times[t.key].insert(times[t.key].end(), batch.begin(), batch.end());
    }
  for (auto& [key, t] : times) {
    out[key].rate.push_back(connects / (busy_ms[key] / 1e3));
    out[key].median_us.push_back(median(std::move(t)));
  }
}

// ---------------------------------------------------------------------------------------

void parse_options(int argc, char** argv,
                   const std::function<bool(const std::string&, const std::function<std::string()>&)>& on_option,
                   const std::string& usage) {
  for (int i = 1; i < argc; ++i) {
    const std::string name = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw BenchError(name + " needs a value");
      return argv[++i];
    };
    if (!on_option(name, value)) throw BenchError(usage);
  }
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(item);
  return out;
}

std::vector<int> int_list(const std::string& text) {
  std::vector<int> out;
  for (const std::string& item : split_list(text)) out.push_back(std::stoi(item));
  return out;
}

// ---------------------------------------------------------------------------------------

Spread spread(std::vector<double> values) {
  if (values.empty()) return {};
  std::sort(values.begin(), values.end());
  return {median(values), values.front(), values.back()};
}

double median(std::vector<double> values) {
  if (values.empty()) return 0;
  std::sort(values.begin(), values.end());
  const size_t n = values.size();
  return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

Ratio ratio(const std::vector<double>& a, const std::vector<double>& b) {
  Ratio r;
  r.of_medians = median(a) / median(b);
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) r.rounds.push_back(a[i] / b[i]);
  r.per_round = spread(r.rounds);
  return r;
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

double elapsed_ms(std::chrono::steady_clock::time_point since) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - since).count();
}

net::Ip ipv4_plus(const std::string& base, uint32_t offset) {
  std::optional<net::Ip> ip = net::Ip::parse(base);
  if (!ip || ip->family != AF_INET) throw BenchError("not an IPv4 address: " + base);
  uint32_t v;
  std::memcpy(&v, ip->bytes.data(), 4);
  v = htonl(ntohl(v) + offset);
  std::memcpy(ip->bytes.data(), &v, 4);
  return *ip;
}

}  // namespace ferry::bench
