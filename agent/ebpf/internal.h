// agent/ebpf/internal.h — helpers shared by the .cpp files of agent/ebpf (not a public header:
// other folders include only ebpf.h).
#pragma once

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <array>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "agent/ebpf/ebpf.h"
#include "ferry/abi.h"

namespace ferry::ebpf::detail {

// An owned file descriptor (bpf objects are fds).
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// libbpf returns -errno (and sets errno); this turns either into a message.
inline std::string errstr(int err) { return std::strerror(err < 0 ? -err : err); }

// Opens a pinned object; invalid Fd when the path does not exist.
Fd open_pinned(const std::string& path);
bool path_exists(const std::string& path);

struct ProgInfo {
  uint32_t id = 0;
  std::string name;
};
ProgInfo prog_info(int prog_fd);
ProgInfo prog_info_by_id(uint32_t id);  // name "" when the program is gone
struct MapInfo {
  uint32_t id = 0;
  uint32_t max_entries = 0;
  uint32_t value_size = 0;
  std::string name;
};
MapInfo map_info(int map_fd);

// Every key of a hash map (get_next_key walk; restarts are tolerated, duplicates removed).
template <typename Key>
std::vector<Key> map_keys(int fd, size_t limit = SIZE_MAX);

// The tc filter at (FERRY_TC_HANDLE, FERRY_TC_PRIORITY) on one side of an interface:
// its program id, 0 when there is none (or no clsact, or no interface).
uint32_t tc_filter_prog(int ifindex, bpf_tc_attach_point side);
// Attaches (or replaces in place) our filter; throws EbpfError.
void tc_attach(int ifindex, bpf_tc_attach_point side, int prog_fd);
// Removes our filter; true if one was removed (absent interface/qdisc/filter = false).
bool tc_detach(int ifindex, bpf_tc_attach_point side);
// Creates the clsact qdisc; true if it was created (false: it existed).
bool tc_ensure_clsact(int ifindex);

// Conversions between abi structs and net types.
net::Ip ip_from(uint8_t family, const uint8_t* addr16);
ferry_endpoint_key endpoint_key(const net::Ip& ip);
// Keys of the address LPM tries (ferry_tun_v1, ferry_ipc_v1): prefixlen = 32 + the prefix length
// (family and pad always match), the network address. Throws EbpfError "<what> <prefix>: ..." on
// a prefix that is not IPv4/IPv6 or has a bad length.
template <typename Key>
Key addr_prefix_key(const net::Prefix& prefix, const char* what);
template <typename Key>
net::Prefix addr_prefix_of(const Key& key);

// ferry_tun_v1 entries: key of a pod CIDR.
ferry_tunnel_key tunnel_key(const net::Prefix& pod_cidr);
ferry_tunnel_value tunnel_value(const dataplane::OverlayRoute& route);
net::Prefix tunnel_cidr(const ferry_tunnel_key& key);
dataplane::OverlayRoute decode_tunnel(const ferry_tunnel_key& key, const ferry_tunnel_value& value);
uint64_t monotonic_ns();

// ---- policy maps (policy_maps.cpp) ----

// The ferry_pol_v1 keys of one allow entry: one per port prefix of the range
// (policy::port_range_prefixes); proto 0 = one key of prefix length 80, any port.
// Throws EbpfError on an empty port range.
std::vector<ferry_policy_key> policy_keys(uint32_t endpoint_id, dataplane::Direction dir,
                                          const dataplane::PolicyEntry& entry);
PolicyMapEntry decode_policy_key(const ferry_policy_key& key);
// Map contents for ferryctl (sorted); fd < 0 (not pinned) = empty.
std::vector<dataplane::IpcacheEntry> read_ipcache(int ipc_fd);
std::vector<PolicyMapEntry> read_policy_entries(int pol_fd);

// Keeps ferry_ipc_v1 and ferry_pol_v1 equal to a PolicySet with the fewest writes. Reads the
// kernel's content on first use after attach(), then keeps its copy current with its own writes
// (only the agent writes these maps). Throws EbpfError; a failed write leaves the copy true to
// the kernel (it is updated after each successful write).
class PolicyMapSync {
 public:
  void attach(int ipc_fd, int pol_fd);  // new fds (start): forget the copy
  // The maps for `set` (both empty when !set.enforce); endpoints in `local_endpoints` that
  // `set` does not name get the not-isolated entry in both directions. Additions first, then
  // removals. Returns the number of map writes.
  uint64_t sync(const dataplane::PolicySet& set, const std::vector<uint32_t>& local_endpoints);
  uint64_t remove_endpoint(uint32_t id);  // deletes its entries; returns the writes

