// EndpointRegistry: endpoint records -> endpoints with stable ids.
#include "agent/registry/registry.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace ferry::registry {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string errno_text(int err) { return std::strerror(err); }

void make_dirs(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw RegistryError("failed to create directory \"" + dir + "\": " + ec.message());
}

// nullopt when the file does not exist; throws on other read errors.
std::optional<std::string> read_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    throw RegistryError("failed to read \"" + path + "\": " + errno_text(errno));
  }
  std::string data;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) > 0) data.append(buf, static_cast<size_t>(n));
  int err = errno;
  close(fd);
  if (n < 0) throw RegistryError("failed to read \"" + path + "\": " + errno_text(err));
  return data;
}

// tmp + rename, so a crash leaves the old or the new file, never half of one.
void write_file_atomic(const std::string& path, const std::string& data) {
  const std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw RegistryError("failed to write \"" + tmp + "\": " + errno_text(errno));
  ssize_t n = write(fd, data.data(), data.size());
  int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(data.size())) {
    unlink(tmp.c_str());
    throw RegistryError("failed to write \"" + tmp + "\": " + errno_text(n < 0 ? err : ENOSPC));
  }
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    unlink(tmp.c_str());
    throw RegistryError("failed to replace \"" + path + "\": " + errno_text(err));
  }
}

bool same_record(const bridge::EndpointRecord& a, const bridge::EndpointRecord& b) {
  return a.to_json() == b.to_json();
}

class NetlinkLookup : public LinkLookup {
 public:
  std::optional<net::Mac> bridge_mac(const std::string& bridge) override {
    auto link = net::find_link(socket(), bridge);
    if (!link || link->kind != "bridge") return std::nullopt;
    return link->mac;
  }
  bool link_present(int index, const std::string& name) override {
    auto link = net::find_link(socket(), index);
    return link && link->name == name;
  }

 private:
  net::Socket& socket() {
    if (!sock_) sock_.emplace(net::Socket::open());
    return *sock_;
  }
  std::optional<net::Socket> sock_;
};

constexpr const char* kIdsFile = "endpoint-ids.json";

}  // namespace

std::unique_ptr<LinkLookup> make_netlink_lookup() { return std::make_unique<NetlinkLookup>(); }

void sort_ips(std::vector<net::Ip>& ips) {
  std::sort(ips.begin(), ips.end(), [](const net::Ip& a, const net::Ip& b) {
    if (a.family != b.family) return a.family == AF_INET;
    return a.bytes < b.bytes;
  });
}

dataplane::Endpoint endpoint_from_record(const bridge::EndpointRecord& rec, uint32_t endpoint_id,
                                         const net::Mac& host_mac) {
  const std::string who = "endpoint record " + rec.container_id + "/" + rec.ifname;
  if (rec.container_id.empty() || rec.ifname.empty())
    throw RegistryError("endpoint record without \"containerID\" or \"ifname\"");
  if (rec.host_veth.empty() || rec.host_veth_index <= 0)
    throw RegistryError(who + ": \"hostVeth\" and a positive \"hostVethIndex\" are required");
  if (rec.bridge.empty()) throw RegistryError(who + ": \"bridge\" is required");
  dataplane::Endpoint ep;
  ep.endpoint_id = endpoint_id;
  ep.host_veth = rec.host_veth;
  ep.host_ifindex = rec.host_veth_index;
  auto mac = net::parse_mac(rec.container_mac);
  if (!mac) throw RegistryError(who + ": \"containerMAC\" is not a MAC address: \"" + rec.container_mac + "\"");
  ep.pod_mac = *mac;
  ep.host_mac = host_mac;
  for (const std::string& cidr : rec.ips) {
    auto prefix = net::Prefix::parse(cidr);
    if (!prefix) throw RegistryError(who + ": \"ips\" holds \"" + cidr + "\", not an address/prefix");
    ep.ips.push_back(prefix->ip);
  }
  sort_ips(ep.ips);
  ep.ips.erase(std::unique(ep.ips.begin(), ep.ips.end()), ep.ips.end());
  return ep;
}

bool is_record_file_name(const std::string& name) {
  return name.size() > 5 && name.ends_with(".json") && name.find('/') == std::string::npos &&
         name.front() != '.' && name.find('\0') == std::string::npos;
}

EndpointRegistry::EndpointRegistry(std::string endpoint_dir, std::string state_dir, std::unique_ptr<LinkLookup> links)
    : endpoint_dir_(std::move(endpoint_dir)), state_dir_(std::move(state_dir)), links_(std::move(links)) {
  make_dirs(endpoint_dir_);
  make_dirs(state_dir_);
  load_ids();
  inotify_fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (inotify_fd_ < 0) throw RegistryError(std::string("inotify_init1 failed: ") + errno_text(errno));
  add_watch();
}

EndpointRegistry::~EndpointRegistry() {
  if (inotify_fd_ >= 0) close(inotify_fd_);
}

