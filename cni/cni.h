// cni/cni.h — the CNI specification (0.3.0 … 1.1.0) as a library.
//
// Offers: IP address types, the result model with conversion between spec versions, the
// spec's error codes, network-config and conflist parsing, CNI_ARGS and runtimeConfig
// (capability args) helpers, IPAM delegation through CNI_PATH, and the one verb dispatcher
// (plugin_main) every ferry plugin's main() calls.
//
// Error handling in this layer: functions throw cni::Error carrying a spec error code.
// plugin_main catches it and prints the spec's JSON error on stdout. Exceptions never cross
// into the net/ or ipam/ store layers' callers except through the plugin handlers.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace ferry::cni {

using json = nlohmann::json;

// ---------------------------------------------------------------------------------------
// Errors (spec §"Error"; codes 1-99 reserved by the spec, 100+ plugin-specific)

enum ErrorCode : int {
  kIncompatibleVersion = 1,
  kUnsupportedField = 2,
  kUnknownContainer = 3,
  kInvalidEnvironment = 4,
  kIOFailure = 5,
  kDecodingFailure = 6,
  kInvalidConfig = 7,
  kTryAgainLater = 11,
  kPluginNotAvailable = 50,                // STATUS: cannot service ADD
  kPluginNotAvailableLimitedConnectivity = 51,  // STATUS: and existing pods may suffer
  kInternal = 999,                         // anything that is not one of the above
};

// A CNI error: `msg` is the short summary, `details` says what to fix.
class Error : public std::runtime_error {
 public:
  Error(int code, std::string msg, std::string details = {});
  int code() const { return code_; }
  const std::string& msg() const { return msg_; }
  const std::string& details() const { return details_; }
  // {"cniVersion":..., "code":N, "msg":"...", "details":"..."} (details omitted when empty)
  json to_json(std::string_view cni_version) const;

 private:
  int code_;
  std::string msg_;
  std::string details_;
};

// ---------------------------------------------------------------------------------------
// Versions

// The versions ferry's plugins speak, oldest first.
inline constexpr std::array<std::string_view, 5> kSupportedVersions = {"0.3.0", "0.3.1", "0.4.0",
                                                                       "1.0.0", "1.1.0"};
inline constexpr std::string_view kCurrentVersion = "1.1.0";

// Compares dotted versions numerically: <0, 0, >0. Throws Error(kDecodingFailure) on garbage.
int compare_versions(std::string_view a, std::string_view b);
bool version_supported(std::string_view v);
bool version_has_check(std::string_view v);      // >= 0.4.0
bool version_has_gc_status(std::string_view v);  // >= 1.1.0

// ---------------------------------------------------------------------------------------
// IP addresses

struct IPAddr {
  int family = 0;  // AF_INET or AF_INET6; 0 = unset
  std::array<uint8_t, 16> bytes{};  // network byte order; IPv4 uses the first 4 bytes

  static std::optional<IPAddr> parse(std::string_view text);  // "10.0.0.1", "fd00::1"
  std::string str() const;                                    // canonical (inet_ntop) form
  bool is_v4() const { return family == 2; }
  bool is_v6() const { return family == 10; }
  int bits() const { return is_v4() ? 32 : 128; }
  IPAddr next() const;  // +1, wrapping within the family
  IPAddr prev() const;  // -1
  auto operator<=>(const IPAddr&) const = default;
};

struct IPNet {
  IPAddr addr;     // may carry host bits ("10.1.0.5/16" as an interface address)
  int prefix = 0;

  static std::optional<IPNet> parse(std::string_view cidr);  // "10.1.0.5/16"
  std::string str() const;                                   // "10.1.0.5/16"
  IPNet network() const;            // host bits cleared
  IPAddr broadcast() const;         // all host bits set (last address)
  bool contains(const IPAddr& a) const;
  bool overlaps(const IPNet& other) const;
  auto operator<=>(const IPNet&) const = default;
};

// ---------------------------------------------------------------------------------------
// Results. The in-memory model is the 1.1.0 shape; result_to_json converts down.

struct Interface {
  std::string name;
  std::string mac;
  std::string sandbox;  // CNI_NETNS for interfaces inside the container, empty on the host
  std::optional<int> mtu;
  std::string socket_path;
  std::string pci_id;
};

struct IPConfig {
  std::optional<int> interface;  // index into Result::interfaces
  IPNet address;                 // host address + prefix length
  std::optional<IPAddr> gateway;
};

