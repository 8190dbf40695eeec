// agent/ebpf/ebpf.h — ferry's eBPF datapath backend (tc programs on pod veths + pinned maps),
// and read access to a node's pinned maps for ferryctl and the tests.
//
// Layout in bpffs (one root per node, e.g. /sys/fs/bpf/ferry/<node>/):
//   ferry_ep_v1, ferry_ct_v2, ferry_ctr_v1, ferry_ev_v1   maps, pinned by name (see bpf abi.h)
//   ferry_tun_v1, ferry_cfg_v3                            overlay (remote pod CIDRs), node config
//   ferry_ipc_v1, ferry_pol_v1                            policy: ipcache, per-endpoint allow entries
//   ferry_svc_v1, ferry_slot_v1, ferry_be_v1, ferry_rnat_v1, services: frontends, backend slots,
//   ferry_aff_v1, ferry_mglv_v1, ferry_skrn_v1            backends, reverse NAT, affinity, Maglev,
//                                                         the socket LB's UDP reverse map
//   prog_from_uplink_<hash>, prog_to_uplink_<hash>        NodePort devices (tc ingress / egress)
//   prog_from_pod_<hash>, prog_to_pod_<hash>,             programs of the build whose embedded
//   prog_from_overlay_<hash>                              BPF object hashes to <hash>
// Maps and programs outlive the agent: tc keeps running the pinned programs while the agent is
// down, and a restarted agent of the same build reuses everything without a single kernel write.
// A new build loads its programs once, swaps them into every endpoint's tc filter in place
// (tc replace on the same handle/priority: no moment without a program) and unpins the old ones.
//
// Namespaces: the backend talks tc (netlink) and resolves interface names in the CALLING
// thread's network namespace, which must be the node's; bpffs is reached through the mount
// namespace (the agent must not run under `ip netns exec`, which remounts /sys).
//
// Errors: everything here throws EbpfError (a dataplane::DataplaneError, so a std::runtime_error)
// with the object and the cause in the message; ferryctl prints it, the agent's reconcile loop
// catches it per endpoint.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/dataplane/dataplane.h"
#include "net/net.h"

struct ring_buffer;  // libbpf

namespace ferry::ebpf {

class EbpfError : public dataplane::DataplaneError {
 public:
  using dataplane::DataplaneError::DataplaneError;
};

// Where bpffs is mounted (the agent mounts it there if it is not) and a node's root under it.
inline constexpr const char* kBpffsMount = "/sys/fs/bpf";
std::string node_bpffs_root(const std::string& node);  // "/sys/fs/bpf/ferry/<node>"

struct EbpfConfig {
  std::string bpffs_root;          // e.g. node_bpffs_root("node-1"); created if missing
  uint32_t ct_max = 262144;        // conntrack entries (only when the map is created; an
  uint32_t endpoints_max = 65536;  //   existing pinned map keeps its size)
  uint32_t gc_batch = 16384;       // conntrack entries examined per maintain() call
  // Overrides the program hash (normally a hash of the embedded BPF object). Tests use it to
  // simulate an upgrade to another build without building one.
  std::string program_hash_override;