 private:
  using IpcKey = std::array<uint8_t, sizeof(ferry_ipcache_key)>;
  using PolKey = std::array<uint8_t, sizeof(ferry_policy_key)>;
  void load();
  static void update(int fd, const void* key, const void* value, const char* map, const std::string& what);
  static void erase(int fd, const void* key, const char* map, const std::string& what);
  int ipc_fd_ = -1, pol_fd_ = -1;
  bool loaded_ = false;
  std::map<IpcKey, ferry_ipcache_value> ipc_have_;
  std::map<uint32_t, std::set<PolKey>> pol_have_;  // endpoint id -> its keys
};

// ---- service maps (service_maps.cpp) ----

// Map entries of the ServiceSet IR (abi.h "services"). Throw EbpfError on an address that is not
// IPv4/IPv6, an id 0 or more than 65535 backends in a set.
ferry_service_key service_key(const dataplane::ServiceFrontend& f);
ferry_service_value service_value(dataplane::ServiceId id, const dataplane::ServiceFrontend& f);
ferry_backend_value backend_value(dataplane::BackendId id, const dataplane::ServiceBackend& b);
ferry_revnat_value revnat_value(const dataplane::ServiceFrontend& f);

struct ServiceMapFds {
  int services = -1, slots = -1, backends = -1, revnat = -1, affinity = -1, maglev = -1;
};

// Keeps the service maps equal to a ServiceSet with the fewest writes (service_maps.cpp says in
// which order). Reads the kernel's content on first use after attach(), then keeps its copy
// current with its own writes and looks only at frontends and backends that differ from the last
// applied set (kept as a copy that is updated by what changed, so one change costs O(changes)
// plus one walk of the set's ids, not a copy of 10,000 Services).
// Throws EbpfError (a failed sync leaves the copy true to the kernel and compares everything
// next time).
class ServiceMapSync {
 public:
  void attach(const ServiceMapFds& fds);  // new fds (start): forget the copy
  // Maglev tables (FERRY_MAGLEV_TABLE_SIZE) for every non-empty set when `maglev`, none
  // otherwise. Returns the number of map writes (affinity deletions included).
  uint64_t sync(const dataplane::ServiceSet& set, bool maglev);

 private:
  static uint64_t mglv_index(const ferry_maglev_key& key) { return (uint64_t{key.service_id} << 1) | (key.set & 1); }
  void load();
  // What a sync looked at: frontends that may differ, backends new or changed, backends gone.
  struct Touched {
    std::vector<dataplane::ServiceId> frontends;
    std::vector<dataplane::BackendId> backends;
    std::vector<dataplane::BackendId> backends_gone;
  };
  Touched touched(const dataplane::ServiceSet& set, bool maglev) const;
  Touched apply(const dataplane::ServiceSet& set, bool maglev);
  void forget_affinity(const std::set<std::pair<uint32_t, uint32_t>>& left, const std::unordered_set<uint32_t>& gone);
  void update(int fd, const void* key, const void* value, const char* map, const std::string& what);
  void erase(int fd, const void* key, const char* map, const std::string& what);

