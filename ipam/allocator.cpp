// The allocator of host-local (allocator.go), over the Store interface: round-robin from the
// last reserved address, wrap across a set's ranges, skip gateways, honour requested IPs,
// refuse duplicates, all-or-nothing across range sets. Also the selection logic of DEL,
// CHECK, GC and STATUS. No I/O here except through the Store.
#include <algorithm>
#include <set>

#include "ipam/ipam.h"

namespace ferry::ipam {

namespace {

std::string trim(std::string_view s) {
  constexpr std::string_view kSpace = " \t\r\n\v\f";
  size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(kSpace);
  return std::string(s.substr(b, e - b + 1));
}

// The reference's RangeIter: walks a range set once, starting after the last reserved
// address (or at the first range's start), wrapping from a range's end to the next range's
// start, skipping gateways, and ending when it is back where it started.
class RoundRobin {
 public:
  RoundRobin(const RangeSet& set, const std::optional<IPAddr>& last) : set_(set) {
    if (last) {
      for (size_t i = 0; i < set.ranges.size(); ++i) {
        if (set.ranges[i].contains(*last)) {
          index_ = i;
          cur_ = *last;  // the first next() yields last+1
          return;
        }
      }
    }
  }

  // The next candidate and its range; nullopt once every address has been offered.
  std::optional<std::pair<IPAddr, const Range*>> next() {
    for (;;) {
      if (!cur_) {
        cur_ = start_ = set_.ranges[index_].range_start;
      } else {
        if (*cur_ == set_.ranges[index_].range_end) {
          index_ = (index_ + 1) % set_.ranges.size();
          cur_ = set_.ranges[index_].range_start;
        } else {
          cur_ = cur_->next();
        }
        if (!start_) {
          start_ = cur_;
        } else if (*cur_ == *start_) {
          return std::nullopt;
        }
      }
      const Range& r = set_.ranges[index_];
      if (*cur_ != r.gateway) return std::make_pair(*cur_, &r);
    }
  }

