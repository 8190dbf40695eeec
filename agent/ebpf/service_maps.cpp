// The service maps of the eBPF datapath (ferry_svc_v1, ferry_slot_v1, ferry_be_v1, ferry_rnat_v1,
// ferry_mglv_v1, and deletions in ferry_aff_v1): entries from the backend-neutral ServiceSet and
// the diff that writes only what differs, in an order that never shows the datapath a half
// state (DESIGN.md "Services"):
//   1. backends and reverse-NAT entries (what slots and frontends will name)
//   2. slots 0..n-1 of each set and Maglev tables (grow / replace; counts not yet raised)
//   3. frontend entries (new counts: a shrinking frontend stops using its trailing slots here)
//   4. deletions: frontends, trailing slots, tables, rev-NAT, backends no frontend names, then
//      the affinity entries that name a backend its frontend no longer has.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <unordered_set>

#include "agent/ebpf/internal.h"
#include "agent/services/services.h"

namespace ferry::ebpf {
namespace detail {

namespace {

template <typename T>
bool same(const T& a, const T& b) {
  return std::memcmp(&a, &b, sizeof(T)) == 0;
}

void copy_addr(const net::Ip& ip, uint8_t* addr16, uint8_t* family, const std::string& what) {
  if (ip.family != AF_INET && ip.family != AF_INET6) throw EbpfError(what + ": not an IPv4 or IPv6 address");
  std::memcpy(addr16, ip.bytes.data(), static_cast<size_t>(ip.size()));
  *family = static_cast<uint8_t>(ip.family);
}

std::string frontend_what(dataplane::ServiceId id, const dataplane::ServiceFrontend& f) {
  return "frontend " + std::to_string(id) + " (" + endpoint_str(f.address, f.port, f.proto) + ", " + f.service + ")";
}

uint16_t slot_count(size_t n, const std::string& what) {
  if (n > UINT16_MAX) throw EbpfError(what + ": " + std::to_string(n) + " backends (at most 65535)");
  return static_cast<uint16_t>(n);
}

uint8_t backend_state(dataplane::BackendState s) {
  switch (s) {
    case dataplane::BackendState::Terminating: return FERRY_BACKEND_TERMINATING;
    case dataplane::BackendState::NotServing: return FERRY_BACKEND_NOT_SERVING;
    case dataplane::BackendState::Active: break;
  }
  return FERRY_BACKEND_ACTIVE;
}

uint64_t table_hash(const ferry_maglev_value& table) {
  return net::stable_hash64(std::string_view(reinterpret_cast<const char*>(&table), sizeof(table)));
}

}  // namespace

ferry_service_key service_key(const dataplane::ServiceFrontend& f) {
  ferry_service_key key{};
  copy_addr(f.address, key.addr, &key.family, "service frontend " + f.address.str());
  key.port = htons(f.port);
  key.proto = f.proto;
  return key;
}

ferry_service_value service_value(dataplane::ServiceId id, const dataplane::ServiceFrontend& f) {
  const std::string what = frontend_what(id, f);
  if (id == 0) throw EbpfError(what + ": service id 0");
  ferry_service_value v{};
  v.service_id = id;
  v.count = slot_count(f.backends.size(), what);
  if (f.pod_and_host_backends) {
    v.flags |= FERRY_SVC_F_LOCAL;
    v.count_internal = slot_count(f.pod_and_host_backends->size(), what);
  }
  if (f.affinity) {
    v.flags |= FERRY_SVC_F_AFFINITY;
    v.affinity_timeout_s = f.affinity_timeout_seconds;
  }
  if (f.when_empty == dataplane::WhenEmpty::Drop) v.flags |= FERRY_SVC_F_DROP_EMPTY;
  if (f.kind == dataplane::FrontendKind::NodePort) v.flags |= FERRY_SVC_F_NODEPORT;
  if (f.kind == dataplane::FrontendKind::ExternalIP) v.flags |= FERRY_SVC_F_EXTERNAL_IP;
  return v;
}

ferry_backend_value backend_value(dataplane::BackendId id, const dataplane::ServiceBackend& b) {
  if (id == 0) throw EbpfError("service backend " + b.address.str() + ": backend id 0");
  ferry_backend_value v{};
  copy_addr(b.address, v.addr, &v.family, "service backend " + std::to_string(id));
  v.port = htons(b.port);
  v.proto = b.proto;
  v.state = backend_state(b.state);
  v.flags = b.local ? FERRY_BACKEND_F_LOCAL : 0;
  return v;
}

ferry_revnat_value revnat_value(const dataplane::ServiceFrontend& f) {
  ferry_revnat_value v{};
  copy_addr(f.address, v.addr, &v.family, "service frontend " + f.address.str());
  v.port = htons(f.port);
  return v;
}

// ---- ServiceMapSync ----------------------------------------------------------------------

void ServiceMapSync::attach(const ServiceMapFds& fds) {
  fds_ = fds;
  loaded_ = false;
  applied_.reset();
  have_svc_.clear();
  have_slots_.clear();
  have_be_.clear();
  have_rnat_.clear();
  have_mglv_.clear();
  stray_svc_.clear();
  stray_slots_.clear();
}

// What the kernel holds, once per attach; afterwards our own writes keep the copy current (only
// the agent writes these maps; the datapath writes only affinity entries).
void ServiceMapSync::load() {
  if (loaded_) return;
  for (const ferry_service_key& key : map_keys<ferry_service_key>(fds_.services)) {
    ferry_service_value value{};
    if (bpf_map_lookup_elem(fds_.services, &key, &value) != 0) continue;
    if (value.service_id == 0 || !have_svc_.try_emplace(value.service_id, key, value).second) stray_svc_.push_back(key);
  }
  for (const ferry_slot_key& key : map_keys<ferry_slot_key>(fds_.slots)) {
    uint32_t backend = 0;
    if (bpf_map_lookup_elem(fds_.slots, &key, &backend) != 0) continue;
    if (key.set > 1 || key.pad != 0 || backend == 0) {
      stray_slots_.push_back(key);
      continue;
    }
    std::vector<uint32_t>& list = have_slots_[key.service_id][key.set];
    if (list.size() <= key.slot) list.resize(key.slot + 1u, 0);  // 0: a hole, rewritten
    list[key.slot] = backend;
  }
  for (uint32_t id : map_keys<uint32_t>(fds_.backends)) {
    ferry_backend_value value{};
    if (bpf_map_lookup_elem(fds_.backends, &id, &value) == 0) have_be_[id] = value;
  }
  for (uint32_t id : map_keys<uint32_t>(fds_.revnat)) {
    ferry_revnat_value value{};
    if (bpf_map_lookup_elem(fds_.revnat, &id, &value) == 0) have_rnat_[id] = value;
  }
  auto table = std::make_unique<ferry_maglev_value>();
  for (const ferry_maglev_key& key : map_keys<ferry_maglev_key>(fds_.maglev))
    if (bpf_map_lookup_elem(fds_.maglev, &key, table.get()) == 0) have_mglv_[mglv_index(key)] = table_hash(*table);
  loaded_ = true;
}

uint64_t ServiceMapSync::sync(const dataplane::ServiceSet& set, bool maglev) {
  load();
  writes_ = 0;
  Touched t;
  try {
    t = apply(set, maglev);
  } catch (...) {
    applied_.reset();  // the copy of the kernel stays true; the next sync compares everything
    throw;
  }
  if (applied_ && applied_maglev_ == maglev) {
    for (dataplane::ServiceId id : t.frontends) {
      auto it = set.frontends.find(id);
      if (it == set.frontends.end()) applied_->frontends.erase(id);
      else applied_->frontends[id] = it->second;
    }
    for (dataplane::BackendId id : t.backends) applied_->backends[id] = set.backends.at(id);
    for (dataplane::BackendId id : t.backends_gone) applied_->backends.erase(id);
  } else {
    applied_ = set;
  }
  applied_maglev_ = maglev;
  return writes_;
}

// The frontends and backends to look at: all of them after a (re)load or an algorithm switch,
// else those that differ from the last applied set (the rest equal the kernel already).
ServiceMapSync::Touched ServiceMapSync::touched(const dataplane::ServiceSet& set, bool maglev) const {
  Touched t;
  std::set<dataplane::ServiceId> ids;
  if (!applied_ || applied_maglev_ != maglev) {
    for (const auto& [id, f] : set.frontends) ids.insert(id);
    for (const auto& [id, e] : have_svc_) ids.insert(id);
    for (const auto& [id, s] : have_slots_) ids.insert(id);
    for (const auto& [id, v] : have_rnat_) ids.insert(id);
    for (const auto& [idx, h] : have_mglv_) ids.insert(static_cast<dataplane::ServiceId>(idx >> 1));
    t.frontends.assign(ids.begin(), ids.end());
    for (const auto& [id, b] : set.backends) t.backends.push_back(id);
    for (const auto& [id, v] : have_be_)
      if (!set.backends.count(id)) t.backends_gone.push_back(id);
    return t;
  }
  // Each pair of maps is ordered by id: one merge walk each, in id order (so `frontends` is sorted).
  auto was = applied_->frontends.begin();
  const auto was_end = applied_->frontends.end();
  for (const auto& [id, f] : set.frontends) {
    while (was != was_end && was->first < id) t.frontends.push_back((was++)->first);
    if (was != was_end && was->first == id) {
      if (!(was->second == f)) t.frontends.push_back(id);
      ++was;
    } else {
      t.frontends.push_back(id);
    }
  }
  for (; was != was_end; ++was) t.frontends.push_back(was->first);
  auto old = applied_->backends.begin();
  const auto end = applied_->backends.end();
  for (const auto& [id, b] : set.backends) {
    while (old != end && old->first < id) t.backends_gone.push_back((old++)->first);
    if (old != end && old->first == id) {
      if (!(old->second == b)) t.backends.push_back(id);
      ++old;
    } else {
      t.backends.push_back(id);
    }
  }
  for (; old != end; ++old) t.backends_gone.push_back(old->first);
  return t;
}

ServiceMapSync::Touched ServiceMapSync::apply(const dataplane::ServiceSet& set, bool maglev) {
  Touched t = touched(set, maglev);
  const std::vector<dataplane::ServiceId>& ids = t.frontends;
  auto frontend_of = [&](dataplane::ServiceId id) -> const dataplane::ServiceFrontend* {
    auto it = set.frontends.find(id);
    return it == set.frontends.end() ? nullptr : &it->second;
  };
  auto lists_of = [](const dataplane::ServiceFrontend* f) {
    std::array<std::vector<uint32_t>, 2> lists;
    if (f) {
      lists[0] = f->backends;
      if (f->pod_and_host_backends) lists[1] = *f->pod_and_host_backends;
    }
    return lists;
  };
  // Every value first: a bad address or id throws before the first write.
  std::vector<std::optional<std::pair<ferry_service_key, ferry_service_value>>> want_svc(ids.size());
  for (size_t i = 0; i < ids.size(); ++i)
    if (const auto* f = frontend_of(ids[i])) want_svc[i].emplace(service_key(*f), service_value(ids[i], *f));
  std::vector<std::pair<uint32_t, ferry_backend_value>> want_be;
  want_be.reserve(t.backends.size());
  for (dataplane::BackendId id : t.backends) want_be.emplace_back(id, backend_value(id, set.backends.at(id)));

  // Affinity entries to drop later: (service, backend) pairs that leave a frontend.
  std::set<std::pair<uint32_t, uint32_t>> left;
  for (dataplane::ServiceId id : ids) {
    auto have = have_slots_.find(id);
    if (have == have_slots_.end()) continue;
    const auto want = lists_of(frontend_of(id));
    std::unordered_set<uint32_t> kept(want[0].begin(), want[0].end());
    kept.insert(want[1].begin(), want[1].end());
    for (const auto& list : have->second)
      for (uint32_t b : list)
        if (b != 0 && !kept.count(b)) left.emplace(id, b);
  }

  // 1. Backends and reverse NAT.
  for (const auto& [id, value] : want_be) {
    auto it = have_be_.find(id);
    if (it != have_be_.end() && same(it->second, value)) continue;
    update(fds_.backends, &id, &value, FERRY_MAP_BACKENDS, "backend " + std::to_string(id));
    have_be_[id] = value;
  }
  for (dataplane::ServiceId id : ids) {
    const auto* f = frontend_of(id);
    if (!f) continue;
    const ferry_revnat_value value = revnat_value(*f);
    auto it = have_rnat_.find(id);
    if (it != have_rnat_.end() && same(it->second, value)) continue;
    update(fds_.revnat, &id, &value, FERRY_MAP_REVNAT, frontend_what(id, *f));
    have_rnat_[id] = value;
  }

  // 2. Slots (grow / replace) and Maglev tables.
  for (dataplane::ServiceId id : ids) {
    const auto* f = frontend_of(id);
    if (!f) continue;
    const auto want = lists_of(f);
    auto& have = have_slots_[id];
    for (uint8_t s = 0; s < 2; ++s) {
      for (size_t i = 0; i < want[s].size(); ++i) {
        if (i < have[s].size() && have[s][i] == want[s][i]) continue;
        const ferry_slot_key key{id, static_cast<uint16_t>(i), s, 0};
        update(fds_.slots, &key, &want[s][i], FERRY_MAP_SLOTS, frontend_what(id, *f));
        if (have[s].size() <= i) have[s].resize(i + 1, 0);
        have[s][i] = want[s][i];
      }
    }
    if (!maglev) continue;
    for (uint8_t s = 0; s < 2; ++s) {
      if (want[s].empty()) continue;
      dataplane::ServiceFrontend members = *f;
      members.backends = want[s];
      const std::vector<uint32_t> table = services::maglev_table_for(set, members, FERRY_MAGLEV_TABLE_SIZE);
      auto value = std::make_unique<ferry_maglev_value>();
      std::copy(table.begin(), table.end(), value->backend_id);
      const ferry_maglev_key key{id, s};
      const uint64_t hash = table_hash(*value);
      auto it = have_mglv_.find(mglv_index(key));
      if (it != have_mglv_.end() && it->second == hash) continue;
      update(fds_.maglev, &key, value.get(), FERRY_MAP_MAGLEV, frontend_what(id, *f));
      have_mglv_[mglv_index(key)] = hash;
    }
  }

  // 3. Frontend entries.
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!want_svc[i]) continue;
    const auto& [key, value] = *want_svc[i];
    auto it = have_svc_.find(ids[i]);
    if (it != have_svc_.end() && same(it->second.first, key) && same(it->second.second, value)) continue;
    update(fds_.services, &key, &value, FERRY_MAP_SERVICES, frontend_what(ids[i], *frontend_of(ids[i])));
    if (it != have_svc_.end() && !same(it->second.first, key)) stray_svc_.push_back(it->second.first);  // moved
    have_svc_[ids[i]] = {key, value};
  }

