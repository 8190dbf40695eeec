// agent/overlay/overlay.h — the VXLAN overlay between nodes (DESIGN.md "Overlay"), kernel side:
// one classic VXLAN device per node (`ferry_vxlan`, nolearning) and, for every other node with a
// pod CIDR and an InternalIP, an onlink route for its pod CIDR via its VTEP address, a permanent
// neighbour entry (VTEP address -> VTEP MAC) and an FDB entry (VTEP MAC -> underlay IP); plus
// masquerade of pod traffic leaving the cluster's pod CIDRs (nat FERRY-POSTROUTING, ipsets
// ferry-pods-v4/v6). The same in both datapath modes; the eBPF backend adds its direct path on
// top from dataplane_view().
//
//   ClusterState ──plan_overlay (pure)──► OverlayPlan ──KernelOverlay::apply──► kernel
//                                              │                     └─dataplane_view()──► Dataplane::program_overlay
//                                              └─render_conflist (pure)──► the node's CNI conflist
//
// VTEP MACs derive from underlay addresses (vtep_mac), and each node's VTEP address is its pod
// CIDR's network address (Flannel style: 10.244.2.0 for 10.244.2.0/24), which the node puts on
// its own ferry_vxlan as /32 (/128) so node-originated traffic to remote pods has a pod-CIDR
// source. Nodes exchange nothing beyond the Node object.
//
// Ownership, so a restart finds exactly what is ours: the device by name; routes by protocol
// kRouteProtocol; neighbours and FDB entries: every permanent one on the device; iptables rules
// by their `ferry:` comments; the two ipsets by name.
//
// Errors: plan_overlay and render_conflist never throw (problems are reported in the plan).
// KernelOverlay throws OverlayError (a std::runtime_error with the kernel object and the cause);
// the agent's loop catches it, counts it and retries on the next resync. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "agent/dataplane/dataplane.h"
#include "net/net.h"

namespace ferry::model {
class ClusterState;
}

namespace ferry::overlay {

class OverlayError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr std::string_view kDevice = "ferry_vxlan";
// rtm_protocol of the overlay routes ("proto 254" in `ip route`): not used by iproute2's
// rt_protos or any routing daemon we know, so the agent finds exactly its own routes.
inline constexpr int kRouteProtocol = 0xfe;
inline constexpr int kVxlanOverhead = 50;  // outer IPv4 (20) + UDP (8) + VXLAN (8) + inner Ethernet (14)
inline constexpr std::string_view kPodSetV4 = "ferry-pods-v4";
inline constexpr std::string_view kPodSetV6 = "ferry-pods-v6";
inline constexpr std::string_view kNatChain = "FERRY-POSTROUTING";

// The node's VTEP MAC: 0e:fe:a:b:c:d for underlay IPv4 a.b.c.d (locally administered unicast).
// An IPv6 underlay address uses its last four bytes.
net::Mac vtep_mac(const net::Ip& underlay_ip);

struct OverlayConfig {
  std::string device = std::string(kDevice);
  uint32_t vni = 1;
  uint16_t port = 8472;
  std::string underlay_interface;  // "" = the interface that holds the node's underlay IP
  int mtu = 0;                     // 0 = the underlay's MTU - kVxlanOverhead
  bool masquerade = true;          // nat FERRY-POSTROUTING + ipsets
  bool operator==(const OverlayConfig&) const = default;
};

struct RemoteNode {
  std::string name;
  net::Ip underlay_ip;
  net::Mac vtep_mac{};
  std::vector<net::Prefix> pod_cidrs;  // network form, sorted
  bool operator==(const RemoteNode&) const = default;
};

struct OverlayPlan {
  OverlayConfig config;
  std::string self_node;
  std::optional<net::Ip> local_underlay_ip;  // unset: the node's own Node object or InternalIP is missing
  std::vector<net::Prefix> local_pod_cidrs;   // network form, sorted
  std::vector<RemoteNode> remotes;            // sorted by name; self excluded
  std::vector<net::Prefix> cluster_pod_cidrs; // every node's pod CIDRs (self included), sorted
  std::vector<std::string> skipped;           // "node n4: no InternalIP", one line per skipped node
  // Whether the kernel can be programmed: the node knows its own underlay address.
  bool ready() const { return local_underlay_ip.has_value(); }
  bool operator==(const OverlayPlan&) const = default;
};

// Pure. A node's underlay IP is its first IPv4 InternalIP, else its first IPv6 one; remote nodes
// whose underlay family differs from the local one, or that have no pod CIDR or no InternalIP,
// are skipped with a reason. Two nodes with the same underlay IP: the first by name is kept.
OverlayPlan plan_overlay(const model::ClusterState& state, std::string_view self_node, const OverlayConfig& config);

// Sort order of dataplane::Overlay::routes and of the plan's prefixes: family, bytes, length.
bool prefix_less(const net::Prefix& a, const net::Prefix& b);

// ---------------------------------------------------------------------------------------
// The node's CNI conflist (pure).

struct ConflistOptions {
  std::string network = "ferry";
  std::string bridge = "ferry0";
  int mtu = 0;  // 0 = omitted (the bridge plugin's default)
  std::string endpoint_dir;
  std::string agent_socket;
  std::string ipam_dir = "/var/lib/cni/networks";
  bool agent_required = true;
};
// ferry-bridge (isGateway, ipMasq false: the agent masquerades) with ferry-host-local, one range
// per pod CIDR, routes 0.0.0.0/0 and ::/0 for the families present. "" when there is no pod CIDR.
std::string render_conflist(const std::vector<net::Prefix>& pod_cidrs, const ConflistOptions& options);

// ---------------------------------------------------------------------------------------
// The kernel side

struct ApplyResult {
  uint64_t kernel_writes = 0;  // writes this call made
  size_t remote_nodes = 0;
  int mtu = 0;                 // the device's MTU
  bool device_created = false;
};

// What the agent's loop drives (KernelOverlay, or a fake in tests).
class Applier {
 public:
  virtual ~Applier() = default;
  // Brings the kernel in line with `plan` (which must be ready()): reads what is there, writes
  // only the difference. Throws OverlayError.
  virtual ApplyResult apply(const OverlayPlan& plan) = 0;
  // Removes the device (its routes, neighbours, FDB entries and addresses go with it), stray
  // overlay routes, the masquerade rules and the ipsets. Returns the writes it made.
  virtual uint64_t cleanup() = 0;
  // The overlay as the datapath sees it after the last apply(); empty device before one.
  virtual dataplane::Overlay dataplane_view() const = 0;
  virtual uint64_t kernel_writes() const = 0;  // since construction
};

// Programs the network namespace it was created in (netlink socket bound at construction;
// iptables/ipset run in the calling thread's namespace, so use it from that namespace).
class KernelOverlay : public Applier {
 public:
  KernelOverlay();
  ~KernelOverlay() override;
  ApplyResult apply(const OverlayPlan& plan) override;
  uint64_t cleanup() override;
  dataplane::Overlay dataplane_view() const override { return view_; }
  uint64_t kernel_writes() const override { return writes_; }

 private:
  int ensure_device(const OverlayPlan& plan, ApplyResult* r);
  void sync_addresses(const OverlayPlan& plan, int index);
  void sync_remotes(const OverlayPlan& plan, int index);
  void sync_masquerade(const OverlayPlan& plan);
  uint64_t remove_masquerade();

  std::unique_ptr<net::Socket> sock_;
  dataplane::Overlay view_;
  uint64_t writes_ = 0;
};

}  // namespace ferry::overlay