 private:
  const RangeSet& set_;
  size_t index_ = 0;
  std::optional<IPAddr> cur_;
  std::optional<IPAddr> start_;
};

bool owned_by(const Reservation& r, const std::string& key, const std::string& id) {
  return r.owner == key || r.owner == id;
}

// Releases `ips`, best effort (used to undo a failed ADD).
void release_quietly(Store& store, const std::vector<IPAddr>& ips) {
  for (const IPAddr& ip : ips) {
    try {
      store.release(ip);
    } catch (const cni::Error&) {
      // The ADD is failing already; its own error is the one to report.
    }
  }
}

// 2^128-capable arithmetic for range sizes.
using u128 = unsigned __int128;
u128 as_number(const IPAddr& ip) {
  u128 n = 0;
  for (int i = 0; i < (ip.is_v4() ? 4 : 16); ++i) n = n << 8 | ip.bytes[i];
  return n;
}

}  // namespace

std::string Reservation::container_id() const {
  size_t crlf = owner.find("\r\n");
  return crlf == std::string::npos ? owner : owner.substr(0, crlf);
}

std::string owner_key(const cni::Attachment& a) { return trim(a.container_id) + "\r\n" + a.ifname; }

std::vector<IPAddr> candidates(const RangeSet& set, const std::optional<IPAddr>& last, size_t limit) {
  std::vector<IPAddr> out;
  if (set.ranges.empty()) return out;
  RoundRobin it(set, last);
  while (out.size() < limit) {
    auto c = it.next();
    if (!c) break;
    out.push_back(c->first);
  }
  return out;
}

std::vector<cni::IPConfig> allocate(const Config& config, Store& store, const cni::Attachment& owner) {
  const std::string key = owner_key(owner);
  const std::string id = trim(owner.container_id);
  const std::vector<Reservation> existing = store.list();
  std::set<IPAddr> taken;
  for (const Reservation& r : existing) taken.insert(r.ip);

  std::vector<IPAddr> requested = config.requested_ips;
  std::vector<IPAddr> reserved;
  std::vector<cni::IPConfig> result;
  size_t idx = 0;
  try {
    for (idx = 0; idx < config.range_sets.size(); ++idx) {
      const RangeSet& set = config.range_sets[idx];
      for (const Reservation& r : existing)
        if (owned_by(r, key, id) && set.contains(r.ip))
          throw cni::Error(kErrDuplicateAllocation,
                           ip_file_name(r.ip) + " has been allocated to " + id +
                               ", duplicate allocation is not allowed",
                           "the runtime must DEL container " + id + " interface " + owner.ifname +
                               " before adding it again");

      std::optional<std::pair<IPAddr, const Range*>> got;
      auto want = std::find_if(requested.begin(), requested.end(),
                               [&](const IPAddr& ip) { return set.contains(ip); });
      if (want != requested.end()) {
        IPAddr ip = *want;
        requested.erase(want);
        const Range* range = set.range_for(ip);
        if (ip == range->gateway)
          throw cni::Error(cni::kInvalidConfig, "requested ip " + ip_file_name(ip) + " is subnet's gateway",
                           "request another address; the gateway is never handed out");
        if (!store.reserve(ip, owner, idx))
          throw cni::Error(cni::kTryAgainLater,
                           "requested IP address " + ip_file_name(ip) + " is not available in range set " +
                               set.str(),
                           "another container holds it; request a free address or release it first");
        got.emplace(ip, range);
      } else {
        RoundRobin it(set, store.last_reserved(idx));
        while (auto c = it.next()) {
          // The snapshot is exact while we hold the lock; the O_EXCL-style reserve() is
          // still what decides.
          if (taken.count(c->first)) continue;
          if (store.reserve(c->first, owner, idx)) {
            got = c;
            break;
          }
        }
        if (!got)
          throw cni::Error(cni::kTryAgainLater, "no IP addresses available in range set: " + set.str(),
                           "every address is reserved; delete unused containers, run GC, or widen the range");
      }
      reserved.push_back(got->first);
      taken.insert(got->first);
      const Range& range = *got->second;
      result.push_back(cni::IPConfig{std::nullopt, IPNet{got->first, range.subnet.prefix}, range.gateway});
    }
  } catch (const cni::Error& e) {
    release_quietly(store, reserved);
    throw cni::Error(e.code(), "failed to allocate for range " + std::to_string(idx) + ": " + e.msg(),
                     e.details());
  }

  if (!requested.empty()) {
    release_quietly(store, reserved);
    std::string ips;
    for (const IPAddr& ip : requested) ips += " " + ip_file_name(ip);
    throw cni::Error(cni::kInvalidConfig, "failed to allocate all requested IPs:" + ips,
                     "each requested IP must lie inside a range (between rangeStart and rangeEnd) of a "
                     "different range set");
  }
  return result;
}

std::vector<IPAddr> release(Store& store, const cni::Attachment& owner) {
  const std::string key = owner_key(owner);
  const std::string id = trim(owner.container_id);
  std::vector<Reservation> all = store.list();
  std::vector<IPAddr> mine;
  for (const Reservation& r : all)
    if (r.owner == key) mine.push_back(r.ip);
  if (mine.empty())  // files written before host-local recorded the interface
    for (const Reservation& r : all)
      if (r.owner == id) mine.push_back(r.ip);

  std::vector<IPAddr> released;
  std::string errors;
  for (const IPAddr& ip : mine) {
    try {
      store.release(ip);
      released.push_back(ip);
    } catch (const cni::Error& e) {
      errors += (errors.empty() ? "" : "; ") + e.msg();
    }
  }
  if (!errors.empty())
    throw cni::Error(cni::kIOFailure, "failed to release the addresses of container " + id + ": " + errors);
  return released;
}

bool has_reservation(const std::vector<Reservation>& reservations, const cni::Attachment& owner) {
  const std::string key = owner_key(owner);
  const std::string id = trim(owner.container_id);
  return std::any_of(reservations.begin(), reservations.end(),
                     [&](const Reservation& r) { return owned_by(r, key, id); });
}

std::vector<Reservation> gc_selection(const std::vector<Reservation>& reservations,
                                      const std::vector<cni::Attachment>& valid) {
  std::set<std::string> keys, ids;
  for (const cni::Attachment& a : valid) {
    keys.insert(owner_key(a));
    ids.insert(trim(a.container_id));
  }
  std::vector<Reservation> out;
  for (const Reservation& r : reservations) {
    bool keep = r.legacy() ? ids.count(r.owner) > 0 : keys.count(r.owner) > 0;
    if (!keep) out.push_back(r);
  }
  return out;
}

bool all_exhausted(const Config& config, const std::vector<Reservation>& reservations) {
  if (config.range_sets.empty()) return false;
  std::set<IPAddr> reserved;
  for (const Reservation& r : reservations) reserved.insert(r.ip);
  for (const RangeSet& set : config.range_sets) {
    for (const Range& range : set.ranges) {
      u128 span = as_number(range.range_end) - as_number(range.range_start);  // size - 1
      if (span == ~u128{0}) return false;  // 2^128 addresses: never full
      u128 free = span + 1;
      if (range.contains(range.gateway)) --free;
      for (const IPAddr& ip : reserved)
        if (range.contains(ip) && ip != range.gateway && free > 0) --free;
      if (free > 0) return false;
    }
  }
  return true;
}

}  // namespace ferry::ipam
