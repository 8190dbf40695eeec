// The eBPF Dataplane: pinned maps + tc programs on each pod's host-side veth.
//
// What lives where:
//   start()               bpffs, the node root, maps (reused by pin), programs (reused by build hash,
//                         or loaded, pinned and swapped into every endpoint's filter)
//   installed_endpoints() ferry_ep_v1 grouped by endpoint id + a tc query per side
//   program_endpoint()    entries (unflagged) -> clsact + filters -> FERRY_EP_F_PROGRAMMED
//   program_overlay()     from-overlay on the VXLAN device's ingress -> ferry_cfg_v3 (overlay
//                         part) -> the ferry_tun_v1 diff (only what differs is written)
//   program_policy()      ferry_ipc_v1/ferry_pol_v1 diff (policy_maps.cpp) -> ferry_cfg_v3
//                         policy flag + revision bump
//   program_services()    masquerade rule for marked NodePort traffic (lb_masquerade.cpp) ->
//                         service maps diff (service_maps.cpp) -> ferry_cfg_v3 service part ->
//                         uplink programs on the NodePort devices
//   maintain()            conntrack GC that never removes an entry traffic just refreshed
#include <dirent.h>
#include <net/if.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdarg>
#include <cstddef>
#include <cstdio>
#include <optional>
#include <set>
#include <unordered_map>

#include "agent/ebpf/internal.h"
#include "agent/ebpf/sock_lb.h"
#include "ferry_lxc.skel.h"

namespace ferry::ebpf {

using detail::Fd;

static constexpr const char* kFromPodPin = "prog_from_pod_";
static constexpr const char* kToPodPin = "prog_to_pod_";
static constexpr const char* kFromOverlayPin = "prog_from_overlay_";
static constexpr const char* kFromUplinkPin = "prog_from_uplink_";
static constexpr const char* kToUplinkPin = "prog_to_uplink_";
static constexpr const char* kUplinkProgPrefix = "ferry_from_upli";  // kernel names: 15 characters
static constexpr const char* kToUplinkProgPrefix = "ferry_to_uplink";

std::string embedded_program_hash() {
  size_t size = 0;
  const auto* bytes = static_cast<const char*>(ferry_lxc__elf_bytes(&size));
  const uint64_t h = net::stable_hash64(std::string_view(bytes, size));  // names the pinned programs
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(h));
  return text;
}

// libbpf's messages go to the agent's log: warnings (verifier output on a failed load) as
// warnings, the rest at debug.
static int libbpf_log(enum libbpf_print_level level, const char* format, va_list args) {
  char buf[4096];
  int n = std::vsnprintf(buf, sizeof(buf), format, args);
  std::string text(buf, n > 0 ? std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1) : 0);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  if (level == LIBBPF_WARN)
    spdlog::warn("libbpf: {}", text);
  else
    spdlog::debug("libbpf: {}", text);
  return 0;
}

static bool ip_less(const net::Ip& a, const net::Ip& b) {
  if (a.family != b.family) return a.family < b.family;
  return a.bytes < b.bytes;
}

static std::string ifname_of(int ifindex) {
  char name[IF_NAMESIZE] = {};
  if (ifindex > 0 && ::if_indextoname(static_cast<unsigned>(ifindex), name)) return name;
  return "";
}

static bool same_value(const ferry_endpoint_value& a, const ferry_endpoint_value& b) {
  return std::memcmp(&a, &b, sizeof(a)) == 0;
}

class EbpfDataplane final : public dataplane::Dataplane {
 public:
  explicit EbpfDataplane(EbpfConfig config) : cfg_(std::move(config)) {
    if (cfg_.bpffs_root.empty()) throw EbpfError("eBPF backend: empty bpffs root");
    while (cfg_.bpffs_root.size() > 1 && cfg_.bpffs_root.back() == '/') cfg_.bpffs_root.pop_back();
    if (cfg_.gc_batch == 0) cfg_.gc_batch = 1;
    if (cfg_.lb_algorithm != "random" && cfg_.lb_algorithm != "maglev")
      throw EbpfError("eBPF backend: unknown lb algorithm \"" + cfg_.lb_algorithm + "\" (random or maglev)");
    if (cfg_.service_loopback4.family != AF_INET || cfg_.service_loopback6.family != AF_INET6)
      throw EbpfError("eBPF backend: the service loopback addresses must be one IPv4 and one IPv6 address");
    libbpf_set_print(libbpf_log);
  }

  std::string name() const override { return "ebpf"; }

  void start() override {
    if (ensure_bpffs()) ++writes_;
    make_root();
    hash_ = cfg_.program_hash_override.empty() ? embedded_program_hash() : cfg_.program_hash_override;
    if (!open_current()) {
      load_and_pin();
      if (!open_current()) throw EbpfError("eBPF backend: pins under " + cfg_.bpffs_root + " vanished after loading");
      migrate_config();
      migrate_conntrack(false);  // before the swap: the new programs find the flows
      replace_outdated_programs();
      migrate_conntrack(true);   // what the old programs created meanwhile; then unpinned
      unpin_old_programs();
    }
    // Normally done above; here for a start that died right after loading.
    migrate_config();
    migrate_conntrack(true);
    netns_cookie_ = current_netns_cookie();
    index_valid_ = false;
    started_ = true;
    sync_uplinks(true);
    // The pods' datapath does not depend on the socket LB: a failure here is retried (and
    // reported) by program_services.
    sock_lb_pending_ = cfg_.socket_lb;
    try {
      attach_socket_lb();
    } catch (const EbpfError& e) {
      spdlog::error("ebpf: socket load-balancing for the node's processes: {}", e.what());
    }
  }

