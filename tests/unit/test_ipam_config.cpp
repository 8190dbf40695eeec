// host-local config: canonical defaults, the order of range sets, requested IPs, routes, and
// every validation error with its code and a message that says what to fix.
#include <gtest/gtest.h>

#include "ipam/ipam.h"

namespace ferry::ipam {
namespace {

json net(json ipam) {
  return json{{"cniVersion", "1.0.0"}, {"name", "h2-net"}, {"type", "ferry-bridge"}, {"ipam", std::move(ipam)}};
}

json ranges(json sets) { return json{{"type", "host-local"}, {"ranges", std::move(sets)}}; }

IPAddr ip(const char* s) { return *IPAddr::parse(s); }

// Runs `f`, which must throw cni::Error with `code` and a msg containing `text`.
template <typename F>
void expect_error(F f, int code, const std::string& text) {
  try {
    f();
    ADD_FAILURE() << "no error; expected code " << code << " with \"" << text << "\"";
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), code) << e.msg();
    EXPECT_NE(e.msg().find(text), std::string::npos) << "msg: " << e.msg();
  }
}

void expect_config_error(const json& conf, int code, const std::string& text, std::string_view args = {}) {
  expect_error([&] { parse_config(conf, args); }, code, text);
}

TEST(IpamConfig, Ipv4DefaultsSkipNetworkAndBroadcast) {
  Config c = parse_config(net(ranges({{{{"subnet", "10.1.0.0/24"}}}})), "");
  ASSERT_EQ(c.range_sets.size(), 1u);
  const Range& r = c.range_sets[0].ranges[0];
  EXPECT_EQ(r.subnet.str(), "10.1.0.0/24");
  EXPECT_EQ(r.gateway.str(), "10.1.0.1");
  EXPECT_EQ(r.range_start.str(), "10.1.0.1");  // the allocator skips the gateway
  EXPECT_EQ(r.range_end.str(), "10.1.0.254");
  EXPECT_EQ(r.str(), "10.1.0.1-10.1.0.254");
  EXPECT_EQ(c.data_dir, "/var/lib/cni/networks");
  EXPECT_EQ(c.store_dir(), "/var/lib/cni/networks/h2-net");
  EXPECT_EQ(c.network, "h2-net");
  EXPECT_EQ(c.cni_version, "1.0.0");
}

TEST(IpamConfig, Ipv6DefaultsEndAtLastAddress) {
  Config c = parse_config(net(ranges({{{{"subnet", "fd00:10::/64"}}}})), "");
  const Range& r = c.range_sets[0].ranges[0];
  EXPECT_EQ(r.gateway.str(), "fd00:10::1");
  EXPECT_EQ(r.range_start.str(), "fd00:10::1");
  EXPECT_EQ(r.range_end.str(), "fd00:10::ffff:ffff:ffff:ffff");
}

TEST(IpamConfig, ExplicitStartEndGatewayKept) {
  Config c = parse_config(
      net(ranges({{{{"subnet", "10.10.0.0/16"}, {"rangeStart", "10.10.1.20"}, {"rangeEnd", "10.10.3.50"},
                    {"gateway", "10.10.0.254"}}}})),
      "");
  const Range& r = c.range_sets[0].ranges[0];
  EXPECT_EQ(r.range_start.str(), "10.10.1.20");
  EXPECT_EQ(r.range_end.str(), "10.10.3.50");
  EXPECT_EQ(r.gateway.str(), "10.10.0.254");
}

TEST(IpamConfig, SmallestSubnetsAllowed) {
  Config c = parse_config(net(ranges({{{{"subnet", "10.1.0.0/30"}}}, {{{"subnet", "fd00::/126"}}}})), "");
  EXPECT_EQ(c.range_sets[0].ranges[0].range_end.str(), "10.1.0.2");
  EXPECT_EQ(c.range_sets[1].ranges[0].range_end.str(), "fd00::3");
}

