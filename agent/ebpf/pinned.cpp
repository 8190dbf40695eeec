// Read access to a node's pinned maps: what ferryctl and the tests see, and what the backend's
// installed_endpoints() and stats() are built from.
#include <dirent.h>
#include <arpa/inet.h>
#include <net/if.h>

#include <fstream>

#include "agent/ebpf/internal.h"

namespace ferry::ebpf {

using detail::Fd;

static std::string pin_path(const std::string& root, const char* name) { return root + "/" + name; }

bool PinnedMaps::exists(const std::string& root) {
  return detail::path_exists(pin_path(root, FERRY_MAP_ENDPOINTS));
}

PinnedMaps PinnedMaps::open(const std::string& root) {
  if (!exists(root))
    throw EbpfError("no ferry maps under " + root + " (is the agent running in eBPF mode on this node?)");
  PinnedMaps maps;
  maps.root_ = root;
  auto open_one = [&](const char* name) {
    Fd fd = detail::open_pinned(pin_path(root, name));
    if (!fd.valid()) throw EbpfError("incomplete ferry pins under " + root + ": " + name + " is missing");
    return fd.release();  // owned by `maps` from here (closed in close_all)
  };
  maps.ep_fd_ = open_one(FERRY_MAP_ENDPOINTS);
  maps.ct_fd_ = open_one(FERRY_MAP_CT);
  maps.ctr_fd_ = open_one(FERRY_MAP_COUNTERS);
  maps.ev_fd_ = open_one(FERRY_MAP_EVENTS);
  // The overlay maps came later (issue 4): pins of an older build lack them.
  maps.tun_fd_ = detail::open_pinned(pin_path(root, FERRY_MAP_TUNNELS)).release();
  maps.cfg_fd_ = detail::open_pinned(pin_path(root, FERRY_MAP_CONFIG)).release();
  // Policy (issue 5) likewise.
  maps.ipc_fd_ = detail::open_pinned(pin_path(root, FERRY_MAP_IPCACHE)).release();
  maps.pol_fd_ = detail::open_pinned(pin_path(root, FERRY_MAP_POLICY)).release();
  // Services (issue 6) likewise.
  const char* lb[] = {FERRY_MAP_SERVICES, FERRY_MAP_SLOTS,    FERRY_MAP_BACKENDS,   FERRY_MAP_REVNAT,
                      FERRY_MAP_AFFINITY, FERRY_MAP_MAGLEV, FERRY_MAP_SOCK_REVNAT};
  for (size_t i = 0; i < maps.lb_fd_.size(); ++i) maps.lb_fd_[i] = detail::open_pinned(pin_path(root, lb[i])).release();
  return maps;
}

PinnedMaps::PinnedMaps(PinnedMaps&& o) noexcept
    : root_(std::move(o.root_)),
      ep_fd_(std::exchange(o.ep_fd_, -1)),
      ct_fd_(std::exchange(o.ct_fd_, -1)),
      ctr_fd_(std::exchange(o.ctr_fd_, -1)),
      ev_fd_(std::exchange(o.ev_fd_, -1)),
      tun_fd_(std::exchange(o.tun_fd_, -1)),
      cfg_fd_(std::exchange(o.cfg_fd_, -1)),
      ipc_fd_(std::exchange(o.ipc_fd_, -1)),
      pol_fd_(std::exchange(o.pol_fd_, -1)),
      lb_fd_(std::exchange(o.lb_fd_, {-1, -1, -1, -1, -1, -1, -1})) {}

PinnedMaps& PinnedMaps::operator=(PinnedMaps&& o) noexcept {
  if (this != &o) {
    close_all();
    root_ = std::move(o.root_);
    ep_fd_ = std::exchange(o.ep_fd_, -1);
    ct_fd_ = std::exchange(o.ct_fd_, -1);
    ctr_fd_ = std::exchange(o.ctr_fd_, -1);
    ev_fd_ = std::exchange(o.ev_fd_, -1);
    tun_fd_ = std::exchange(o.tun_fd_, -1);
    cfg_fd_ = std::exchange(o.cfg_fd_, -1);
    ipc_fd_ = std::exchange(o.ipc_fd_, -1);
    pol_fd_ = std::exchange(o.pol_fd_, -1);
    lb_fd_ = std::exchange(o.lb_fd_, {-1, -1, -1, -1, -1, -1, -1});
  }
  return *this;
}

PinnedMaps::~PinnedMaps() { close_all(); }

void PinnedMaps::close_all() {
  for (int* fd : {&ep_fd_, &ct_fd_, &ctr_fd_, &ev_fd_, &tun_fd_, &cfg_fd_, &ipc_fd_, &pol_fd_}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  for (int& fd : lb_fd_) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

// The kind of a bpf fd, from /proc/self/fdinfo (maps show map_type, programs prog_type).
static std::string fd_kind(int fd) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(fd));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("map_type:", 0) == 0) return "map";
    if (line.rfind("prog_type:", 0) == 0) return "program";
  }
  return "other";
}