struct Route {
  IPNet dst;
  std::optional<IPAddr> gw;
  int mtu = 0;
  int advmss = 0;
  int priority = 0;
  std::optional<int> table;
  std::optional<int> scope;
};

struct DNS {
  std::vector<std::string> nameservers;
  std::string domain;
  std::vector<std::string> search;
  std::vector<std::string> options;
  bool empty() const;
};

struct Result {
  std::string cni_version;
  std::vector<Interface> interfaces;
  std::vector<IPConfig> ips;
  std::vector<Route> routes;
  DNS dns;
};

// Parses a result of any supported version (0.3.x/0.4.0 carry ips[].version; 1.x does not).
// Throws Error(kDecodingFailure) with the offending field on malformed input.
Result result_from_json(const json& j);
// Renders `r` in `version`. Drops fields the older version lacks (mtu, socketPath, pciID,
// route mtu/advmss/priority/table/scope) and adds ips[].version for 0.3.x/0.4.0.
// Throws Error(kIncompatibleVersion) for a version ferry does not speak.
json result_to_json(const Result& r, std::string_view version);

// DNS as found in a resolv.conf file (nameserver/domain/search/options lines).
DNS parse_resolv_conf(std::string_view text);
json dns_to_json(const DNS& d);
DNS dns_from_json(const json& j);  // throws Error(kDecodingFailure)

// ---------------------------------------------------------------------------------------
// Typed access to config fields. Every getter names the field in its error:
//   field "mtu" must be an integer, got string
// Wrong type => Error(kDecodingFailure). Missing => the default.

bool get_bool(const json& obj, std::string_view key, bool def);
int64_t get_int(const json& obj, std::string_view key, int64_t def);
std::string get_string(const json& obj, std::string_view key, std::string_view def = {});
std::vector<std::string> get_string_list(const json& obj, std::string_view key);
// Case-insensitive key lookup (containerd sends "HostPort" for "hostPort"); nullptr if absent.
const json* find_key_ci(const json& obj, std::string_view key);

// ---------------------------------------------------------------------------------------
// Validation (spec + libcni rules)

bool valid_interface_name(std::string_view name);  // 1..15 chars, not "." or "..", no '/', ':' or space
bool valid_container_id(std::string_view id);      // ^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$
bool valid_network_name(std::string_view name);    // same pattern as container IDs

// ---------------------------------------------------------------------------------------
// Network configuration as a plugin receives it on stdin.

struct NetConf {
  std::string cni_version;
  std::string name;
  std::string type;
  std::map<std::string, bool> capabilities;
  json ipam;            // the "ipam" object, or null
  DNS dns;              // the "dns" object, if any
  json runtime_config;  // the "runtimeConfig" object, or null
  json args;            // the "args" object, or null
  std::optional<Result> prev_result;
  json raw;             // the whole object, for plugin-specific fields

  // runtimeConfig.<key>, matched case-insensitively; nullptr if absent.
  const json* runtime(std::string_view key) const;
};

// Parses stdin. Throws: Error(kDecodingFailure) for non-JSON or wrong types,
// Error(kInvalidConfig) for a missing/invalid name, Error(kIncompatibleVersion) for a
// cniVersion ferry does not speak. A missing cniVersion is 0.1.0 (and so incompatible).
NetConf parse_net_conf(std::string_view stdin_data);

// A conflist (.conflist) or a single-plugin config (.conf, upconverted) as a runtime loads it.
struct NetworkList {
  std::string cni_version;  // the selected version: highest of cniVersion ∪ cniVersions we speak
  std::string name;
  bool disable_check = false;
  bool disable_gc = false;
  std::vector<json> plugins;  // plugin objects, in order
};
NetworkList parse_network_list(std::string_view bytes);  // accepts .conflist and .conf shapes

// What a runtime hands one plugin of a list: the plugin object plus name, cniVersion,
// runtimeConfig (only the capabilities the plugin declares and the runtime supplies), and
// prevResult when given. `capability_args` is keyed by capability name ("portMappings", ...).
json build_plugin_config(const NetworkList& list, size_t index, const json& capability_args,
                         const std::optional<Result>& prev_result);

// GC input: the attachments that are still valid. Reads "cni.dev/valid-attachments" and the
// older "cni.dev/attachments" key (libcni sends both).
struct Attachment {
  std::string container_id;
  std::string ifname;
  auto operator<=>(const Attachment&) const = default;
};
std::vector<Attachment> valid_attachments(const json& conf);