TEST(IpamConfig, KeysMatchCaseInsensitively) {
  // containerd sends runtimeConfig.ipRanges with Go's capitalised field names.
  json conf = net({{"type", "host-local"}});
  conf["runtimeConfig"] = {{"IPRanges", {{{{"Subnet", "10.3.0.0/24"}, {"RangeStart", "10.3.0.10"}}}}}};
  Config c = parse_config(conf, "");
  ASSERT_EQ(c.range_sets.size(), 1u);
  EXPECT_EQ(c.range_sets[0].ranges[0].range_start.str(), "10.3.0.10");
}

TEST(IpamConfig, RangeSetOrderIsRuntimeThenLegacyThenRanges) {
  json ipam = ranges({{{{"subnet", "10.3.0.0/24"}}}});
  ipam["subnet"] = "10.2.0.0/24";
  ipam["rangeStart"] = "10.2.0.100";
  json conf = net(ipam);
  conf["runtimeConfig"] = {{"ipRanges", {{{{"subnet", "10.1.0.0/24"}}}}}};
  Config c = parse_config(conf, "");
  ASSERT_EQ(c.range_sets.size(), 3u);
  EXPECT_EQ(c.range_sets[0].ranges[0].subnet.str(), "10.1.0.0/24");
  EXPECT_EQ(c.range_sets[1].ranges[0].subnet.str(), "10.2.0.0/24");
  EXPECT_EQ(c.range_sets[1].ranges[0].range_start.str(), "10.2.0.100");
  EXPECT_EQ(c.range_sets[2].ranges[0].subnet.str(), "10.3.0.0/24");
}

TEST(IpamConfig, LegacyRangeNeedsSubnet) {
  json ipam = ranges({{{{"subnet", "10.3.0.0/24"}}}});
  ipam["rangeStart"] = "10.2.0.100";  // without "subnet" the legacy fields are ignored
  Config c = parse_config(net(ipam), "");
  EXPECT_EQ(c.range_sets.size(), 1u);
}

TEST(IpamConfig, RoutesDataDirResolvConf) {
  json ipam = ranges({{{{"subnet", "10.1.0.0/24"}}}});
  ipam["routes"] = {{{"dst", "0.0.0.0/0"}},
                    {{"dst", "192.168.0.0/16"}, {"gw", "10.1.0.9"}, {"mtu", 1400}, {"table", 100}, {"scope", 253}}};
  ipam["dataDir"] = "/tmp/h2-somewhere";
  ipam["resolvConf"] = "/etc/resolv.conf";
  Config c = parse_config(net(ipam), "");
  ASSERT_EQ(c.routes.size(), 2u);
  EXPECT_EQ(c.routes[0].dst.str(), "0.0.0.0/0");
  EXPECT_FALSE(c.routes[0].gw);
  EXPECT_EQ(c.routes[1].gw->str(), "10.1.0.9");
  EXPECT_EQ(c.routes[1].mtu, 1400);
  EXPECT_EQ(c.routes[1].table, 100);
  EXPECT_EQ(c.routes[1].scope, 253);
  EXPECT_EQ(c.store_dir(), "/tmp/h2-somewhere/h2-net");
  EXPECT_EQ(c.resolv_conf, "/etc/resolv.conf");
}

TEST(IpamConfig, RequestedIpsFromArgsInOrderWithoutDuplicates) {
  json conf = net(ranges({{{{"subnet", "10.1.0.0/24"}}}, {{{"subnet", "fd00::/64"}}}}));
  conf["args"] = {{"cni", {{"ips", {"fd00::5/64", "10.1.0.7"}}}}};
  conf["runtimeConfig"] = {{"ips", {"10.1.0.7", "10.1.0.8/24"}}};
  Config c = parse_config(conf, "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.0.6/24");
  std::vector<IPAddr> want = {ip("10.1.0.6"), ip("fd00::5"), ip("10.1.0.7"), ip("10.1.0.8")};
  EXPECT_EQ(c.requested_ips, want);
}

TEST(IpamConfig, MappedIpv6RequestBecomesIpv4) {
  Config c = parse_config(net(ranges({{{{"subnet", "10.1.0.0/24"}}}})), "IP=::ffff:10.1.0.9");
  ASSERT_EQ(c.requested_ips.size(), 1u);
  EXPECT_EQ(c.requested_ips[0], ip("10.1.0.9"));
}

