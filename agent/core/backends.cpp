// The datapath backends by mode: eBPF (agent/ebpf) and iptables (agent/iptables).
#include <unistd.h>

#include <spdlog/spdlog.h>

#include "agent/core/agent.h"
#include "agent/ebpf/ebpf.h"
#include "agent/iptables/iptables.h"

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

std::unique_ptr<dataplane::Dataplane> make_backend(const std::string& mode, const AgentConfig& config) {
  if (mode == "ebpf") {
    ebpf::EbpfConfig c;
    c.bpffs_root = config.bpffs_root;
    return ebpf::make_ebpf_dataplane(c);
  }
  if (mode == "iptables") {
    iptables::IptablesConfig c;
    // A node (netns) without IPv6 has no ip6tables to program.
    c.ipv6 = access("/proc/sys/net/ipv6", F_OK) == 0;
    return iptables::make_iptables_dataplane(c);
  }
  throw AgentError("unknown datapath \"" + mode + "\"");
}

}  // namespace ferry::agent
