// plugins/portmap/config.h — ferry-portmap's configuration: the reference portmap's schema
// (snat, masqAll, markMasqBit, externalSetMarkChain, conditionsV4/V6, backend, and the
// portMappings capability), parsed and validated, plus the container addresses a chained
// call acts on.
//
// Errors: throws cni::Error (kInvalidConfig, kDecodingFailure, kUnsupportedField).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "cni/cni.h"

namespace ferry::portmap {

// The reference default; Kubernetes uses bits 14 and 15, Calico 20-31.
inline constexpr int kDefaultMarkMasqBit = 13;

struct Config {
  std::string network;  // "name" of the network configuration
  bool snat = true;
  bool masq_all = false;
  int mark_masq_bit = kDefaultMarkMasqBit;
  std::optional<std::string> external_set_mark_chain;
  std::vector<std::string> conditions_v4;  // extra iptables match tokens for the entry rules
  std::vector<std::string> conditions_v6;
  std::vector<cni::PortMapping> mappings;  // runtimeConfig.portMappings (case-insensitive keys)
};

// Applies the reference defaults and validation:
//   markMasqBit and externalSetMarkChain together      => kInvalidConfig
//   markMasqBit outside 0..31                          => kInvalidConfig
//   backend "nftables"                                 => kUnsupportedField (ferry-portmap
//                                                         programs iptables only)
//   backend anything else but "iptables"               => kInvalidConfig
//   conditions in nft syntax (first token not - or !)  => kInvalidConfig
//   a mapping with a port outside 1..65535, a protocol other than tcp/udp/sctp, or a
//   hostIP that is not an IP address                   => kInvalidConfig
//   a field of the wrong JSON type                      => kDecodingFailure
Config parse_config(const cni::NetConf& conf);

// The container's addresses the mappings forward to: the first IPv4 and the first IPv6
// address in prevResult that belong to the sandbox interface `ifname` (ips[].interface
// pointing at an interface with that name and a non-empty sandbox) or that name no
// interface at all.
struct ContainerAddrs {
  std::optional<cni::IPNet> v4;
  std::optional<cni::IPNet> v6;
};
ContainerAddrs container_addrs(const cni::Result& prev, const std::string& ifname);

}  // namespace ferry::portmap