std::vector<PinInfo> PinnedMaps::pins() const {
  std::vector<PinInfo> out;
  DIR* dir = ::opendir(root_.c_str());
  if (!dir) return out;
  while (dirent* de = ::readdir(dir)) {
    std::string name = de->d_name;
    if (name == "." || name == "..") continue;
    PinInfo pin;
    pin.name = name;
    Fd fd(bpf_obj_get((root_ + "/" + name).c_str()));
    if (fd.valid()) {
      pin.kind = fd_kind(fd.get());
      if (pin.kind == "map") {
        detail::MapInfo info = detail::map_info(fd.get());
        pin.id = info.id;
        pin.object_name = info.name;
      } else if (pin.kind == "program") {
        detail::ProgInfo info = detail::prog_info(fd.get());
        pin.id = info.id;
        pin.object_name = info.name;
      }
    } else {
      pin.kind = "other";
    }
    out.push_back(pin);
  }
  ::closedir(dir);
  std::sort(out.begin(), out.end(), [](const PinInfo& a, const PinInfo& b) { return a.name < b.name; });
  return out;
}

static bool ip_less(const net::Ip& a, const net::Ip& b) {
  if (a.family != b.family) return a.family < b.family;
  return a.bytes < b.bytes;
}

std::vector<EndpointEntry> PinnedMaps::endpoints() const {
  std::vector<EndpointEntry> out;
  for (const ferry_endpoint_key& key : detail::map_keys<ferry_endpoint_key>(ep_fd_)) {
    ferry_endpoint_value value{};
    if (bpf_map_lookup_elem(ep_fd_, &key, &value) != 0) continue;  // deleted meanwhile
    EndpointEntry e;
    e.ip = detail::ip_from(key.family, key.addr);
    e.endpoint_id = value.endpoint_id;
    e.ifindex = static_cast<int>(value.ifindex);
    char name[IF_NAMESIZE] = {};
    if (value.ifindex != 0 && ::if_indextoname(value.ifindex, name)) e.ifname = name;
    std::copy(std::begin(value.pod_mac), std::end(value.pod_mac), e.pod_mac.begin());
    std::copy(std::begin(value.host_mac), std::end(value.host_mac), e.host_mac.begin());
    e.flags = value.flags;
    out.push_back(std::move(e));
  }
  std::sort(out.begin(), out.end(), [](const EndpointEntry& a, const EndpointEntry& b) {
    if (a.endpoint_id != b.endpoint_id) return a.endpoint_id < b.endpoint_id;
    return ip_less(a.ip, b.ip);
  });
  return out;
}

ConntrackEntry detail::decode_conntrack(const ferry_ct_key& key, const ferry_ct_value& value, uint64_t now_ns) {
  ConntrackEntry c;
  c.family = key.family;
  c.proto = key.proto;
  c.src = detail::ip_from(key.family, key.saddr);
  c.dst = detail::ip_from(key.family, key.daddr);
  c.sport = ntohs(key.sport);
  c.dport = ntohs(key.dport);
  c.state = value.state;
  c.packets_fwd = value.packets_fwd;
  c.bytes_fwd = value.bytes_fwd;
  c.packets_rev = value.packets_rev;
  c.bytes_rev = value.bytes_rev;
  c.tcp_flags_fwd = value.tcp_flags_fwd;
  c.tcp_flags_rev = value.tcp_flags_rev;
  c.src_endpoint = value.src_endpoint;
  c.lifetime_s = value.lifetime_s;
  c.created_ns = value.created_ns;
  c.last_seen_ns = value.last_seen_ns;
  auto secs = [](int64_t ns) { return static_cast<double>(ns) / 1e9; };
  c.age_s = secs(static_cast<int64_t>(now_ns - value.created_ns));
  c.idle_s = secs(static_cast<int64_t>(now_ns - value.last_seen_ns));
  c.expires_in_s = static_cast<double>(value.lifetime_s) - c.idle_s;
  return c;
}