  std::vector<dataplane::Endpoint> installed_endpoints() override {
    require_started();
    std::map<uint32_t, dataplane::Endpoint> by_id;
    std::map<uint32_t, ferry_endpoint_value> first_value;
    index_.clear();
    for (const ferry_endpoint_key& key : detail::map_keys<ferry_endpoint_key>(ep_.get())) {
      ferry_endpoint_value value{};
      if (bpf_map_lookup_elem(ep_.get(), &key, &value) != 0) continue;
      net::Ip ip = detail::ip_from(key.family, key.addr);
      index_[value.endpoint_id].push_back(ip);
      auto [it, inserted] = by_id.try_emplace(value.endpoint_id);
      dataplane::Endpoint& ep = it->second;
      ep.ips.push_back(ip);
      if (inserted) {
        first_value[value.endpoint_id] = value;
        ep.endpoint_id = value.endpoint_id;
        ep.host_ifindex = static_cast<int>(value.ifindex);
        std::copy(std::begin(value.pod_mac), std::end(value.pod_mac), ep.pod_mac.begin());
        std::copy(std::begin(value.host_mac), std::end(value.host_mac), ep.host_mac.begin());
      }
      // Entries of one endpoint that disagree, or one not yet flagged: half-programmed.
      ferry_endpoint_value want = first_value[value.endpoint_id];
      want.flags |= FERRY_EP_F_PROGRAMMED;
      if (!same_value(value, want)) ep.complete = false;
    }
    index_valid_ = true;

    std::vector<dataplane::Endpoint> out;
    for (auto& [id, ep] : by_id) {
      std::sort(ep.ips.begin(), ep.ips.end(), ip_less);
      ep.host_veth = ifname_of(ep.host_ifindex);
      if (ep.host_veth.empty() || !filters_current(ep.host_ifindex)) ep.complete = false;
      out.push_back(std::move(ep));
    }
    return out;
  }

  void program_endpoint(const dataplane::Endpoint& want) override {
    require_started();
    std::string what = "endpoint " + std::to_string(want.endpoint_id) + " (" + want.host_veth + ")";
    if (want.endpoint_id == 0) throw EbpfError("cannot program " + what + ": endpoint id 0");
    if (want.ips.empty()) throw EbpfError("cannot program " + what + ": no IP addresses");
    std::string actual = ifname_of(want.host_ifindex);
    if (actual.empty())
      throw EbpfError("cannot program " + what + ": ifindex " + std::to_string(want.host_ifindex) + " does not exist");
    if (!want.host_veth.empty() && actual != want.host_veth)
      throw EbpfError("cannot program " + what + ": ifindex " + std::to_string(want.host_ifindex) + " is " + actual);
    ensure_index();

    ferry_endpoint_value flagged{};
    flagged.ifindex = static_cast<uint32_t>(want.host_ifindex);
    flagged.endpoint_id = want.endpoint_id;
    std::copy(want.pod_mac.begin(), want.pod_mac.end(), flagged.pod_mac);
    std::copy(want.host_mac.begin(), want.host_mac.end(), flagged.host_mac);
    flagged.flags = FERRY_EP_F_PROGRAMMED;
    ferry_endpoint_value unflagged = flagged;
    unflagged.flags = 0;

    // 1. New IPs first, not yet flagged: the source check of from-pod needs them before the
    //    program runs, and the datapath treats them as not ready until the last step.
    std::vector<ferry_endpoint_key> to_flag;
    for (const net::Ip& ip : want.ips) {
      ferry_endpoint_key key = detail::endpoint_key(ip);
      ferry_endpoint_value have{};
      bool present = bpf_map_lookup_elem(ep_.get(), &key, &have) == 0;
      if (present && same_value(have, flagged)) continue;
      if (!present || have.endpoint_id != want.endpoint_id) update_endpoint(key, unflagged, what);
      to_flag.push_back(key);
    }
    // 2. Programs on both sides of the veth (replaced in place when outdated).
    attach_programs(want.host_ifindex, what);
    // 3. Enforced: flag (or correct) the entries.
    for (const ferry_endpoint_key& key : to_flag) update_endpoint(key, flagged, what);
    // 4. IPs this endpoint no longer has.
    std::vector<net::Ip>& known = index_[want.endpoint_id];
    for (const net::Ip& ip : known) {
      if (std::find(want.ips.begin(), want.ips.end(), ip) != want.ips.end()) continue;
      delete_endpoint_ip(ip, want.endpoint_id, what);
    }
    known = want.ips;
  }

  void remove_endpoint(const dataplane::Endpoint& have) override {
    require_started();
    std::string what = "endpoint " + std::to_string(have.endpoint_id) + " (" + have.host_veth + ")";
    ensure_index();
    std::vector<net::Ip> ips = have.ips;
    for (const net::Ip& ip : index_[have.endpoint_id])
      if (std::find(ips.begin(), ips.end(), ip) == ips.end()) ips.push_back(ip);
    for (const net::Ip& ip : ips) delete_endpoint_ip(ip, have.endpoint_id, what);
    index_.erase(have.endpoint_id);
    // Its policy entries go too; flows judged with them are judged again (its IPs may be reused).
    if (uint64_t n = policy_.remove_endpoint(have.endpoint_id)) {
      writes_ += n;
      bump_policy_revision();
    }
    // The filters go too, unless the interface now belongs to another endpoint.
    if (have.host_ifindex > 0 && !ifindex_in_use(have.host_ifindex)) {
      for (bpf_tc_attach_point side : {BPF_TC_INGRESS, BPF_TC_EGRESS})
        if (detail::tc_detach(have.host_ifindex, side)) ++writes_;
    }
  }