  // 4. Deletions.
  for (size_t i = 0; i < ids.size(); ++i) {
    if (want_svc[i]) continue;
    auto it = have_svc_.find(ids[i]);
    if (it == have_svc_.end()) continue;
    erase(fds_.services, &it->second.first, FERRY_MAP_SERVICES, "frontend " + std::to_string(ids[i]));
    have_svc_.erase(it);
  }
  for (const ferry_service_key& key : stray_svc_) {
    bool claimed = false;
    for (const auto& [id, e] : have_svc_) claimed = claimed || same(e.first, key);
    if (!claimed) erase(fds_.services, &key, FERRY_MAP_SERVICES, "stale frontend");
  }
  stray_svc_.clear();
  for (const ferry_slot_key& key : stray_slots_) erase(fds_.slots, &key, FERRY_MAP_SLOTS, "stale slot");
  stray_slots_.clear();
  for (dataplane::ServiceId id : ids) {
    const auto want = lists_of(frontend_of(id));
    auto have = have_slots_.find(id);
    if (have != have_slots_.end()) {
      for (uint8_t s = 0; s < 2; ++s) {
        auto& list = have->second[s];
        while (list.size() > want[s].size()) {
          const ferry_slot_key key{id, static_cast<uint16_t>(list.size() - 1), s, 0};
          erase(fds_.slots, &key, FERRY_MAP_SLOTS, "slot of frontend " + std::to_string(id));
          list.pop_back();
        }
      }
      if (have->second[0].empty() && have->second[1].empty()) have_slots_.erase(have);
    }
    for (uint32_t s = 0; s < 2; ++s) {
      const ferry_maglev_key key{id, s};
      auto it = have_mglv_.find(mglv_index(key));
      if (it == have_mglv_.end() || (maglev && !want[s].empty())) continue;
      erase(fds_.maglev, &key, FERRY_MAP_MAGLEV, "Maglev table of frontend " + std::to_string(id));
      have_mglv_.erase(it);
    }
    if (!frontend_of(id) && have_rnat_.count(id)) {
      erase(fds_.revnat, &id, FERRY_MAP_REVNAT, "frontend " + std::to_string(id));
      have_rnat_.erase(id);
    }
  }
  std::unordered_set<uint32_t> gone;
  for (dataplane::BackendId id : t.backends_gone) {
    auto it = have_be_.find(id);
    if (it == have_be_.end()) continue;
    erase(fds_.backends, &id, FERRY_MAP_BACKENDS, "backend " + std::to_string(id));
    gone.insert(id);
    have_be_.erase(it);
  }
  if (!left.empty() || !gone.empty()) forget_affinity(left, gone);
  return t;
}

