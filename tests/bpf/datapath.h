// Fixture of the BPF datapath tests: loads ferry_lxc (the generated skeleton) with its maps
// pinned under a private bpffs directory, runs its programs on crafted frames with
// BPF_PROG_TEST_RUN, and reads back maps, counters and drop events.
//
// BPF_PROG_TEST_RUN builds the skb in the CALLING thread's netns: `ctx.ifindex` (what the
// program reads as skb->ifindex) must name a device there, while `ctx.ingress_ifindex` is taken
// as given. So each test makes a private netns "fybpf<pid>" with two veths standing for two
// pods' host-side ends, and runs the programs inside it. Everything (netns, pins) is removed in
// TearDown, also when the test fails.
#pragma once

#include <gtest/gtest.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ferry/abi.h"
#include "ferry_lxc.skel.h"
#include "net/net.h"
#include "packet.h"

namespace ferry::bpftest {

// A local pod as the tests model it: its host-side veth (in the test netns) and its MACs.
struct Pod {
  std::string veth;
  uint32_t ifindex = 0;
  uint32_t endpoint_id = 0;
  MacAddr pod_mac{};
  MacAddr host_mac{};
};

struct RunResult {
  int retval = -1;  // TC_ACT_*
  Bytes out;        // the frame after the program (data_out)
  uint32_t mark = 0;  // skb->mark after the program (ctx_out)
};

std::string tc_act_name(int verdict);

// Network namespace with veths, deleted on destruction (the veths go with it).
class PrivateNetns {
 public:
  explicit PrivateNetns(std::string name);
  ~PrivateNetns();
  PrivateNetns(const PrivateNetns&) = delete;
  PrivateNetns& operator=(const PrivateNetns&) = delete;
  const net::Netns& ns() const { return ns_; }
  const std::string& name() const { return name_; }
  uint32_t add_veth(const std::string& name);  // returns the ifindex of `name`

 private:
  std::string name_;
  net::Netns ns_;
};

// The skeleton loaded with pin_root_path = `pin_dir`; unpins and removes the directory on
// destruction, including pins left by a load that failed half way.
class LoadedDatapath {
 public:
  struct Sizes {
    uint32_t ct_max = 4096;       // small: the default FERRY_CT_MAX preallocates ~40 MB
    uint32_t events_bytes = 0;    // 0 = FERRY_EVENTS_BYTES
  };
  LoadedDatapath(std::string pin_dir, Sizes sizes);
  ~LoadedDatapath();
  LoadedDatapath(const LoadedDatapath&) = delete;
  LoadedDatapath& operator=(const LoadedDatapath&) = delete;
  ferry_lxc* skel() const { return skel_; }
  const std::string& pin_dir() const { return pin_dir_; }
  const std::string& load_log() const { return log_; }

 private:
  std::string pin_dir_;
  std::string log_;
  ferry_lxc* skel_ = nullptr;
};

// Removes every pin in `dir` and the directory itself (no-op if absent).
void remove_pin_dir(const std::string& dir);
// Mounts bpffs at /sys/fs/bpf unless it is mounted; throws on failure.
void ensure_bpffs();

class DatapathTest : public ::testing::Test {
 protected:
  void SetUp() override;
  void TearDown() override;
  // Per-test sizes (e.g. a tiny ring buffer); called by SetUp.
  virtual LoadedDatapath::Sizes sizes() const { return {}; }

  // Runs ferry_from_pod as tc ingress of `pod`'s veth / ferry_to_pod as tc egress of it.
  RunResult from_pod(const Pod& pod, const Bytes& frame, uint32_t repeat = 1);
  RunResult to_pod(const Pod& pod, const Bytes& frame);
  // Runs ferry_from_overlay as tc ingress of the overlay device stand-in (overlay_ifindex_).
  RunResult from_overlay(const Bytes& frame);
  // Runs ferry_from_uplink / ferry_to_uplink as tc ingress / egress of `ifindex` (a NodePort device).
  RunResult from_uplink(uint32_t ifindex, const Bytes& frame);
  RunResult to_uplink(uint32_t ifindex, const Bytes& frame);

  // ferry_cfg_v3 service part: FERRY_CFG_F_SERVICES (+ FERRY_CFG_F_MAGLEV) and the hairpin
  // loopback addresses (the rest kept).
  void set_services(bool on, bool maglev = false, const Addr& loopback4 = Addr::parse("169.254.42.1"),
                    const Addr& loopback6 = Addr::parse("fd66:6572:7279::1"));
  // ferry_be_v1 entry (flags FERRY_BACKEND_F_*).
  void add_backend(uint32_t id, const Addr& addr, uint16_t port, uint8_t proto,
                   uint8_t state = FERRY_BACKEND_ACTIVE);
  void remove_backend(uint32_t id);
  // ferry_svc_v1 entry for frontend addr:port/proto, its slots (set 0 = `backends`, set 1 =
  // `internal` with FERRY_SVC_F_LOCAL) and its ferry_rnat_v1 entry (the frontend).
  void add_service(uint32_t service_id, const Addr& addr, uint16_t port, uint8_t proto, uint32_t flags,
                   const std::vector<uint32_t>& backends, const std::vector<uint32_t>& internal = {},
                   uint32_t affinity_timeout_s = 0);

