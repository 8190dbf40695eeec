// Bridge configuration: reference defaults and validation messages.
#include "config.h"

#include <algorithm>
#include <set>

namespace ferry::bridge {

namespace {

using cni::Error;
using cni::json;

// Go's encoding/json matches keys case-insensitively; so do we (an exact match wins).
// null counts as absent, as it leaves Go's default in place.
const json* field(const json& obj, std::string_view key) {
  const json* v = cni::find_key_ci(obj, key);
  return v && !v->is_null() ? v : nullptr;
}

[[noreturn]] void wrong_type(std::string_view key, std::string_view want, const json& got) {
  throw Error(cni::kDecodingFailure, "field \"" + std::string(key) + "\" must be " + std::string(want),
              "got " + got.dump());
}

bool get_bool(const json& obj, std::string_view key) {
  const json* v = field(obj, key);
  if (!v) return false;
  if (!v->is_boolean()) wrong_type(key, "a boolean", *v);
  return v->get<bool>();
}

std::optional<int64_t> get_int(const json& obj, std::string_view key) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_number_integer()) wrong_type(key, "an integer", *v);
  if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(INT32_MAX))
    throw Error(cni::kInvalidConfig, "field \"" + std::string(key) + "\" is out of range", "got " + v->dump());
  int64_t n = v->get<int64_t>();
  if (n < INT32_MIN || n > INT32_MAX)
    throw Error(cni::kInvalidConfig, "field \"" + std::string(key) + "\" is out of range", "got " + v->dump());
  return n;
}

std::optional<std::string> get_string(const json& obj, std::string_view key) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(key, "a string", *v);
  return v->get<std::string>();
}

net::Mac parse_mac_field(const std::string& text, std::string_view source) {
  auto mac = net::parse_mac(text);
  if (!mac)
    throw Error(cni::kInvalidConfig, "invalid MAC address \"" + text + "\" in " + std::string(source),
                "use six colon-separated hex octets, e.g. c2:11:22:33:44:55");
  if ((*mac)[0] & 0x01)
    throw Error(cni::kInvalidConfig, "MAC address \"" + text + "\" in " + std::string(source) + " is multicast",
                "the least significant bit of the first octet must be 0");
  return *mac;
}

// vlanTrunk: [{"id":101},{"minID":200,"maxID":299}] -> sorted unique ids (reference messages).
std::vector<int> collect_vlan_trunk(const json& list) {
  if (!list.is_array()) wrong_type("vlanTrunk", "a list of {id} / {minID, maxID} objects", list);
  std::set<int> ids;
  for (const json& item : list) {
    if (!item.is_object()) wrong_type("vlanTrunk", "a list of {id} / {minID, maxID} objects", list);
    auto min_id = get_int(item, "minID");
    auto max_id = get_int(item, "maxID");
    auto id = get_int(item, "id");
    if (min_id && max_id) {
      if (*min_id <= 0 || *min_id > 4094) throw Error(cni::kInvalidConfig, "incorrect trunk minID parameter");
      if (*max_id <= 0 || *max_id > 4094) throw Error(cni::kInvalidConfig, "incorrect trunk maxID parameter");
      if (*max_id < *min_id) throw Error(cni::kInvalidConfig, "minID is greater than maxID in trunk parameter");
      for (int64_t v = *min_id; v <= *max_id; ++v) ids.insert(static_cast<int>(v));
    } else if (max_id) {
      throw Error(cni::kInvalidConfig, "minID and maxID should be configured simultaneously, minID is missing");
    } else if (min_id) {
      throw Error(cni::kInvalidConfig, "minID and maxID should be configured simultaneously, maxID is missing");
    }
    if (id) {
      if (*id <= 0 || *id > 4094) throw Error(cni::kInvalidConfig, "incorrect trunk id parameter");
      ids.insert(static_cast<int>(*id));
    }
  }
  return {ids.begin(), ids.end()};
}

}  // namespace