  void program_overlay(const dataplane::Overlay& want) override {
    require_started();
    const ferry_config have = read_config();
    const int old_ifindex = static_cast<int>(have.overlay_ifindex);
    if (want.device.empty()) {
      // No overlay: the direct path goes off first (from-pod stops redirecting), then the
      // delivery program and the tunnel entries. The policy part of the config stays.
      ferry_config off = have;
      off.overlay_ifindex = 0;
      std::fill(std::begin(off.vtep_mac), std::end(off.vtep_mac), 0);
      off.flags &= ~static_cast<uint32_t>(FERRY_CFG_F_OVERLAY);
      if (!same_bytes(have, off)) write_config(off, "overlay removal");
      if (old_ifindex > 0) detach_overlay(old_ifindex);
      sync_tunnels({}, "overlay removal");
      return;
    }

    const std::string what = "overlay device " + want.device;
    for (const dataplane::OverlayRoute& route : want.routes)
      (void)detail::tunnel_key(route.pod_cidr);  // a bad CIDR is refused before any write
    int ifindex = want.ifindex > 0 ? want.ifindex : static_cast<int>(::if_nametoindex(want.device.c_str()));
    std::string actual = ifname_of(ifindex);
    if (actual.empty())
      throw EbpfError("cannot program " + what + ": " +
                      (want.ifindex > 0 ? "ifindex " + std::to_string(want.ifindex) + " does not exist"
                                        : std::string("no such interface")));
    if (actual != want.device)
      throw EbpfError("cannot program " + what + ": ifindex " + std::to_string(ifindex) + " is " + actual);

    // 1. Delivery first: other nodes may already send to us.
    attach_overlay(ifindex, what);
    if (old_ifindex > 0 && old_ifindex != ifindex) detach_overlay(old_ifindex);  // device replaced
    // 2. The direct path's switch and addresses (harmless before the entries: a miss passes).
    ferry_config cfg = have;  // the policy part stays
    cfg.overlay_ifindex = static_cast<uint32_t>(ifindex);
    std::copy(want.local_vtep_mac.begin(), want.local_vtep_mac.end(), cfg.vtep_mac);
    cfg.flags |= FERRY_CFG_F_OVERLAY;
    if (!same_bytes(have, cfg)) write_config(cfg, what);
    // 3. Remote pod CIDRs: only the differences.
    sync_tunnels(want.routes, what);
  }

  void maintain() override {
    require_started();
    collect_conntrack_garbage();
  }

  void program_services(const dataplane::ServiceSet& want) override {
    require_started();
    // The kernel's SNAT for marked NodePort traffic is in place before a NodePort translates.
    if (!masquerade_ok_) {
      writes_ += detail::sync_lb_masquerade();
      masquerade_ok_ = true;
    }
    const bool maglev = cfg_.lb_algorithm == "maglev";
    ferry_config cfg = read_config();
    if (!maglev && (cfg.flags & FERRY_CFG_F_MAGLEV)) {
      // Random choice first: the tables go next.
      cfg.flags &= ~static_cast<uint32_t>(FERRY_CFG_F_MAGLEV);
      write_config(cfg, "random backend choice");
    }
    writes_ += services_.sync(want, maglev);
    // The switches and addresses after the entries (a frontend missing from the maps passes).
    ferry_config on = cfg;
    on.flags |= FERRY_CFG_F_SERVICES | (maglev ? FERRY_CFG_F_MAGLEV : 0);
    on.netns_cookie = netns_cookie_;
    std::memcpy(on.loopback4, cfg_.service_loopback4.bytes.data(), sizeof(on.loopback4));
    std::memcpy(on.loopback6, cfg_.service_loopback6.bytes.data(), sizeof(on.loopback6));
    if (!same_bytes(on, cfg)) write_config(on, "services");
    sync_uplinks(false);
    attach_socket_lb();
  }

  void program_policy(const dataplane::PolicySet& want) override {
    require_started();
    ensure_index();
    std::vector<uint32_t> local;
    for (const auto& [id, ips] : index_) local.push_back(id);
    ferry_config cfg = read_config();
    if (!want.enforce && (cfg.flags & FERRY_CFG_F_POLICY)) {
      // Off: the datapath stops judging first, then the entries go.
      cfg.flags &= ~static_cast<uint32_t>(FERRY_CFG_F_POLICY);
      write_config(cfg, "policy off");
    }
    const uint64_t written = policy_.sync(want, local);
    writes_ += written;
    if (!want.enforce) return;
    // On: the switch and the new revision after the entries, so every flow (also one judged
    // while the maps were half written) is judged again against the final state.
    const bool switched_on = !(cfg.flags & FERRY_CFG_F_POLICY);
    if (written == 0 && !switched_on) return;
    cfg.flags |= FERRY_CFG_F_POLICY;
    cfg.policy_rev = next_revision(cfg.policy_rev);
    write_config(cfg, "policy revision " + std::to_string(cfg.policy_rev));
  }

  void cleanup_all() override {
    // Filters first (they hold the programs), on every interface of this netns: pod veths
    // and the overlay device. Then every pin (maps of every layout, a leftover ferry_cfg_v1
    // included).
    if (struct if_nameindex* ifs = ::if_nameindex()) {
      for (struct if_nameindex* i = ifs; i->if_index != 0; ++i) {
        for (bpf_tc_attach_point side : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
          uint32_t prog = detail::tc_filter_prog(static_cast<int>(i->if_index), side);
          if (prog == 0 || detail::prog_info_by_id(prog).name.rfind("ferry_", 0) != 0) continue;
          if (detail::tc_detach(static_cast<int>(i->if_index), side)) ++writes_;
        }
      }
      ::if_freenameindex(ifs);
    }
    close_all();
    writes_ += detach_sock_lb(cfg_.bpffs_root);
    sock_lb_pending_ = false;
    writes_ += detail::remove_lb_masquerade();
    masquerade_ok_ = false;
    if (DIR* dir = ::opendir(cfg_.bpffs_root.c_str())) {
      std::vector<std::string> names;
      while (dirent* de = ::readdir(dir)) {
        std::string n = de->d_name;
        if (n != "." && n != "..") names.push_back(n);
      }
      ::closedir(dir);
      for (const std::string& n : names) {
        std::string path = cfg_.bpffs_root + "/" + n;
        if (::unlink(path.c_str()) != 0 && errno != ENOENT)
          throw EbpfError("failed to unpin " + path + ": " + detail::errstr(errno));
        ++writes_;
      }
      if (::rmdir(cfg_.bpffs_root.c_str()) != 0 && errno != ENOENT)
        throw EbpfError("failed to remove " + cfg_.bpffs_root + ": " + detail::errstr(errno));
      ++writes_;
    }
    started_ = false;
    index_valid_ = false;
    index_.clear();
  }