  ServiceMapFds fds_;
  bool loaded_ = false;
  uint64_t writes_ = 0;
  std::optional<dataplane::ServiceSet> applied_;
  bool applied_maglev_ = false;
  std::unordered_map<uint32_t, std::pair<ferry_service_key, ferry_service_value>> have_svc_;  // by service id
  std::unordered_map<uint32_t, std::array<std::vector<uint32_t>, 2>> have_slots_;  // service id -> sets
  std::unordered_map<uint32_t, ferry_backend_value> have_be_;
  std::unordered_map<uint32_t, ferry_revnat_value> have_rnat_;
  std::unordered_map<uint64_t, uint64_t> have_mglv_;  // mglv_index -> hash of the table
  std::vector<ferry_service_key> stray_svc_;          // entries no frontend id owns: deleted
  std::vector<ferry_slot_key> stray_slots_;
};

// ---- masquerade of NodePort traffic that from-uplink marked (lb_masquerade.cpp) ----

// The nat chain jumped from POSTROUTING that holds the one MASQUERADE rule for FERRY_MARK_MASQ
// (DESIGN.md "Masquerade": the kernel does the SNAT). Its own chain: the overlay's masquerade
// chain exists only with an overlay.
inline constexpr const char* kLbMasqChain = "FERRY-EBPF-MASQ";
// iptables-restore --noflush text that makes a nat table (iptables-save -t nat) hold exactly our
// chain, its rule and one jump; "" when it does already. Pure.
std::string render_lb_masquerade_sync(std::string_view nat_table);
// The same, removing our chain and jumps; "" when there is none.
std::string render_lb_masquerade_removal(std::string_view nat_table);
// Applies them with iptables and ip6tables (IPv6 when the kernel has it) in the calling thread's
// netns; return the restores run. Throw EbpfError when a tool is missing or fails.
uint64_t sync_lb_masquerade();
uint64_t remove_lb_masquerade();

// Shared by PinnedMaps and the backend.
ConntrackEntry decode_conntrack(const ferry_ct_key& key, const ferry_ct_value& value, uint64_t now_ns);
std::vector<dataplane::Counter> read_counters(int counters_fd);  // summed over CPUs, named
// An optional fd < 0 (not pinned by an older build) is left out.
struct MapFds {
  int endpoints = -1, conntrack = -1, tunnels = -1, ipcache = -1, policy = -1;
  ServiceMapFds services;
  int sock_revnat = -1;
};
std::map<std::string, dataplane::MapFill> read_map_fill(const MapFds& fds);
// The overlay as ferry_cfg_v3 + ferry_tun_v1 hold it (device name resolved in the caller's
// netns; empty device and no routes when the config is off). Either fd < 0 = not pinned.
dataplane::Overlay read_overlay(int config_fd, int tunnels_fd);

template <typename Key>
Key addr_prefix_key(const net::Prefix& prefix, const char* what) {
  const int family = prefix.ip.family;
  const int bits = family == AF_INET6 ? 128 : 32;
  if (family != AF_INET && family != AF_INET6)
    throw EbpfError(std::string(what) + " " + prefix.str() + ": not an IPv4 or IPv6 prefix");
  if (prefix.len < 0 || prefix.len > bits) throw EbpfError(std::string(what) + " " + prefix.str() + ": bad prefix length");
  const net::Prefix network = prefix.network();
  Key key{};
  key.prefixlen = static_cast<uint32_t>(32 + network.len);
  key.family = static_cast<uint8_t>(family);
  std::memcpy(key.addr, network.ip.bytes.data(), static_cast<size_t>(network.ip.size()));
  return key;
}

template <typename Key>
net::Prefix addr_prefix_of(const Key& key) {
  net::Prefix p;
  p.ip = ip_from(key.family, key.addr);
  p.len = key.prefixlen >= 32 ? static_cast<int>(key.prefixlen) - 32 : 0;
  return p;
}

template <typename Key>
std::vector<Key> map_keys(int fd, size_t limit) {
  std::vector<Key> keys;
  Key key{}, next{};
  const void* prev = nullptr;
  while (keys.size() < limit && bpf_map_get_next_key(fd, prev, &next) == 0) {
    keys.push_back(next);
    key = next;
    prev = &key;
    if (keys.size() > (1u << 24)) break;  // a map that keeps restarting: give up, not loop
  }
  // A key deleted under us makes the walk restart from the first key: drop the repeats.
  auto less = [](const Key& a, const Key& b) { return std::memcmp(&a, &b, sizeof(Key)) < 0; };
  auto same = [](const Key& a, const Key& b) { return std::memcmp(&a, &b, sizeof(Key)) == 0; };
  std::sort(keys.begin(), keys.end(), less);
  keys.erase(std::unique(keys.begin(), keys.end(), same), keys.end());
  return keys;
}

}  // namespace ferry::ebpf::detail