void EndpointRegistry::add_watch() {
  // Records appear by rename (IN_MOVED_TO) and go by unlink (IN_DELETE); IN_CLOSE_WRITE covers
  // a writer that does not rename.
  watch_ = inotify_add_watch(inotify_fd_, endpoint_dir_.c_str(),
                             IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF |
                                 IN_MOVE_SELF | IN_ONLYDIR);
  if (watch_ < 0)
    throw RegistryError("failed to watch \"" + endpoint_dir_ + "\" with inotify: " + errno_text(errno));
}

void EndpointRegistry::load_ids() {
  const std::string path = state_dir_ + "/" + kIdsFile;
  auto data = read_file(path);
  if (!data) return;
  json j = json::parse(*data, nullptr, false);
  if (!j.is_object() || !j.contains("ids") || !j["ids"].is_object()) {
    // Losing ids costs one reprogram of every endpoint, not correctness: start afresh.
    spdlog::warn("ignoring malformed endpoint id file \"{}\"", path);
    return;
  }
  for (auto& [name, id] : j["ids"].items())
    if (id.is_number_unsigned() && id.get<uint64_t>() > 0 && id.get<uint64_t>() <= UINT32_MAX)
      ids_[name] = id.get<uint32_t>();
  if (j.contains("next") && j["next"].is_number_unsigned()) next_id_ = j["next"].get<uint32_t>();
  if (next_id_ == 0) next_id_ = 1;
}

void EndpointRegistry::save_ids() {
  json ids = json::object();
  for (const auto& [name, id] : ids_) ids[name] = id;
  write_file_atomic(state_dir_ + "/" + kIdsFile, json{{"next", next_id_}, {"ids", ids}}.dump(2) + "\n");
}

uint32_t EndpointRegistry::allocate_id(const std::string& file_name) {
  if (auto it = ids_.find(file_name); it != ids_.end()) return it->second;
  std::vector<uint32_t> used;
  for (const auto& [name, id] : ids_) used.push_back(id);
  std::sort(used.begin(), used.end());
  // Monotonic (wrapping, never 0), so a freed id is not handed out again soon.
  uint32_t id = next_id_;
  while (id == 0 || std::binary_search(used.begin(), used.end(), id)) ++id;
  next_id_ = id + 1 == 0 ? 1 : id + 1;
  ids_[file_name] = id;
  save_ids();
  return id;
}

std::optional<bridge::EndpointRecord> EndpointRegistry::read_record(const std::string& file_name,
                                                                    std::string* problem) {
  const std::string path = endpoint_dir_ + "/" + file_name;
  std::optional<std::string> data;
  try {
    data = read_file(path);
  } catch (const RegistryError& e) {
    *problem = e.what();
    return std::nullopt;
  }
  if (!data) return std::nullopt;
  json j = json::parse(*data, nullptr, false);
  if (j.is_discarded()) {
    *problem = "endpoint record \"" + path + "\" is not valid JSON";
    return std::nullopt;
  }
  auto rec = bridge::EndpointRecord::from_json(j);
  if (!rec) {
    *problem = "endpoint record \"" + path + "\" has fields of the wrong type";
    return std::nullopt;
  }
  try {
    endpoint_from_record(*rec, 1, net::Mac{});  // validates every field the endpoint needs
  } catch (const RegistryError& e) {
    *problem = "endpoint record \"" + path + "\": " + e.what();
    return std::nullopt;
  }
  return rec;
}

size_t EndpointRegistry::load_all() {
  std::vector<std::string> names;
  std::error_code ec;
  for (fs::directory_iterator it(endpoint_dir_, ec), end; !ec && it != end; it.increment(ec)) {
    std::string name = it->path().filename().string();
    if (is_record_file_name(name)) names.push_back(name);
  }
  if (ec) throw RegistryError("failed to list \"" + endpoint_dir_ + "\": " + ec.message());
  std::sort(names.begin(), names.end());  // ids of a fresh node follow file order: reproducible
  for (const std::string& name : names) reload(name);
  // Records that vanished while we were not looking.
  std::vector<std::string> gone;
  for (const auto& [name, entry] : records_)
    if (!std::binary_search(names.begin(), names.end(), name)) gone.push_back(name);
  for (const std::string& name : gone) reload(name);
  for (auto it = bad_records_.begin(); it != bad_records_.end();)
    it = std::binary_search(names.begin(), names.end(), it->first) ? std::next(it) : bad_records_.erase(it);
  // Ids of records that no longer exist (removed while the agent was down) are released.
  bool pruned = false;
  for (auto it = ids_.begin(); it != ids_.end();) {
    if (records_.count(it->first) || bad_records_.count(it->first)) {
      ++it;
    } else {
      it = ids_.erase(it);
      pruned = true;
    }
  }
  if (pruned) save_ids();
  return records_.size();
}