  dataplane::Stats stats() override {
    require_started();
    dataplane::Stats s;
    s.counters = detail::read_counters(ctr_.get());
    // Agent-side: conntrack entries removed by maintain() since start.
    s.counters.push_back({"ct_gc_deleted", false, gc_deleted_, 0});
    s.maps = detail::read_map_fill({ep_.get(), ct_.get(), tun_.get(), ipc_.get(), pol_.get(), service_fds(), lb_maps_[6].get()});
    s.kernel_writes = writes_;
    return s;
  }

 private:
  std::string root_path(const std::string& name) const { return cfg_.bpffs_root + "/" + name; }

  void require_started() const {
    if (!started_) throw EbpfError("eBPF backend for " + cfg_.bpffs_root + " is not started");
  }

  void make_root() {
    std::string path;
    size_t pos = 0;
    const std::string& root = cfg_.bpffs_root;
    while (pos != std::string::npos) {
      pos = root.find('/', pos + 1);
      path = root.substr(0, pos);
      if (path.empty() || detail::path_exists(path)) continue;
      if (::mkdir(path.c_str(), 0700) != 0 && errno != EEXIST)
        throw EbpfError("failed to create " + path + ": " + detail::errstr(errno));
      ++writes_;
    }
  }

  // Opens every map pin and this build's program pins; false (nothing kept) if one is missing.
  bool open_current() {
    close_all();
    Fd ep = detail::open_pinned(root_path(FERRY_MAP_ENDPOINTS));
    Fd ct = detail::open_pinned(root_path(FERRY_MAP_CT));
    Fd ctr = detail::open_pinned(root_path(FERRY_MAP_COUNTERS));
    Fd ev = detail::open_pinned(root_path(FERRY_MAP_EVENTS));
    Fd tun = detail::open_pinned(root_path(FERRY_MAP_TUNNELS));
    Fd cfg = detail::open_pinned(root_path(FERRY_MAP_CONFIG));
    Fd ipc = detail::open_pinned(root_path(FERRY_MAP_IPCACHE));
    Fd pol = detail::open_pinned(root_path(FERRY_MAP_POLICY));
    Fd from = detail::open_pinned(root_path(kFromPodPin + hash_));
    Fd to = detail::open_pinned(root_path(kToPodPin + hash_));
    Fd overlay = detail::open_pinned(root_path(kFromOverlayPin + hash_));
    for (const Fd* fd : {&ep, &ct, &ctr, &ev, &tun, &cfg, &ipc, &pol, &from, &to, &overlay})
      if (!fd->valid()) return false;
    std::array<Fd, 7> lb;  // the service maps, in lb_maps_ order
    for (size_t i = 0; i < lb.size(); ++i) {
      lb[i] = detail::open_pinned(root_path(kServiceMaps[i]));
      if (!lb[i].valid()) return false;
    }
    Fd from_uplink = detail::open_pinned(root_path(kFromUplinkPin + hash_));
    Fd to_uplink = detail::open_pinned(root_path(kToUplinkPin + hash_));
    if (!from_uplink.valid() || !to_uplink.valid()) return false;
    ep_ = std::move(ep);
    ct_ = std::move(ct);
    ctr_ = std::move(ctr);
    ev_ = std::move(ev);
    tun_ = std::move(tun);
    cfg_map_ = std::move(cfg);
    ipc_ = std::move(ipc);
    pol_ = std::move(pol);
    policy_.attach(ipc_.get(), pol_.get());
    from_pod_ = std::move(from);
    to_pod_ = std::move(to);
    from_overlay_ = std::move(overlay);
    from_pod_id_ = detail::prog_info(from_pod_.get()).id;
    to_pod_id_ = detail::prog_info(to_pod_.get()).id;
    from_overlay_id_ = detail::prog_info(from_overlay_.get()).id;
    lb_maps_ = std::move(lb);
    services_.attach(service_fds());
    uplink_ = {std::move(from_uplink), std::move(to_uplink), 0, 0};
    uplink_.from_id = detail::prog_info(uplink_.from.get()).id;
    uplink_.to_id = detail::prog_info(uplink_.to.get()).id;
    return true;
  }

  void close_all() {
    for (Fd* fd : {&ep_, &ct_, &ctr_, &ev_, &tun_, &cfg_map_, &ipc_, &pol_, &from_pod_, &to_pod_, &from_overlay_})
      fd->reset();
    for (Fd& fd : lb_maps_) fd.reset();
    uplink_ = {};
    policy_.attach(-1, -1);
    services_.attach({});
    from_pod_id_ = to_pod_id_ = from_overlay_id_ = 0;
  }

  // Names of lb_maps_ (the socket LB's reverse map last).
  static constexpr std::array<const char*, 7> kServiceMaps = {FERRY_MAP_SERVICES, FERRY_MAP_SLOTS,   FERRY_MAP_BACKENDS,
                                                              FERRY_MAP_REVNAT,   FERRY_MAP_AFFINITY, FERRY_MAP_MAGLEV,
                                                              FERRY_MAP_SOCK_REVNAT};
  detail::ServiceMapFds service_fds() const {
    return {lb_maps_[0].get(), lb_maps_[1].get(), lb_maps_[2].get(),
            lb_maps_[3].get(), lb_maps_[4].get(), lb_maps_[5].get()};
  }

