// bench/bench_support.h — what the C++ datapath benchmarks share: a simulated node (network
// namespace, bridge, pod namespaces on veths, one Dataplane backend programming them), TCP
// servers and clients that run inside pod namespaces, interrupt handling and small statistics.
//
// Every kernel object carries the run's tag ("<prefix><pid><mode letter>"): netns
// "<tag>-node", "<tag>-<pod>", bpffs root /sys/fs/bpf/ferry/<tag>. Destructors remove them
// (Ctrl-C/TERM make the measuring loops throw Interrupted, so destructors run then too);
// sweep_leftovers() removes what a SIGKILLed run of the same prefix left.
//
// Errors: everything throws std::runtime_error (net::Error, dataplane::DataplaneError, or
// BenchError with what failed, e.g. "connect 10.71.0.3:80 from fypc1e-client: timed out").
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "agent/dataplane/dataplane.h"
#include "net/net.h"

namespace ferry::bench {

class BenchError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class Interrupted : public BenchError {
 public:
  Interrupted() : BenchError("interrupted") {}
};

// SIGINT/SIGTERM/SIGHUP set a flag instead of killing the process (the loops poll it and
// throw Interrupted, so the destructors clean up); SIGPIPE is ignored.
void install_interrupt_handlers();
void throw_if_interrupted();

// A benchmark's main: exit 77 without root; interrupt handlers installed; `body`'s result, or
// 130 after Ctrl-C/TERM (Interrupted), or 1 with the error on stderr ("<name>: <what>").
int bench_main(const std::string& name, const std::function<int()>& body);

// Pins this thread (and the threads and processes it starts later) to one CPU: "last" (the
// last CPU this process may use), a number, or "none". Client, servers and the softirq work
// of their veths then share one CPU: on a small shared machine, a connect that wakes a
// thread on another CPU measures the wake-up more than the datapath. Returns the CPU or -1.
int pin_to_cpu(const std::string& cpu);

// Deletes netns "<prefix><pid>..." and bpffs roots /sys/fs/bpf/ferry/<prefix><pid>... whose
// pid no longer runs (a run killed with SIGKILL). Returns how many objects it removed.
int sweep_leftovers(const std::string& prefix);

// The tag of this run for one mode: prefix + pid + 'e' (eBPF) or 'i' (iptables).
std::string run_tag(const std::string& prefix, const std::string& mode);

// ---------------------------------------------------------------------------------------
// A node: netns "<tag>-node" with bridge "fybr0" (10.<subnet>.0.1/16, the pods' gateway),
// forwarding on, and a started backend ("ebpf" or "iptables") that programs every pod.

struct BenchPod {
  std::string name;
  std::string netns;         // "<tag>-<name>"; "" for a bare endpoint (no pod netns)
  net::Ip ip;                // 10.<subnet>.<i/256>.<i%256 + 2>
  dataplane::Endpoint endpoint;
};

struct NodeOptions {
  std::string mode;                 // "ebpf" or "iptables"
  std::string tag;                  // run_tag(...)
  int subnet = 71;                  // pods in 10.<subnet>.0.0/16
  uint32_t ebpf_ct_max = 65536;     // preallocated: keep it small, several nodes share the RAM
  uint32_t ebpf_endpoints_max = 4096;
};

class BenchNode {
 public:
  explicit BenchNode(const NodeOptions& options);
  ~BenchNode();
  BenchNode(const BenchNode&) = delete;
  BenchNode& operator=(const BenchNode&) = delete;

  const std::string& mode() const { return options_.mode; }
  const std::string& tag() const { return options_.tag; }
  dataplane::Dataplane& dataplane() { return *dataplane_; }
  net::Prefix pod_cidr() const;

  // A pod netns on a veth into the bridge (eth0, default route via the bridge), programmed by
  // the backend before this returns.
  const BenchPod& add_pod(const std::string& name);
  // A veth pair with both ends in the node netns ("fyv<n>"/"fyp<n>"): a real interface to
  // program without the cost of a pod netns. Not programmed; returns the endpoint to program.
  dataplane::Endpoint add_bare_endpoint();
  // Runs fn with this thread in the node netns, where the backend must be called.
  void in_node(const std::function<void()>& fn) const;
  // Backend calls, in the node netns.
  void program_policy(const dataplane::PolicySet& set);
  void program_services(const dataplane::ServiceSet& set);
  void program_endpoint(const dataplane::Endpoint& ep);
  dataplane::Stats stats();