TEST(IpamConfig, ReleaseNeedsOnlyTheStoreLocation) {
  // DEL and GC: runtimeConfig.ipRanges is gone, the ranges do not load, reservations must
  // still be found.
  json ipam = {{"type", "host-local"}, {"dataDir", "/tmp/h2-x"}};
  Config c = parse_config(net(ipam), "", ConfigUse::kRelease);
  EXPECT_EQ(c.store_dir(), "/tmp/h2-x/h2-net");
  json bad = ranges({{{{"subnet", "10.1.0.0/31"}}}});
  EXPECT_NO_THROW(parse_config(net(bad), "IP=garbage", ConfigUse::kRelease));
  // STATUS accepts a config whose ranges all come from the runtime.
  EXPECT_TRUE(parse_config(net(ipam), "", ConfigUse::kInspect).range_sets.empty());
}

// ---------------------------------------------------------------------------------------
// Errors

TEST(IpamConfigErrors, MissingIpam) {
  json conf = {{"cniVersion", "1.0.0"}, {"name", "h2-net"}};
  expect_config_error(conf, cni::kInvalidConfig, "IPAM config missing 'ipam' key");
}

TEST(IpamConfigErrors, NoRanges) {
  expect_config_error(net({{"type", "host-local"}}), cni::kInvalidConfig, "no IP ranges specified");
  expect_config_error(net(ranges(json::array())), cni::kInvalidConfig, "no IP ranges specified");
}

TEST(IpamConfigErrors, EmptyRangeSet) {
  expect_config_error(net(ranges({json::array()})), cni::kInvalidConfig, "invalid range set 0: empty range set");
}

TEST(IpamConfigErrors, BadCidr) {
  expect_config_error(net(ranges({{{{"subnet", "10.1.0.0"}}}})), cni::kInvalidConfig,
                      "invalid range set 0: subnet \"10.1.0.0\" is not a valid CIDR");
  expect_config_error(net(ranges({{{{"subnet", "10.1.0.0/33"}}}})), cni::kInvalidConfig, "not a valid CIDR");
  expect_config_error(net(ranges({{{{"subnet", "bogus/8"}}}})), cni::kInvalidConfig, "not a valid CIDR");
}

TEST(IpamConfigErrors, MissingSubnet) {
  expect_config_error(net(ranges({{{{"rangeStart", "10.1.0.5"}}}})), cni::kInvalidConfig,
                      "invalid range set 0: range has no \"subnet\"");
}

TEST(IpamConfigErrors, HostBitsSet) {
  try {
    parse_config(net(ranges({{{{"subnet", "10.1.0.5/24"}}}})), "");
    FAIL();
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), cni::kInvalidConfig);
    EXPECT_EQ(e.msg(),
              "invalid range set 0: network 10.1.0.5/24 has host bits set: for a /24 the network address is 10.1.0.0");
    EXPECT_EQ(e.details(), "write \"subnet\": \"10.1.0.0/24\"");
  }
}

TEST(IpamConfigErrors, TooSmall) {
  for (const char* s : {"10.1.0.0/31", "10.1.0.1/32", "fd00::/127", "fd00::1/128"})
    expect_config_error(net(ranges({{{{"subnet", s}}}})), cni::kInvalidConfig, "too small to allocate from");
}

TEST(IpamConfigErrors, StartEndOutsideSubnet) {
  expect_config_error(net(ranges({{{{"subnet", "10.1.0.0/24"}, {"rangeStart", "10.2.0.1"}}}})),
                      cni::kInvalidConfig, "rangeStart 10.2.0.1 is outside subnet 10.1.0.0/24");
  expect_config_error(net(ranges({{{{"subnet", "10.1.0.0/24"}, {"rangeEnd", "10.1.1.1"}}}})),
                      cni::kInvalidConfig, "rangeEnd 10.1.1.1 is outside subnet 10.1.0.0/24");
  expect_config_error(
      net(ranges({{{{"subnet", "10.1.0.0/24"}, {"rangeStart", "10.1.0.50"}, {"rangeEnd", "10.1.0.40"}}}})),
      cni::kInvalidConfig, "rangeEnd 10.1.0.40 is before rangeStart 10.1.0.50");
  expect_config_error(net(ranges({{{{"subnet", "10.1.0.0/24"}, {"rangeStart", "fd00::1"}}}})),
                      cni::kInvalidConfig, "rangeStart fd00::1 is not of the family");
  expect_config_error(net(ranges({{{{"subnet", "10.1.0.0/24"}, {"gateway", "nope"}}}})), cni::kInvalidConfig,
                      "gateway \"nope\" is not an IP address");
}

