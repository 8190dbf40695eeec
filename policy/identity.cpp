// IdentityInfo (canonical form, JSON), canonical_ip_block and the IdentityAllocator.
#include <algorithm>
#include <limits>

#include "policy/internal.h"
#include "policy/policy.h"

namespace ferry::policy {

using nlohmann::json;

namespace {

constexpr uint32_t kFileVersion = 1;

std::optional<IdentityInfo::Kind> kind_from_name(std::string_view name) {
  for (auto k : {IdentityInfo::Kind::Host, IdentityInfo::Kind::RemoteNode, IdentityInfo::Kind::World,
                 IdentityInfo::Kind::Pod})
    if (kind_name(k) == name) return k;
  return std::nullopt;
}

json proto_to_json(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP: return "TCP";
    case IPPROTO_UDP: return "UDP";
    case IPPROTO_SCTP: return "SCTP";
  }
  return proto;
}

std::optional<uint8_t> proto_from_json(const json& j) {
  if (j.is_number_unsigned() && j.get<uint64_t>() <= 255) return static_cast<uint8_t>(j.get<uint64_t>());
  if (!j.is_string()) return std::nullopt;
  const auto& s = j.get_ref<const std::string&>();
  if (s == "TCP") return IPPROTO_TCP;
  if (s == "UDP") return IPPROTO_UDP;
  if (s == "SCTP") return IPPROTO_SCTP;
  return std::nullopt;
}

std::optional<model::Labels> labels_from_json(const json& j) {
  if (!j.is_object()) return std::nullopt;
  model::Labels out;
  for (const auto& [k, v] : j.items()) {
    if (!v.is_string()) return std::nullopt;
    out[k] = v.get<std::string>();
  }
  return out;
}

// The reserved number of the plain Host / RemoteNode / World identity (no ipBlocks), else 0.
Identity reserved_number(const IdentityInfo& info) {
  if (info.kind == IdentityInfo::Kind::Pod || !(info == detail::plain_identity(info.kind))) return 0;
  switch (info.kind) {
    case IdentityInfo::Kind::Host: return dataplane::kIdentityHost;
    case IdentityInfo::Kind::RemoteNode: return dataplane::kIdentityRemoteNode;
    default: return dataplane::kIdentityWorld;
  }
}

}  // namespace

std::string_view kind_name(IdentityInfo::Kind k) {
  switch (k) {
    case IdentityInfo::Kind::Host: return "host";
    case IdentityInfo::Kind::RemoteNode: return "remote-node";
    case IdentityInfo::Kind::World: return "world";
    case IdentityInfo::Kind::Pod: return "pod";
  }
  return "world";
}

std::string canonical_ip_block(const model::IPBlock& block) {
  std::vector<cni::IPNet> except;
  for (const auto& e : block.except) except.push_back(e.network());
  std::sort(except.begin(), except.end());
  except.erase(std::unique(except.begin(), except.end()), except.end());
  std::string out = block.cidr.network().str();
  for (size_t i = 0; i < except.size(); ++i) out += (i == 0 ? " except " : ",") + except[i].str();
  return out;
}

// Empty fields are left out so that keys stay short; lists are sorted so that the key is
// canonical whatever order the caller built them in.
json IdentityInfo::to_json() const {
  json j = json::object();
  j["kind"] = kind_name(kind);
  if (!ns.empty()) j["namespace"] = ns;
  if (!labels.empty()) j["labels"] = labels;
  if (!ns_labels.empty()) j["namespaceLabels"] = ns_labels;
  if (!named_ports.empty()) {
    auto ports = named_ports;
    std::sort(ports.begin(), ports.end());
    ports.erase(std::unique(ports.begin(), ports.end()), ports.end());
    json arr = json::array();
    for (const auto& p : ports) arr.push_back({{"name", p.name}, {"protocol", proto_to_json(p.proto)}, {"port", p.port}});
    j["namedPorts"] = std::move(arr);
  }
  if (!ip_blocks.empty()) {
    auto blocks = ip_blocks;
    std::sort(blocks.begin(), blocks.end());
    blocks.erase(std::unique(blocks.begin(), blocks.end()), blocks.end());
    j["ipBlocks"] = blocks;
  }
  return j;
}

std::string IdentityInfo::key() const { return to_json().dump(); }