std::vector<ConntrackEntry> PinnedMaps::conntrack() const {
  std::vector<ConntrackEntry> out;
  uint64_t now = detail::monotonic_ns();
  for (const ferry_ct_key& key : detail::map_keys<ferry_ct_key>(ct_fd_)) {
    ferry_ct_value value{};
    if (bpf_map_lookup_elem(ct_fd_, &key, &value) != 0) continue;
    out.push_back(detail::decode_conntrack(key, value, now));
  }
  return out;
}

size_t PinnedMaps::flush_conntrack() {
  size_t deleted = 0;
  for (const ferry_ct_key& key : detail::map_keys<ferry_ct_key>(ct_fd_))
    if (bpf_map_delete_elem(ct_fd_, &key) == 0) ++deleted;
  return deleted;
}

std::vector<dataplane::Counter> detail::read_counters(int fd) {
  int ncpus = libbpf_num_possible_cpus();
  if (ncpus <= 0) throw EbpfError("cannot count possible CPUs: " + detail::errstr(ncpus));
  uint32_t max = std::min<uint32_t>(detail::map_info(fd).max_entries, FERRY_CTR_MAX);
  std::vector<ferry_counter_value> percpu(static_cast<size_t>(ncpus));
  std::vector<dataplane::Counter> out;
  for (uint32_t i = 0; i < max; ++i) {
    if (bpf_map_lookup_elem(fd, &i, percpu.data()) != 0)
      throw EbpfError("failed to read counter " + std::to_string(i) + ": " + detail::errstr(errno));
    dataplane::Counter c;
    for (const ferry_counter_value& v : percpu) {
      c.packets += v.packets;
      c.bytes += v.bytes;
    }
    bool drop = i > FERRY_CTR_DROP_BASE;
    c.name = counter_name(static_cast<int>(i));
    // Named counters always show (a zero is information); unnamed slots only once used.
    bool named = !c.name.empty() && c.name.find("reason_") == std::string::npos;
    if (!named && c.packets == 0 && c.bytes == 0) continue;
    if (c.name.empty()) c.name = "counter_" + std::to_string(i);
    c.drop = drop;
    out.push_back(std::move(c));
  }
  return out;
}

std::vector<dataplane::Counter> PinnedMaps::counters() const { return detail::read_counters(ctr_fd_); }

std::map<std::string, dataplane::MapFill> detail::read_map_fill(const MapFds& fds) {
  std::map<std::string, dataplane::MapFill> out;
  auto fill = [&]<typename Key>(const char* name, int fd, Key) {
    if (fd >= 0) out[name] = {detail::map_keys<Key>(fd).size(), detail::map_info(fd).max_entries};
  };
  fill(FERRY_MAP_ENDPOINTS, fds.endpoints, ferry_endpoint_key{});
  fill(FERRY_MAP_CT, fds.conntrack, ferry_ct_key{});
  fill(FERRY_MAP_TUNNELS, fds.tunnels, ferry_tunnel_key{});
  fill(FERRY_MAP_IPCACHE, fds.ipcache, ferry_ipcache_key{});
  fill(FERRY_MAP_POLICY, fds.policy, ferry_policy_key{});
  fill(FERRY_MAP_SERVICES, fds.services.services, ferry_service_key{});
  fill(FERRY_MAP_SLOTS, fds.services.slots, ferry_slot_key{});
  fill(FERRY_MAP_BACKENDS, fds.services.backends, uint32_t{});
  fill(FERRY_MAP_REVNAT, fds.services.revnat, uint32_t{});
  fill(FERRY_MAP_AFFINITY, fds.services.affinity, ferry_affinity_key{});
  fill(FERRY_MAP_MAGLEV, fds.services.maglev, ferry_maglev_key{});
  fill(FERRY_MAP_SOCK_REVNAT, fds.sock_revnat, ferry_sock_revnat_key{});
  return out;
}

