// host-local's configuration: ranges (runtimeConfig.ipRanges, the legacy single range, the
// "ranges" list), routes, dataDir, resolvConf and requested IPs, canonicalised and validated
// the way the reference does (range.go, range_set.go, config.go), with errors that say what
// to change.
#include <algorithm>
#include <sys/socket.h>

#include <cstdio>

#include "ipam/ipam.h"

namespace ferry::ipam {

namespace {

[[noreturn]] void invalid(std::string msg, std::string details = {}) {
  throw cni::Error(cni::kInvalidConfig, std::move(msg), std::move(details));
}

[[noreturn]] void wrong_type(std::string_view where, std::string_view expected, const json& got) {
  std::string shown = got.dump();
  if (shown.size() > 80) shown = shown.substr(0, 77) + "...";
  throw cni::Error(cni::kDecodingFailure,
                   "field \"" + std::string(where) + "\" must be " + std::string(expected),
                   "got " + shown);
}

std::string in_quotes(std::string_view s) { return "\"" + std::string(s) + "\""; }

// A key of a config object; Go's encoding/json (and so the reference) matches keys
// case-insensitively, and containerd sends runtimeConfig keys capitalised. null = absent.
const json* field(const json& obj, std::string_view key) {
  const json* v = cni::find_key_ci(obj, key);
  return (v && !v->is_null()) ? v : nullptr;
}

std::optional<std::string> string_field(const json& obj, std::string_view key, std::string_view where) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_string()) wrong_type(std::string(where) + "." + std::string(key), "a string", *v);
  return v->get<std::string>();
}

std::optional<int> int_field(const json& obj, std::string_view key, std::string_view where) {
  const json* v = field(obj, key);
  if (!v) return std::nullopt;
  std::string name = std::string(where) + "." + std::string(key);
  if (!v->is_number_integer()) wrong_type(name, "an integer", *v);
  if (v->is_number_unsigned() ? v->get<uint64_t>() > INT32_MAX
                              : (v->get<int64_t>() > INT32_MAX || v->get<int64_t>() < INT32_MIN))
    wrong_type(name, "a 32-bit integer", *v);
  return static_cast<int>(v->get<int64_t>());
}

const json& array_field(const json& v, std::string_view where, std::string_view what) {
  if (!v.is_array()) wrong_type(where, what, v);
  return v;
}

std::optional<IPAddr> parse_ip(std::string_view text) {
  auto ip = IPAddr::parse(text);
  if (!ip) return std::nullopt;
  return canonical_ip(*ip);
}

IPAddr required_ip(const std::string& text, std::string_view what) {
  auto ip = parse_ip(text);
  if (!ip) invalid(std::string(what) + " " + in_quotes(text) + " is not an IP address");
  return *ip;
}

// A requested IP: "10.1.0.5" or "10.1.0.5/24" (the prefix is ignored: the range's is used).
std::optional<IPAddr> parse_requested_ip(std::string_view text) {
  if (text.find('/') != std::string_view::npos) {
    auto net = IPNet::parse(text);
    if (!net) return std::nullopt;
    return canonical_ip(net->addr);
  }
  return parse_ip(text);
}

std::string prefix_hint(int family) { return family == AF_INET ? "/30" : "/126"; }

// ---------------------------------------------------------------------------------------

std::vector<cni::Route> parse_routes(const json& ipam) {
  std::vector<cni::Route> routes;
  const json* list = field(ipam, "routes");
  if (!list) return routes;
  array_field(*list, "ipam.routes", "a list of {\"dst\", \"gw\"} objects");
  for (size_t i = 0; i < list->size(); ++i) {
    const json& e = (*list)[i];
    std::string where = "ipam.routes[" + std::to_string(i) + "]";
    if (!e.is_object()) wrong_type(where, "an object", e);
    cni::Route r;
    auto dst = string_field(e, "dst", where);
    if (!dst) invalid(where + " has no \"dst\"", "give the destination as a CIDR, e.g. \"0.0.0.0/0\"");
    auto net = IPNet::parse(*dst);
    if (!net) invalid(where + ".dst " + in_quotes(*dst) + " is not a CIDR", "write it as e.g. \"0.0.0.0/0\"");
    r.dst = *net;
    if (auto gw = string_field(e, "gw", where)) {
      r.gw = parse_ip(*gw);
      if (!r.gw) invalid(where + ".gw " + in_quotes(*gw) + " is not an IP address");
    }
    r.mtu = int_field(e, "mtu", where).value_or(0);
    r.advmss = int_field(e, "advmss", where).value_or(0);
    r.priority = int_field(e, "priority", where).value_or(0);
    r.table = int_field(e, "table", where);
    r.scope = int_field(e, "scope", where);
    routes.push_back(std::move(r));
  }
  return routes;
}