  // Services (program_services).
  std::string lb_algorithm = "random";  // or "maglev" (FERRY_CFG_F_MAGLEV + a table per frontend)
  // Source address of a pod's flow to itself through a Service (hairpin), as Cilium's.
  net::Ip service_loopback4 = *net::Ip::parse("169.254.42.1");
  net::Ip service_loopback6 = *net::Ip::parse("fd66:6572:7279::1");
  // Interfaces where outside clients reach NodePorts/externalIPs: ferry_from_uplink (tc
  // ingress) and ferry_to_uplink (tc egress) run there. The agent passes
  // nodeport_devices_for(its node addresses) unless told otherwise.
  std::vector<std::string> nodeport_devices;
  bool socket_lb = true;  // the node's own processes reach Services (cgroup socket hooks)
};

// The interfaces of the calling thread's netns that hold any of `addresses` (sorted, unique):
// the default NodePort devices. Throws EbpfError when the addresses cannot be listed.
std::vector<std::string> nodeport_devices_for(const std::vector<net::Ip>& addresses);

// The backend. Call start() first (cleanup_all() works without it); every call from one
// thread, inside the node's netns. installed_endpoints() lists endpoints by id, each one's
// IPs IPv4 first, then by address bytes (the registry's order), so a round trip compares equal.
// program_overlay() attaches ferry_from_overlay to tc ingress of the overlay device (same
// handle/priority as the pods' filters; replaced in place on upgrade), writes the overlay part of
// ferry_cfg_v3 and only the differing ferry_tun_v1 entries; an empty device detaches it, clears
// the tunnels and the overlay part of the config.
// program_policy() writes only the differing ferry_ipc_v1/ferry_pol_v1 entries (it reads the
// maps back once after start, then trusts its own writes), additions before removals; every
// endpoint of ferry_ep_v1 that the set does not name gets the not-isolated entries; then it sets
// FERRY_CFG_F_POLICY from set.enforce and bumps ferry_config.policy_rev when anything changed, so
// the datapath re-judges every flow at its next packet. remove_endpoint() deletes the endpoint's
// policy entries too.
// program_services() keeps the service maps equal to the set (service_maps.cpp: it reads them
// back once after start, then writes only what differs, backends and rev-NAT before slots before
// frontends before deletions, and deletes the affinity entries of backends that left a
// frontend); Maglev tables only with lb_algorithm "maglev"; then ferry_cfg_v3's service part
// (FERRY_CFG_F_SERVICES / _MAGLEV, netns cookie of the calling thread's netns, service loopback
// addresses). Before the first write it installs the nat MASQUERADE rule for FERRY_MARK_MASQ
// (chain FERRY-EBPF-MASQ, jumped from POSTROUTING; cleanup_all removes it).
// start() and program_services() attach ferry_from_uplink / ferry_to_uplink to the NodePort
// devices (start() also takes them off interfaces no longer listed) and start() attaches the
// socket LB (sock_lb.h) when socket_lb is set (a failure there is logged, and program_services
// retries it and throws). start() migrates the layouts of older builds: ferry_cfg_v2 / v1 into
// ferry_cfg_v3 and ferry_ct_v1 into ferry_ct_v2 (every flow copied, new fields zero, before the
// new programs are swapped in and once more after), then unpins them.
// Stats::kernel_writes counts bpffs mounts/pins/unpins, program loads, tc hook creations,
// attaches/detaches and map updates/deletes (conntrack GC deletions included); Stats::counters
// holds the datapath's counters plus "ct_gc_deleted" (entries maintain() removed).
std::unique_ptr<dataplane::Dataplane> make_ebpf_dataplane(const EbpfConfig& config);

// For `--datapath auto`: true when the kernel runs tc (SCHED_CLS) programs with the
// bpf_redirect_peer helper, has LRU hash, per-CPU array and ring buffer maps, and bpffs is
// mounted or mountable at /sys/fs/bpf. Otherwise `why` (if given) says what is missing.
bool ebpf_supported(std::string* why = nullptr);

// Mounts bpffs at /sys/fs/bpf unless it is mounted there; returns true if it mounted it.
bool ensure_bpffs();

// Program ids of the tc filters at ferry's (handle, priority) on an interface of the calling
// thread's netns; 0 where there is none.
struct TcFilters {
  uint32_t ingress = 0;  // from-pod
  uint32_t egress = 0;   // to-pod
};
TcFilters tc_filters(int ifindex);

// Short hex hash of the BPF object embedded in this binary (names the program pins).
std::string embedded_program_hash();

// ---------------------------------------------------------------------------------------
// Read access to a node's pinned maps (no program load): ferryctl, tests, debugging.

// Names shared by the backend's Stats, ferryctl and the metrics.
std::string counter_name(int index);         // "from_pod", ..., "drop_spoofed"; "" if unused
std::string drop_reason_name(uint32_t reason);  // "spoofed", ...; "reason_<n>" if unknown
std::string ct_state_name(uint8_t state);    // "new", "established", "closing"
std::string protocol_name(uint8_t proto);    // "tcp", "udp", "icmp", "icmpv6", "sctp", "<n>"
std::string hook_name(uint8_t hook);         // "from-pod", "to-pod", "from-overlay"
std::string source_file_name(uint8_t file);  // "bpf/ferry_lxc.bpf.c", ...
std::string direction_name(uint8_t dir);     // "ingress", "egress"; "" for 0
// "10.0.0.1:80", "[fd00::1]:80"; ports left out for protocols without ports.
std::string endpoint_str(const net::Ip& ip, uint16_t port, uint8_t proto);

struct EndpointEntry {  // one ferry_ep_v1 entry
  net::Ip ip;
  uint32_t endpoint_id = 0;
  int ifindex = 0;
  std::string ifname;  // resolved in the caller's netns; "" when no such interface
  net::Mac pod_mac{};
  net::Mac host_mac{};
  uint32_t flags = 0;
  bool programmed() const;
};

struct ConntrackEntry {  // one ferry_ct_v2 entry, decoded
  uint8_t family = 0;
  uint8_t proto = 0;
  net::Ip src, dst;
  uint16_t sport = 0, dport = 0;  // host order
  uint8_t state = 0;
  uint64_t packets_fwd = 0, bytes_fwd = 0, packets_rev = 0, bytes_rev = 0;
  uint8_t tcp_flags_fwd = 0, tcp_flags_rev = 0;
  uint32_t src_endpoint = 0;
  uint32_t lifetime_s = 0;
  uint64_t created_ns = 0, last_seen_ns = 0;  // CLOCK_MONOTONIC
  // Relative to the moment of the dump: age since created, idle since last packet, seconds
  // until GC may remove it (negative = expired).
  double age_s = 0, idle_s = 0, expires_in_s = 0;
};

struct DropEvent {  // one ferry_drop_event, decoded
  uint64_t ts_ns = 0;            // CLOCK_MONOTONIC
  double wall_time = 0;          // seconds since the epoch (converted at decode time)
  uint32_t reason = 0;
  std::string reason_name;
  uint8_t hook = 0;
  uint32_t ifindex = 0;
  uint32_t endpoint_id = 0;
  uint8_t family = 0, proto = 0;
  net::Ip src, dst;
  uint16_t sport = 0, dport = 0;  // host order
  uint32_t pkt_len = 0;
  uint8_t direction = 0;  // policy drops: FERRY_DIR_INGRESS / _EGRESS of endpoint_id, else 0
  std::string source;  // "bpf/ferry_lxc.bpf.c:123"
};
// Decodes a raw ring-buffer record; nullopt when it is too short or not a drop event.
std::optional<DropEvent> decode_drop_event(const void* data, size_t size);

// One ferry_pol_v1 entry: endpoint endpoint_id allows `direction` traffic with peer identity
// `peer` (0 = any), protocol `proto` (0 = any, then every port), destination ports
// port_first..port_last (the key's port prefix of length port_prefix_len).
struct PolicyMapEntry {
  uint32_t endpoint_id = 0;
  uint8_t direction = 0;  // FERRY_DIR_*
  uint32_t peer = 0;
  uint8_t proto = 0;
  uint16_t port_first = 0, port_last = 65535;
  int port_prefix_len = 0;
};

// The policy switch and revision in ferry_cfg_v3.
struct PolicyState {
  bool enforced = false;
  uint32_t revision = 0;
};

struct PinInfo {
  std::string name;         // file name under the root
  std::string kind;         // "map" or "program"
  uint32_t id = 0;          // kernel object id, 0 when it could not be opened
  std::string object_name;  // kernel name of the map/program
};

// The pinned maps of one node root, opened without loading anything.
class PinnedMaps {
 public:
  // Throws EbpfError "no ferry maps under <root> (is the agent running in eBPF mode on this
  // node?)" when the endpoint map is not pinned there.
  static PinnedMaps open(const std::string& root);
  static bool exists(const std::string& root);  // the endpoint map is pinned under root

