// Results: one in-memory model (the 1.1.0 shape), parsed from any supported version and
// rendered in any supported version. Also the DNS block and resolv.conf parsing.
#include <sstream>

#include "cni/cni.h"

namespace ferry::cni {

namespace {

// --- decoding helpers: every error names the field by its path ("ips[0].address") ------

[[noreturn]] void bad_field(const std::string& path, std::string_view want, const json& got) {
  throw Error(kDecodingFailure, "failed to decode result",
              "field \"" + path + "\" must be " + std::string(want) + ", got " +
                  (got.is_string() ? "\"" + got.get<std::string>() + "\"" : std::string(got.type_name())));
}

const json* member(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string str_field(const json& obj, const char* key, const std::string& path) {
  const json* v = member(obj, key);
  if (!v) return "";
  if (!v->is_string()) bad_field(path + key, "a string", *v);
  return v->get<std::string>();
}

std::optional<int> int_field(const json& obj, const char* key, const std::string& path) {
  const json* v = member(obj, key);
  if (!v) return std::nullopt;
  if (v->is_number_integer() && v->get<int64_t>() >= INT32_MIN && v->get<int64_t>() <= INT32_MAX)
    return static_cast<int>(v->get<int64_t>());
  if (v->is_number_unsigned() && v->get<uint64_t>() <= INT32_MAX) return static_cast<int>(v->get<uint64_t>());
  bad_field(path + key, "a 32-bit integer", *v);
}

std::optional<IPAddr> ip_field(const json& obj, const char* key, const std::string& path) {
  std::string s = str_field(obj, key, path);
  if (s.empty()) return std::nullopt;
  auto ip = IPAddr::parse(s);
  if (!ip) bad_field(path + key, "an IP address", obj.at(key));
  return ip;
}

IPNet cidr_field(const json& obj, const char* key, const std::string& path) {
  const json* v = member(obj, key);
  if (!v) throw Error(kDecodingFailure, "failed to decode result", "field \"" + path + key + "\" is required");
  if (!v->is_string()) bad_field(path + key, "a CIDR", *v);
  auto net = IPNet::parse(v->get<std::string>());
  if (!net) bad_field(path + key, "a CIDR such as 10.1.0.5/16", *v);
  return *net;
}

const json& array_field(const json& obj, const char* key, const std::string& path) {
  static const json empty = json::array();
  const json* v = member(obj, key);
  if (!v) return empty;
  if (!v->is_array()) bad_field(path + key, "an array", *v);
  return *v;
}

void require_object(const json& v, const std::string& path) {
  if (!v.is_object()) bad_field(path, "an object", v);
}

std::vector<std::string> string_list(const json& obj, const char* key, const std::string& path) {
  std::vector<std::string> out;
  const json& arr = array_field(obj, key, path);
  for (size_t i = 0; i < arr.size(); ++i) {
    if (!arr[i].is_string()) bad_field(path + key + "[" + std::to_string(i) + "]", "a string", arr[i]);
    out.push_back(arr[i].get<std::string>());
  }
  return out;
}

DNS parse_dns(const json& j, const std::string& path) {
  DNS d;
  if (j.is_null()) return d;
  require_object(j, path.empty() ? "dns" : path.substr(0, path.size() - 1));
  d.nameservers = string_list(j, "nameservers", path);
  d.domain = str_field(j, "domain", path);
  d.search = string_list(j, "search", path);
  d.options = string_list(j, "options", path);
  return d;
}

Route parse_route(const json& j, const std::string& path) {
  require_object(j, path.substr(0, path.size() - 1));
  Route r;
  r.dst = cidr_field(j, "dst", path);
  r.gw = ip_field(j, "gw", path);
  r.mtu = int_field(j, "mtu", path).value_or(0);
  r.advmss = int_field(j, "advmss", path).value_or(0);
  r.priority = int_field(j, "priority", path).value_or(0);
  r.table = int_field(j, "table", path);
  r.scope = int_field(j, "scope", path);
  return r;
}

// 0.1.0/0.2.0 "ip4"/"ip6" objects: {"ip":CIDR,"gateway":IP,"routes":[...]}.
void parse_legacy_ip(const json& j, const char* key, Result& r) {
  const json* v = member(j, key);
  if (!v) return;
  std::string path = std::string(key) + ".";
  require_object(*v, key);
  IPConfig ip;
  ip.address = cidr_field(*v, "ip", path);
  ip.gateway = ip_field(*v, "gateway", path);
  r.ips.push_back(ip);
  const json& routes = array_field(*v, "routes", path);
  for (size_t i = 0; i < routes.size(); ++i)
    r.routes.push_back(parse_route(routes[i], path + "routes[" + std::to_string(i) + "]."));
}

bool old_ips_shape(std::string_view version) {  // 0.3.x and 0.4.0 carry ips[].version
  return version == "0.3.0" || version == "0.3.1" || version == "0.4.0";
}

}  // namespace

bool DNS::empty() const {
  return nameservers.empty() && domain.empty() && search.empty() && options.empty();
}

Result result_from_json(const json& j) {
  if (!j.is_object()) bad_field("result", "an object", j);
  Result r;
  r.cni_version = str_field(j, "cniVersion", "");

  if (!j.contains("ips") && !j.contains("interfaces") && (j.contains("ip4") || j.contains("ip6"))) {
    parse_legacy_ip(j, "ip4", r);
    parse_legacy_ip(j, "ip6", r);
    r.dns = parse_dns(j.value("dns", json()), "dns.");
    return r;
  }

  const json& ifaces = array_field(j, "interfaces", "");
  for (size_t i = 0; i < ifaces.size(); ++i) {
    std::string path = "interfaces[" + std::to_string(i) + "].";
    require_object(ifaces[i], path.substr(0, path.size() - 1));
    Interface itf;
    itf.name = str_field(ifaces[i], "name", path);
    itf.mac = str_field(ifaces[i], "mac", path);
    itf.sandbox = str_field(ifaces[i], "sandbox", path);
    itf.mtu = int_field(ifaces[i], "mtu", path);
    itf.socket_path = str_field(ifaces[i], "socketPath", path);
    itf.pci_id = str_field(ifaces[i], "pciID", path);
    r.interfaces.push_back(std::move(itf));
  }

  const json& ips = array_field(j, "ips", "");
  for (size_t i = 0; i < ips.size(); ++i) {
    std::string path = "ips[" + std::to_string(i) + "].";
    require_object(ips[i], path.substr(0, path.size() - 1));
    IPConfig ip;
    ip.address = cidr_field(ips[i], "address", path);
    ip.gateway = ip_field(ips[i], "gateway", path);
    ip.interface = int_field(ips[i], "interface", path);
    // ips[].version (0.3.x/0.4.0) is implied by the address; like libcni, only its type is
    // checked, so a chain passes through whatever an older plugin wrote.
    str_field(ips[i], "version", path);
    r.ips.push_back(ip);
  }

  const json& routes = array_field(j, "routes", "");
  for (size_t i = 0; i < routes.size(); ++i)
    r.routes.push_back(parse_route(routes[i], "routes[" + std::to_string(i) + "]."));

  r.dns = parse_dns(j.value("dns", json()), "dns.");
  return r;
}

json result_to_json(const Result& r, std::string_view version) {
  if (!version_supported(version))
    throw Error(kIncompatibleVersion, "cannot convert result to version \"" + std::string(version) + "\"",
                "supported versions are 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0");
  const bool old = old_ips_shape(version);
  const bool v11 = compare_versions(version, "1.1.0") >= 0;

  json j = json::object();
  j["cniVersion"] = std::string(version);
  if (!r.interfaces.empty()) {
    json arr = json::array();
    for (const Interface& i : r.interfaces) {
      json o = {{"name", i.name}};
      if (!i.mac.empty()) o["mac"] = i.mac;
      if (v11 && i.mtu) o["mtu"] = *i.mtu;
      if (!i.sandbox.empty()) o["sandbox"] = i.sandbox;
      if (v11 && !i.socket_path.empty()) o["socketPath"] = i.socket_path;
      if (v11 && !i.pci_id.empty()) o["pciID"] = i.pci_id;
      arr.push_back(std::move(o));
    }
    j["interfaces"] = std::move(arr);
  }
  if (!r.ips.empty()) {
    json arr = json::array();
    for (const IPConfig& ip : r.ips) {
      json o = json::object();
      if (old) o["version"] = ip.address.addr.is_v4() ? "4" : "6";
      if (ip.interface) o["interface"] = *ip.interface;
      o["address"] = ip.address.str();
      if (ip.gateway) o["gateway"] = ip.gateway->str();
      arr.push_back(std::move(o));
    }
    j["ips"] = std::move(arr);
  }
  if (!r.routes.empty()) {
    json arr = json::array();
    for (const Route& rt : r.routes) {
      json o = {{"dst", rt.dst.str()}};
      if (rt.gw) o["gw"] = rt.gw->str();
      if (v11) {
        if (rt.mtu) o["mtu"] = rt.mtu;
        if (rt.advmss) o["advmss"] = rt.advmss;
        if (rt.priority) o["priority"] = rt.priority;
        if (rt.table) o["table"] = *rt.table;
        if (rt.scope) o["scope"] = *rt.scope;
      }
      arr.push_back(std::move(o));
    }
    j["routes"] = std::move(arr);
  }
  // 0.3.x/0.4.0 always print "dns" (Go marshals the struct even when empty); 1.x omits it.
  if (old || !r.dns.empty()) j["dns"] = dns_to_json(r.dns);
  return j;
}

DNS parse_resolv_conf(std::string_view text) {
  DNS d;
  std::istringstream in{std::string(text)};
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string key;
    if (!(fields >> key) || key[0] == '#' || key[0] == ';') continue;
    std::vector<std::string> values;
    for (std::string v; fields >> v;) values.push_back(v);
    if (key == "nameserver" && !values.empty()) {
      d.nameservers.push_back(values[0]);
    } else if (key == "domain" && !values.empty()) {
      d.domain = values[0];
    } else if (key == "search") {
      d.search = values;  // the last search line wins, as in the resolver
    } else if (key == "options") {
      d.options.insert(d.options.end(), values.begin(), values.end());
    }
  }
  return d;
}

json dns_to_json(const DNS& d) {
  json j = json::object();
  if (!d.nameservers.empty()) j["nameservers"] = d.nameservers;
  if (!d.domain.empty()) j["domain"] = d.domain;
  if (!d.search.empty()) j["search"] = d.search;
  if (!d.options.empty()) j["options"] = d.options;
  return j;
}

DNS dns_from_json(const json& j) { return parse_dns(j, "dns."); }

}  // namespace ferry::cni
