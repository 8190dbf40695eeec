#include "plugins/portmap/config.h"

#include <string_view>

namespace ferry::portmap {
namespace {

using cni::Error;
using cni::json;

// A key that is absent or JSON null counts as "not specified" (the reference decodes into
// pointers, so null and absent are the same there too).
const json* specified(const json& obj, std::string_view key) {
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::vector<std::string> conditions(const json& raw, std::string_view key, bool backend_explicit) {
  if (!specified(raw, key)) return {};
  std::vector<std::string> tokens = cni::get_string_list(raw, key);
  if (tokens.empty()) return tokens;
  const std::string& first = tokens.front();
  if (!first.empty() && (first[0] == '-' || first[0] == '!')) return tokens;
  // The reference reads conditions that do not start like an iptables match as nft syntax.
  if (backend_explicit)
    throw Error(cni::kInvalidConfig, "invalid " + std::string(key),
                std::string(key) + " must be iptables match arguments (starting with \"-\" or \"!\") "
                "with backend \"iptables\", got \"" + first + "\"");
  throw Error(cni::kUnsupportedField, "nftables conditions are not supported",
              std::string(key) + " starts with \"" + first +
                  "\", which is nftables syntax; ferry-portmap programs iptables only: write the "
                  "conditions as iptables match arguments (e.g. [\"-s\", \"10.0.0.0/8\"])");
}

void validate_mapping(const cni::PortMapping& m) {
  if (m.protocol != "tcp" && m.protocol != "udp" && m.protocol != "sctp")
    throw Error(cni::kInvalidConfig, "invalid port mapping protocol",
                "runtimeConfig.portMappings: protocol \"" + m.protocol + "\" for host port " +
                    std::to_string(m.host_port) + " is not one of tcp, udp, sctp");
  if (!m.host_ip.empty() && !cni::IPAddr::parse(m.host_ip))
    throw Error(cni::kInvalidConfig, "invalid port mapping hostIP",
                "runtimeConfig.portMappings: hostIP \"" + m.host_ip + "\" for host port " +
                    std::to_string(m.host_port) + " is not an IP address");
}

}  // namespace

Config parse_config(const cni::NetConf& conf) {
  const json& raw = conf.raw;
  Config c;
  c.network = conf.name;
  c.snat = cni::get_bool(raw, "snat", true);
  c.masq_all = cni::get_bool(raw, "masqAll", false);

  std::string backend = specified(raw, "backend") ? cni::get_string(raw, "backend") : "";
  if (backend == "nftables")
    throw Error(cni::kUnsupportedField, "backend \"nftables\" is not supported",
                "ferry-portmap programs iptables only; remove \"backend\" or set it to \"iptables\"");
  if (!backend.empty() && backend != "iptables")
    throw Error(cni::kInvalidConfig, "unknown backend \"" + backend + "\"",
                "\"backend\" must be \"iptables\" (or \"nftables\", which ferry-portmap does not support)");

  const bool has_bit = specified(raw, "markMasqBit") != nullptr;
  const bool has_chain = specified(raw, "externalSetMarkChain") != nullptr;
  if (has_bit && has_chain)
    throw Error(cni::kInvalidConfig, "cannot specify externalSetMarkChain and markMasqBit",
                "set either \"markMasqBit\" (ferry-portmap masquerades marked traffic itself) or "
                "\"externalSetMarkChain\" (an existing chain marks it), not both");
  if (has_bit) {
    int64_t bit = cni::get_int(raw, "markMasqBit", kDefaultMarkMasqBit);
    if (bit < 0 || bit > 31)
      throw Error(cni::kInvalidConfig, "markMasqBit must be between 0 and 31",
                  "got markMasqBit " + std::to_string(bit));
    c.mark_masq_bit = static_cast<int>(bit);
  }
  if (has_chain) {
    std::string chain = cni::get_string(raw, "externalSetMarkChain");
    // iptables chain names: 1..28 printable characters, no whitespace.
    bool ok = !chain.empty() && chain.size() <= 28 && chain[0] != '-' && chain[0] != '!';
    for (char ch : chain) ok = ok && ch > ' ' && ch < 0x7f && ch != '"' && ch != '\'';
    if (!ok)
      throw Error(cni::kInvalidConfig, "invalid externalSetMarkChain",
                  "\"" + chain + "\" is not an iptables chain name (1-28 printable characters, no spaces or quotes)");
    c.external_set_mark_chain = chain;
  }

  c.conditions_v4 = conditions(raw, "conditionsV4", !backend.empty());
  c.conditions_v6 = conditions(raw, "conditionsV6", !backend.empty());

  c.mappings = cni::port_mappings(conf);
  for (const auto& m : c.mappings) validate_mapping(m);
  return c;
}

ContainerAddrs container_addrs(const cni::Result& prev, const std::string& ifname) {
  ContainerAddrs out;
  for (const auto& ip : prev.ips) {
    if (ip.interface) {
      int idx = *ip.interface;
      // Like the reference: an index that names a known interface must be the sandbox
      // interface CNI_IFNAME; an out-of-range index does not exclude the address.
      if (idx >= 0 && idx < static_cast<int>(prev.interfaces.size())) {
        const cni::Interface& itf = prev.interfaces[idx];
        if (itf.name != ifname || itf.sandbox.empty()) continue;
      }
    }
    if (ip.address.addr.is_v4() && !out.v4) out.v4 = ip.address;
    if (ip.address.addr.is_v6() && !out.v6) out.v6 = ip.address;
  }
  return out;
}

}  // namespace ferry::portmap