  // Loads the embedded object: maps pinned by name are reused (created and pinned when
  // missing), programs are pinned under this build's hash.
  void load_and_pin() {
    struct SkelDeleter {
      void operator()(ferry_lxc* s) const { ferry_lxc__destroy(s); }
    };
    bpf_object_open_opts opts{};
    opts.sz = sizeof(opts);
    opts.pin_root_path = cfg_.bpffs_root.c_str();
    std::unique_ptr<ferry_lxc, SkelDeleter> skel(ferry_lxc__open_opts(&opts));
    if (!skel) throw EbpfError("failed to open the embedded BPF object: " + detail::errstr(errno));

    // A pinned map keeps its size (reuse requires equal definitions); new maps get the config's.
    size_map(skel->maps.ferry_ep_v1, FERRY_MAP_ENDPOINTS, cfg_.endpoints_max);
    size_map(skel->maps.ferry_ct_v2, FERRY_MAP_CT, cfg_.ct_max);

    int err = ferry_lxc__load(skel.get());
    if (err != 0)
      throw EbpfError("failed to load the BPF programs into " + cfg_.bpffs_root + ": " + detail::errstr(err) +
                      " (see the libbpf log above)");
    ++writes_;
    pin_program(skel->progs.ferry_from_pod, kFromPodPin + hash_);
    pin_program(skel->progs.ferry_to_pod, kToPodPin + hash_);
    pin_program(skel->progs.ferry_from_overlay, kFromOverlayPin + hash_);
    pin_program(skel->progs.ferry_from_uplink, kFromUplinkPin + hash_);
    pin_program(skel->progs.ferry_to_uplink, kToUplinkPin + hash_);
    spdlog::info("ebpf: loaded programs {} into {}", hash_, cfg_.bpffs_root);
  }

  void size_map(bpf_map* map, const char* name, uint32_t configured) {
    Fd pinned = detail::open_pinned(root_path(name));
    uint32_t size = pinned.valid() ? detail::map_info(pinned.get()).max_entries : configured;
    if (pinned.valid() && size != configured && configured != 0)
      spdlog::warn("ebpf: {} keeps its size {} (configured {}): resizing needs a new map", name, size, configured);
    if (size != 0) bpf_map__set_max_entries(map, size);
  }

  void pin_program(bpf_program* prog, const std::string& name) {
    std::string path = root_path(name);
    if (detail::path_exists(path)) {  // same build, but a map was missing: replace the pin
      if (::unlink(path.c_str()) != 0) throw EbpfError("failed to unpin " + path + ": " + detail::errstr(errno));
      ++writes_;
    }
    int err = bpf_program__pin(prog, path.c_str());
    if (err != 0) throw EbpfError("failed to pin " + path + ": " + detail::errstr(err));
    ++writes_;
  }

  // Every endpoint whose filters run another ferry build gets this build's programs, swapped
  // in place (same handle/priority): packets see the old or the new program, never none.
  void replace_outdated_programs() {
    std::set<int> ifindexes;
    for (const ferry_endpoint_key& key : detail::map_keys<ferry_endpoint_key>(ep_.get())) {
      ferry_endpoint_value value{};
      if (bpf_map_lookup_elem(ep_.get(), &key, &value) == 0) ifindexes.insert(static_cast<int>(value.ifindex));
    }
    size_t replaced = 0;
    for (int ifindex : ifindexes) {
      for (auto [side, fd, id] : {std::tuple{BPF_TC_INGRESS, from_pod_.get(), from_pod_id_},
                                  std::tuple{BPF_TC_EGRESS, to_pod_.get(), to_pod_id_}}) {
        uint32_t running = detail::tc_filter_prog(ifindex, side);
        if (running == 0 || running == id) continue;  // missing filters: reconcile reattaches
        if (detail::prog_info_by_id(running).name.rfind("ferry_", 0) != 0) continue;
        detail::tc_attach(ifindex, side, fd);
        ++writes_;
        ++replaced;
      }
    }
    // The overlay device (recorded in ferry_cfg_v3 by program_overlay) likewise.
    int overlay = static_cast<int>(read_config().overlay_ifindex);
    uint32_t running = overlay > 0 ? detail::tc_filter_prog(overlay, BPF_TC_INGRESS) : 0;
    if (running != 0 && running != from_overlay_id_ && detail::prog_info_by_id(running).name.rfind("ferry_", 0) == 0) {
      detail::tc_attach(overlay, BPF_TC_INGRESS, from_overlay_.get());
      ++writes_;
      ++replaced;
    }
    if (replaced) spdlog::info("ebpf: replaced {} tc filters with programs {}", replaced, hash_);
  }

  void unpin_old_programs() {
    DIR* dir = ::opendir(cfg_.bpffs_root.c_str());
    if (!dir) return;
    std::vector<std::string> old;
    while (dirent* de = ::readdir(dir)) {
      std::string n = de->d_name;
      bool current = false, prog = false;
      for (const char* pin : {kFromPodPin, kToPodPin, kFromOverlayPin, kFromUplinkPin, kToUplinkPin}) {
        prog = prog || n.rfind(pin, 0) == 0;
        current = current || n == pin + hash_;
      }
      if (prog && !current) old.push_back(n);
    }
    ::closedir(dir);
    for (const std::string& n : old) {
      if (::unlink(root_path(n).c_str()) == 0) ++writes_;
      spdlog::info("ebpf: unpinned old program {}", n);
    }
  }

  bool filters_current(int ifindex) const {
    return detail::tc_filter_prog(ifindex, BPF_TC_INGRESS) == from_pod_id_ &&
           detail::tc_filter_prog(ifindex, BPF_TC_EGRESS) == to_pod_id_;
  }

  void attach_programs(int ifindex, const std::string& what) {
    attach_pair(ifindex, what, from_pod_.get(), from_pod_id_, to_pod_.get(), to_pod_id_);
  }

