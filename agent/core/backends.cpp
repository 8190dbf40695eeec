// The datapath backends by mode: eBPF (agent/ebpf) and iptables (agent/iptables).
#include <unistd.h>

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "agent/core/agent.h"
#include "agent/ebpf/ebpf.h"
#include "agent/iptables/iptables.h"
#include "agent/model/model.h"
#include "agent/overlay/overlay.h"

namespace ferry::agent {

std::string choose_datapath(const std::string& requested, std::string* why) {
  std::string reason;
  bool ebpf_ok = ebpf::ebpf_supported(&reason);
  if (requested == "auto") {
    if (why) *why = ebpf_ok ? "auto: the kernel supports the eBPF datapath" : "auto: eBPF not usable: " + reason;
    return ebpf_ok ? "ebpf" : "iptables";
  }
  if (why) {
    *why = "requested with --datapath";
    if (requested == "ebpf" && !ebpf_ok) *why += " (warning: eBPF looks unusable: " + reason + ")";
  }
  return requested;
}

std::unique_ptr<dataplane::Dataplane> make_backend(const std::string& mode, const AgentConfig& config,
                                                   const model::ClusterState* cluster) {
  if (mode == "ebpf") {
    ebpf::EbpfConfig c;
    c.bpffs_root = config.bpffs_root;
    c.lb_algorithm = config.lb_algorithm;
    // --services off: no socket hooks and no NodePort programs (program_services gets an empty set).
    c.socket_lb = config.services == "on";
    c.nodeport_devices = config.nodeport_devices;
    if (c.nodeport_devices.empty() && config.services == "on") {
      const model::Node* node = cluster ? cluster->node(config.node) : nullptr;
      c.nodeport_devices =
          ebpf::nodeport_devices_for(nodeport_addresses_of(node_addresses(), node, config.nodeport_addresses));
      spdlog::info("NodePort devices (interfaces holding the NodePort addresses): {}",
                   c.nodeport_devices.empty() ? "none" : fmt::format("{}", fmt::join(c.nodeport_devices, ", ")));
    }
    return ebpf::make_ebpf_dataplane(c);
  }
  if (mode == "iptables") {
    iptables::IptablesConfig c;
    // A node (netns) without IPv6 has no ip6tables to program.
    c.ipv6 = access("/proc/sys/net/ipv6", F_OK) == 0;
    // kube-proxy's --cluster-cidr: the pod CIDRs of the nodes known now (Services' Local
    // NodePort path tells pods from outside clients by it). Nodes that join later need a restart.
    if (cluster)
      c.cluster_cidrs = overlay::plan_overlay(*cluster, config.node, overlay::OverlayConfig{}).cluster_pod_cidrs;
    return iptables::make_iptables_dataplane(c);
  }
  throw AgentError("unknown datapath \"" + mode + "\"");
}

}  // namespace ferry::agent
