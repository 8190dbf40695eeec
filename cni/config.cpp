// Configuration as plugins and runtimes see it: typed field access, name validation, the
// plugin's stdin (NetConf), conflists, per-plugin config building, GC attachments,
// runtimeConfig.portMappings and CNI_ARGS.
#include <algorithm>
#include <cctype>

#include "cni/cni.h"

namespace ferry::cni {

namespace {

std::string type_of(const json& v) {
  if (v.is_number_integer() || v.is_number_unsigned()) return "integer";
  if (v.is_number_float()) return "number";
  return v.type_name();
}

[[noreturn]] void wrong_type(std::string_view key, std::string_view want, const json& got) {
  throw Error(kDecodingFailure,
              "field \"" + std::string(key) + "\" must be " + std::string(want) + ", got " + type_of(got));
}

// The member `key` of `obj`, or nullptr when obj is not an object or the member is absent/null
// (Go's encoding/json leaves the default in place for null).
const json* present(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

std::string lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string supported_list() {
  std::string s;
  for (auto v : kSupportedVersions) s += (s.empty() ? "" : ", ") + std::string(v);
  return s;
}

// "true"/"false" in any case, as libcni accepts for disableCheck/disableGC.
bool bool_or_bool_string(const json& obj, std::string_view key) {
  const json* v = present(obj, key);
  if (!v) return false;
  if (v->is_boolean()) return v->get<bool>();
  if (v->is_string()) {
    std::string s = lower(v->get<std::string>());
    if (s == "true") return true;
    if (s == "false") return false;
  }
  throw Error(kDecodingFailure, "field \"" + std::string(key) + "\" must be a boolean",
              "got " + v->dump() + "; use true or false");
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Typed getters

bool get_bool(const json& obj, std::string_view key, bool def) {
  const json* v = present(obj, key);
  if (!v) return def;
  if (!v->is_boolean()) wrong_type(key, "a boolean", *v);
  return v->get<bool>();
}

int64_t get_int(const json& obj, std::string_view key, int64_t def) {
  const json* v = present(obj, key);
  if (!v) return def;
  if (v->is_number_integer() && !v->is_number_unsigned()) return v->get<int64_t>();
  if (v->is_number_unsigned() && v->get<uint64_t>() <= static_cast<uint64_t>(INT64_MAX))
    return static_cast<int64_t>(v->get<uint64_t>());
  if (v->is_number_unsigned()) wrong_type(key, "a 64-bit integer", *v);
  wrong_type(key, "an integer", *v);
}

std::string get_string(const json& obj, std::string_view key, std::string_view def) {
  const json* v = present(obj, key);
  if (!v) return std::string(def);
  if (!v->is_string()) wrong_type(key, "a string", *v);
  return v->get<std::string>();
}

std::vector<std::string> get_string_list(const json& obj, std::string_view key) {
  const json* v = present(obj, key);
  if (!v) return {};
  if (!v->is_array()) wrong_type(key, "a list of strings", *v);
  std::vector<std::string> out;
  for (const json& e : *v) {
    if (!e.is_string()) wrong_type(key, "a list of strings", *v);
    out.push_back(e.get<std::string>());
  }
  return out;
}

const json* find_key_ci(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  if (auto it = obj.find(key); it != obj.end()) return &*it;  // an exact match wins (as in Go)
  for (auto it = obj.begin(); it != obj.end(); ++it)
    if (iequals(it.key(), key)) return &it.value();
  return nullptr;
}

// ---------------------------------------------------------------------------------------
// Validation

bool valid_interface_name(std::string_view name) {
  if (name.empty() || name.size() > 15 || name == "." || name == "..") return false;
  for (unsigned char c : name)
    if (c == '/' || c == ':' || std::isspace(c)) return false;
  return true;
}

bool valid_container_id(std::string_view id) {
  if (id.empty() || !std::isalnum(static_cast<unsigned char>(id[0]))) return false;
  return std::all_of(id.begin(), id.end(), [](char ch) {
    unsigned char c = static_cast<unsigned char>(ch);
    return std::isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}

bool valid_network_name(std::string_view name) { return valid_container_id(name); }

// ---------------------------------------------------------------------------------------
// NetConf

const json* NetConf::runtime(std::string_view key) const { return find_key_ci(runtime_config, key); }

NetConf parse_net_conf(std::string_view stdin_data) {
  json j;
  try {
    j = json::parse(stdin_data);
  } catch (const json::exception& e) {
    throw Error(kDecodingFailure, "failed to decode network configuration",
                std::string("stdin is not valid JSON: ") + e.what());
  }
  if (!j.is_object())
    throw Error(kDecodingFailure, "failed to decode network configuration",
                std::string("stdin must be a JSON object, got ") + j.type_name());

  NetConf c;
  c.name = get_string(j, "name");
  if (c.name.empty())
    throw Error(kInvalidConfig, "missing network name", "set \"name\" in the network configuration");
  if (!valid_network_name(c.name))
    throw Error(kInvalidConfig, "invalid characters found in network name",
                "\"" + c.name + "\" must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$");

  c.cni_version = get_string(j, "cniVersion");
  if (c.cni_version.empty()) c.cni_version = "0.1.0";  // missing or "" means 0.1.0 (libcni)
  if (!version_supported(c.cni_version))
    throw Error(kIncompatibleVersion, "incompatible CNI versions",
                "config is \"" + c.cni_version + "\", plugin supports [" + supported_list() + "]");

  c.type = get_string(j, "type");
  if (const json* caps = present(j, "capabilities")) {
    if (!caps->is_object()) wrong_type("capabilities", "an object of booleans", *caps);
    for (auto it = caps->begin(); it != caps->end(); ++it) {
      if (!it->is_boolean()) wrong_type("capabilities." + it.key(), "a boolean", *it);
      c.capabilities[it.key()] = it->get<bool>();
    }
  }
  auto object_or_null = [&](const char* key) -> json {
    const json* v = present(j, key);
    if (!v) return nullptr;
    if (!v->is_object()) wrong_type(key, "an object", *v);
    return *v;
  };
  c.ipam = object_or_null("ipam");
  c.runtime_config = object_or_null("runtimeConfig");
  c.args = object_or_null("args");
  if (const json* dns = present(j, "dns")) c.dns = dns_from_json(*dns);
  if (const json* prev = present(j, "prevResult")) {
    try {
      c.prev_result = result_from_json(*prev);
    } catch (const Error& e) {
      throw Error(kDecodingFailure, "failed to decode prevResult", e.details());
    }
    // An old runtime may omit prevResult.cniVersion; it is then the config's version.
    if (c.prev_result->cni_version.empty()) c.prev_result->cni_version = c.cni_version;
  }
  c.raw = std::move(j);
  return c;
}

// ---------------------------------------------------------------------------------------
// Conflists

NetworkList parse_network_list(std::string_view bytes) {
  json j;
  try {
    j = json::parse(bytes);
  } catch (const json::exception& e) {
    throw Error(kDecodingFailure, "failed to decode network configuration list", e.what());
  }
  if (!j.is_object())
    throw Error(kDecodingFailure, "failed to decode network configuration list",
                std::string("must be a JSON object, got ") + j.type_name());

  NetworkList list;
  if (!j.contains("plugins")) {
    // A single-plugin .conf: upconverted to a list of one, as libcni's ConfListFromConf does.
    if (get_string(j, "type").empty())
      throw Error(kInvalidConfig, "invalid network configuration",
                  "neither \"plugins\" (a conflist) nor \"type\" (a single plugin) is set");
    j = json{{"name", j.value("name", json())}, {"cniVersion", j.value("cniVersion", json())}, {"plugins", json::array({j})}};
  }

  list.name = get_string(j, "name");
  if (list.name.empty())
    throw Error(kInvalidConfig, "missing network name", "set \"name\" in the network configuration list");
  if (!valid_network_name(list.name))
    throw Error(kInvalidConfig, "invalid characters found in network name",
                "\"" + list.name + "\" must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$");

  // The highest of cniVersion ∪ cniVersions that ferry speaks; versions we do not know are
  // skipped rather than fatal (a newer runtime may list newer ones).
  std::vector<std::string> candidates = get_string_list(j, "cniVersions");
  if (std::string v = get_string(j, "cniVersion"); !v.empty()) candidates.push_back(v);
  for (const std::string& v : candidates)
    if (version_supported(v) && (list.cni_version.empty() || compare_versions(v, list.cni_version) > 0))
      list.cni_version = v;
  if (list.cni_version.empty()) {
    std::string given;
    for (const std::string& v : candidates) given += (given.empty() ? "" : ", ") + v;
    throw Error(kIncompatibleVersion, "no supported cniVersion in network \"" + list.name + "\"",
                "config lists [" + given + "], ferry supports [" + supported_list() + "]");
  }

  list.disable_check = bool_or_bool_string(j, "disableCheck");
  list.disable_gc = bool_or_bool_string(j, "disableGC");

  const json* plugins = present(j, "plugins");
  if (!plugins || !plugins->is_array())
    throw Error(kInvalidConfig, "invalid network configuration list",
                "\"plugins\" must be a list of plugin objects");
  if (plugins->empty())
    throw Error(kInvalidConfig, "invalid network configuration list", "no plugins in list \"" + list.name + "\"");
  for (size_t i = 0; i < plugins->size(); ++i) {
    const json& p = (*plugins)[i];
    std::string where = "plugins[" + std::to_string(i) + "]";
    if (!p.is_object()) wrong_type(where, "an object", p);
    const json* type = present(p, "type");
    if (!type || !type->is_string() || type->get<std::string>().empty())
      throw Error(kInvalidConfig, "invalid network configuration list", where + " has no \"type\"");
    list.plugins.push_back(p);
  }
  return list;
}

json build_plugin_config(const NetworkList& list, size_t index, const json& capability_args,
                         const std::optional<Result>& prev_result) {
  if (index >= list.plugins.size())
    throw Error(kInvalidConfig, "no plugin " + std::to_string(index) + " in network \"" + list.name + "\"",
                "the list has " + std::to_string(list.plugins.size()) + " plugins");
  json conf = list.plugins[index];
  if (!conf.is_object()) wrong_type("plugins[" + std::to_string(index) + "]", "an object", conf);
  conf["name"] = list.name;
  conf["cniVersion"] = list.cni_version;

  // runtimeConfig: only the capabilities this plugin declares and the runtime has data for;
  // left untouched when there is nothing to inject (libcni's injectRuntimeConfig).
  json rc = json::object();
  if (const json* caps = present(conf, "capabilities"); caps && caps->is_object() && capability_args.is_object()) {
    for (auto it = caps->begin(); it != caps->end(); ++it) {
      if (!it->is_boolean()) wrong_type("capabilities." + it.key(), "a boolean", *it);
      if (!it->get<bool>()) continue;
      if (auto arg = capability_args.find(it.key()); arg != capability_args.end()) rc[it.key()] = *arg;
    }
  }
  if (!rc.empty()) conf["runtimeConfig"] = std::move(rc);

  if (prev_result) conf["prevResult"] = result_to_json(*prev_result, list.cni_version);
  return conf;
}

// ---------------------------------------------------------------------------------------
// GC attachments

std::vector<Attachment> valid_attachments(const json& conf) {
  std::vector<Attachment> out;
  for (const char* key : {"cni.dev/valid-attachments", "cni.dev/attachments"}) {
    const json* list = present(conf, key);
    if (!list) continue;
    if (!list->is_array()) wrong_type(key, "a list of {\"containerID\",\"ifname\"} objects", *list);
    for (size_t i = 0; i < list->size(); ++i) {
      const json& e = (*list)[i];
      std::string where = std::string(key) + "[" + std::to_string(i) + "]";
      if (!e.is_object()) wrong_type(where, "an object", e);
      Attachment a{get_string(e, "containerID"), get_string(e, "ifname")};
      if (std::find(out.begin(), out.end(), a) == out.end()) out.push_back(std::move(a));
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// runtimeConfig.portMappings

std::vector<PortMapping> port_mappings(const NetConf& conf) {
  std::vector<PortMapping> out;
  const json* list = conf.runtime("portMappings");
  if (!list || list->is_null()) return out;
  if (!list->is_array()) wrong_type("runtimeConfig.portMappings", "a list", *list);
  for (size_t i = 0; i < list->size(); ++i) {
    const json& e = (*list)[i];
    std::string where = "runtimeConfig.portMappings[" + std::to_string(i) + "]";
    if (!e.is_object()) wrong_type(where, "an object", e);
    // Keys as sent by containerd ("HostPort") or by the convention ("hostPort").
    auto port = [&](std::string_view key) -> int {
      const json* v = find_key_ci(e, key);
      int64_t n = 0;
      if (v && !v->is_null()) {
        if (v->is_number_integer()) {
          n = v->is_number_unsigned() ? static_cast<int64_t>(std::min<uint64_t>(v->get<uint64_t>(), 1u << 20))
                                      : v->get<int64_t>();
        } else {
          wrong_type(where + "." + std::string(key), "an integer", *v);
        }
      }
      if (n < 1 || n > 65535)
        throw Error(kInvalidConfig, "invalid port mapping",
                    where + "." + std::string(key) + " is " + (v ? v->dump() : "missing") +
                        "; ports must be 1..65535");
      return static_cast<int>(n);
    };
    auto text = [&](std::string_view key) -> std::string {
      const json* v = find_key_ci(e, key);
      if (!v || v->is_null()) return "";
      if (!v->is_string()) wrong_type(where + "." + std::string(key), "a string", *v);
      return v->get<std::string>();
    };
    PortMapping pm;
    pm.host_port = port("hostPort");
    pm.container_port = port("containerPort");
    pm.protocol = lower(text("protocol"));
    if (pm.protocol.empty()) pm.protocol = "tcp";
    pm.host_ip = text("hostIP");
    out.push_back(std::move(pm));
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// CNI_ARGS

std::optional<std::string> CniArgs::get(std::string_view key) const {
  std::optional<std::string> found;
  for (const auto& [k, v] : pairs)
    if (k == key) found = v;  // the last one wins, as in libcni
  return found;
}

CniArgs parse_cni_args(std::string_view text, const std::vector<std::string_view>& plugin_keys) {
  CniArgs args;
  size_t pos = 0;
  while (pos <= text.size() && !text.empty()) {
    size_t semi = text.find(';', pos);
    std::string_view pair = text.substr(pos, semi == text.npos ? text.npos : semi - pos);
    pos = semi == text.npos ? text.size() + 1 : semi + 1;
    if (pair.empty()) continue;  // "A=1;" — a trailing separator carries nothing
    size_t eq = pair.find('=');
    if (eq == pair.npos || pair.find('=', eq + 1) != pair.npos)
      throw Error(kInvalidEnvironment, "ARGS: invalid pair \"" + std::string(pair) + "\"",
                  "CNI_ARGS must be KEY=VALUE pairs separated by ';'");
    args.pairs.emplace_back(std::string(pair.substr(0, eq)), std::string(pair.substr(eq + 1)));
  }

  bool ignore_unknown = false;
  if (auto v = args.get("IgnoreUnknown")) {
    std::string s = lower(*v);
    if (s == "1" || s == "true") {
      ignore_unknown = true;
    } else if (!(s == "0" || s == "false")) {
      throw Error(kInvalidEnvironment, "ARGS: invalid IgnoreUnknown value \"" + *v + "\"",
                  "use IgnoreUnknown=1 or IgnoreUnknown=true");
    }
  }
  if (ignore_unknown) return args;

  std::string unknown;
  for (const auto& [k, v] : args.pairs) {
    bool known = std::find(kStandardArgKeys.begin(), kStandardArgKeys.end(), k) != kStandardArgKeys.end() ||
                 std::find(plugin_keys.begin(), plugin_keys.end(), k) != plugin_keys.end();
    if (!known) unknown += (unknown.empty() ? "\"" : " \"") + k + "=" + v + "\"";
  }
  if (!unknown.empty()) {
    std::string accepted;
    for (auto k : kStandardArgKeys) accepted += (accepted.empty() ? "" : ", ") + std::string(k);
    for (auto k : plugin_keys) accepted += ", " + std::string(k);
    throw Error(kInvalidEnvironment, "ARGS: unknown args [" + unknown + "]",
                "this plugin accepts " + accepted + "; add IgnoreUnknown=1 to CNI_ARGS to ignore other keys");
  }
  return args;
}

}  // namespace ferry::cni
