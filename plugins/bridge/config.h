// plugins/bridge/config.h — ferry-bridge's configuration: the reference bridge plugin's
// schema with its defaults and validation, plus ferry's optional endpoint-record keys.
//
// Errors: parse_conf throws cni::Error (kInvalidConfig for bad values, kDecodingFailure for
// wrong JSON types, kInvalidEnvironment for bad CNI_ARGS), naming the field.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cni/cni.h"
#include "net/net.h"

namespace ferry::bridge {

enum class MasqBackend { kDefault, kIptables, kNftables };

struct BridgeConf {
  std::string network;      // "name"
  std::string cni_version;
  std::string bridge = "cni0";
  bool is_gateway = false;  // forced true by is_default_gateway
  bool is_default_gateway = false;
  bool force_address = false;
  bool ip_masq = false;
  MasqBackend ip_masq_backend = MasqBackend::kDefault;  // kDefault: iptables unless absent
  int mtu = 0;              // 0 = kernel default
  bool hairpin_mode = false;
  bool promisc_mode = false;
  int vlan = 0;             // 0 = none, else 1..4094 (access VLAN on the host port)
  std::vector<int> vlan_trunk;  // sorted, unique tagged VLAN ids
  bool vlan_trunk_set = false;  // "vlanTrunk" present (even when it names no id)
  bool preserve_default_vlan = false;
  bool macspoofchk = false;
  bool enable_dad = false;
  bool disable_container_interface = false;
  bool port_isolation = false;
  std::string ipam_type;    // "" = L2 only (no addresses)
  cni::DNS dns;             // replaces IPAM's DNS in the result when not empty
  std::optional<net::Mac> mac;  // container MAC: CNI_ARGS MAC < args.cni.mac < runtimeConfig.mac
  std::string endpoint_dir = "/run/ferry/endpoints";  // ferry: endpoint records for the agent
  std::string agent_socket = "/run/ferry/agent.sock";
  // "agentRequired": ADD returns only after the agent confirmed the endpoint is programmed;
  // no agent or no answer within agent_timeout_ms fails ADD with code 11 (try again later).
  bool agent_required = false;
  int agent_timeout_ms = 10000;
  std::string pod_namespace;  // CNI_ARGS K8S_POD_NAMESPACE, for the endpoint record
  std::string pod_name;       // CNI_ARGS K8S_POD_NAME

  bool layer3() const { return !ipam_type.empty(); }
  bool vlan_filtering() const { return vlan != 0 || !vlan_trunk.empty(); }
};

// Applies defaults and validates, as the reference's loadNetConf does. `cni_args` is the
// raw CNI_ARGS (MAC=...; standard K8S_* keys and IgnoreUnknown are accepted).
BridgeConf parse_conf(const cni::NetConf& conf, std::string_view cni_args);

}  // namespace ferry::bridge
