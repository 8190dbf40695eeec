// The policy maps of the eBPF datapath (ferry_ipc_v1, ferry_pol_v1): keys from the backend-neutral
// PolicySet, decoding for ferryctl, and the diff that writes only what differs.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <set>

#include "agent/ebpf/internal.h"
#include "policy/policy.h"

namespace ferry::ebpf {
namespace detail {

namespace {

constexpr uint32_t kExactBits = FERRY_POLICY_KEY_EXACT_BITS;

template <typename Key>
std::array<uint8_t, sizeof(Key)> bytes_of(const Key& key) {
  std::array<uint8_t, sizeof(Key)> b;
  std::memcpy(b.data(), &key, sizeof(key));
  return b;
}

template <typename Key>
Key key_of(const std::array<uint8_t, sizeof(Key)>& b) {
  Key key;
  std::memcpy(&key, b.data(), sizeof(key));
  return key;
}

ferry_policy_key any_key(uint32_t endpoint_id, dataplane::Direction dir) {
  ferry_policy_key key{};
  key.prefixlen = kExactBits;
  key.endpoint_id = endpoint_id;
  key.identity = FERRY_IDENTITY_ANY;
  key.direction = static_cast<uint8_t>(dir);
  return key;
}

const char* dir_word(dataplane::Direction dir) { return dir == dataplane::Direction::Ingress ? "ingress" : "egress"; }

}  // namespace

std::vector<ferry_policy_key> policy_keys(uint32_t endpoint_id, dataplane::Direction dir,
                                          const dataplane::PolicyEntry& entry) {
  ferry_policy_key key = any_key(endpoint_id, dir);
  key.identity = entry.peer;
  if (entry.proto == 0) return {key};  // any protocol: every port, prefix length 80
  if (entry.port_first > entry.port_last)
    throw EbpfError("policy entry of endpoint " + std::to_string(endpoint_id) + " (" + dir_word(dir) +
                    "): port range " + std::to_string(entry.port_first) + "-" + std::to_string(entry.port_last) +
                    " is empty");
  key.proto = entry.proto;
  std::vector<ferry_policy_key> out;
  for (const policy::PortPrefix& p : policy::port_range_prefixes(entry.port_first, entry.port_last)) {
    key.prefixlen = kExactBits + static_cast<uint32_t>(p.len);
    key.dport = htons(p.port);
    out.push_back(key);
  }
  return out;
}

PolicyMapEntry decode_policy_key(const ferry_policy_key& key) {
  PolicyMapEntry e;
  e.endpoint_id = key.endpoint_id;
  e.direction = key.direction;
  e.peer = key.identity;
  e.proto = key.proto;
  int len = key.prefixlen > kExactBits ? static_cast<int>(key.prefixlen - kExactBits) : 0;
  if (len > 16) len = 16;
  e.port_prefix_len = e.proto == 0 ? 0 : len;
  const uint32_t span = (1u << (16 - e.port_prefix_len)) - 1;
  e.port_first = e.proto == 0 ? 0 : ntohs(key.dport);
  e.port_last = static_cast<uint16_t>(e.port_first | span);
  return e;
}

std::vector<dataplane::IpcacheEntry> read_ipcache(int ipc_fd) {
  std::vector<dataplane::IpcacheEntry> out;
  if (ipc_fd < 0) return out;
  for (const ferry_ipcache_key& key : map_keys<ferry_ipcache_key>(ipc_fd)) {
    ferry_ipcache_value value{};
    if (bpf_map_lookup_elem(ipc_fd, &key, &value) != 0) continue;  // deleted meanwhile
    out.push_back({addr_prefix_of(key), value.identity});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    if (a.prefix.ip.family != b.prefix.ip.family) return a.prefix.ip.family < b.prefix.ip.family;
    if (a.prefix.ip.bytes != b.prefix.ip.bytes) return a.prefix.ip.bytes < b.prefix.ip.bytes;
    return a.prefix.len < b.prefix.len;
  });
  return out;
}

std::vector<PolicyMapEntry> read_policy_entries(int pol_fd) {
  std::vector<PolicyMapEntry> out;
  if (pol_fd < 0) return out;
  for (const ferry_policy_key& key : map_keys<ferry_policy_key>(pol_fd)) out.push_back(decode_policy_key(key));
  auto order = [](const PolicyMapEntry& e) {
    return std::tuple(e.endpoint_id, e.direction, e.peer, e.proto, e.port_first, e.port_prefix_len);
  };
  std::sort(out.begin(), out.end(), [&](const auto& a, const auto& b) { return order(a) < order(b); });
  return out;
}

// ---- PolicyMapSync ---------------------------------------------------------------------

void PolicyMapSync::attach(int ipc_fd, int pol_fd) {
  ipc_fd_ = ipc_fd;
  pol_fd_ = pol_fd;
  loaded_ = false;
  ipc_have_.clear();
  pol_have_.clear();
}

// What the kernel holds, once per attach; afterwards our own writes keep the copy current (only
// the agent writes these maps).
void PolicyMapSync::load() {
  if (loaded_) return;
  ipc_have_.clear();
  pol_have_.clear();
  for (const ferry_ipcache_key& key : map_keys<ferry_ipcache_key>(ipc_fd_)) {
    ferry_ipcache_value value{};
    if (bpf_map_lookup_elem(ipc_fd_, &key, &value) == 0) ipc_have_[bytes_of(key)] = value;
  }
  for (const ferry_policy_key& key : map_keys<ferry_policy_key>(pol_fd_)) {
    ferry_policy_value value{};
    // A value we would not write (reserved fields set) is treated as absent: rewritten.
    if (bpf_map_lookup_elem(pol_fd_, &key, &value) == 0 && bytes_of(value) == bytes_of(ferry_policy_value{}))
      pol_have_[key.endpoint_id].insert(bytes_of(key));
  }
  loaded_ = true;
}

uint64_t PolicyMapSync::sync(const dataplane::PolicySet& set, const std::vector<uint32_t>& local_endpoints) {
  load();
  // Desired content. Not enforcing: nothing at all.
  std::map<IpcKey, ferry_ipcache_value> ipc_want;
  std::map<uint32_t, std::set<PolKey>> pol_want;
  if (set.enforce) {
    for (const dataplane::IpcacheEntry& e : set.ipcache) {
      ferry_ipcache_value value{};
      value.identity = e.identity;
      ipc_want[bytes_of(addr_prefix_key<ferry_ipcache_key>(e.prefix, "ipcache prefix"))] = value;
    }
    for (const auto& [id, policy] : set.endpoints) {
      if (id == 0) throw EbpfError("policy for endpoint id 0");
      std::set<PolKey>& keys = pol_want[id];
      for (auto [dir, isolated, entries] :
           {std::tuple{dataplane::Direction::Ingress, policy.ingress_isolated, &policy.ingress},
            std::tuple{dataplane::Direction::Egress, policy.egress_isolated, &policy.egress}}) {
        if (!isolated) {
          keys.insert(bytes_of(any_key(id, dir)));
          continue;
        }
        for (const dataplane::PolicyEntry& entry : *entries)
          for (const ferry_policy_key& key : policy_keys(id, dir, entry)) keys.insert(bytes_of(key));
      }
    }
    // Local endpoints the set does not name are not isolated (their pod is not known yet).
    for (uint32_t id : local_endpoints) {
      if (set.endpoints.count(id)) continue;
      pol_want[id] = {bytes_of(any_key(id, dataplane::Direction::Ingress)),
                      bytes_of(any_key(id, dataplane::Direction::Egress))};
    }
  }

  // Additions before removals: a flow judged in between is judged again after the revision bump.
  uint64_t writes = 0;
  for (const auto& [kb, value] : ipc_want) {
    auto it = ipc_have_.find(kb);
    if (it != ipc_have_.end() && bytes_of(it->second) == bytes_of(value)) continue;
    const ferry_ipcache_key key = key_of<ferry_ipcache_key>(kb);
    update(ipc_fd_, &key, &value, FERRY_MAP_IPCACHE, addr_prefix_of(key).str());
    ipc_have_[kb] = value;
    ++writes;
  }
  for (const auto& [id, keys] : pol_want) {
    std::set<PolKey>& have = pol_have_[id];
    for (const PolKey& kb : keys) {
      if (have.count(kb)) continue;
      const ferry_policy_key key = key_of<ferry_policy_key>(kb);
      const ferry_policy_value value{};
      update(pol_fd_, &key, &value, FERRY_MAP_POLICY, "endpoint " + std::to_string(id));
      have.insert(kb);
      ++writes;
    }
  }
  for (auto it = pol_have_.begin(); it != pol_have_.end();) {
    auto want = pol_want.find(it->first);
    for (auto k = it->second.begin(); k != it->second.end();) {
      if (want != pol_want.end() && want->second.count(*k)) {
        ++k;
        continue;
      }
      const ferry_policy_key key = key_of<ferry_policy_key>(*k);
      erase(pol_fd_, &key, FERRY_MAP_POLICY, "endpoint " + std::to_string(it->first));
      k = it->second.erase(k);
      ++writes;
    }
    it = it->second.empty() ? pol_have_.erase(it) : std::next(it);
  }
  for (auto it = ipc_have_.begin(); it != ipc_have_.end();) {
    if (ipc_want.count(it->first)) {
      ++it;
      continue;
    }
    const ferry_ipcache_key key = key_of<ferry_ipcache_key>(it->first);
    erase(ipc_fd_, &key, FERRY_MAP_IPCACHE, addr_prefix_of(key).str());
    it = ipc_have_.erase(it);
    ++writes;
  }
  return writes;
}

uint64_t PolicyMapSync::remove_endpoint(uint32_t id) {
  load();
  auto it = pol_have_.find(id);
  if (it == pol_have_.end()) return 0;
  uint64_t writes = 0;
  for (auto k = it->second.begin(); k != it->second.end();) {
    const ferry_policy_key key = key_of<ferry_policy_key>(*k);
    erase(pol_fd_, &key, FERRY_MAP_POLICY, "endpoint " + std::to_string(id));
    k = it->second.erase(k);
    ++writes;
  }
  pol_have_.erase(it);
  return writes;
}

void PolicyMapSync::update(int fd, const void* key, const void* value, const char* map, const std::string& what) {
  if (bpf_map_update_elem(fd, key, value, BPF_ANY) == 0) return;
  int err = errno;
  throw EbpfError(std::string("failed to write ") + what + " to " + map + ": " + errstr(err) +
                  (err == E2BIG || err == ENOSPC ? " (map full)" : ""));
}

void PolicyMapSync::erase(int fd, const void* key, const char* map, const std::string& what) {
  if (bpf_map_delete_elem(fd, key) == 0 || errno == ENOENT) return;
  throw EbpfError(std::string("failed to delete ") + what + " from " + map + ": " + errstr(errno));
}

}  // namespace detail
}  // namespace ferry::ebpf