  // Our ingress and egress filters on one interface, replaced in place where outdated.
  void attach_pair(int ifindex, const std::string& what, int ingress_fd, uint32_t ingress_id, int egress_fd,
                   uint32_t egress_id) {
    uint32_t ingress = detail::tc_filter_prog(ifindex, BPF_TC_INGRESS);
    uint32_t egress = detail::tc_filter_prog(ifindex, BPF_TC_EGRESS);
    if (ingress == ingress_id && egress == egress_id) return;
    try {
      if (ingress == 0 && egress == 0 && detail::tc_ensure_clsact(ifindex)) ++writes_;
      if (ingress != ingress_id) {
        detail::tc_attach(ifindex, BPF_TC_INGRESS, ingress_fd);
        ++writes_;
      }
      if (egress != egress_id) {
        detail::tc_attach(ifindex, BPF_TC_EGRESS, egress_fd);
        ++writes_;
      }
    } catch (const EbpfError& e) {
      throw EbpfError(what + ": " + e.what());
    }
  }

  // The cgroup socket hooks (sock_lb.h) when configured and not attached yet by this instance.
  void attach_socket_lb() {
    if (!sock_lb_pending_) return;
    writes_ += attach_sock_lb({cfg_.bpffs_root, "", cfg_.program_hash_override}).kernel_writes;
    sock_lb_pending_ = false;
  }

  // ---- NodePort devices ----

  // from-uplink / to-uplink on every configured NodePort device (replaced in place when
  // outdated). With `detach_unlisted` (start), every other interface of the netns loses ours:
  // the device list may have changed since the last run.
  void sync_uplinks(bool detach_unlisted) {
    std::set<int> listed;
    for (const std::string& dev : cfg_.nodeport_devices) {
      int ifindex = static_cast<int>(::if_nametoindex(dev.c_str()));
      if (ifindex <= 0) {
        if (missing_devices_.insert(dev).second) spdlog::warn("ebpf: NodePort device {} does not exist", dev);
        continue;
      }
      missing_devices_.erase(dev);
      listed.insert(ifindex);
      attach_pair(ifindex, "NodePort device " + dev, uplink_.from.get(), uplink_.from_id, uplink_.to.get(),
                  uplink_.to_id);
    }
    if (!detach_unlisted) return;
    for (int ifindex : uplink_ifindexes()) {
      if (listed.count(ifindex)) continue;
      for (auto [side, prefix] : {std::pair{BPF_TC_INGRESS, kUplinkProgPrefix}, std::pair{BPF_TC_EGRESS, kToUplinkProgPrefix}}) {
        uint32_t prog = detail::tc_filter_prog(ifindex, side);
        if (prog != 0 && detail::prog_info_by_id(prog).name.rfind(prefix, 0) == 0 && detail::tc_detach(ifindex, side))
          ++writes_;
      }
      spdlog::info("ebpf: {} is no longer a NodePort device", ifname_of(ifindex));
    }
  }

  // Interfaces whose ingress runs a from-uplink program (of any build).
  static std::vector<int> uplink_ifindexes() {
    std::vector<int> out;
    if (struct if_nameindex* ifs = ::if_nameindex()) {
      for (struct if_nameindex* i = ifs; i->if_index != 0; ++i) {
        uint32_t prog = detail::tc_filter_prog(static_cast<int>(i->if_index), BPF_TC_INGRESS);
        if (prog != 0 && detail::prog_info_by_id(prog).name.rfind(kUplinkProgPrefix, 0) == 0)
          out.push_back(static_cast<int>(i->if_index));
      }
      ::if_freenameindex(ifs);
    }
    return out;
  }

  void update_endpoint(const ferry_endpoint_key& key, const ferry_endpoint_value& value, const std::string& what) {
    if (bpf_map_update_elem(ep_.get(), &key, &value, BPF_ANY) != 0) {
      int err = errno;
      throw EbpfError("failed to write " + detail::ip_from(key.family, key.addr).str() + " of " + what + " to " +
                      FERRY_MAP_ENDPOINTS + ": " + detail::errstr(err) +
                      (err == E2BIG ? " (map full: raise endpoints_max)" : ""));
    }
    ++writes_;
  }

  // Deletes ip's entry if it still belongs to endpoint `id` (the IP may have moved on).
  void delete_endpoint_ip(const net::Ip& ip, uint32_t id, const std::string& what) {
    ferry_endpoint_key key = detail::endpoint_key(ip);
    ferry_endpoint_value have{};
    if (bpf_map_lookup_elem(ep_.get(), &key, &have) != 0 || have.endpoint_id != id) return;
    if (bpf_map_delete_elem(ep_.get(), &key) != 0 && errno != ENOENT)
      throw EbpfError("failed to delete " + ip.str() + " of " + what + " from " + FERRY_MAP_ENDPOINTS + ": " +
                      detail::errstr(errno));
    ++writes_;
  }

  // ---- overlay ----

  template <typename T>
  static bool same_bytes(const T& a, const T& b) {
    return std::memcmp(&a, &b, sizeof(T)) == 0;
  }

  ferry_config read_config() const {
    ferry_config cfg{};
    uint32_t zero = 0;
    if (!cfg_map_.valid() || bpf_map_lookup_elem(cfg_map_.get(), &zero, &cfg) != 0) return ferry_config{};
    return cfg;
  }

  void write_config(const ferry_config& cfg, const std::string& what) {
    uint32_t zero = 0;
    if (bpf_map_update_elem(cfg_map_.get(), &zero, &cfg, BPF_ANY) != 0)
      throw EbpfError("failed to write " + std::string(FERRY_MAP_CONFIG) + " for " + what + ": " +
                      detail::errstr(errno));
    ++writes_;
  }

  // ---- policy ----

  // Revisions are never 0: a ct entry created while policy was off records 0 ("never judged").
  static uint32_t next_revision(uint32_t rev) { return rev + 1 == 0 ? 1 : rev + 1; }

  void bump_policy_revision() {
    ferry_config cfg = read_config();
    if (!(cfg.flags & FERRY_CFG_F_POLICY)) return;  // nothing is judged: no revision to keep
    cfg.policy_rev = next_revision(cfg.policy_rev);
    write_config(cfg, "policy revision " + std::to_string(cfg.policy_rev));
  }