std::optional<IdentityInfo> IdentityInfo::from_json(const json& j) {
  if (!j.is_object()) return std::nullopt;
  IdentityInfo info;
  auto kind = j.contains("kind") && j["kind"].is_string() ? kind_from_name(j["kind"].get<std::string>()) : std::nullopt;
  if (!kind) return std::nullopt;
  info.kind = *kind;
  for (const auto& [k, v] : j.items()) {
    if (k == "kind") continue;
    if (k == "namespace") {
      if (!v.is_string()) return std::nullopt;
      info.ns = v.get<std::string>();
    } else if (k == "labels" || k == "namespaceLabels") {
      auto labels = labels_from_json(v);
      if (!labels) return std::nullopt;
      (k == "labels" ? info.labels : info.ns_labels) = std::move(*labels);
    } else if (k == "namedPorts") {
      if (!v.is_array()) return std::nullopt;
      for (const auto& p : v) {
        if (!p.is_object() || !p.contains("name") || !p["name"].is_string() || !p.contains("protocol") ||
            !p.contains("port") || !p["port"].is_number_unsigned() || p["port"].get<uint64_t>() > 65535)
          return std::nullopt;
        auto proto = proto_from_json(p["protocol"]);
        if (!proto) return std::nullopt;
        info.named_ports.push_back({p["name"].get<std::string>(), *proto, p["port"].get<uint16_t>()});
      }
      std::sort(info.named_ports.begin(), info.named_ports.end());
    } else if (k == "ipBlocks") {
      if (!v.is_array()) return std::nullopt;
      for (const auto& b : v) {
        if (!b.is_string()) return std::nullopt;
        info.ip_blocks.push_back(b.get<std::string>());
      }
      std::sort(info.ip_blocks.begin(), info.ip_blocks.end());
    } else {
      return std::nullopt;  // unknown field: not a file this version wrote
    }
  }
  return info;
}

// ---------------------------------------------------------------------------------------
// IdentityAllocator

Identity IdentityAllocator::allocate(const IdentityInfo& info) {
  std::string key = info.key();
  if (auto it = by_key_.find(key); it != by_key_.end()) return it->second;
  Identity id = reserved_number(info);
  if (id == 0) {
    // Lowest free >= 256. Usually the numbers in use are dense: then it is one past the last.
    auto first = by_id_.lower_bound(dataplane::kFirstAllocatedIdentity);
    size_t allocated = static_cast<size_t>(std::distance(first, by_id_.end()));
    id = dataplane::kFirstAllocatedIdentity;
    if (allocated > 0 && by_id_.rbegin()->first - dataplane::kFirstAllocatedIdentity + 1 == allocated) {
      id = by_id_.rbegin()->first + 1;
    } else {
      for (auto it = first; it != by_id_.end() && it->first == id; ++it) ++id;
    }
  }
  by_id_.emplace(id, info);
  by_key_.emplace(std::move(key), id);
  return id;
}

void IdentityAllocator::retain_only(const std::map<Identity, IdentityInfo>& in_use) {
  for (auto it = by_id_.begin(); it != by_id_.end();) {
    if (in_use.count(it->first)) {
      ++it;
      continue;
    }
    by_key_.erase(it->second.key());
    it = by_id_.erase(it);
  }
}

json IdentityAllocator::save() const {
  json arr = json::array();
  for (const auto& [id, info] : by_id_) arr.push_back({{"id", id}, {"identity", info.to_json()}});
  return {{"version", kFileVersion}, {"identities", std::move(arr)}};
}

void IdentityAllocator::load(const json& j) {
  if (!j.is_object()) throw PolicyError("identities: expected a JSON object");
  if (!j.contains("version") || j["version"] != kFileVersion)
    throw PolicyError("identities: unsupported version " + (j.contains("version") ? j["version"].dump() : "(none)"));
  if (!j.contains("identities") || !j["identities"].is_array())
    throw PolicyError("identities: \"identities\" must be an array");
  std::map<Identity, IdentityInfo> by_id;
  std::map<std::string, Identity> by_key;
  size_t index = 0;
  for (const auto& e : j["identities"]) {
    std::string where = "identities[" + std::to_string(index++) + "]";
    if (!e.is_object() || !e.contains("id") || !e["id"].is_number_unsigned() ||
        e["id"].get<uint64_t>() > std::numeric_limits<Identity>::max())
      throw PolicyError(where + ": \"id\" must be an unsigned 32-bit number");
    auto id = e["id"].get<Identity>();
    auto info = e.contains("identity") ? IdentityInfo::from_json(e["identity"]) : std::nullopt;
    if (!info) throw PolicyError(where + ": malformed \"identity\"");
    Identity reserved = reserved_number(*info);
    if (reserved != 0 && reserved != id)
      throw PolicyError(where + ": " + std::string(kind_name(info->kind)) + " must have the reserved number " +
                        std::to_string(reserved) + ", not " + std::to_string(id));
    if (reserved == 0 && id < dataplane::kFirstAllocatedIdentity)
      throw PolicyError(where + ": number " + std::to_string(id) + " is reserved");
    std::string key = info->key();
    if (!by_id.emplace(id, *info).second) throw PolicyError(where + ": number " + std::to_string(id) + " twice");
    if (!by_key.emplace(key, id).second) throw PolicyError(where + ": identity " + key + " twice");
  }
  by_id_ = std::move(by_id);
  by_key_ = std::move(by_key);
}

}  // namespace ferry::policy