BridgeConf parse_conf(const cni::NetConf& conf, std::string_view cni_args) {
  const json& raw = conf.raw;
  BridgeConf c;
  c.network = conf.name;
  c.cni_version = conf.cni_version;

  if (auto br = get_string(raw, "bridge"); br && !br->empty()) c.bridge = *br;
  if (!cni::valid_interface_name(c.bridge))
    throw Error(cni::kInvalidConfig, "invalid bridge name \"" + c.bridge + "\"",
                "a link name has 1 to 15 characters and no '/', ':' or whitespace");
  c.is_gateway = get_bool(raw, "isGateway");
  c.is_default_gateway = get_bool(raw, "isDefaultGateway");
  if (c.is_default_gateway) c.is_gateway = true;
  c.force_address = get_bool(raw, "forceAddress");
  c.ip_masq = get_bool(raw, "ipMasq");
  if (auto backend = get_string(raw, "ipMasqBackend")) {
    if (*backend == "iptables") c.ip_masq_backend = MasqBackend::kIptables;
    else if (*backend == "nftables") c.ip_masq_backend = MasqBackend::kNftables;
    else
      throw Error(cni::kInvalidConfig, "unknown ipMasqBackend \"" + *backend + "\"",
                  "use \"iptables\" or \"nftables\", or leave it out");
  }
  if (auto mtu = get_int(raw, "mtu")) {
    if (*mtu < 0 || *mtu > 65535)
      throw Error(cni::kInvalidConfig, "invalid MTU " + std::to_string(*mtu), "use 0 (kernel default) or 68..65535");
    c.mtu = static_cast<int>(*mtu);
  }
  c.hairpin_mode = get_bool(raw, "hairpinMode");
  c.promisc_mode = get_bool(raw, "promiscMode");
  if (c.hairpin_mode && c.promisc_mode)
    throw Error(cni::kInvalidConfig, "cannot set hairpin mode and promiscuous mode at the same time.");
  if (auto vlan = get_int(raw, "vlan")) {
    if (*vlan < 0 || *vlan > 4094)
      throw Error(cni::kInvalidConfig, "invalid VLAN ID " + std::to_string(*vlan) + " (must be between 0 and 4094)");
    c.vlan = static_cast<int>(*vlan);
  }
  if (const json* trunk = field(raw, "vlanTrunk")) {
    c.vlan_trunk = collect_vlan_trunk(*trunk);
    c.vlan_trunk_set = true;
  }
  if (c.vlan != 0 && c.is_gateway && c.bridge.size() + 1 + std::to_string(c.vlan).size() > 15)
    throw Error(cni::kInvalidConfig,
                "bridge name \"" + c.bridge + "\" is too long for its VLAN gateway interface \"" + c.bridge +
                    "." + std::to_string(c.vlan) + "\"",
                "interface names have at most 15 characters");
  c.preserve_default_vlan = get_bool(raw, "preserveDefaultVlan");
  c.macspoofchk = get_bool(raw, "macspoofchk");
  c.enable_dad = get_bool(raw, "enabledad");
  c.disable_container_interface = get_bool(raw, "disableContainerInterface");
  c.port_isolation = get_bool(raw, "portIsolation");

  if (conf.ipam.is_object()) c.ipam_type = get_string(conf.ipam, "type").value_or("");
  if (c.disable_container_interface && c.layer3())
    throw Error(cni::kInvalidConfig, "cannot use IPAM when DisableContainerInterface flag is set");
  c.dns = conf.dns;

  if (auto dir = get_string(raw, "endpointDir"); dir && !dir->empty()) c.endpoint_dir = *dir;
  if (auto sock = get_string(raw, "agentSocket"); sock && !sock->empty()) c.agent_socket = *sock;
  c.agent_required = get_bool(raw, "agentRequired");
  if (auto ms = get_int(raw, "agentTimeoutMs")) {
    if (*ms < 1 || *ms > 600000)
      throw Error(cni::kInvalidConfig, "\"agentTimeoutMs\" must be between 1 and 600000, got " + std::to_string(*ms));
    c.agent_timeout_ms = static_cast<int>(*ms);
  }

  // Container MAC, lowest precedence first.
  cni::CniArgs env = cni::parse_cni_args(cni_args, {"MAC", "IP"});
  if (auto mac = env.get("MAC"); mac && !mac->empty()) c.mac = parse_mac_field(*mac, "CNI_ARGS MAC");
  c.pod_namespace = env.get("K8S_POD_NAMESPACE").value_or("");
  c.pod_name = env.get("K8S_POD_NAME").value_or("");
  if (const json* cni_obj = field(conf.args, "cni")) {
    if (auto mac = get_string(*cni_obj, "mac"); mac && !mac->empty()) c.mac = parse_mac_field(*mac, "args.cni.mac");
  }
  if (const json* mac = conf.runtime("mac"); mac && !mac->is_null()) {
    if (!mac->is_string()) wrong_type("runtimeConfig.mac", "a string", *mac);
    if (!mac->get<std::string>().empty()) c.mac = parse_mac_field(mac->get<std::string>(), "runtimeConfig.mac");
  }
  return c;
}

}  // namespace ferry::bridge