  // Configs of older builds move into ferry_cfg_v3 (unless that is written already) and their pins
  // go: ferry_cfg_v2 (before services: v3's first 28 bytes), ferry_cfg_v1 (before policy: the
  // first 16).
  void migrate_config() {
    migrate_config_from(FERRY_MAP_CONFIG_V2, offsetof(ferry_config, pad3));
    migrate_config_from(FERRY_MAP_CONFIG_V1, offsetof(ferry_config, policy_rev));
  }

  void migrate_config_from(const char* name, size_t size) {
    const std::string path = root_path(name);
    Fd old = detail::open_pinned(path);
    if (!old.valid()) return;
    const detail::MapInfo info = detail::map_info(old.get());
    const ferry_config have = read_config();
    ferry_config unwritten{};
    if (info.max_entries == 1 && info.value_size == size && std::memcmp(&have, &unwritten, size) == 0) {
      std::vector<uint8_t> value(size);
      uint32_t zero = 0;
      if (bpf_map_lookup_elem(old.get(), &zero, value.data()) == 0) {
        ferry_config cfg = have;
        std::memcpy(&cfg, value.data(), size);
        if (!same_bytes(cfg, have)) write_config(cfg, "migration from " + std::string(name));
      }
    }
    old.reset();
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      throw EbpfError("failed to unpin " + path + ": " + detail::errstr(errno));
    ++writes_;
    spdlog::info("ebpf: migrated and unpinned {}", name);
  }

  // Conntrack of the build before services (ferry_ct_v1: the value without backend_id and
  // rev_nat) is copied into ferry_ct_v2 with the new fields zero, so established flows survive
  // the upgrade; entries the new programs already made win. `last`: unpin it afterwards.
  void migrate_conntrack(bool last) {
    const std::string path = root_path(FERRY_MAP_CT_V1);
    Fd old = detail::open_pinned(path);
    if (!old.valid()) return;
    constexpr size_t kV1Size = offsetof(ferry_ct_value, backend_id);
    const detail::MapInfo info = detail::map_info(old.get());
    size_t copied = 0;
    if (info.value_size == kV1Size) {
      for (const ferry_ct_key& key : detail::map_keys<ferry_ct_key>(old.get())) {
        ferry_ct_value value{};
        if (bpf_map_lookup_elem(old.get(), &key, &value) != 0) continue;  // expired meanwhile
        if (bpf_map_update_elem(ct_.get(), &key, &value, BPF_NOEXIST) == 0) {
          ++writes_;
          ++copied;
        } else if (errno != EEXIST) {
          throw EbpfError("failed to copy a flow from " + std::string(FERRY_MAP_CT_V1) + " to " + FERRY_MAP_CT + ": " +
                          detail::errstr(errno));
        }
      }
    }
    if (copied) spdlog::info("ebpf: copied {} flows from {} to {}", copied, FERRY_MAP_CT_V1, FERRY_MAP_CT);
    if (!last) return;
    old.reset();
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      throw EbpfError("failed to unpin " + path + ": " + detail::errstr(errno));
    ++writes_;
    spdlog::info("ebpf: unpinned {}", FERRY_MAP_CT_V1);
  }

  void attach_overlay(int ifindex, const std::string& what) {
    uint32_t running = detail::tc_filter_prog(ifindex, BPF_TC_INGRESS);
    if (running == from_overlay_id_) return;
    try {
      if (running == 0 && detail::tc_ensure_clsact(ifindex)) ++writes_;
      detail::tc_attach(ifindex, BPF_TC_INGRESS, from_overlay_.get());  // in place when outdated
      ++writes_;
    } catch (const EbpfError& e) {
      throw EbpfError(what + ": " + e.what());
    }
  }

  // Removes our filter from a former overlay device, only if it runs a from-overlay program
  // (the ifindex may since belong to a pod veth).
  void detach_overlay(int ifindex) {
    uint32_t running = detail::tc_filter_prog(ifindex, BPF_TC_INGRESS);
    if (running == 0) return;
    if (running != from_overlay_id_ && detail::prog_info_by_id(running).name.rfind("ferry_from_over", 0) != 0) return;
    if (detail::tc_detach(ifindex, BPF_TC_INGRESS)) ++writes_;
  }

  // Makes ferry_tun_v1 hold exactly `routes`: deletes what is no longer wanted, writes what is
  // missing or differs, touches nothing else.
  void sync_tunnels(const std::vector<dataplane::OverlayRoute>& routes, const std::string& what) {
    using KeyBytes = std::array<uint8_t, sizeof(ferry_tunnel_key)>;
    auto bytes_of = [](const ferry_tunnel_key& key) {
      KeyBytes b;
      std::memcpy(b.data(), &key, sizeof(key));
      return b;
    };
    std::map<KeyBytes, std::pair<ferry_tunnel_key, ferry_tunnel_value>> want;
    for (const dataplane::OverlayRoute& route : routes) {
      ferry_tunnel_key key = detail::tunnel_key(route.pod_cidr);  // throws on a bad CIDR
      ferry_tunnel_value value = detail::tunnel_value(route);
      auto [it, inserted] = want.try_emplace(bytes_of(key), key, value);
      if (!inserted && !same_bytes(it->second.second, value))
        spdlog::warn("ebpf: {}: pod CIDR {} is claimed by {} and {}; keeping the first", what,
                     route.pod_cidr.str(), detail::ip_from(it->second.second.node_family, it->second.second.node_ip).str(),
                     route.node_ip.str());
    }
    for (const ferry_tunnel_key& key : detail::map_keys<ferry_tunnel_key>(tun_.get())) {
      if (want.count(bytes_of(key))) continue;
      if (bpf_map_delete_elem(tun_.get(), &key) != 0 && errno != ENOENT)
        throw EbpfError("failed to delete " + detail::tunnel_cidr(key).str() + " from " + FERRY_MAP_TUNNELS +
                        " for " + what + ": " + detail::errstr(errno));
      ++writes_;
    }
    for (const auto& [bytes, entry] : want) {
      const auto& [key, value] = entry;
      ferry_tunnel_value have{};
      if (bpf_map_lookup_elem(tun_.get(), &key, &have) == 0 && same_bytes(have, value)) continue;
      if (bpf_map_update_elem(tun_.get(), &key, &value, BPF_ANY) != 0) {
        int err = errno;
        throw EbpfError("failed to write " + detail::tunnel_cidr(key).str() + " to " + FERRY_MAP_TUNNELS + " for " +
                        what + ": " + detail::errstr(err) +
                        (err == E2BIG || err == ENOSPC ? " (map full: " + std::to_string(FERRY_TUNNELS_MAX) + " entries)"
                                                       : std::string()));
      }
      ++writes_;
    }
  }