void add_requested(std::vector<IPAddr>& out, const IPAddr& ip) {
  if (std::find(out.begin(), out.end(), ip) == out.end()) out.push_back(ip);
}

void add_requested_list(std::vector<IPAddr>& out, const json& list, std::string_view where) {
  array_field(list, where, "a list of IP addresses");
  for (size_t i = 0; i < list.size(); ++i) {
    std::string name = std::string(where) + "[" + std::to_string(i) + "]";
    if (!list[i].is_string()) wrong_type(name, "a string", list[i]);
    auto ip = parse_requested_ip(list[i].get<std::string>());
    if (!ip) invalid(name + " " + in_quotes(list[i].get<std::string>()) + " is not an IP address",
                     "write it as \"10.1.0.5\" or \"2001:db8::5\"");
    add_requested(out, *ip);
  }
}

// Requested IPs in the reference's order: CNI_ARGS IP=, args.cni.ips, runtimeConfig.ips.
std::vector<IPAddr> parse_requested_ips(const json& netconf, std::string_view cni_args) {
  std::vector<IPAddr> out;
  if (!cni_args.empty()) {
    cni::CniArgs args = cni::parse_cni_args(cni_args, {"IP"});
    if (auto text = args.get("IP")) {
      auto ip = parse_requested_ip(*text);
      if (!ip)
        throw cni::Error(cni::kInvalidEnvironment, "CNI_ARGS IP=" + *text + " is not an IP address",
                         "pass one address, e.g. IP=10.1.0.5");
      add_requested(out, *ip);
    }
  }
  if (const json* args = field(netconf, "args")) {
    if (const json* cni_obj = field(*args, "cni")) {
      if (const json* ips = field(*cni_obj, "ips")) add_requested_list(out, *ips, "args.cni.ips");
    }
  }
  if (const json* rc = field(netconf, "runtimeConfig")) {
    if (const json* ips = field(*rc, "ips")) add_requested_list(out, *ips, "runtimeConfig.ips");
  }
  return out;
}

// The range sets as JSON, in the reference's order: runtimeConfig.ipRanges, the legacy
// subnet in the ipam object, then ipam.ranges.
std::vector<std::vector<const json*>> collect_range_sets(const json& netconf, const json& ipam) {
  std::vector<std::vector<const json*>> sets;
  auto append_sets = [&](const json& list, std::string_view where) {
    array_field(list, where, "a list of range sets (lists of {\"subnet\": ...} objects)");
    for (size_t i = 0; i < list.size(); ++i) {
      std::string name = std::string(where) + "[" + std::to_string(i) + "]";
      array_field(list[i], name, "a list of {\"subnet\": ...} objects");
      std::vector<const json*> set;
      for (const json& r : list[i]) set.push_back(&r);
      sets.push_back(std::move(set));
    }
  };
  if (const json* rc = field(netconf, "runtimeConfig")) {
    if (const json* ranges = field(*rc, "ipRanges")) append_sets(*ranges, "runtimeConfig.ipRanges");
  }
  if (field(ipam, "subnet")) sets.push_back({&ipam});
  if (const json* ranges = field(ipam, "ranges")) append_sets(*ranges, "ipam.ranges");
  return sets;
}

RangeSet canonical_range_set(const std::vector<const json*>& objs) {
  if (objs.empty()) invalid("empty range set", "give at least one {\"subnet\": ...} in it");
  RangeSet set;
  for (const json* obj : objs) {
    Range r = parse_range(*obj);
    if (!set.ranges.empty() && set.ranges.front().subnet.addr.family != r.subnet.addr.family)
      invalid("mixed address families (" + set.ranges.front().subnet.str() + " and " + r.subnet.str() + ")",
              "put IPv4 and IPv6 ranges in separate range sets");
    set.ranges.push_back(r);
  }
  for (size_t i = 0; i < set.ranges.size(); ++i)
    for (size_t j = i + 1; j < set.ranges.size(); ++j)
      if (set.ranges[i].overlaps(set.ranges[j]))
        invalid("subnets " + set.ranges[i].str() + " and " + set.ranges[j].str() + " overlap",
                "ranges of one set must not share addresses");
  return set;
}

}  // namespace

