// Names and decoding of the BPF ABI values (pure; shared by the backend, ferryctl and tests).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>

#include <cstring>

#include "agent/ebpf/internal.h"

namespace ferry::ebpf {

std::string counter_name(int index) {
  switch (index) {
    case FERRY_CTR_FROM_POD: return "from_pod";
    case FERRY_CTR_TO_POD: return "to_pod";
    case FERRY_CTR_REDIRECT_LOCAL: return "redirect_local";
    case FERRY_CTR_TO_STACK: return "to_stack";
    case FERRY_CTR_CT_NEW: return "ct_new";
    case FERRY_CTR_CT_ESTABLISHED: return "ct_established";
    case FERRY_CTR_CT_REPLY: return "ct_reply";
    case FERRY_CTR_PASS_NON_IP: return "pass_non_ip";
    case FERRY_CTR_EVENT_LOST: return "event_lost";
    case FERRY_CTR_CT_RELATED: return "ct_related";
    case FERRY_CTR_REDIRECT_TUNNEL: return "redirect_tunnel";
    case FERRY_CTR_FROM_OVERLAY: return "from_overlay";
    default: break;
  }
  if (index > FERRY_CTR_DROP_BASE && index < FERRY_CTR_MAX)
    return "drop_" + drop_reason_name(static_cast<uint32_t>(index - FERRY_CTR_DROP_BASE));
  return "";
}

std::string drop_reason_name(uint32_t reason) {
  switch (reason) {
    case FERRY_DROP_INVALID: return "invalid";
    case FERRY_DROP_SPOOFED: return "spoofed";
    case FERRY_DROP_POLICY: return "policy";
    case FERRY_DROP_NO_SERVICE: return "no_service";
    case FERRY_DROP_NOT_READY: return "not_ready";
    case FERRY_DROP_CT_FULL: return "ct_full";
    default: return "reason_" + std::to_string(reason);
  }
}

std::string ct_state_name(uint8_t state) {
  switch (state) {
    case FERRY_CT_NEW: return "new";
    case FERRY_CT_ESTABLISHED: return "established";
    case FERRY_CT_CLOSING: return "closing";
    default: return "state_" + std::to_string(state);
  }
}

std::string protocol_name(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP: return "tcp";
    case IPPROTO_UDP: return "udp";
    case IPPROTO_ICMP: return "icmp";
    case IPPROTO_ICMPV6: return "icmpv6";
    case IPPROTO_SCTP: return "sctp";
    default: return std::to_string(proto);
  }
}

std::string hook_name(uint8_t hook) {
  switch (hook) {
    case FERRY_HOOK_FROM_POD: return "from-pod";
    case FERRY_HOOK_TO_POD: return "to-pod";
    case FERRY_HOOK_FROM_OVERLAY: return "from-overlay";
    default: return "hook_" + std::to_string(hook);
  }
}

std::string source_file_name(uint8_t file) {
  switch (file) {
    case FERRY_SRC_LXC: return "bpf/ferry_lxc.bpf.c";
    case FERRY_SRC_CT: return "bpf/lib/conntrack.h";
    case FERRY_SRC_PARSE: return "bpf/lib/parse.h";
    case FERRY_SRC_OVERLAY: return "bpf/lib/overlay.h";
    case FERRY_SRC_POLICY: return "bpf/lib/policy.h";
    default: return "file_" + std::to_string(file);
  }
}

std::string direction_name(uint8_t dir) {
  switch (dir) {
    case 0: return "";
    case FERRY_DIR_INGRESS: return "ingress";
    case FERRY_DIR_EGRESS: return "egress";
    default: return "direction_" + std::to_string(dir);
  }
}

static bool has_ports(uint8_t proto) {
  return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP;
}

std::string endpoint_str(const net::Ip& ip, uint16_t port, uint8_t proto) {
  std::string addr = ip.family == AF_INET6 ? "[" + ip.str() + "]" : ip.str();
  if (!has_ports(proto)) return ip.str();
  return addr + ":" + std::to_string(port);
}

bool EndpointEntry::programmed() const { return (flags & FERRY_EP_F_PROGRAMMED) != 0; }

std::optional<DropEvent> decode_drop_event(const void* data, size_t size) {
  ferry_drop_event raw{};
  if (size < sizeof(raw)) return std::nullopt;
  std::memcpy(&raw, data, sizeof(raw));
  if (raw.type != FERRY_EVENT_DROP) return std::nullopt;
  DropEvent ev;
  ev.ts_ns = raw.ts_ns;
  // Monotonic -> wall clock: the event happened (now_mono - ts) ago.
  timespec mono{}, real{};
  clock_gettime(CLOCK_MONOTONIC, &mono);
  clock_gettime(CLOCK_REALTIME, &real);
  double mono_now = static_cast<double>(mono.tv_sec) + mono.tv_nsec / 1e9;
  double real_now = static_cast<double>(real.tv_sec) + real.tv_nsec / 1e9;
  ev.wall_time = real_now - (mono_now - static_cast<double>(raw.ts_ns) / 1e9);
  ev.reason = raw.reason;
  ev.reason_name = drop_reason_name(raw.reason);
  ev.hook = raw.hook;
  ev.ifindex = raw.ifindex;
  ev.endpoint_id = raw.endpoint_id;
  ev.family = raw.family;
  ev.proto = raw.proto;
  ev.src = detail::ip_from(raw.family, raw.saddr);
  ev.dst = detail::ip_from(raw.family, raw.daddr);
  ev.sport = ntohs(raw.sport);
  ev.dport = ntohs(raw.dport);
  ev.pkt_len = raw.pkt_len;
  ev.direction = raw.direction;
  ev.source = source_file_name(raw.source_file) + ":" + std::to_string(raw.source_line);
  return ev;
}

std::string node_bpffs_root(const std::string& node) { return std::string(kBpffsMount) + "/ferry/" + node; }

namespace detail {

net::Ip ip_from(uint8_t family, const uint8_t* addr16) {
  net::Ip ip;
  ip.family = family == AF_INET6 ? AF_INET6 : AF_INET;
  std::memcpy(ip.bytes.data(), addr16, ip.size());
  return ip;
}

ferry_endpoint_key endpoint_key(const net::Ip& ip) {
  ferry_endpoint_key key{};
  key.family = static_cast<uint8_t>(ip.family);
  std::memcpy(key.addr, ip.bytes.data(), ip.size());
  return key;
}

ferry_tunnel_key tunnel_key(const net::Prefix& pod_cidr) { return addr_prefix_key<ferry_tunnel_key>(pod_cidr, "pod CIDR"); }

ferry_tunnel_value tunnel_value(const dataplane::OverlayRoute& route) {
  ferry_tunnel_value value{};
  std::copy(route.vtep_mac.begin(), route.vtep_mac.end(), value.vtep_mac);
  value.node_family = static_cast<uint8_t>(route.node_ip.family);
  std::memcpy(value.node_ip, route.node_ip.bytes.data(), static_cast<size_t>(route.node_ip.size()));
  return value;
}

net::Prefix tunnel_cidr(const ferry_tunnel_key& key) { return addr_prefix_of(key); }

dataplane::OverlayRoute decode_tunnel(const ferry_tunnel_key& key, const ferry_tunnel_value& value) {
  dataplane::OverlayRoute r;
  r.pod_cidr = tunnel_cidr(key);
  r.node_ip = ip_from(value.node_family, value.node_ip);
  std::copy(std::begin(value.vtep_mac), std::end(value.vtep_mac), r.vtep_mac.begin());
  return r;
}

uint64_t monotonic_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace detail
}  // namespace ferry::ebpf
