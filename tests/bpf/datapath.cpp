#include "datapath.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <linux/pkt_cls.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstring>
#include <fstream>
#include <stdexcept>

#include "policy/policy.h"

namespace ferry::bpftest {
namespace {

constexpr long kBpfFsMagic = 0xcafe4a11;

std::string errno_text(int err) { return std::strerror(err < 0 ? -err : err); }

// libbpf's messages (the verifier log on a failed load) go to the current load's log.
thread_local std::string* g_libbpf_log = nullptr;
int libbpf_print(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (!g_libbpf_log || level == LIBBPF_DEBUG) return 0;
  char buf[4096];
  const int n = vsnprintf(buf, sizeof(buf), fmt, args);
  if (n > 0) g_libbpf_log->append(buf, std::min<size_t>(static_cast<size_t>(n), sizeof(buf) - 1));
  return n;
}

}  // namespace

std::string tc_act_name(int verdict) {
  switch (verdict) {
    case TC_ACT_OK: return "TC_ACT_OK";
    case TC_ACT_SHOT: return "TC_ACT_SHOT";
    case TC_ACT_REDIRECT: return "TC_ACT_REDIRECT";
    default: return "TC_ACT(" + std::to_string(verdict) + ")";
  }
}

// ---- netns ----

PrivateNetns::PrivateNetns(std::string name) : name_(std::move(name)) {
  net::run_command({"ip", "netns", "del", name_});  // a leftover of a crashed run
  const auto res = net::run_command({"ip", "netns", "add", name_});
  if (res.status != 0) throw std::runtime_error("ip netns add " + name_ + ": " + res.err);
  ns_ = net::Netns::open("/run/netns/" + name_);
}

PrivateNetns::~PrivateNetns() { net::run_command({"ip", "netns", "del", name_}); }

uint32_t PrivateNetns::add_veth(const std::string& name) {
  auto sock = net::Socket::open_in(ns_);
  net::VethSpec spec;
  spec.name = name;
  spec.peer_name = name + "-p";
  net::create_veth(sock, spec);
  return static_cast<uint32_t>(net::get_link(sock, name).index);
}

// ---- bpffs and pins ----

void ensure_bpffs() {
  struct statfs st {};
  if (statfs("/sys/fs/bpf", &st) == 0 && static_cast<long>(st.f_type) == kBpfFsMagic) return;
  if (mount("bpf", "/sys/fs/bpf", "bpf", 0, nullptr) != 0)
    throw std::runtime_error("mount bpffs at /sys/fs/bpf: " + errno_text(errno));
}

void remove_pin_dir(const std::string& dir) {
  if (DIR* d = opendir(dir.c_str())) {
    while (dirent* e = readdir(d)) {
      const std::string name = e->d_name;
      if (name != "." && name != "..") unlink((dir + "/" + name).c_str());
    }
    closedir(d);
  }
  rmdir(dir.c_str());
}

LoadedDatapath::LoadedDatapath(std::string pin_dir, Sizes sizes) : pin_dir_(std::move(pin_dir)) {
  libbpf_set_print(libbpf_print);
  g_libbpf_log = &log_;
  struct ClearLog {
    ~ClearLog() { g_libbpf_log = nullptr; }
  } clear_log;

  bpf_object_open_opts opts{};
  opts.sz = sizeof(opts);
  opts.pin_root_path = pin_dir_.c_str();
  skel_ = ferry_lxc__open_opts(&opts);
  if (!skel_) throw std::runtime_error("ferry_lxc__open_opts: " + errno_text(errno) + "\n" + log_);
  bpf_map__set_max_entries(skel_->maps.ferry_ct_v2, sizes.ct_max);
  if (sizes.events_bytes) bpf_map__set_max_entries(skel_->maps.ferry_ev_v1, sizes.events_bytes);
  const int err = ferry_lxc__load(skel_);
  if (err) {
    ferry_lxc__destroy(skel_);
    skel_ = nullptr;
    remove_pin_dir(pin_dir_);
    throw std::runtime_error("ferry_lxc__load: " + errno_text(err) + "\n" + log_);
  }
}

LoadedDatapath::~LoadedDatapath() {
  if (skel_) {
    bpf_map* map = nullptr;
    bpf_object__for_each_map(map, skel_->obj) if (bpf_map__pin_path(map)) bpf_map__unpin(map, nullptr);
    ferry_lxc__destroy(skel_);
  }
  remove_pin_dir(pin_dir_);
}

// ---- fixture ----

void DatapathTest::SetUp() {
  FERRY_BPF_REQUIRE_ROOT();
  ensure_bpffs();
  netns_ = std::make_unique<PrivateNetns>("fybpf" + std::to_string(getpid()));

  pod_a_ = Pod{"fybpfa", netns_->add_veth("fybpfa"), 11,
               {0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x05}, {0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01}};
  pod_b_ = Pod{"fybpfb", netns_->add_veth("fybpfb"), 12,
               {0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x06}, {0x0a, 0x58, 0x0a, 0xf4, 0x01, 0x01}};
  overlay_ifindex_ = netns_->add_veth("fybpfo");

  const std::string pin_dir = "/sys/fs/bpf/ferry-test-" + std::to_string(getpid());
  remove_pin_dir(pin_dir);  // a leftover of a crashed run
  datapath_ = std::make_unique<LoadedDatapath>(pin_dir, sizes());

  events_ = ring_buffer__new(bpf_map__fd(skel()->maps.ferry_ev_v1), &DatapathTest::on_event,
                             this, nullptr);
  ASSERT_NE(events_, nullptr) << "ring_buffer__new: " << errno_text(errno);
}

void DatapathTest::TearDown() {
  if (events_) ring_buffer__free(events_);
  events_ = nullptr;
  datapath_.reset();
  netns_.reset();
}

int DatapathTest::on_event(void* ctx, void* data, size_t size) {
  auto* self = static_cast<DatapathTest*>(ctx);
  ferry_drop_event ev{};
  std::memcpy(&ev, data, std::min(size, sizeof(ev)));
  self->pending_events_.push_back(ev);
  return 0;
}

std::vector<ferry_drop_event> DatapathTest::drain_events() {
  const int n = ring_buffer__consume(events_);
  if (n < 0) throw std::runtime_error("ring_buffer__consume: " + errno_text(n));
  return std::exchange(pending_events_, {});
}

RunResult DatapathTest::run(bpf_program* prog, const Bytes& frame, uint32_t ingress_ifindex,
                            uint32_t ifindex, uint32_t repeat) {
  __sk_buff ctx{};
  ctx.ingress_ifindex = ingress_ifindex;
  ctx.ifindex = ifindex;
  RunResult result;
  result.out.resize(frame.size() + 256);

  bpf_test_run_opts opts{};
  opts.sz = sizeof(opts);
  opts.data_in = frame.data();
  opts.data_size_in = static_cast<uint32_t>(frame.size());
  opts.data_out = result.out.data();
  opts.data_size_out = static_cast<uint32_t>(result.out.size());
  __sk_buff ctx_out{};
  opts.ctx_in = &ctx;
  opts.ctx_size_in = sizeof(ctx);
  opts.ctx_out = &ctx_out;
  opts.ctx_size_out = sizeof(ctx_out);
  opts.repeat = repeat;

  int err = 0;
  net::in_netns(netns_->ns(), [&] { err = bpf_prog_test_run_opts(bpf_program__fd(prog), &opts); });
  if (err) throw std::runtime_error("bpf_prog_test_run_opts: " + errno_text(errno));
  result.retval = static_cast<int>(opts.retval);
  result.out.resize(opts.data_size_out);
  result.mark = ctx_out.mark;
  return result;
}

RunResult DatapathTest::from_pod(const Pod& pod, const Bytes& frame, uint32_t repeat) {
  // tc ingress of the veth: the skb arrived on it (ingress_ifindex) and sits on it (ifindex).
  return run(skel()->progs.ferry_from_pod, frame, pod.ifindex, pod.ifindex, repeat);
}

RunResult DatapathTest::to_pod(const Pod& pod, const Bytes& frame) {
  // tc egress of the veth: the skb leaves through it; it came from the bridge (ingress 0 here).
  return run(skel()->progs.ferry_to_pod, frame, 0, pod.ifindex, 1);
}

RunResult DatapathTest::from_overlay(const Bytes& frame) {
  // tc ingress of the overlay device: the decapsulated skb arrived on it and sits on it.
  return run(skel()->progs.ferry_from_overlay, frame, overlay_ifindex_, overlay_ifindex_, 1);
}

RunResult DatapathTest::from_uplink(uint32_t ifindex, const Bytes& frame) {
  return run(skel()->progs.ferry_from_uplink, frame, ifindex, ifindex, 1);
}

RunResult DatapathTest::to_uplink(uint32_t ifindex, const Bytes& frame) {
  return run(skel()->progs.ferry_to_uplink, frame, 0, ifindex, 1);
}

void DatapathTest::set_services(bool on, bool maglev, const Addr& loopback4, const Addr& loopback6) {
  const int fd = bpf_map__fd(skel()->maps.ferry_cfg_v3);
  uint32_t zero = 0;
  ferry_config cfg{};
  if (bpf_map_lookup_elem(fd, &zero, &cfg) != 0) throw std::runtime_error("ferry_cfg_v3 lookup: " + errno_text(errno));
  cfg.flags &= ~uint32_t{FERRY_CFG_F_SERVICES | FERRY_CFG_F_MAGLEV};
  if (on) cfg.flags |= FERRY_CFG_F_SERVICES;
  if (maglev) cfg.flags |= FERRY_CFG_F_MAGLEV;
  std::memcpy(cfg.loopback4, loopback4.bytes.data(), 4);
  std::memcpy(cfg.loopback6, loopback6.bytes.data(), 16);
  if (bpf_map_update_elem(fd, &zero, &cfg, BPF_ANY) != 0)
    throw std::runtime_error("ferry_cfg_v3 update: " + errno_text(errno));
}

void DatapathTest::add_backend(uint32_t id, const Addr& addr, uint16_t port, uint8_t proto, uint8_t state) {
  ferry_backend_value value{};
  std::memcpy(value.addr, addr.bytes.data(), addr.size());
  value.port = htons(port);
  value.proto = proto;
  value.family = addr.family;
  value.state = state;
  if (bpf_map_update_elem(bpf_map__fd(skel()->maps.ferry_be_v1), &id, &value, BPF_ANY) != 0)
    throw std::runtime_error("ferry_be_v1 update: " + errno_text(errno));
}

void DatapathTest::remove_backend(uint32_t id) {
  if (bpf_map_delete_elem(bpf_map__fd(skel()->maps.ferry_be_v1), &id) != 0)
    throw std::runtime_error("ferry_be_v1 delete: " + errno_text(errno));
}

void DatapathTest::add_service(uint32_t service_id, const Addr& addr, uint16_t port, uint8_t proto, uint32_t flags,
                               const std::vector<uint32_t>& backends, const std::vector<uint32_t>& internal,
                               uint32_t affinity_timeout_s) {
  ferry_service_key key{};
  std::memcpy(key.addr, addr.bytes.data(), addr.size());
  key.port = htons(port);
  key.proto = proto;
  key.family = addr.family;
  ferry_service_value value{};
  value.service_id = service_id;
  value.count = static_cast<uint16_t>(backends.size());
  value.count_internal = static_cast<uint16_t>(internal.size());
  value.flags = flags;
  value.affinity_timeout_s = affinity_timeout_s;
  if (bpf_map_update_elem(bpf_map__fd(skel()->maps.ferry_svc_v1), &key, &value, BPF_ANY) != 0)
    throw std::runtime_error("ferry_svc_v1 update: " + errno_text(errno));
  const int slots = bpf_map__fd(skel()->maps.ferry_slot_v1);
  for (uint8_t set = 0; set < 2; ++set) {
    const std::vector<uint32_t>& ids = set == 0 ? backends : internal;
    for (size_t i = 0; i < ids.size(); ++i) {
      ferry_slot_key skey{};
      skey.service_id = service_id;
      skey.slot = static_cast<uint16_t>(i);
      skey.set = set;
      if (bpf_map_update_elem(slots, &skey, &ids[i], BPF_ANY) != 0)
        throw std::runtime_error("ferry_slot_v1 update: " + errno_text(errno));
    }
  }
  ferry_revnat_value rn{};
  std::memcpy(rn.addr, addr.bytes.data(), addr.size());
  rn.port = htons(port);
  rn.family = addr.family;
  if (bpf_map_update_elem(bpf_map__fd(skel()->maps.ferry_rnat_v1), &service_id, &rn, BPF_ANY) != 0)
    throw std::runtime_error("ferry_rnat_v1 update: " + errno_text(errno));
}

void DatapathTest::set_overlay(uint32_t ifindex, const MacAddr& vtep_mac, uint32_t flags) {
  ferry_config cfg{};
  cfg.overlay_ifindex = ifindex;
  std::memcpy(cfg.vtep_mac, vtep_mac.data(), 6);
  cfg.flags = flags;
  uint32_t zero = 0;
  if (bpf_map_update_elem(bpf_map__fd(skel()->maps.ferry_cfg_v3), &zero, &cfg, BPF_ANY) != 0)
    throw std::runtime_error("ferry_cfg_v3 update: " + errno_text(errno));
}

void DatapathTest::add_tunnel(const std::string& cidr, const MacAddr& vtep_mac, const Addr& node_ip) {
  const auto key = lpm_addr_key<ferry_tunnel_key>(cidr);
  ferry_tunnel_value value{};
  std::memcpy(value.vtep_mac, vtep_mac.data(), 6);
  value.node_family = node_ip.family;
  std::memcpy(value.node_ip, node_ip.bytes.data(), node_ip.size());
  if (bpf_map_update_elem(bpf_map__fd(skel()->maps.ferry_tun_v1), &key, &value, BPF_ANY) != 0)
    throw std::runtime_error("ferry_tun_v1 update: " + errno_text(errno));
}

void DatapathTest::set_policy(bool enforce, uint32_t revision) {
  const int fd = bpf_map__fd(skel()->maps.ferry_cfg_v3);
  uint32_t zero = 0;
  ferry_config cfg{};
  if (bpf_map_lookup_elem(fd, &zero, &cfg) != 0) throw std::runtime_error("ferry_cfg_v3 lookup: " + errno_text(errno));
  cfg.flags = enforce ? (cfg.flags | FERRY_CFG_F_POLICY) : (cfg.flags & ~uint32_t{FERRY_CFG_F_POLICY});
  cfg.policy_rev = revision;
  if (bpf_map_update_elem(fd, &zero, &cfg, BPF_ANY) != 0)
    throw std::runtime_error("ferry_cfg_v3 update: " + errno_text(errno));
}

void DatapathTest::add_ipcache(const std::string& cidr, uint32_t identity) {
  const auto key = lpm_addr_key<ferry_ipcache_key>(cidr);
  ferry_ipcache_value value{};
  value.identity = identity;
  if (bpf_map_update_elem(bpf_map__fd(skel()->maps.ferry_ipc_v1), &key, &value, BPF_ANY) != 0)
    throw std::runtime_error("ferry_ipc_v1 update: " + errno_text(errno));
}

void DatapathTest::allow(uint32_t endpoint_id, uint8_t dir, uint32_t peer, uint8_t proto, uint16_t first,
                         uint16_t last) {
  ferry_policy_key key{};
  key.endpoint_id = endpoint_id;
  key.identity = peer;
  key.direction = dir;
  key.proto = proto;
  std::vector<policy::PortPrefix> prefixes{{0, 0}};
  if (proto != 0) prefixes = policy::port_range_prefixes(first, last);
  for (const policy::PortPrefix& p : prefixes) {
    key.prefixlen = FERRY_POLICY_KEY_EXACT_BITS + static_cast<uint32_t>(proto ? p.len : 0);
    key.dport = htons(proto ? p.port : 0);
    const ferry_policy_value value{};
    if (bpf_map_update_elem(bpf_map__fd(skel()->maps.ferry_pol_v1), &key, &value, BPF_ANY) != 0)
      throw std::runtime_error("ferry_pol_v1 update: " + errno_text(errno));
  }
}

void DatapathTest::clear_policy_entries() {
  const int fd = bpf_map__fd(skel()->maps.ferry_pol_v1);
  ferry_policy_key key{};
  while (bpf_map_get_next_key(fd, nullptr, &key) == 0)
    if (bpf_map_delete_elem(fd, &key) != 0) throw std::runtime_error("ferry_pol_v1 delete: " + errno_text(errno));
}

void DatapathTest::add_endpoint(const Pod& pod, const Addr& ip, uint32_t flags) {
  ferry_endpoint_key key{};
  key.family = ip.family;
  std::memcpy(key.addr, ip.bytes.data(), ip.size());
  ferry_endpoint_value value{};
  value.ifindex = pod.ifindex;
  value.endpoint_id = pod.endpoint_id;
  std::memcpy(value.pod_mac, pod.pod_mac.data(), 6);
  std::memcpy(value.host_mac, pod.host_mac.data(), 6);
  value.flags = flags;
  if (bpf_map_update_elem(bpf_map__fd(skel()->maps.ferry_ep_v1), &key, &value, BPF_ANY) != 0)
    throw std::runtime_error("ferry_ep_v1 update: " + errno_text(errno));
}

std::string bpf_source_line(uint8_t file, uint16_t line) {
  std::string path = FERRY_SOURCE_DIR "/bpf/";
  switch (file) {
    case FERRY_SRC_LXC: path += "ferry_lxc.bpf.c"; break;
    case FERRY_SRC_CT: path += "lib/conntrack.h"; break;
    case FERRY_SRC_PARSE: path += "lib/parse.h"; break;
    case FERRY_SRC_OVERLAY: path += "lib/overlay.h"; break;
    case FERRY_SRC_POLICY: path += "lib/policy.h"; break;
    case FERRY_SRC_LB: path += "lib/lb.h"; break;
    case FERRY_SRC_NAT: path += "lib/nat.h"; break;
    default: return "";
  }
  std::ifstream in(path);
  std::string text;
  for (uint16_t i = 0; i < line && std::getline(in, text); ++i) {
  }
  return text;
}

ferry_ct_key ct_key(const Addr& saddr, const Addr& daddr, uint16_t sport, uint16_t dport,
                    uint8_t proto) {
  ferry_ct_key key{};
  std::memcpy(key.saddr, saddr.bytes.data(), saddr.size());
  std::memcpy(key.daddr, daddr.bytes.data(), daddr.size());
  key.sport = htons(sport);
  key.dport = htons(dport);
  key.proto = proto;
  key.family = saddr.family;
  return key;
}

std::optional<ferry_ct_value> DatapathTest::ct(const Addr& saddr, const Addr& daddr,
                                               uint16_t sport, uint16_t dport,
                                               uint8_t proto) const {
  const ferry_ct_key key = ct_key(saddr, daddr, sport, dport, proto);
  ferry_ct_value value{};
  if (bpf_map_lookup_elem(bpf_map__fd(skel()->maps.ferry_ct_v2), &key, &value) != 0)
    return std::nullopt;
  return value;
}

size_t DatapathTest::ct_entries() const {
  const int fd = bpf_map__fd(skel()->maps.ferry_ct_v2);
  size_t n = 0;
  ferry_ct_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    ++n;
    key = next;
    prev = &key;
  }
  return n;
}

ferry_counter_value DatapathTest::counter(uint32_t index) const {
  const int cpus = libbpf_num_possible_cpus();
  if (cpus <= 0) throw std::runtime_error("libbpf_num_possible_cpus failed");
  std::vector<ferry_counter_value> per_cpu(static_cast<size_t>(cpus));
  if (bpf_map_lookup_elem(bpf_map__fd(skel()->maps.ferry_ctr_v1), &index, per_cpu.data()) != 0)
    throw std::runtime_error("ferry_ctr_v1 lookup: " + errno_text(errno));
  ferry_counter_value sum{};
  for (const auto& v : per_cpu) {
    sum.packets += v.packets;
    sum.bytes += v.bytes;
  }
  return sum;
}

}  // namespace ferry::bpftest