// One walk of the affinity map: entries of (service, backend) pairs that left and of backends
// that are gone. The datapath ignores them anyway once the backend is gone; deleting them keeps
// a client from returning to a backend that left its frontend but still serves another one.
void ServiceMapSync::forget_affinity(const std::set<std::pair<uint32_t, uint32_t>>& left,
                                     const std::unordered_set<uint32_t>& gone) {
  for (const ferry_affinity_key& key : map_keys<ferry_affinity_key>(fds_.affinity)) {
    ferry_affinity_value value{};
    if (bpf_map_lookup_elem(fds_.affinity, &key, &value) != 0) continue;
    if (!gone.count(value.backend_id) && !left.count({key.service_id, value.backend_id})) continue;
    erase(fds_.affinity, &key, FERRY_MAP_AFFINITY, "affinity of frontend " + std::to_string(key.service_id));
  }
}

void ServiceMapSync::update(int fd, const void* key, const void* value, const char* map, const std::string& what) {
  if (bpf_map_update_elem(fd, key, value, BPF_ANY) != 0) {
    int err = errno;
    throw EbpfError("failed to write " + what + " to " + map + ": " + errstr(err) +
                    (err == E2BIG || err == ENOSPC || err == ENOMEM ? " (map full)" : ""));
  }
  ++writes_;
}

void ServiceMapSync::erase(int fd, const void* key, const char* map, const std::string& what) {
  if (bpf_map_delete_elem(fd, key) == 0) {
    ++writes_;
    return;
  }
  if (errno != ENOENT) throw EbpfError("failed to delete " + what + " from " + map + ": " + errstr(errno));
}

}  // namespace detail
}  // namespace ferry::ebpf
