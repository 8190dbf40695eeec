// Fuzzes CNI_ARGS parsing and runtimeConfig.portMappings (through a NetConf), plus the
// small text parsers they lean on (IP addresses, CIDRs, versions, names).
// cni::Error is the expected rejection; anything else is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cni/cni.h"

namespace cni = ferry::cni;
using cni::json;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);

  try {
    cni::CniArgs args = cni::parse_cni_args(text, {"IP", "MAC"});
    for (const auto& [k, v] : args.pairs) {
      if (k.find(';') != std::string::npos) __builtin_trap();  // a pair never spans a separator
      if (args.get(k) == std::nullopt) __builtin_trap();
    }
  } catch (const cni::Error&) {
  }

  // The input as the portMappings value, and as a whole runtimeConfig.
  for (const std::string& conf :
       {R"({"cniVersion":"1.0.0","name":"fuzz","runtimeConfig":{"portMappings":)" + std::string(text) + "}}",
        R"({"cniVersion":"1.0.0","name":"fuzz","runtimeConfig":)" + std::string(text) + "}"}) {
    try {
      cni::NetConf c = cni::parse_net_conf(conf);
      for (const cni::PortMapping& pm : cni::port_mappings(c)) {
        if (pm.host_port < 1 || pm.host_port > 65535 || pm.container_port < 1 || pm.container_port > 65535)
          __builtin_trap();
        for (char ch : pm.protocol)
          if (ch >= 'A' && ch <= 'Z') __builtin_trap();
      }
    } catch (const cni::Error&) {
    }
  }

  if (auto ip = cni::IPAddr::parse(text)) {
    if (cni::IPAddr::parse(ip->str()) != ip) __builtin_trap();
    if (ip->next().prev() != *ip) __builtin_trap();
  }
  if (auto net = cni::IPNet::parse(text)) {
    if (!net->contains(net->addr) || !net->contains(net->broadcast())) __builtin_trap();
    if (!net->overlaps(net->network())) __builtin_trap();
    if (cni::IPNet::parse(net->str()) != net) __builtin_trap();
  }
  try {
    (void)cni::compare_versions(text, "1.0.0");
  } catch (const cni::Error&) {
  }
  (void)cni::valid_interface_name(text);
  (void)cni::valid_container_id(text);
  return 0;
}