  PinnedMaps(PinnedMaps&&) noexcept;
  PinnedMaps& operator=(PinnedMaps&&) noexcept;
  ~PinnedMaps();

  const std::string& root() const { return root_; }
  std::vector<PinInfo> pins() const;
  std::vector<EndpointEntry> endpoints() const;  // sorted by endpoint id, then IP
  std::vector<ConntrackEntry> conntrack() const;
  size_t flush_conntrack();                       // deletes every entry; returns how many
  std::vector<dataplane::Counter> counters() const;  // summed over CPUs, named
  std::map<std::string, dataplane::MapFill> map_fill() const;

  // Raw map fds (owned by this object), for tests and the ring-buffer reader.
  int endpoints_fd() const { return ep_fd_; }
  int conntrack_fd() const { return ct_fd_; }
  int counters_fd() const { return ctr_fd_; }
  int events_fd() const { return ev_fd_; }
  int tunnels_fd() const { return tun_fd_; }  // -1 when pinned by a build without the overlay
  int config_fd() const { return cfg_fd_; }   // -1 when pinned by a build before ferry_cfg_v3
  int ipcache_fd() const { return ipc_fd_; }  // -1 when pinned by a build without policy
  int policy_fd() const { return pol_fd_; }
  // The service maps (abi.h "services"); -1 when pinned by a build without services.
  int services_fd() const { return lb_fd_[0]; }
  int slots_fd() const { return lb_fd_[1]; }
  int backends_fd() const { return lb_fd_[2]; }
  int revnat_fd() const { return lb_fd_[3]; }
  int affinity_fd() const { return lb_fd_[4]; }
  int maglev_fd() const { return lb_fd_[5]; }
  int sock_revnat_fd() const { return lb_fd_[6]; }

