// Fuzzes host-local's config parser and, for configs it accepts, the allocator over an
// in-memory store. Input: the first line is CNI_ARGS, the rest the network config JSON.
// Any exception other than cni::Error, a crash, or a broken invariant is a finding.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <set>
#include <string_view>

#include "ipam/ipam.h"

namespace {

using namespace ferry;

class MemoryStore : public ipam::Store {
 public:
  std::map<cni::IPAddr, std::string> files;
  std::map<size_t, cni::IPAddr> last;
  std::vector<ipam::Reservation> list() override {
    std::vector<ipam::Reservation> out;
    for (auto& [ip, owner] : files) out.push_back({ip, owner});
    return out;
  }
  bool reserve(const cni::IPAddr& ip, const cni::Attachment& owner, size_t set) override {
    if (!files.emplace(ip, ipam::owner_key(owner)).second) return false;
    last[set] = ip;
    return true;
  }
  void release(const cni::IPAddr& ip) override { files.erase(ip); }
  std::optional<cni::IPAddr> last_reserved(size_t set) override {
    auto it = last.find(set);
    return it == last.end() ? std::nullopt : std::optional(it->second);
  }
};

void check(bool ok) {
  if (!ok) std::abort();
}

void exercise(const ipam::Config& c) {
  for (const ipam::RangeSet& set : c.range_sets) {
    check(!set.ranges.empty());
    for (const ipam::Range& r : set.ranges) {
      check(r.subnet.network() == r.subnet);
      check(r.subnet.contains(r.range_start) && r.subnet.contains(r.range_end));
      check(!(r.range_end < r.range_start));
    }
    std::set<cni::IPAddr> seen;
    for (const cni::IPAddr& ip : ipam::candidates(set, std::nullopt, 64)) {
      const ipam::Range* r = set.range_for(ip);
      check(r != nullptr && ip != r->gateway && seen.insert(ip).second);
      auto back = cni::IPAddr::parse(ipam::ip_file_name(ip));
      check(back && ipam::canonical_ip(*back) == ip);
    }
  }
  MemoryStore store;
  for (int i = 0; i < 3; ++i) {
    try {
      auto ips = ipam::allocate(c, store, {"fuzz" + std::to_string(i), "eth0"});
      check(ips.size() == c.range_sets.size());
    } catch (const cni::Error&) {
    }
  }
  (void)ipam::all_exhausted(c, store.list());
  ipam::release(store, {"fuzz0", "eth0"});
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  size_t nl = in.find('\n');
  std::string_view cni_args = nl == std::string_view::npos ? std::string_view{} : in.substr(0, nl);
  std::string_view body = nl == std::string_view::npos ? in : in.substr(nl + 1);
  cni::json conf = cni::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (conf.is_discarded()) return 0;
  for (auto use : {ipam::ConfigUse::kAllocate, ipam::ConfigUse::kInspect, ipam::ConfigUse::kRelease}) {
    try {
      ipam::Config c = ipam::parse_config(conf, cni_args, use);
      if (use == ipam::ConfigUse::kAllocate) exercise(c);
    } catch (const cni::Error&) {
    }
  }
  return 0;
}
