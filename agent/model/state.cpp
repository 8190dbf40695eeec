// Kinds, keys, label-selector matching and ClusterState, the keyed object store.
#include <netinet/in.h>
#include <algorithm>
#include <type_traits>

#include "agent/model/model.h"

namespace ferry::model {

// kind_of() maps the variant index to Kind: both lists must stay in the same order.
static_assert(std::is_same_v<std::variant_alternative_t<static_cast<std::size_t>(Kind::Node), Object>, Node>);
static_assert(std::is_same_v<std::variant_alternative_t<static_cast<std::size_t>(Kind::Namespace), Object>, Namespace>);
static_assert(std::is_same_v<std::variant_alternative_t<static_cast<std::size_t>(Kind::Pod), Object>, Pod>);
static_assert(std::is_same_v<std::variant_alternative_t<static_cast<std::size_t>(Kind::Service), Object>, Service>);
static_assert(
    std::is_same_v<std::variant_alternative_t<static_cast<std::size_t>(Kind::EndpointSlice), Object>, EndpointSlice>);
static_assert(
    std::is_same_v<std::variant_alternative_t<static_cast<std::size_t>(Kind::NetworkPolicy), Object>, NetworkPolicy>);

namespace {

struct KindInfo {
  Kind kind;
  std::string_view name;
  std::string_view api_version;
  bool namespaced;
};

constexpr KindInfo kKinds[] = {
    {Kind::Node, "Node", "v1", false},
    {Kind::Namespace, "Namespace", "v1", false},
    {Kind::Pod, "Pod", "v1", true},
    {Kind::Service, "Service", "v1", true},
    {Kind::EndpointSlice, "EndpointSlice", "discovery.k8s.io/v1", true},
    {Kind::NetworkPolicy, "NetworkPolicy", "networking.k8s.io/v1", true},
};

const KindInfo& info(Kind k) { return kKinds[static_cast<std::size_t>(k)]; }

ObjectMeta& mutable_meta(Object& o) {
  return std::visit([](auto& x) -> ObjectMeta& { return x.meta; }, o);
}

// Equal apart from metadata.resourceVersion, which every API write bumps even when nothing
// the agent uses changed.
bool same_content(const Object& a, const Object& b) {
  if (a.index() != b.index()) return false;
  if (meta_of(a).resource_version == meta_of(b).resource_version) return a == b;
  Object x = a, y = b;
  mutable_meta(x).resource_version.clear();
  mutable_meta(y).resource_version.clear();
  return x == y;
}

}  // namespace

uint8_t ip_protocol(Protocol p) {
  switch (p) {
    case Protocol::UDP: return IPPROTO_UDP;
    case Protocol::SCTP: return IPPROTO_SCTP;
    case Protocol::TCP: break;
  }
  return IPPROTO_TCP;
}

std::string_view protocol_name(Protocol p) {
  switch (p) {
    case Protocol::UDP: return "UDP";
    case Protocol::SCTP: return "SCTP";
    case Protocol::TCP: break;
  }
  return "TCP";
}

std::string_view kind_name(Kind k) { return info(k).name; }
std::string_view api_version_of(Kind k) { return info(k).api_version; }
bool namespaced(Kind k) { return info(k).namespaced; }

std::optional<Kind> kind_from_name(std::string_view name) {
  for (const auto& k : kKinds)
    if (k.name == name) return k.kind;
  return std::nullopt;
}

std::string ObjectKey::str() const {
  std::string out(kind_name(kind));
  out += ' ';
  if (!ns.empty()) out += ns + "/";
  return out + name;
}

Kind kind_of(const Object& o) { return static_cast<Kind>(o.index()); }
const ObjectMeta& meta_of(const Object& o) {
  return std::visit([](const auto& x) -> const ObjectMeta& { return x.meta; }, o);
}
ObjectKey key_of(const Object& o) {
  const ObjectMeta& m = meta_of(o);
  return ObjectKey{kind_of(o), m.ns, m.name};
}

bool LabelSelector::matches(const Labels& labels) const {
  for (const auto& [k, v] : match_labels) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  for (const auto& req : match_expressions) {
    auto it = labels.find(req.key);
    bool has = it != labels.end();
    bool listed = has && std::find(req.values.begin(), req.values.end(), it->second) != req.values.end();
    using Op = LabelSelectorRequirement::Operator;
    switch (req.op) {
      case Op::In: if (!listed) return false; break;
      case Op::NotIn: if (listed) return false; break;
      case Op::Exists: if (!has) return false; break;
      case Op::DoesNotExist: if (has) return false; break;
    }
  }
  return true;
}

bool NetworkPolicy::isolates_ingress() const {
  if (!policy_types_given) return true;
  return std::find(policy_types.begin(), policy_types.end(), PolicyType::Ingress) != policy_types.end();
}

bool NetworkPolicy::isolates_egress() const {
  if (!policy_types_given) return !egress.empty();
  return std::find(policy_types.begin(), policy_types.end(), PolicyType::Egress) != policy_types.end();
}

// ---------------------------------------------------------------------------------------
// ClusterState

bool ClusterState::replace_all(std::vector<Object> objects) {
  std::map<ObjectKey, Object> next;
  for (auto& o : objects) {
    ObjectKey key = key_of(o);
    next.insert_or_assign(std::move(key), std::move(o));  // a later duplicate wins
  }
  bool changed = next.size() != objects_.size() ||
                 !std::equal(next.begin(), next.end(), objects_.begin(), [](const auto& a, const auto& b) {
                   return a.first == b.first && same_content(a.second, b.second);
                 });
  objects_ = std::move(next);
  if (changed) ++revision_;
  return changed;
}

bool ClusterState::upsert(Object object) {
  ObjectKey key = key_of(object);
  auto it = objects_.find(key);
  if (it == objects_.end()) {
    objects_.emplace(std::move(key), std::move(object));
    ++revision_;
    return true;
  }
  bool changed = !same_content(it->second, object);
  it->second = std::move(object);
  if (changed) ++revision_;
  return changed;
}

bool ClusterState::erase(const ObjectKey& key) {
  if (objects_.erase(key) == 0) return false;
  ++revision_;
  return true;
}

const Object* ClusterState::find(const ObjectKey& key) const {
  auto it = objects_.find(key);
  return it == objects_.end() ? nullptr : &it->second;
}

template <typename T>
const T* ClusterState::typed(Kind kind, std::string_view ns, std::string_view name) const {
  const Object* o = find(ObjectKey{kind, std::string(ns), std::string(name)});
  return o ? std::get_if<T>(o) : nullptr;
}

template <typename T>
std::vector<const T*> ClusterState::all_of(Kind kind) const {
  std::vector<const T*> out;
  // Keys sort by kind first: one kind is one contiguous range.
  for (auto it = objects_.lower_bound(ObjectKey{kind, "", ""}); it != objects_.end() && it->first.kind == kind; ++it)
    out.push_back(&std::get<T>(it->second));
  return out;
}

const Node* ClusterState::node(std::string_view name) const { return typed<Node>(Kind::Node, "", name); }
const Namespace* ClusterState::namespace_named(std::string_view name) const {
  return typed<Namespace>(Kind::Namespace, "", name);
}
const Pod* ClusterState::pod(std::string_view ns, std::string_view name) const { return typed<Pod>(Kind::Pod, ns, name); }
const Service* ClusterState::service(std::string_view ns, std::string_view name) const {
  return typed<Service>(Kind::Service, ns, name);
}

std::vector<const Node*> ClusterState::nodes() const { return all_of<Node>(Kind::Node); }
std::vector<const Namespace*> ClusterState::namespaces() const { return all_of<Namespace>(Kind::Namespace); }
std::vector<const Pod*> ClusterState::pods() const { return all_of<Pod>(Kind::Pod); }
std::vector<const Service*> ClusterState::services() const { return all_of<Service>(Kind::Service); }
std::vector<const EndpointSlice*> ClusterState::endpoint_slices() const {
  return all_of<EndpointSlice>(Kind::EndpointSlice);
}
std::vector<const NetworkPolicy*> ClusterState::network_policies() const {
  return all_of<NetworkPolicy>(Kind::NetworkPolicy);
}

std::vector<const Pod*> ClusterState::pods_on_node(std::string_view node_name) const {
  std::vector<const Pod*> out;
  for (const Pod* p : pods())
    if (p->node_name == node_name) out.push_back(p);
  return out;
}

std::vector<const EndpointSlice*> ClusterState::endpoint_slices_of(std::string_view ns,
                                                                   std::string_view service_name) const {
  std::vector<const EndpointSlice*> out;
  for (const EndpointSlice* s : endpoint_slices())
    if (s->meta.ns == ns && s->service_name == service_name) out.push_back(s);
  return out;
}

std::vector<Object> ClusterState::objects() const {
  std::vector<Object> out;
  out.reserve(objects_.size());
  for (const auto& [key, o] : objects_) out.push_back(o);
  return out;
}

std::vector<KindCount> ClusterState::counts() const {
  std::vector<KindCount> out;
  for (Kind k : kAllKinds) out.push_back(KindCount{k, 0});
  for (const auto& [key, o] : objects_) ++out[static_cast<std::size_t>(key.kind)].count;
  return out;
}

}  // namespace ferry::model
