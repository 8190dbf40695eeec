// IdAllocator and ServiceIds: stable numbers for frontends and backends.
#include <string>

#include "agent/services/services.h"

namespace ferry::services {

IdAllocator::IdAllocator(uint32_t first, uint32_t last) : first_(first), last_(last), next_(first) {
  if (first == 0 || first > last) throw ServicesError("id range must be 1 <= first <= last");
}

std::optional<uint32_t> IdAllocator::find(const std::string& key) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  return it->second;
}

uint32_t IdAllocator::allocate(const std::string& key) {
  if (auto id = find(key)) return *id;
  if (by_id_.size() > static_cast<uint64_t>(last_) - first_)
    throw ServicesError("no free id in " + std::to_string(first_) + "-" + std::to_string(last_) +
                        " for " + key);
  // The next unused number at or after next_, wrapping around (a free one exists).
  uint32_t id = next_;
  while (by_id_.count(id)) id = id == last_ ? first_ : id + 1;
  by_key_[key] = id;
  by_id_[id] = key;
  next_ = id == last_ ? first_ : id + 1;
  return id;
}

void IdAllocator::retain_only(const std::set<std::string>& keys) {
  retain_if([&](uint32_t id) { return keys.count(by_id_.at(id)) > 0; });
}

void IdAllocator::retain_if(const std::function<bool(uint32_t id)>& in_use) {
  for (auto it = by_id_.begin(); it != by_id_.end();) {
    if (in_use(it->first)) {
      ++it;
      continue;
    }
    by_key_.erase(it->second);
    it = by_id_.erase(it);
  }
}

nlohmann::json IdAllocator::save() const {
  nlohmann::json ids = nlohmann::json::object();
  for (const auto& [key, id] : by_key_) ids[key] = id;
  return {{"next", next_}, {"ids", ids}};
}

void IdAllocator::load(const nlohmann::json& j) {
  auto fail = [](const std::string& what) { throw ServicesError("bad id file: " + what); };
  if (!j.is_object() || !j.contains("ids") || !j["ids"].is_object()) fail("expected {\"ids\": {...}}");
  std::map<std::string, uint32_t> by_key;
  std::map<uint32_t, std::string> by_id;
  for (const auto& [key, v] : j["ids"].items()) {
    if (!v.is_number_unsigned() || v.get<uint64_t>() < first_ || v.get<uint64_t>() > last_)
      fail(key + ": expected an id " + std::to_string(first_) + "-" + std::to_string(last_));
    uint32_t id = v.get<uint32_t>();
    if (!by_id.emplace(id, key).second) fail(key + ": id " + std::to_string(id) + " is also " + by_id[id] + "'s");
    by_key[key] = id;
  }
  uint32_t next = first_;
  if (j.contains("next")) {
    const auto& n = j["next"];
    if (!n.is_number_unsigned() || n.get<uint64_t>() < first_ || n.get<uint64_t>() > last_)
      fail("next: expected a number " + std::to_string(first_) + "-" + std::to_string(last_));
    next = n.get<uint32_t>();
  }
  by_key_ = std::move(by_key);
  by_id_ = std::move(by_id);
  next_ = next;
}

nlohmann::json ServiceIds::save() const {
  return {{"version", 1}, {"frontends", frontends.save()}, {"backends", backends.save()}};
}

void ServiceIds::load(const nlohmann::json& j) {
  if (!j.is_object() || !j.contains("version") || j["version"] != 1 || !j.contains("frontends") ||
      !j.contains("backends"))
    throw ServicesError("bad id file: expected {\"version\": 1, \"frontends\": ..., \"backends\": ...}");
  // Both or neither: a half-loaded pair would hand out numbers the other half still uses.
  IdAllocator f = frontends, b = backends;
  f.load(j["frontends"]);
  b.load(j["backends"]);
  frontends = std::move(f);
  backends = std::move(b);
}

}  // namespace ferry::services