  // ferry_cfg_v3: the direct overlay path via `ifindex` with our VTEP MAC (flags 0 = off).
  void set_overlay(uint32_t ifindex, const MacAddr& vtep_mac, uint32_t flags = FERRY_CFG_F_OVERLAY);
  // ferry_tun_v1 entry: pod CIDR ("10.244.2.0/24", "fd00:10:244:2::/64") -> remote VTEP.
  void add_tunnel(const std::string& cidr, const MacAddr& vtep_mac, const Addr& node_ip);

  // ferry_cfg_v3 policy part: FERRY_CFG_F_POLICY on/off and the revision (overlay part kept).
  void set_policy(bool enforce, uint32_t revision);
  // ferry_ipc_v1 entry: prefix ("10.244.0.0/16", "fd00::/64", "10.244.1.5/32") -> identity.
  void add_ipcache(const std::string& cidr, uint32_t identity);
  // ferry_pol_v1 entries: endpoint allows `dir` (FERRY_DIR_*) traffic with `peer` (0 = any),
  // `proto` (0 = any: ports ignored) and destination ports first..last (as port prefixes).
  void allow(uint32_t endpoint_id, uint8_t dir, uint32_t peer, uint8_t proto, uint16_t first = 0,
             uint16_t last = 65535);
  void clear_policy_entries();

  // ferry_ep_v1 entry for `ip` of `pod`.
  void add_endpoint(const Pod& pod, const Addr& ip, uint32_t flags = FERRY_EP_F_PROGRAMMED);
  std::optional<ferry_ct_value> ct(const Addr& saddr, const Addr& daddr, uint16_t sport,
                                   uint16_t dport, uint8_t proto) const;
  size_t ct_entries() const;
  ferry_counter_value counter(uint32_t index) const;  // summed over CPUs
  uint64_t packets(uint32_t index) const { return counter(index).packets; }
  uint64_t drops(uint32_t reason) const { return packets(uint32_t{FERRY_CTR_DROP_BASE} + reason); }
  std::vector<ferry_drop_event> drain_events();

  ferry_lxc* skel() const { return datapath_->skel(); }

  Pod pod_a_, pod_b_;  // two local pods with veths in the test netns
  uint32_t overlay_ifindex_ = 0;  // a veth "fybpfo" standing in for the VXLAN device
  std::unique_ptr<PrivateNetns> netns_;
  std::unique_ptr<LoadedDatapath> datapath_;

 private:
  RunResult run(bpf_program* prog, const Bytes& frame, uint32_t ingress_ifindex,
                uint32_t ifindex, uint32_t repeat);
  static int on_event(void* ctx, void* data, size_t size);
  ring_buffer* events_ = nullptr;
  std::vector<ferry_drop_event> pending_events_;
};

// Line `line` of the BPF source file `file` (enum ferry_source_file), "" if there is none: a drop
// event names where it was decided, and that line must be a FERRY_DROP.
std::string bpf_source_line(uint8_t file, uint16_t line);

// Key of an address LPM trie (ferry_tun_v1, ferry_ipc_v1) for a CIDR ("10.244.2.0/24",
// "fd00::/64"): prefixlen = 32 + length, family, network address. Throws on junk.
template <typename Key>
Key lpm_addr_key(const std::string& cidr) {
  const size_t slash = cidr.find('/');
  if (slash == std::string::npos) throw std::runtime_error("not a CIDR: " + cidr);
  const Addr net = Addr::parse(cidr.substr(0, slash));
  Key key{};
  key.prefixlen = 32 + static_cast<uint32_t>(std::stoi(cidr.substr(slash + 1)));
  key.family = net.family;
  std::memcpy(key.addr, net.bytes.data(), net.size());
  return key;
}

// The tuple key the datapath builds for a packet.
ferry_ct_key ct_key(const Addr& saddr, const Addr& daddr, uint16_t sport, uint16_t dport,
                    uint8_t proto);

}  // namespace ferry::bpftest

#define FERRY_BPF_REQUIRE_ROOT()                                                          \
  do {                                                                                   \
    if (geteuid() != 0) GTEST_SKIP() << "needs root: loads BPF programs and makes a netns"; \
  } while (0)