 private:
  void set_up();
  void remove_all() noexcept;
  NodeOptions options_;
  std::string node_netns_;
  std::string bpffs_root_;
  net::Netns node_ns_;
  net::Mac bridge_mac_{};
  int bridge_index_ = 0;
  int next_index_ = 0;
  std::vector<std::unique_ptr<BenchPod>> pods_;
  std::unique_ptr<dataplane::Dataplane> dataplane_;
};

// ---------------------------------------------------------------------------------------
// TCP inside pods. Sockets are created inside the pod's netns and used from any thread.

enum class ServerKind {
  kAcceptClose,  // accepts and closes at once: the other end of a connect-rate test
  kSink,         // reads each connection to EOF, then answers the byte count (8 bytes, host order)
};

class TcpServer {
 public:
  TcpServer(const std::string& netns, uint16_t port, ServerKind kind);
  ~TcpServer();
  TcpServer(const TcpServer&) = delete;
  TcpServer& operator=(const TcpServer&) = delete;

 private:
  void serve(ServerKind kind);
  int listen_fd_ = -1;
  std::atomic<int> conn_fd_{-1};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// `count` connections one after another from inside `netns`: socket, connect, close with RST
// (SO_LINGER 0, so no TIME_WAIT piles up over thousands of connects). Returns each one's time
// in microseconds. Throws BenchError when one fails or takes longer than 3 s.
std::vector<double> connect_times_us(const std::string& netns, const net::Ip& ip, uint16_t port, int count);
// One connection attempt; true when the handshake completes within `timeout`.
bool can_connect(const std::string& netns, const net::Ip& ip, uint16_t port, std::chrono::milliseconds timeout);
// Sends on one connection to a kSink server for `seconds`; returns Gbit/s as the server counted
// them (bytes it read / time until its answer arrived).
double bulk_gbits(const std::string& netns, const net::Ip& ip, uint16_t port, double seconds);

// Interleaved connect rounds: `connects` per target, in chunks of `chunk` that cycle over the
// targets in the given order, so a burst of load from elsewhere lands on every target rather
// than on one. Appends, per target key, this round's median connect time and its rate
// (connects per second of connecting).
struct ConnectTarget {
  std::string key;
  std::string client_netns;
  net::Ip ip;
  uint16_t port = 0;
};
struct ConnectSeries {
  std::vector<double> median_us;  // one per round
  std::vector<double> rate;       // one per round
};
void connect_round(const std::vector<ConnectTarget>& order, int connects, int chunk,
                   std::map<std::string, ConnectSeries>& out);

// ---------------------------------------------------------------------------------------
// Command lines: "--name value" options. `on_option(name, value)` handles one (value() takes
// the next argument, throwing when there is none) and returns false for an unknown name, which
// throws BenchError(usage).
void parse_options(int argc, char** argv,
                   const std::function<bool(const std::string&, const std::function<std::string()>&)>& on_option,
                   const std::string& usage);
std::vector<std::string> split_list(const std::string& text);  // "a,b,c"
std::vector<int> int_list(const std::string& text);            // "0,100,1000"

// ---------------------------------------------------------------------------------------
// Statistics and output.

struct Spread {
  double median = 0, min = 0, max = 0;
};
Spread spread(std::vector<double> values);
double median(std::vector<double> values);
// a / b of two series measured in the same rounds: of their medians, and round by round (the
// two ran next to each other in a round, so that ratio carries less of the machine's drift).
struct Ratio {
  double of_medians = 0;
  Spread per_round;
  std::vector<double> rounds;
};
Ratio ratio(const std::vector<double>& a, const std::vector<double>& b);
std::string load_average();  // the first three fields of /proc/loadavg
double elapsed_ms(std::chrono::steady_clock::time_point since);
// "10.96.<i/256>.<i%256>"-style addresses: `base` with `offset` added to its last 16 bits.
net::Ip ipv4_plus(const std::string& base, uint32_t offset);

}  // namespace ferry::bench