  // Policy as the datapath holds it: ipcache sorted by prefix (family, bytes, length); allow
  // entries sorted by endpoint, direction, peer, protocol, port. Empty without policy pins.
  std::vector<dataplane::IpcacheEntry> ipcache() const;
  std::vector<PolicyMapEntry> policy_entries() const;
  PolicyState policy_state() const;

  // The overlay the datapath runs with (ferry_cfg_v3 + ferry_tun_v1): device "" (ifindex 0) when
  // the direct path is off; routes sorted by pod CIDR, as dataplane::Overlay says.
  dataplane::Overlay overlay() const;

 private:
  PinnedMaps() = default;
  void close_all();
  std::string root_;
  int ep_fd_ = -1, ct_fd_ = -1, ctr_fd_ = -1, ev_fd_ = -1, tun_fd_ = -1, cfg_fd_ = -1, ipc_fd_ = -1, pol_fd_ = -1;
  std::array<int, 7> lb_fd_{-1, -1, -1, -1, -1, -1, -1};  // svc, slot, be, rnat, aff, mglv, skrn
};

// Consumes drop events from the pinned ring buffer. The ring buffer has ONE consumer position:
// run one reader per node at a time (ferryctl monitor or a test), or they split the events.
class DropEventReader {
 public:
  explicit DropEventReader(const PinnedMaps& maps);
  ~DropEventReader();
  DropEventReader(const DropEventReader&) = delete;
  DropEventReader& operator=(const DropEventReader&) = delete;

  // Waits up to timeout_ms for events and calls `on_event` for each; returns how many.
  int poll(int timeout_ms, const std::function<void(const DropEvent&)>& on_event);

 private:
  ::ring_buffer* rb_ = nullptr;
  std::function<void(const DropEvent&)> on_event_;
  int seen_ = 0;
  static int on_sample(void* ctx, void* data, size_t size);
};

}  // namespace ferry::ebpf
