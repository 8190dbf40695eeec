// Configuration: CLI11 flags over a YAML file over defaults.
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>
#include <climits>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "agent/core/agent.h"

namespace ferry::agent {

namespace {

// The settings a YAML file and the flags share, by their flag name without "--".
struct Settings {
  std::map<std::string, std::string> values;
};

constexpr auto kKeys = std::to_array<const char*>({
    "node",      "datastore",  "datapath",   "bpffs-root",         "state-dir",    "endpoint-dir",
    "agent-socket", "listen",  "log-level",  "resync-interval",    "overlay",      "vxlan-vni",
    "vxlan-port", "underlay-interface", "mtu", "cni-conflist",     "cni-network",  "ipam-dir",
    "policy",    "kubeconfig", "services",     "lb-algorithm", "nodeport-addresses", "nodeport-devices"});

std::string known_keys() {
  std::string out;
  for (const char* k : kKeys) out += (out.empty() ? "" : ", ") + std::string(k);
  return out;
}

Settings read_yaml_file(const std::string& path) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw ConfigError("cannot read config file \"" + path + "\"");
  } catch (const YAML::Exception& e) {
    throw ConfigError("config file \"" + path + "\": " + e.what());
  }
  Settings s;
  if (root.IsNull()) return s;  // an empty file is an empty config
  if (!root.IsMap()) throw ConfigError("config file \"" + path + "\": expected a mapping of settings");
  for (const auto& kv : root) {
    const std::string key = kv.first.as<std::string>();
    if (std::find(kKeys.begin(), kKeys.end(), key) == kKeys.end())
      throw ConfigError("config file \"" + path + "\": unknown key \"" + key + "\" (known keys: " + known_keys() + ")");
    if (!kv.second.IsScalar())
      throw ConfigError("config file \"" + path + "\": key \"" + key + "\" must be a single value");
    s.values[key] = kv.second.as<std::string>();
  }
  return s;
}