std::map<std::string, dataplane::MapFill> PinnedMaps::map_fill() const {
  const detail::ServiceMapFds lb{lb_fd_[0], lb_fd_[1], lb_fd_[2], lb_fd_[3], lb_fd_[4], lb_fd_[5]};
  return detail::read_map_fill({ep_fd_, ct_fd_, tun_fd_, ipc_fd_, pol_fd_, lb, lb_fd_[6]});
}

std::vector<dataplane::IpcacheEntry> PinnedMaps::ipcache() const { return detail::read_ipcache(ipc_fd_); }

std::vector<PolicyMapEntry> PinnedMaps::policy_entries() const { return detail::read_policy_entries(pol_fd_); }

PolicyState PinnedMaps::policy_state() const {
  ferry_config cfg{};
  uint32_t zero = 0;
  if (cfg_fd_ < 0 || bpf_map_lookup_elem(cfg_fd_, &zero, &cfg) != 0) return {};
  return {(cfg.flags & FERRY_CFG_F_POLICY) != 0, cfg.policy_rev};
}

static bool route_less(const dataplane::OverlayRoute& a, const dataplane::OverlayRoute& b) {
  if (a.pod_cidr.ip.family != b.pod_cidr.ip.family) return a.pod_cidr.ip.family < b.pod_cidr.ip.family;
  if (a.pod_cidr.ip.bytes != b.pod_cidr.ip.bytes) return a.pod_cidr.ip.bytes < b.pod_cidr.ip.bytes;
  return a.pod_cidr.len < b.pod_cidr.len;
}

dataplane::Overlay detail::read_overlay(int cfg_fd, int tun_fd) {
  dataplane::Overlay out;
  ferry_config cfg{};
  uint32_t zero = 0;
  if (cfg_fd >= 0 && bpf_map_lookup_elem(cfg_fd, &zero, &cfg) == 0 && (cfg.flags & FERRY_CFG_F_OVERLAY)) {
    out.ifindex = static_cast<int>(cfg.overlay_ifindex);
    char name[IF_NAMESIZE] = {};
    if (cfg.overlay_ifindex != 0 && ::if_indextoname(cfg.overlay_ifindex, name)) out.device = name;
    std::copy(std::begin(cfg.vtep_mac), std::end(cfg.vtep_mac), out.local_vtep_mac.begin());
  }
  if (tun_fd >= 0) {
    for (const ferry_tunnel_key& key : detail::map_keys<ferry_tunnel_key>(tun_fd)) {
      ferry_tunnel_value value{};
      if (bpf_map_lookup_elem(tun_fd, &key, &value) != 0) continue;  // deleted meanwhile
      out.routes.push_back(detail::decode_tunnel(key, value));
    }
  }
  std::sort(out.routes.begin(), out.routes.end(), route_less);
  return out;
}

dataplane::Overlay PinnedMaps::overlay() const { return detail::read_overlay(cfg_fd_, tun_fd_); }

// ---------------------------------------------------------------------------------------

DropEventReader::DropEventReader(const PinnedMaps& maps) {
  rb_ = ring_buffer__new(maps.events_fd(), &DropEventReader::on_sample, this, nullptr);
  if (!rb_)
    throw EbpfError("failed to open the drop event ring buffer under " + maps.root() + ": " +
                    detail::errstr(errno));
}

DropEventReader::~DropEventReader() {
  if (rb_) ring_buffer__free(rb_);
}

int DropEventReader::on_sample(void* ctx, void* data, size_t size) {
  auto* self = static_cast<DropEventReader*>(ctx);
  if (auto ev = decode_drop_event(data, size)) {
    ++self->seen_;
    if (self->on_event_) self->on_event_(*ev);
  }
  return 0;
}

int DropEventReader::poll(int timeout_ms, const std::function<void(const DropEvent&)>& on_event) {
  on_event_ = on_event;
  seen_ = 0;
  int err = ring_buffer__poll(rb_, timeout_ms);
  on_event_ = nullptr;
  if (err < 0 && err != -EINTR) throw EbpfError("failed to poll the drop event ring buffer: " + detail::errstr(err));
  return seen_;
}

}  // namespace ferry::ebpf