EndpointRegistry::Change EndpointRegistry::reload(const std::string& file_name) {
  if (!is_record_file_name(file_name)) {
    spdlog::warn("ignoring endpoint record name \"{}\": not a <containerID>-<ifname>.json file name", file_name);
    return Change::kInvalid;
  }
  std::string problem;
  auto rec = read_record(file_name, &problem);
  auto it = records_.find(file_name);
  if (!problem.empty()) {
    if (bad_records_[file_name] != problem) spdlog::error("skipping {}", problem);
    bad_records_[file_name] = problem;
    return Change::kInvalid;
  }
  bad_records_.erase(file_name);
  if (!rec) {
    link_problems_.erase(file_name);
    if (it == records_.end()) return Change::kUnchanged;
    spdlog::info("endpoint {} removed ({})", it->second.id, file_name);
    records_.erase(it);
    ids_.erase(file_name);
    save_ids();
    return Change::kRemoved;
  }
  if (it != records_.end()) {
    if (same_record(it->second.record, *rec)) return Change::kUnchanged;
    it->second.record = std::move(*rec);
    spdlog::info("endpoint {} updated ({})", it->second.id, file_name);
    return Change::kUpdated;
  }
  uint32_t id = allocate_id(file_name);
  spdlog::info("endpoint {} added ({}, pod {}/{}, veth {})", id, file_name, rec->pod_namespace, rec->pod_name,
               rec->host_veth);
  records_.emplace(file_name, Entry{std::move(*rec), id});
  return Change::kAdded;
}

std::optional<dataplane::Endpoint> EndpointRegistry::desired_one(const std::string& file_name) {
  auto it = records_.find(file_name);
  if (it == records_.end()) return std::nullopt;
  const bridge::EndpointRecord& rec = it->second.record;
  auto mac = links_->bridge_mac(rec.bridge);
  std::string problem;
  if (!mac)
    problem = "bridge \"" + rec.bridge + "\" of endpoint record \"" + file_name + "\" does not exist";
  else if (!links_->link_present(rec.host_veth_index, rec.host_veth))
    problem = "host veth \"" + rec.host_veth + "\" (index " + std::to_string(rec.host_veth_index) +
              ") of endpoint record \"" + file_name + "\" does not exist";
  if (!problem.empty()) {
    link_problems_[file_name] = problem;
    throw RegistryError(problem);
  }
  link_problems_.erase(file_name);
  return endpoint_from_record(rec, it->second.id, *mac);
}

std::vector<dataplane::Endpoint> EndpointRegistry::desired() {
  std::vector<dataplane::Endpoint> out;
  for (const auto& [name, entry] : records_) {
    try {
      if (auto ep = desired_one(name)) out.push_back(std::move(*ep));
    } catch (const RegistryError& e) {
      spdlog::debug("leaving out endpoint {}: {}", entry.id, e.what());
    }
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.endpoint_id < b.endpoint_id; });
  return out;
}

uint32_t EndpointRegistry::id_of(const std::string& file_name) const {
  auto it = records_.find(file_name);
  return it == records_.end() ? 0 : it->second.id;
}

std::vector<EndpointRegistry::PodEndpoint> EndpointRegistry::pod_endpoints() const {
  std::vector<PodEndpoint> out;
  for (const auto& [name, entry] : records_) {
    PodEndpoint p{entry.id, entry.record.pod_namespace, entry.record.pod_name, {}};
    for (const std::string& cidr : entry.record.ips)
      if (auto prefix = net::Prefix::parse(cidr)) p.ips.push_back(prefix->ip);  // validated on read
    sort_ips(p.ips);
    p.ips.erase(std::unique(p.ips.begin(), p.ips.end()), p.ips.end());
    out.push_back(std::move(p));
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.endpoint_id < b.endpoint_id; });
  return out;
}

std::vector<std::string> EndpointRegistry::problems() const {
  std::vector<std::string> out;
  for (const auto& [name, why] : bad_records_) out.push_back(why);
  for (const auto& [name, why] : link_problems_) out.push_back(why);
  return out;
}

std::vector<std::string> EndpointRegistry::read_watch_events() {
  std::vector<std::string> names;
  bool rewatch = false;
  alignas(inotify_event) char buf[8192];
  for (;;) {
    ssize_t n = read(inotify_fd_, buf, sizeof buf);
    if (n <= 0) break;
    for (char* p = buf; p < buf + n;) {
      auto* ev = reinterpret_cast<inotify_event*>(p);
      p += sizeof(inotify_event) + ev->len;
      if (ev->mask & IN_Q_OVERFLOW) {  // events were lost: re-read everything
        names.assign({"*"});
        continue;
      }
      if (ev->wd != watch_) continue;  // IN_IGNORED of a watch we already replaced
      if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF | IN_IGNORED)) {
        rewatch = true;
        names.assign({"*"});
        continue;
      }
      if (ev->len == 0) continue;
      std::string name = ev->name;
      if (!is_record_file_name(name)) continue;
      if (names.empty() || names.front() != "*")
        if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
    }
  }
  if (rewatch) {
    spdlog::warn("endpoint directory \"{}\" went away; re-creating it", endpoint_dir_);
    if (watch_ >= 0) inotify_rm_watch(inotify_fd_, watch_);  // IN_MOVE_SELF leaves it attached
    make_dirs(endpoint_dir_);
    add_watch();
  }
  if (!names.empty() && names.front() == "*") names.assign({"*"});
  return names;
}

}  // namespace ferry::registry