std::string hostname() {
  char buf[HOST_NAME_MAX + 1] = {};
  if (gethostname(buf, sizeof buf - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

void validate(AgentConfig& c) {
  if (c.node.empty() || c.node.find('/') != std::string::npos || c.node == "." || c.node == "..")
    throw ConfigError("node name \"" + c.node + "\" is not usable (it names directories: no '/', not empty)");
  if (c.datastore != "kubernetes") {
    if (!c.datastore.starts_with("dir:") || c.datastore.size() == 4)
      throw ConfigError("datastore \"" + c.datastore + "\" is not understood; use dir:PATH or kubernetes");
    c.manifest_dir = c.datastore.substr(4);
    if (!c.kubeconfig.empty()) throw ConfigError("kubeconfig is only used with --datastore kubernetes");
  }
  if (c.datapath != "ebpf" && c.datapath != "iptables" && c.datapath != "auto")
    throw ConfigError("datapath \"" + c.datapath + "\" is not one of ebpf, iptables, auto");
  static const std::array<const char*, 7> levels = {"trace", "debug", "info", "warn", "error", "critical", "off"};
  if (std::find(levels.begin(), levels.end(), c.log_level) == levels.end())
    throw ConfigError("log level \"" + c.log_level + "\" is not one of trace, debug, info, warn, error");
  parse_listen(c.listen);
  if (c.resync_interval.count() <= 0) throw ConfigError("resync-interval must be positive");
  if (c.overlay != "vxlan" && c.overlay != "none")
    throw ConfigError("overlay \"" + c.overlay + "\" is not one of vxlan, none");
  if (c.cni_network.empty()) throw ConfigError("cni-network must not be empty");
  if (c.policy != "on" && c.policy != "off") throw ConfigError("policy \"" + c.policy + "\" is not one of on, off");
  if (c.services != "on" && c.services != "off")
    throw ConfigError("services \"" + c.services + "\" is not one of on, off");
  if (c.lb_algorithm != "random" && c.lb_algorithm != "maglev")
    throw ConfigError("lb-algorithm \"" + c.lb_algorithm + "\" is not one of random, maglev");
}

// "a,b , c" -> {"a", "b", "c"} (empty items dropped).
std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    item.erase(0, item.find_first_not_of(" \t"));
    item.erase(item.find_last_not_of(" \t") + 1);
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

// "192.168.1.0/24,fd00::/64" or bare addresses (a /32 or /128).
std::vector<net::Prefix> parse_prefixes(const std::string& text, const std::string& what) {
  std::vector<net::Prefix> out;
  for (const std::string& item : split_list(text)) {
    std::optional<net::Prefix> p = net::Prefix::parse(item);
    if (!p)
      if (auto ip = net::Ip::parse(item)) p = net::Prefix{*ip, ip->family == AF_INET6 ? 128 : 32};
    if (!p) throw ConfigError(what + ": \"" + item + "\" is not an address or CIDR");
    out.push_back(p->network());
  }
  return out;
}

// A whole number in [lo, hi]; throws ConfigError naming the setting.
long long parse_number(const std::string& text, long long lo, long long hi, const std::string& what) {
  bool ok = !text.empty() && text.size() <= 10 && std::all_of(text.begin(), text.end(), ::isdigit);
  long long v = ok ? std::stoll(text) : 0;
  if (!ok || v < lo || v > hi)
    throw ConfigError(what + " \"" + text + "\" is not a number from " + std::to_string(lo) + " to " + std::to_string(hi));
  return v;
}

}  // namespace

std::chrono::milliseconds parse_duration(const std::string& text, const std::string& what) {
  size_t digits = 0;
  while (digits < text.size() && std::isdigit(static_cast<unsigned char>(text[digits]))) ++digits;
  const std::string unit = text.substr(digits);
  long long n = 0;
  bool ok = digits > 0 && digits <= 9;
  if (ok) n = std::stoll(text.substr(0, digits));
  long long ms = 0;
  if (unit.empty() || unit == "s") ms = n * 1000;
  else if (unit == "ms") ms = n;
  else if (unit == "m") ms = n * 60'000;
  else if (unit == "h") ms = n * 3'600'000;
  else ok = false;
  if (!ok) throw ConfigError(what + " \"" + text + "\" is not a duration (e.g. 30s, 500ms, 2m)");
  return std::chrono::milliseconds(ms);
}

ListenAddress parse_listen(const std::string& text) {
  ListenAddress a;
  size_t colon = text.rfind(':');
  if (colon == std::string::npos) throw ConfigError("listen address \"" + text + "\" needs a port (HOST:PORT)");
  a.host = text.substr(0, colon);
  if (a.host.size() >= 2 && a.host.front() == '[' && a.host.back() == ']') a.host = a.host.substr(1, a.host.size() - 2);
  if (a.host.empty()) a.host = "0.0.0.0";
  const std::string port = text.substr(colon + 1);
  bool ok = !port.empty() && port.size() <= 5 && std::all_of(port.begin(), port.end(), ::isdigit);
  if (ok) a.port = std::stoi(port);
  if (!ok || a.port > 65535)
    throw ConfigError("listen address \"" + text + "\": port \"" + port + "\" is not a number up to 65535");
  return a;
}

std::optional<AgentConfig> parse_config(const std::vector<std::string>& argv, std::string* out) {
  CLI::App app{"ferry-agent: the ferry node agent (endpoint datapath, cluster state, metrics)", "ferry-agent"};
  std::map<std::string, std::string> flags;
  std::map<std::string, CLI::Option*> opts;
  auto add = [&](const char* name, const std::string& help) {
    opts[name] = app.add_option(std::string("--") + name, flags[name], help);
  };
  std::string config_file;
  bool version = false;
  app.add_option("--config", config_file, "YAML file with the same settings (keys = flag names); flags win")
      ->check(CLI::ExistingFile);
  app.add_flag("--version", version, "print the version and exit");
  add("node", "node name (default: the hostname)");
  add("datastore", "where cluster state comes from: dir:PATH (manifest directory) or kubernetes (the API server)");
  add("kubeconfig", "with --datastore kubernetes: kubeconfig file (default: in-cluster service account)");
  add("datapath", "ebpf | iptables | auto (eBPF when the kernel supports it)");
  add("bpffs-root", "pin directory of this node's BPF maps (default /sys/fs/bpf/ferry/<node>)");
  add("state-dir", "runtime state directory (default /run/ferry/<node>)");
  add("endpoint-dir", "endpoint records written by ferry-bridge (default <state-dir>/endpoints)");
  add("agent-socket", "unix datagram socket ferry-bridge notifies (default <state-dir>/agent.sock)");
  add("listen", "HTTP address of /healthz, /readyz, /metrics (default 127.0.0.1:9400)");
  add("log-level", "trace | debug | info | warn | error (default info)");
  add("resync-interval", "full resync period, e.g. 30s (default 30s)");
  add("overlay", "vxlan | none: the VXLAN overlay between nodes (none removes it) (default vxlan)");
  add("vxlan-vni", "VXLAN network identifier (default 1)");
  add("vxlan-port", "VXLAN UDP port (default 8472)");
  add("underlay-interface", "interface VXLAN packets leave by (default: the one holding the node's InternalIP)");
  add("mtu", "MTU of the VXLAN device and the pods (default: underlay MTU - 50)");
  add("cni-conflist", "write this node's CNI conflist here, from its Node's pod CIDRs (default: not written)");
  add("cni-network", "network name in the written conflist (default ferry)");
  add("ipam-dir", "ferry-host-local dataDir in the written conflist (default /var/lib/cni/networks)");
  add("policy", "on | off: enforce NetworkPolicy (off: every flow is allowed) (default on)");
  add("services", "on | off: load-balance Services (off: no Service address is translated) (default on)");
  add("lb-algorithm", "random | maglev: how the eBPF datapath picks a Service backend (default random)");
  add("nodeport-addresses", "comma-separated CIDRs: NodePorts on the node addresses inside them (default: the "
                            "node's addresses)");
  add("nodeport-devices", "comma-separated interfaces the eBPF NodePort programs attach to (default: those holding "
                          "the NodePort addresses)");

  std::vector<const char*> cargs;
  for (const std::string& a : argv) cargs.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(cargs.size()), cargs.data());
  } catch (const CLI::CallForHelp&) {
    if (out) *out = app.help();
    return std::nullopt;
  } catch (const CLI::ParseError& e) {
    throw ConfigError(e.what());
  }
  if (version) {
    if (out) *out = std::string("ferry-agent ") + FERRY_VERSION + "\n";
    return std::nullopt;
  }

  Settings merged;
  if (!config_file.empty()) merged = read_yaml_file(config_file);
  for (const auto& [name, opt] : opts)
    if (opt->count() > 0) merged.values[name] = flags[name];

  AgentConfig c;
  c.config_file = config_file;
  auto get = [&](const char* key, std::string& field) {
    if (auto it = merged.values.find(key); it != merged.values.end()) field = it->second;
  };
  get("node", c.node);
  get("datastore", c.datastore);
  get("kubeconfig", c.kubeconfig);
  get("datapath", c.datapath);
  get("bpffs-root", c.bpffs_root);
  get("state-dir", c.state_dir);
  get("endpoint-dir", c.endpoint_dir);
  get("agent-socket", c.agent_socket);
  get("listen", c.listen);
  get("log-level", c.log_level);
  if (auto it = merged.values.find("resync-interval"); it != merged.values.end())
    c.resync_interval = parse_duration(it->second, "resync-interval");
  get("overlay", c.overlay);
  if (auto it = merged.values.find("vxlan-vni"); it != merged.values.end())
    c.vxlan_vni = static_cast<uint32_t>(parse_number(it->second, 1, (1 << 24) - 1, "vxlan-vni"));
  if (auto it = merged.values.find("vxlan-port"); it != merged.values.end())
    c.vxlan_port = static_cast<uint16_t>(parse_number(it->second, 1, 65535, "vxlan-port"));
  get("underlay-interface", c.underlay_interface);
  if (auto it = merged.values.find("mtu"); it != merged.values.end())
    c.mtu = static_cast<int>(parse_number(it->second, 576, 65535, "mtu"));
  get("cni-conflist", c.cni_conflist);
  get("cni-network", c.cni_network);
  get("ipam-dir", c.ipam_dir);
  get("policy", c.policy);
  get("services", c.services);
  get("lb-algorithm", c.lb_algorithm);
  if (auto it = merged.values.find("nodeport-addresses"); it != merged.values.end())
    c.nodeport_addresses = parse_prefixes(it->second, "nodeport-addresses");
  if (auto it = merged.values.find("nodeport-devices"); it != merged.values.end())
    c.nodeport_devices = split_list(it->second);
  if (c.node.empty() && !merged.values.count("node")) c.node = hostname();
  validate(c);
  if (c.bpffs_root.empty()) c.bpffs_root = "/sys/fs/bpf/ferry/" + c.node;
  if (c.state_dir.empty()) c.state_dir = "/run/ferry/" + c.node;
  if (c.endpoint_dir.empty()) c.endpoint_dir = c.state_dir + "/endpoints";
  if (c.agent_socket.empty()) c.agent_socket = c.state_dir + "/agent.sock";
  return c;
}

}  // namespace ferry::agent
