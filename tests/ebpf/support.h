// Fixtures for the eBPF backend tests: a node netns with a bridge and two pods (veth pairs
// whose host ends are bridge ports), a private bpffs root, and helpers to run the backend
// inside the node netns. Every kernel object carries the prefix "fyeb" and is removed in the
// destructors, also when a test fails.
#pragma once

#include <sys/socket.h>

#include <functional>
#include <memory>
#include <optional>
#include <type_traits>
#include <string>
#include <vector>

#include "agent/dataplane/dataplane.h"
#include "agent/ebpf/ebpf.h"
#include "net/net.h"
#include "tests/support/support.h"

namespace ferry::ebpftest {

using test::sh;
using test::sh_status;
using test::ShellResult;
using test::TestNetns;

// Skips (with the reason) unless root on a kernel that can run ferry's eBPF datapath.
#define FERRY_REQUIRE_EBPF()                                                                          \
  do {                                                                                                \
    if (!::ferry::test::is_root()) GTEST_SKIP() << "needs root (network namespaces, bpffs, tc)";      \
    std::string ebpf_unsupported_why;                                                                 \
    if (!::ferry::ebpf::ebpf_supported(&ebpf_unsupported_why))                                        \
      GTEST_SKIP() << "kernel cannot run ferry's eBPF datapath: " << ebpf_unsupported_why;            \
  } while (0)

// Removes every pin under a bpffs directory and the directory itself on destruction.
class BpffsRootGuard {
 public:
  explicit BpffsRootGuard(std::string root);
  ~BpffsRootGuard();
  const std::string& path() const { return root_; }

 private:
  std::string root_;
};

struct Pod {
  std::string netns;     // netns name
  std::string host_veth;  // in the node netns
  net::Ip ip4, ip6;
};

// node netns "fyeb<pid>n" with bridge "fyebbr0"; pods "fyeb<pid>a"/"fyeb<pid>b" with eth0
// 10.77.0.2/3 and fd77::2/3 (one subnet), host veths "fyebva"/"fyebvb".
class TwoPodNode {
 public:
  TwoPodNode();
  ~TwoPodNode();

  const TestNetns& node() const { return *node_; }
  const TestNetns& pod_netns(int i) const { return i == 0 ? *pod_a_ : *pod_b_; }
  const Pod& pod(int i) const { return pods_[i]; }
  const std::string& bpffs_root() const { return root_->path(); }

  // Runs fn with this thread in the node netns (where the agent lives).
  void in_node(const std::function<void()>& fn) const;
  // The same, returning fn's result.
  template <typename F>
  auto run_in_node(F fn) const {
    using R = decltype(fn());
    if constexpr (std::is_void_v<R>) {
      in_node(fn);
    } else {
      std::optional<R> out;
      in_node([&] { out.emplace(fn()); });
      return std::move(*out);
    }
  }
  // A backend made from `config` and started in the node netns.
  std::unique_ptr<dataplane::Dataplane> started_backend(const ebpf::EbpfConfig& config) const {
    auto dp = ebpf::make_ebpf_dataplane(config);
    in_node([&] { dp->start(); });
    return dp;
  }
  // The desired endpoint of pod i (ids 101, 102), read from the kernel.
  dataplane::Endpoint endpoint(int i) const;
  ebpf::EbpfConfig config() const;

  // ping from pod `from` to `dst` (count packets); returns the number of replies.
  int ping(int from, const net::Ip& dst, int count = 3, const std::string& extra = "") const;
  // One TCP request/response between pods over `family`; true when both messages arrived.
  bool tcp_exchange(int from, int to, int family, uint16_t port) const;
  int host_ifindex(int i) const;
  // Gives the bridge 10.77.0.1/24 and fd77::1/64 and the pods default routes through it, so
  // they reach addresses off their subnet (service frontends).
  void add_gateway() const;

 private:
  std::unique_ptr<BpffsRootGuard> root_;
  std::unique_ptr<TestNetns> node_, pod_a_, pod_b_;
  Pod pods_[2];
  net::Netns node_ns_;
};

// A socket address for connect/bind, and back: "10.96.0.10:80", "[fd96::10]:80".
sockaddr_storage sockaddr_of(const net::Ip& ip, uint16_t port, socklen_t* len);
std::string sockaddr_str(const sockaddr_storage& ss);

// Counter value by name from a stats snapshot (0 when absent).
uint64_t counter(const dataplane::Stats& stats, const std::string& name);
uint64_t counter(const std::vector<dataplane::Counter>& counters, const std::string& name);

}  // namespace ferry::ebpftest
