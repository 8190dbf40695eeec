// ipam/ipam.h — host-local IPAM as a library: the reference host-local's configuration,
// its round-robin allocator, and its on-disk store, byte for byte, so ferry-host-local and
// the reference plugin can take turns on one store.
//
// Layers, top to bottom:
//   parse_config   ipam object (+ runtimeConfig, args, CNI_ARGS) → canonical Config
//   allocate/...   pure allocation logic over the Store interface (unit-tested in memory)
//   DiskStore      <dataDir>/<network>/ files + flock (the reference format)
//   cmd_*          the CNI verbs, used by ferry-host-local's main()
//
// Error handling: everything throws cni::Error with a spec code (see the codes below);
// the dispatcher (cni::plugin_main) turns it into the spec's JSON error.
#pragma once

#include <chrono>
#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cni/cni.h"

namespace ferry::ipam {

using cni::IPAddr;
using cni::IPNet;
using cni::json;

inline constexpr std::string_view kDefaultDataDir = "/var/lib/cni/networks";
// How long an operation waits for the store's lock before failing with code 11 (the
// reference waits forever: plugins#561).
inline constexpr std::chrono::milliseconds kDefaultLockTimeout{10'000};

// Error codes used besides the spec's generic ones:
//   7  (kInvalidConfig)   bad config, requested IP outside every range or equal to a gateway
//   11 (kTryAgainLater)   lock timeout, range set exhausted, requested IP in use — all clear
//                         up when other containers release their addresses
//   5  (kIOFailure)       the store's files cannot be read or written
//   50 (STATUS)           every range set is exhausted
// Plugin-specific (the spec's 100+ range): no spec code fits these two.
inline constexpr int kErrReservationNotFound = 100;  // CHECK: the attachment holds no address
inline constexpr int kErrDuplicateAllocation = 101;  // ADD twice for one (containerID, ifname)

// ---------------------------------------------------------------------------------------
// Configuration

// One range of a range set, canonical: subnet is a network address with >= 2 host bits,
// range_start/range_end lie inside it (start <= end), gateway defaults to network+1.
struct Range {
  IPNet subnet;
  IPAddr range_start;  // inclusive; default network+1
  IPAddr range_end;    // inclusive; default broadcast-1 (IPv4) or the last address (IPv6)
  IPAddr gateway;      // never handed out

  bool contains(const IPAddr& ip) const;  // inside subnet and within [range_start, range_end]
  bool overlaps(const Range& other) const;
  std::string str() const;  // "10.1.0.2-10.1.0.254", as the reference prints it
};

// A pool of disjoint ranges of one family; each ADD gets one address per range set.
struct RangeSet {
  std::vector<Range> ranges;

  const Range* range_for(const IPAddr& ip) const;  // nullptr when no range contains ip
  bool contains(const IPAddr& ip) const { return range_for(ip) != nullptr; }
  bool overlaps(const RangeSet& other) const;
  std::string str() const;  // ranges joined with ","
};

struct Config {
  std::string network;      // top-level "name": the store's subdirectory
  std::string cni_version;  // top-level "cniVersion"
  std::string data_dir = std::string(kDefaultDataDir);
  std::vector<RangeSet> range_sets;   // runtimeConfig.ipRanges, legacy subnet, ranges — in that order
  std::vector<cni::Route> routes;     // returned verbatim in the result
  std::string resolv_conf;            // path; parsed into the result's dns at ADD
  std::vector<IPAddr> requested_ips;  // CNI_ARGS IP=, args.cni.ips, runtimeConfig.ips (deduplicated)

  std::string store_dir() const { return data_dir + "/" + network; }
};

// What the caller needs from the config:
//   kAllocate  everything validated, at least one range set (ADD, CHECK)
//   kInspect   as kAllocate, but no range set is fine (STATUS: runtimeConfig.ipRanges is
//              only sent with ADD/DEL/CHECK)
//   kRelease   only the store location (name, dataDir): DEL and GC must release reservations
//              even when the ranges no longer load (runtimeConfig.ipRanges is not sent on GC,
//              and may be missing on DEL).
enum class ConfigUse { kAllocate, kInspect, kRelease };

// Parses the whole network config a plugin receives (the "ipam" object plus top-level name,
// cniVersion, runtimeConfig, args) and CNI_ARGS. Throws cni::Error: kInvalidConfig for
// semantic errors, with a message that names the range set / field and what to change;
// kDecodingFailure for wrong JSON types; kInvalidEnvironment for a bad CNI_ARGS IP=.
Config parse_config(const json& netconf, std::string_view cni_args,
                    ConfigUse use = ConfigUse::kAllocate);

// Parses and canonicalises one range object ({"subnet", "rangeStart", "rangeEnd",
// "gateway"}, keys case-insensitive). Throws cni::Error(kInvalidConfig).
Range parse_range(const json& obj);

// The address as Go's net.IP.String() prints it: the name of a reservation file. Differs from
// inet_ntop only for IPv4-compatible IPv6 addresses (::102:304, not ::1.2.3.4).
std::string ip_file_name(const IPAddr& ip);

// IPv4-mapped IPv6 (::ffff:a.b.c.d) becomes IPv4, as Go's canonicalisation does.
IPAddr canonical_ip(const IPAddr& ip);

// ---------------------------------------------------------------------------------------
// Store

// One reservation: the file <ip> holding "<containerID>\r\n<ifname>", or just "<containerID>"
// in files written before host-local recorded the interface ("legacy").
struct Reservation {
  IPAddr ip;
  std::string owner;  // the file's content, whitespace-trimmed

  bool legacy() const { return owner.find("\r\n") == std::string::npos; }
  std::string container_id() const;  // the part before "\r\n" (all of a legacy owner)
};

// The owner string written for an attachment: "<trimmed containerID>\r\n<ifname>".
std::string owner_key(const cni::Attachment& a);

// The storage the allocator works on. Callers hold the store's lock around a whole operation.
// Implementations throw cni::Error(kIOFailure) with the file and the errno text.
class Store {
 public:
  virtual ~Store() = default;
  // Every reservation (files named by an IP; lock and last_reserved_ip.* are not).
  virtual std::vector<Reservation> list() = 0;
  // Reserves `ip` for `owner` atomically unless it is taken (then returns false), and records
  // it as range set `range_set`'s round-robin position.
  virtual bool reserve(const IPAddr& ip, const cni::Attachment& owner, size_t range_set) = 0;
  // Removes the reservation of `ip`; a reservation that is already gone is not an error.
  virtual void release(const IPAddr& ip) = 0;
  // The last address reserved in range set `range_set`, if recorded and readable.
  virtual std::optional<IPAddr> last_reserved(size_t range_set) = 0;
};

// ---------------------------------------------------------------------------------------
// Allocator (pure: all state is in the Store)

// The addresses range set `set` would try, in order: round-robin after `last` (when `last`
// is inside the set; else from the first range's start), wrapping across the set's ranges,
// skipping each range's gateway, ending with `last` itself. Stops after `limit` candidates.
std::vector<IPAddr> candidates(const RangeSet& set, const std::optional<IPAddr>& last, size_t limit);

// ADD: one address from every range set for `owner` (a requested IP inside a set is used
// for that set). All or nothing: on any failure the addresses reserved so far are released.
// The IPConfigs carry ip/subnet-prefix and the range's gateway, in range-set order.
std::vector<cni::IPConfig> allocate(const Config& config, Store& store, const cni::Attachment& owner);

// DEL: releases every reservation owned by (containerID, ifname); when there is none, the
// legacy reservations owned by containerID alone. Returns the released addresses; nothing
// found is success. Throws cni::Error(kIOFailure) listing every release that failed.
std::vector<IPAddr> release(Store& store, const cni::Attachment& owner);

// CHECK: whether `owner` holds any reservation (exact, or legacy by containerID).
bool has_reservation(const std::vector<Reservation>& reservations, const cni::Attachment& owner);

// GC: the reservations owned by no valid attachment. A legacy reservation stays when any
// valid attachment has its containerID. An empty `valid` list selects everything.
std::vector<Reservation> gc_selection(const std::vector<Reservation>& reservations,
                                      const std::vector<cni::Attachment>& valid);

// STATUS: true when every range set has every address (gateways excluded) reserved.
bool all_exhausted(const Config& config, const std::vector<Reservation>& reservations);

// ---------------------------------------------------------------------------------------
// The on-disk store of the reference host-local (§3.5):
//   <dir>/<ip>                  "<containerID>\r\n<ifname>", no newline, mode 0600
//   <dir>/last_reserved_ip.<n>  "<ip>", mode 0600
//   <dir>/lock                  empty, mode 0750, flock()ed around every operation
class DiskStore : public Store {
 public:
  // Creates `dir` (and parents, mode 0755) and the lock file. Throws cni::Error(kIOFailure).
  explicit DiskStore(std::string dir);
  ~DiskStore() override;
  DiskStore(const DiskStore&) = delete;
  DiskStore& operator=(const DiskStore&) = delete;

  // Takes the exclusive flock, waiting at most `timeout` (woken by the holder's release, not
  // by polling). Throws cni::Error(kTryAgainLater) naming the lock file on timeout.
  void lock(std::chrono::milliseconds timeout = kDefaultLockTimeout);
  void unlock();

  const std::string& dir() const { return dir_; }

  std::vector<Reservation> list() override;
  bool reserve(const IPAddr& ip, const cni::Attachment& owner, size_t range_set) override;
  void release(const IPAddr& ip) override;
  std::optional<IPAddr> last_reserved(size_t range_set) override;

 private:
  std::string dir_;
  int dir_fd_ = -1;
  int lock_fd_ = -1;
  // Reservation files whose names are not the canonical form of their address (not written
  // by host-local, but still released by name).
  std::map<IPAddr, std::string> unusual_names_;
};

// ---------------------------------------------------------------------------------------
// The CNI verbs of ferry-host-local.

cni::Result cmd_add(const cni::CmdArgs& args);
void cmd_del(const cni::CmdArgs& args);
void cmd_check(const cni::CmdArgs& args);
void cmd_gc(const cni::CmdArgs& args);
void cmd_status(const cni::CmdArgs& args);
cni::Plugin host_local_plugin();

}  // namespace ferry::ipam