TEST(IpamConfigErrors, MixedFamiliesInASet) {
  expect_config_error(net(ranges({{{{"subnet", "10.1.0.0/24"}}, {{"subnet", "fd00::/64"}}}})),
                      cni::kInvalidConfig, "invalid range set 0: mixed address families");
}

TEST(IpamConfigErrors, OverlappingRangesInASet) {
  expect_config_error(
      net(ranges({{{{"subnet", "10.1.0.0/24"}}, {{"subnet", "10.1.0.0/16"}, {"rangeStart", "10.1.0.100"}}}})),
      cni::kInvalidConfig, "invalid range set 0: subnets 10.1.0.1-10.1.0.254 and 10.1.0.100-10.1.255.254 overlap");
  // Disjoint ranges of one subnet are fine.
  EXPECT_NO_THROW(parse_config(
      net(ranges({{{{"subnet", "10.1.0.0/24"}, {"rangeEnd", "10.1.0.99"}},
                   {{"subnet", "10.1.0.0/24"}, {"rangeStart", "10.1.0.100"}}}})),
      ""));
}

TEST(IpamConfigErrors, OverlappingRangeSets) {
  expect_config_error(net(ranges({{{{"subnet", "10.1.0.0/24"}}}, {{{"subnet", "10.1.0.0/16"}}}})),
                      cni::kInvalidConfig, "range set 0 overlaps with 1");
  json ipam = ranges({{{{"subnet", "10.1.0.0/24"}}}});
  ipam["subnet"] = "10.1.0.0/24";
  expect_config_error(net(ipam), cni::kInvalidConfig, "range set 0 overlaps with 1");
}

TEST(IpamConfigErrors, OldVersionWithTwoSetsOfOneFamily) {
  json conf = net(ranges({{{{"subnet", "10.1.0.0/24"}}}, {{{"subnet", "10.2.0.0/24"}}}}));
  conf["cniVersion"] = "0.2.0";
  expect_config_error(conf, cni::kInvalidConfig, "does not support more than 1 address per family");
  conf["cniVersion"] = "0.3.1";
  EXPECT_NO_THROW(parse_config(conf, ""));
}

TEST(IpamConfigErrors, WrongTypesAreDecodingFailures) {
  expect_config_error(net("host-local"), cni::kDecodingFailure, "\"ipam\" must be an object");
  expect_config_error(net(ranges("10.1.0.0/24")), cni::kDecodingFailure, "ipam.ranges");
  expect_config_error(net(ranges({"10.1.0.0/24"})), cni::kDecodingFailure, "ipam.ranges[0]");
  expect_config_error(net(ranges({{{{"subnet", 10}}}})), cni::kDecodingFailure, "range.subnet");
  json ipam = ranges({{{{"subnet", "10.1.0.0/24"}}}});
  ipam["dataDir"] = 5;
  expect_config_error(net(ipam), cni::kDecodingFailure, "ipam.dataDir");
  expect_config_error(json::array(), cni::kDecodingFailure, "network config");
}

TEST(IpamConfigErrors, BadRoutes) {
  json ipam = ranges({{{{"subnet", "10.1.0.0/24"}}}});
  ipam["routes"] = {{{"gw", "10.1.0.1"}}};
  expect_config_error(net(ipam), cni::kInvalidConfig, "ipam.routes[0] has no \"dst\"");
  ipam["routes"] = {{{"dst", "0.0.0.0"}}};
  expect_config_error(net(ipam), cni::kInvalidConfig, "ipam.routes[0].dst \"0.0.0.0\" is not a CIDR");
  ipam["routes"] = {{{"dst", "0.0.0.0/0"}, {"gw", "x"}}};
  expect_config_error(net(ipam), cni::kInvalidConfig, "ipam.routes[0].gw \"x\" is not an IP address");
  ipam["routes"] = {{{"dst", "0.0.0.0/0"}, {"mtu", "1500"}}};
  expect_config_error(net(ipam), cni::kDecodingFailure, "ipam.routes[0].mtu");
}