// runtimeConfig.portMappings, keys matched case-insensitively. Both ports must be 1..65535
// (Error(kInvalidConfig) otherwise). Protocol lower-cased, default "tcp".
struct PortMapping {
  int host_port = 0;
  int container_port = 0;
  std::string protocol;
  std::string host_ip;  // empty = every address
};
std::vector<PortMapping> port_mappings(const NetConf& conf);

// ---------------------------------------------------------------------------------------
// CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;IP=10.0.0.5"

struct CniArgs {
  std::vector<std::pair<std::string, std::string>> pairs;
  std::optional<std::string> get(std::string_view key) const;  // exact (case-sensitive) key
};
// Keys every ferry plugin accepts: K8S_POD_NAMESPACE, K8S_POD_NAME,
// K8S_POD_INFRA_CONTAINER_ID, K8S_POD_UID, IgnoreUnknown.
inline constexpr std::array<std::string_view, 5> kStandardArgKeys = {
    "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID",
    "IgnoreUnknown"};
// Parses and checks the keys: a key that is neither standard nor in `plugin_keys` is an
// Error(kInvalidEnvironment) unless IgnoreUnknown is 1/true (any case). A pair without
// exactly one '=' is an Error(kInvalidEnvironment).
CniArgs parse_cni_args(std::string_view text, const std::vector<std::string_view>& plugin_keys = {});

// ---------------------------------------------------------------------------------------
// The verb dispatcher

struct CmdArgs {
  std::string command;       // CNI_COMMAND
  std::string container_id;  // CNI_CONTAINERID
  std::string netns;         // CNI_NETNS
  std::string ifname;        // CNI_IFNAME
  std::string args;          // CNI_ARGS (raw)
  std::string path;          // CNI_PATH (raw, ':'-separated)
  std::string stdin_data;    // the config bytes
  NetConf conf;              // stdin, parsed (empty for VERSION)
};

// A plugin's verbs. A null handler succeeds (as libcni's skel does). ADD returns the result;
// the dispatcher prints it converted to the request's cniVersion.
struct Plugin {
  std::string about;  // "ferry-bridge v0.1.0", printed when CNI_COMMAND is unset
  std::function<Result(const CmdArgs&)> add;
  std::function<void(const CmdArgs&)> del;
  std::function<void(const CmdArgs&)> check;
  std::function<void(const CmdArgs&)> gc;
  std::function<void(const CmdArgs&)> status;
};

// Reads CNI_* from the environment and the config from stdin, validates them as skel does
// (required variables per verb, container ID / ifname syntax, CHECK >= 0.4.0, GC/STATUS >=
// 1.1.0), runs the handler, prints the result or the spec JSON error on stdout. Returns
// the process exit code (0 success, 1 error).
// Codes: unknown CNI_COMMAND 4; ADD/CHECK/DEL with empty CNI_CONTAINERID 3, with an invalid
// one 4; invalid CNI_IFNAME 4; other missing variables 4 ("required env variables [..]
// missing"); stdin not JSON or a wrong field type 6; missing/invalid name 7; unsupported
// cniVersion, CHECK < 0.4.0, GC/STATUS < 1.1.0: 1; a non-cni::Error exception 999.
int plugin_main(const Plugin& plugin);

// ---------------------------------------------------------------------------------------
// Delegation to an IPAM plugin (spec §4): the delegate gets the same stdin and environment,
// with CNI_COMMAND replaced. A delegate's JSON error is rethrown with its own code.

// Finds `type` in the ':'-separated CNI_PATH. Throws Error(kInvalidConfig) naming the path.
std::string find_plugin(std::string_view type, std::string_view cni_path);
Result delegate_add(std::string_view type, const CmdArgs& args);
void delegate_del(std::string_view type, const CmdArgs& args);
void delegate_check(std::string_view type, const CmdArgs& args);
void delegate_gc(std::string_view type, const CmdArgs& args);
void delegate_status(std::string_view type, const CmdArgs& args);

// Runs one plugin binary as a runtime would (used by delegate_* and ferry-cnitool).
struct ExecResult {
  int exit_code = 0;
  std::string stdout_data;
  std::string stderr_data;
};
ExecResult exec_plugin(const std::string& binary, const std::map<std::string, std::string>& env,
                       std::string_view stdin_data);

}  // namespace ferry::cni