  // endpoint id -> its IPs in ferry_ep_v1: rebuilt by installed_endpoints() (or lazily), kept
  // current by our own writes (only the agent writes that map).
  void ensure_index() {
    if (index_valid_) return;
    index_.clear();
    for (const ferry_endpoint_key& key : detail::map_keys<ferry_endpoint_key>(ep_.get())) {
      ferry_endpoint_value value{};
      if (bpf_map_lookup_elem(ep_.get(), &key, &value) == 0)
        index_[value.endpoint_id].push_back(detail::ip_from(key.family, key.addr));
    }
    index_valid_ = true;
  }

  bool ifindex_in_use(int ifindex) const {
    for (const auto& [id, ips] : index_) {
      for (const net::Ip& ip : ips) {
        ferry_endpoint_key key = detail::endpoint_key(ip);
        ferry_endpoint_value value{};
        if (bpf_map_lookup_elem(ep_.get(), &key, &value) == 0 && static_cast<int>(value.ifindex) == ifindex)
          return true;
      }
    }
    return false;
  }

  // Conntrack GC, at most gc_batch entries per call, resuming where the last call stopped. An
  // entry is deleted only if it is expired AND its last_seen is unchanged on a second read, so a
  // packet that refreshed it in between keeps it (the remaining window is one syscall wide).
  void collect_conntrack_garbage() {
    std::vector<ferry_ct_key> batch;
    ferry_ct_key next{};
    const void* prev = gc_cursor_ ? &*gc_cursor_ : nullptr;
    ferry_ct_key prev_key{};
    bool reached_end = false;
    while (batch.size() < cfg_.gc_batch) {
      if (bpf_map_get_next_key(ct_.get(), prev, &next) != 0) {
        reached_end = true;
        break;
      }
      batch.push_back(next);
      prev_key = next;
      prev = &prev_key;
    }
    uint64_t now = detail::monotonic_ns();
    std::optional<ferry_ct_key> last_kept;
    for (const ferry_ct_key& key : batch) {
      ferry_ct_value judged{};
      if (bpf_map_lookup_elem(ct_.get(), &key, &judged) != 0) continue;
      if (!expired(judged, now)) {
        last_kept = key;
        continue;
      }
      ferry_ct_value again{};
      if (bpf_map_lookup_elem(ct_.get(), &key, &again) != 0) continue;
      if (again.last_seen_ns != judged.last_seen_ns) {
        last_kept = key;
        continue;
      }
      // Housekeeping, not programming: counted in ct_gc_deleted, not in kernel_writes.
      if (bpf_map_delete_elem(ct_.get(), &key) == 0) ++gc_deleted_;
    }
    // Resume after the last surviving key (a deleted cursor would restart the walk).
    gc_cursor_ = reached_end ? std::nullopt : last_kept;
  }

  static bool expired(const ferry_ct_value& v, uint64_t now_ns) {
    return now_ns > v.last_seen_ns + static_cast<uint64_t>(v.lifetime_s) * 1000000000ull;
  }

  EbpfConfig cfg_;
  std::string hash_;
  bool started_ = false;
  Fd ep_, ct_, ctr_, ev_, tun_, cfg_map_, ipc_, pol_, from_pod_, to_pod_, from_overlay_;
  std::array<Fd, 7> lb_maps_;  // kServiceMaps
  struct Uplink {
    Fd from, to;
    uint32_t from_id = 0, to_id = 0;
  } uplink_;
  detail::PolicyMapSync policy_;
  detail::ServiceMapSync services_;
  uint64_t netns_cookie_ = 0;
  bool masquerade_ok_ = false;
  bool sock_lb_pending_ = false;  // socket_lb configured, attach not yet done
  std::set<std::string> missing_devices_;  // NodePort devices already warned about
  uint32_t from_pod_id_ = 0, to_pod_id_ = 0, from_overlay_id_ = 0;
  uint64_t writes_ = 0;
  uint64_t gc_deleted_ = 0;
  std::optional<ferry_ct_key> gc_cursor_;
  bool index_valid_ = false;
  std::unordered_map<uint32_t, std::vector<net::Ip>> index_;
};

std::vector<std::string> nodeport_devices_for(const std::vector<net::Ip>& addresses) {
  std::set<std::string> out;
  try {
    net::Socket sock = net::Socket::open();
    for (const net::Address& a : net::list_addresses(sock)) {
      if (std::find(addresses.begin(), addresses.end(), a.prefix.ip) == addresses.end()) continue;
      if (std::string name = ifname_of(a.index); !name.empty()) out.insert(name);
    }
  } catch (const std::exception& e) {
    throw EbpfError(std::string("cannot list the node's addresses for the NodePort devices: ") + e.what());
  }
  return {out.begin(), out.end()};
}

std::unique_ptr<dataplane::Dataplane> make_ebpf_dataplane(const EbpfConfig& config) {
  return std::make_unique<EbpfDataplane>(config);
}

}  // namespace ferry::ebpf