TEST(IpamConfigErrors, BadRequestedIps) {
  json conf = net(ranges({{{{"subnet", "10.1.0.0/24"}}}}));
  expect_config_error(conf, cni::kInvalidEnvironment, "CNI_ARGS IP=10.1.0.300 is not an IP address",
                      "IP=10.1.0.300");
  expect_config_error(conf, cni::kInvalidEnvironment, "", "FOO=1");  // unknown key, no IgnoreUnknown
  conf["args"] = {{"cni", {{"ips", {"10.1.0.5", "x"}}}}};
  expect_config_error(conf, cni::kInvalidConfig, "args.cni.ips[1] \"x\" is not an IP address");
  conf.erase("args");
  conf["runtimeConfig"] = {{"ips", {"10.1.0.5/99"}}};
  expect_config_error(conf, cni::kInvalidConfig, "runtimeConfig.ips[0]");
}

TEST(IpamConfigErrors, BadNetworkName) {
  json conf = net(ranges({{{{"subnet", "10.1.0.0/24"}}}}));
  conf["name"] = "../etc";
  expect_config_error(conf, cni::kInvalidConfig, "network name \"../etc\" is invalid");
}

TEST(IpamConfigErrors, ParseRangeDirectly) {
  expect_error([] { parse_range(json::array()); }, cni::kDecodingFailure, "must be an object");
  Range r = parse_range({{"subnet", "192.168.7.0/24"}, {"gateway", "192.168.7.254"}});
  EXPECT_EQ(r.gateway.str(), "192.168.7.254");
  EXPECT_EQ(r.range_start.str(), "192.168.7.1");
}

// ---------------------------------------------------------------------------------------

TEST(IpamFileName, MatchesGoNetIpString) {
  EXPECT_EQ(ip_file_name(ip("10.1.0.5")), "10.1.0.5");
  EXPECT_EQ(ip_file_name(ip("2001:db8:1::2")), "2001:db8:1::2");
  EXPECT_EQ(ip_file_name(ip("2001:0db8:0000:0000:0001:0000:0000:0002")), "2001:db8::1:0:0:2");
  EXPECT_EQ(ip_file_name(ip("2001:db8:0:1:1:1:1:1")), "2001:db8:0:1:1:1:1:1");  // one zero group stays
  EXPECT_EQ(ip_file_name(ip("::")), "::");
  EXPECT_EQ(ip_file_name(ip("::1")), "::1");
  EXPECT_EQ(ip_file_name(ip("fd00::")), "fd00::");
  EXPECT_EQ(ip_file_name(ip("::102:304")), "::102:304");  // inet_ntop says ::1.2.3.4
  EXPECT_EQ(ip_file_name(ip("::ffff:10.1.2.3")), "10.1.2.3");
  EXPECT_EQ(ip_file_name(ip("fd00:10::ffff:ffff:ffff:ffff")), "fd00:10::ffff:ffff:ffff:ffff");
}

TEST(IpamRange, ContainsRespectsStartAndEnd) {
  Range r = parse_range({{"subnet", "10.1.0.0/24"}, {"rangeStart", "10.1.0.10"}, {"rangeEnd", "10.1.0.20"}});
  EXPECT_FALSE(r.contains(ip("10.1.0.9")));
  EXPECT_TRUE(r.contains(ip("10.1.0.10")));
  EXPECT_TRUE(r.contains(ip("10.1.0.20")));
  EXPECT_FALSE(r.contains(ip("10.1.0.21")));
  EXPECT_FALSE(r.contains(ip("fd00::10")));
}

}  // namespace
}  // namespace ferry::ipam