// ---------------------------------------------------------------------------------------

IPAddr canonical_ip(const IPAddr& ip) {
  if (!ip.is_v6()) return ip;
  static constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (!std::equal(kMappedPrefix, kMappedPrefix + 12, ip.bytes.begin())) return ip;
  IPAddr v4;
  v4.family = AF_INET;
  std::copy(ip.bytes.begin() + 12, ip.bytes.end(), v4.bytes.begin());
  return v4;
}

std::string ip_file_name(const IPAddr& ip) {
  IPAddr c = canonical_ip(ip);
  if (!c.is_v6()) return c.str();
  uint16_t groups[8];
  for (int i = 0; i < 8; ++i) groups[i] = static_cast<uint16_t>(c.bytes[2 * i] << 8 | c.bytes[2 * i + 1]);
  // The first longest run of zero groups, if it is at least two long, becomes "::".
  int best = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (groups[i] != 0) { ++i; continue; }
    int j = i;
    while (j < 8 && groups[j] == 0) ++j;
    if (j - i > best_len) { best = i; best_len = j - i; }
    i = j;
  }
  if (best_len < 2) best = -1;
  std::string out;
  char buf[8];
  for (int i = 0; i < 8; ++i) {
    if (i == best) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') out += ':';
    std::snprintf(buf, sizeof buf, "%x", groups[i]);
    out += buf;
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Range / RangeSet

bool Range::contains(const IPAddr& ip) const {
  return subnet.contains(ip) && !(ip < range_start) && !(range_end < ip);
}

bool Range::overlaps(const Range& other) const {
  if (subnet.addr.family != other.subnet.addr.family) return false;
  return contains(other.range_start) || contains(other.range_end) || other.contains(range_start) ||
         other.contains(range_end);
}

std::string Range::str() const { return ip_file_name(range_start) + "-" + ip_file_name(range_end); }

const Range* RangeSet::range_for(const IPAddr& ip) const {
  for (const Range& r : ranges)
    if (r.contains(ip)) return &r;
  return nullptr;
}

bool RangeSet::overlaps(const RangeSet& other) const {
  for (const Range& a : ranges)
    for (const Range& b : other.ranges)
      if (a.overlaps(b)) return true;
  return false;
}

std::string RangeSet::str() const {
  std::string out;
  for (const Range& r : ranges) out += (out.empty() ? "" : ",") + r.str();
  return out;
}

Range parse_range(const json& obj) {
  if (!obj.is_object()) wrong_type("range", "an object like {\"subnet\": \"10.1.0.0/16\"}", obj);
  auto subnet_text = string_field(obj, "subnet", "range");
  if (!subnet_text) invalid("range has no \"subnet\"", "add e.g. \"subnet\": \"10.1.0.0/16\"");
  auto subnet = IPNet::parse(*subnet_text);
  if (!subnet) invalid("subnet " + in_quotes(*subnet_text) + " is not a valid CIDR", "write it as e.g. \"10.1.0.0/16\"");
  if (IPAddr v4 = canonical_ip(subnet->addr); v4.is_v4() && subnet->prefix >= 96) {
    subnet->addr = v4;  // ::ffff:a.b.c.d/n is an IPv4 subnet, as in Go
    subnet->prefix -= 96;
  }
  int family = subnet->addr.family;
  if (subnet->prefix > subnet->addr.bits() - 2)
    invalid("network " + subnet->str() + " too small to allocate from",
            "use a prefix of " + prefix_hint(family) + " or shorter");
  if (subnet->network() != *subnet)
    invalid("network " + subnet->str() + " has host bits set: for a /" + std::to_string(subnet->prefix) +
                " the network address is " + subnet->network().addr.str(),
            "write \"subnet\": \"" + subnet->network().str() + "\"");

  Range r;
  r.subnet = *subnet;
  auto family_ip = [&](std::string_view key) -> std::optional<IPAddr> {
    auto text = string_field(obj, key, "range");
    if (!text) return std::nullopt;
    IPAddr ip = required_ip(*text, key);
    if (ip.family != family)
      invalid(std::string(key) + " " + ip.str() + " is not of the family of subnet " + subnet->str());
    return ip;
  };
  r.gateway = family_ip("gateway").value_or(subnet->addr.next());
  r.range_start = family_ip("rangeStart").value_or(subnet->addr.next());
  if (!subnet->contains(r.range_start))
    invalid("rangeStart " + r.range_start.str() + " is outside subnet " + subnet->str(),
            "pick a rangeStart inside the subnet or drop it (default " + subnet->addr.next().str() + ")");
  IPAddr last = subnet->broadcast();
  if (family == AF_INET) last = last.prev();  // the IPv4 broadcast address is not handed out
  r.range_end = family_ip("rangeEnd").value_or(last);
  if (!subnet->contains(r.range_end))
    invalid("rangeEnd " + r.range_end.str() + " is outside subnet " + subnet->str(),
            "pick a rangeEnd inside the subnet or drop it (default " + last.str() + ")");
  if (r.range_end < r.range_start)
    invalid("rangeEnd " + r.range_end.str() + " is before rangeStart " + r.range_start.str());
  return r;
}

// ---------------------------------------------------------------------------------------

Config parse_config(const json& netconf, std::string_view cni_args, ConfigUse use) {
  if (!netconf.is_object()) wrong_type("network config", "a JSON object", netconf);
  Config c;
  c.network = string_field(netconf, "name", "config").value_or("");
  if (!cni::valid_network_name(c.network))
    invalid("network name " + in_quotes(c.network) + " is invalid",
            "use letters, digits, '_', '.' and '-', starting with a letter or digit");
  c.cni_version = string_field(netconf, "cniVersion", "config").value_or("");
  const json* ipam = field(netconf, "ipam");
  if (!ipam)
    invalid("IPAM config missing 'ipam' key",
            "add \"ipam\": {\"type\": \"host-local\", \"ranges\": [[{\"subnet\": \"10.1.0.0/16\"}]]}");
  if (!ipam->is_object()) wrong_type("ipam", "an object", *ipam);

  if (auto dir = string_field(*ipam, "dataDir", "ipam"); dir && !dir->empty()) c.data_dir = *dir;
  c.resolv_conf = string_field(*ipam, "resolvConf", "ipam").value_or("");
  if (use == ConfigUse::kRelease) return c;

  c.routes = parse_routes(*ipam);
  c.requested_ips = parse_requested_ips(netconf, cni_args);

  std::vector<std::vector<const json*>> sets = collect_range_sets(netconf, *ipam);
  if (sets.empty()) {
    if (use == ConfigUse::kInspect) return c;
    invalid("no IP ranges specified",
            "add \"ranges\": [[{\"subnet\": \"10.1.0.0/16\"}]] to the ipam object");
  }
  int v4_sets = 0, v6_sets = 0;
  for (size_t i = 0; i < sets.size(); ++i) {
    try {
      c.range_sets.push_back(canonical_range_set(sets[i]));
    } catch (const cni::Error& e) {
      throw cni::Error(e.code(), "invalid range set " + std::to_string(i) + ": " + e.msg(), e.details());
    }
    (c.range_sets.back().ranges.front().subnet.addr.is_v4() ? v4_sets : v6_sets)++;
  }
  if (v4_sets > 1 || v6_sets > 1) {
    bool old = false;
    try {
      old = cni::compare_versions(c.cni_version.empty() ? "0.1.0" : c.cni_version, "0.3.0") < 0;
    } catch (const cni::Error&) {
      old = true;
    }
    if (old)
      invalid("CNI version " + c.cni_version + " does not support more than 1 address per family",
              "use cniVersion 0.3.0 or later");
  }
  for (size_t i = 0; i < c.range_sets.size(); ++i)
    for (size_t j = i + 1; j < c.range_sets.size(); ++j)
      if (c.range_sets[i].overlaps(c.range_sets[j]))
        invalid("range set " + std::to_string(i) + " overlaps with " + std::to_string(j),
                "range sets " + c.range_sets[i].str() + " and " + c.range_sets[j].str() +
                    " share addresses; each range set must be disjoint from the others");
  return c;
}

}  // namespace ferry::ipam
