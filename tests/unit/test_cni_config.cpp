// Config handling: typed getters, name validation, a plugin's stdin (NetConf), runtimeConfig
// and port mappings, GC attachments, conflists and what a runtime hands each plugin.
#include <gtest/gtest.h>

#include "cni/cni.h"

namespace cni = ferry::cni;
using cni::json;

namespace {

// Runs `fn`, expects a cni::Error with `code` whose text mentions `needle`.
template <typename Fn>
void expect_error(Fn&& fn, int code, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "no error; wanted code " << code << " mentioning " << needle;
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Typed getters

TEST(CniGetters, ReturnValuesAndDefaults) {
  json o = json::parse(R"({"b":true,"i":42,"s":"x","l":["a","b"],"n":null,"big":18446744073709551615})");
  EXPECT_TRUE(cni::get_bool(o, "b", false));
  EXPECT_TRUE(cni::get_bool(o, "missing", true));
  EXPECT_FALSE(cni::get_bool(o, "n", false));
  EXPECT_EQ(cni::get_int(o, "i", 0), 42);
  EXPECT_EQ(cni::get_int(o, "missing", 7), 7);
  EXPECT_EQ(cni::get_string(o, "s"), "x");
  EXPECT_EQ(cni::get_string(o, "missing", "def"), "def");
  EXPECT_EQ(cni::get_string_list(o, "l"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(cni::get_string_list(o, "missing").empty());
  EXPECT_EQ(cni::get_int(json::parse(R"({"i":-5})"), "i", 0), -5);
  EXPECT_EQ(cni::get_string(json::array(), "s", "d"), "d");  // not an object: the default
}

TEST(CniGetters, WrongTypesNameTheFieldAndTheType) {
  json o = json::parse(R"({"mtu":"1500","hairpin":"true","f":1.5,"l":["a",1],"s":3,"big":18446744073709551615})");
  expect_error([&] { cni::get_int(o, "mtu", 0); }, cni::kDecodingFailure, "field \"mtu\" must be an integer, got string");
  expect_error([&] { cni::get_bool(o, "hairpin", false); }, cni::kDecodingFailure, "field \"hairpin\" must be a boolean, got string");
  expect_error([&] { cni::get_int(o, "f", 0); }, cni::kDecodingFailure, "field \"f\" must be an integer, got number");
  expect_error([&] { cni::get_string_list(o, "l"); }, cni::kDecodingFailure, "field \"l\"");
  expect_error([&] { cni::get_string(o, "s"); }, cni::kDecodingFailure, "field \"s\" must be a string, got integer");
  expect_error([&] { cni::get_int(o, "big", 0); }, cni::kDecodingFailure, "field \"big\"");
}

TEST(CniGetters, FindKeyCaseInsensitivePrefersExactMatch) {
  json o = json::parse(R"({"HostPort":1,"hostport":2,"Other":3})");
  ASSERT_NE(cni::find_key_ci(o, "hostport"), nullptr);
  EXPECT_EQ(*cni::find_key_ci(o, "hostport"), 2);
  EXPECT_EQ(*cni::find_key_ci(o, "HostPort"), 1);
  EXPECT_EQ(*cni::find_key_ci(o, "other"), 3);
  EXPECT_EQ(cni::find_key_ci(o, "missing"), nullptr);
  EXPECT_EQ(cni::find_key_ci(json(5), "x"), nullptr);
}

// ---------------------------------------------------------------------------------------
// Validation

TEST(CniNames, InterfaceNames) {
  for (const char* ok : {"eth0", "a", "net1", "123456789012345", "eth0.100", "veth-x_y"})
    EXPECT_TRUE(cni::valid_interface_name(ok)) << ok;
  for (const char* bad : {"", "1234567890123456", ".", "..", "eth/0", "eth:0", "eth 0", "eth\t0", "eth\n"})
    EXPECT_FALSE(cni::valid_interface_name(bad)) << bad;
}

TEST(CniNames, ContainerIdsAndNetworkNames) {
  for (const char* ok : {"a", "0", "abc-123_x.y", "cnitool-77383ca0a0715733ca6f"})
    EXPECT_TRUE(cni::valid_container_id(ok)) << ok;
  for (const char* bad : {"", "-a", "_a", ".a", "a/b", "a b", "a:b", "a;b", "ä"})
    EXPECT_FALSE(cni::valid_container_id(bad)) << bad;
  EXPECT_TRUE(cni::valid_network_name("mynet"));
  EXPECT_FALSE(cni::valid_network_name("../etc"));
}

// ---------------------------------------------------------------------------------------
// NetConf

TEST(CniNetConf, ParsesWellKnownFields) {
  cni::NetConf c = cni::parse_net_conf(R"({
    "cniVersion":"1.0.0","name":"mynet","type":"ferry-bridge","bridge":"cni0",
    "capabilities":{"portMappings":true,"ips":false},
    "ipam":{"type":"ferry-host-local","subnet":"10.1.0.0/16"},
    "dns":{"nameservers":["10.1.0.1"]},
    "runtimeConfig":{"portMappings":[]},
    "args":{"cni":{"ips":["10.1.0.9"]}},
    "prevResult":{"ips":[{"address":"10.1.0.9/16"}]}})");
  EXPECT_EQ(c.cni_version, "1.0.0");
  EXPECT_EQ(c.name, "mynet");
  EXPECT_EQ(c.type, "ferry-bridge");
  EXPECT_EQ(c.capabilities, (std::map<std::string, bool>{{"portMappings", true}, {"ips", false}}));
  EXPECT_EQ(c.ipam["subnet"], "10.1.0.0/16");
  EXPECT_EQ(c.dns.nameservers, std::vector<std::string>{"10.1.0.1"});
  EXPECT_EQ(c.args["cni"]["ips"][0], "10.1.0.9");
  ASSERT_TRUE(c.prev_result);
  EXPECT_EQ(c.prev_result->cni_version, "1.0.0");  // filled from the config
  EXPECT_EQ(c.prev_result->ips[0].address.str(), "10.1.0.9/16");
  EXPECT_EQ(c.raw["bridge"], "cni0");
}

TEST(CniNetConf, MinimalConfigHasNullObjects) {
  cni::NetConf c = cni::parse_net_conf(R"({"cniVersion":"0.3.1","name":"n","type":"t"})");
  EXPECT_TRUE(c.ipam.is_null());
  EXPECT_TRUE(c.runtime_config.is_null());
  EXPECT_TRUE(c.args.is_null());
  EXPECT_FALSE(c.prev_result);
  EXPECT_EQ(c.runtime("portMappings"), nullptr);
}

TEST(CniNetConf, ErrorsCarryTheSpecCode) {
  expect_error([] { cni::parse_net_conf("not json"); }, cni::kDecodingFailure, "not valid JSON");
  expect_error([] { cni::parse_net_conf("[]"); }, cni::kDecodingFailure, "JSON object");
  expect_error([] { cni::parse_net_conf(R"({"cniVersion":"1.0.0"})"); }, cni::kInvalidConfig, "missing network name");
  expect_error([] { cni::parse_net_conf(R"({"cniVersion":"1.0.0","name":""})"); }, cni::kInvalidConfig, "missing network name");
  expect_error([] { cni::parse_net_conf(R"({"cniVersion":"1.0.0","name":"a b"})"); }, cni::kInvalidConfig, "invalid characters");
  expect_error([] { cni::parse_net_conf(R"({"cniVersion":"1.0.0","name":5})"); }, cni::kDecodingFailure, "\"name\"");
  expect_error([] { cni::parse_net_conf(R"({"name":"n"})"); }, cni::kIncompatibleVersion, "config is \"0.1.0\"");
  expect_error([] { cni::parse_net_conf(R"({"name":"n","cniVersion":""})"); }, cni::kIncompatibleVersion,
               "config is \"0.1.0\"");
  expect_error([] { cni::parse_net_conf(R"({"name":"n","cniVersion":"9.9.9"})"); }, cni::kIncompatibleVersion,
               "plugin supports [0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0]");
  expect_error([] { cni::parse_net_conf(R"({"name":"n","cniVersion":1})"); }, cni::kDecodingFailure, "\"cniVersion\"");
  expect_error([] { cni::parse_net_conf(R"({"name":"n","cniVersion":"1.0.0","ipam":"host-local"})"); },
               cni::kDecodingFailure, "field \"ipam\" must be an object");
  expect_error([] { cni::parse_net_conf(R"({"name":"n","cniVersion":"1.0.0","capabilities":{"x":1}})"); },
               cni::kDecodingFailure, "capabilities.x");
  expect_error([] { cni::parse_net_conf(R"({"name":"n","cniVersion":"1.0.0","prevResult":{"ips":[{"address":"x"}]}})"); },
               cni::kDecodingFailure, "ips[0].address");
  expect_error([] { cni::parse_net_conf(R"({"name":"n","cniVersion":"1.0.0","dns":{"nameservers":"x"}})"); },
               cni::kDecodingFailure, "dns.nameservers");
}

TEST(CniNetConf, RuntimeConfigKeysAreCaseInsensitive) {
  cni::NetConf c = cni::parse_net_conf(
      R"({"cniVersion":"1.0.0","name":"n","runtimeConfig":{"PortMappings":[],"Bandwidth":{"IngressRate":1}}})");
  ASSERT_NE(c.runtime("portMappings"), nullptr);
  ASSERT_NE(c.runtime("bandwidth"), nullptr);
  EXPECT_EQ(*cni::find_key_ci(*c.runtime("bandwidth"), "ingressRate"), 1);
}

// ---------------------------------------------------------------------------------------
// Port mappings

namespace {
cni::NetConf with_ports(const std::string& ports) {
  return cni::parse_net_conf(R"({"cniVersion":"1.0.0","name":"n","runtimeConfig":{"portMappings":)" + ports + "}}");
}
}  // namespace

TEST(CniPortMappings, ConventionAndContainerdKeys) {
  auto pms = cni::port_mappings(with_ports(
      R"([{"hostPort":8080,"containerPort":80,"protocol":"TCP","hostIP":"1.2.3.4"},
          {"HostPort":5353,"ContainerPort":53,"Protocol":"UDP","HostIP":""},
          {"hostPort":1,"containerPort":65535}])"));
  ASSERT_EQ(pms.size(), 3u);
  EXPECT_EQ(pms[0].host_port, 8080);
  EXPECT_EQ(pms[0].container_port, 80);
  EXPECT_EQ(pms[0].protocol, "tcp");
  EXPECT_EQ(pms[0].host_ip, "1.2.3.4");
  EXPECT_EQ(pms[1].host_port, 5353);
  EXPECT_EQ(pms[1].protocol, "udp");
  EXPECT_EQ(pms[1].host_ip, "");
  EXPECT_EQ(pms[2].protocol, "tcp");  // default
  EXPECT_TRUE(cni::port_mappings(with_ports("[]")).empty());
  EXPECT_TRUE(cni::port_mappings(with_ports("null")).empty());
}

TEST(CniPortMappings, InvalidPortsAreInvalidConfig) {
  expect_error([] { cni::port_mappings(with_ports(R"([{"hostPort":0,"containerPort":80}])")); },
               cni::kInvalidConfig, "hostPort is 0");
  expect_error([] { cni::port_mappings(with_ports(R"([{"hostPort":65536,"containerPort":80}])")); },
               cni::kInvalidConfig, "1..65535");
  expect_error([] { cni::port_mappings(with_ports(R"([{"hostPort":80,"containerPort":-1}])")); },
               cni::kInvalidConfig, "containerPort is -1");
  expect_error([] { cni::port_mappings(with_ports(R"([{"hostPort":80}])")); }, cni::kInvalidConfig,
               "containerPort is missing");
  expect_error([] { cni::port_mappings(with_ports(R"([{"hostPort":"80","containerPort":80}])")); },
               cni::kDecodingFailure, "portMappings[0].hostPort");
  expect_error([] { cni::port_mappings(with_ports(R"([{"hostPort":80,"containerPort":80,"protocol":6}])")); },
               cni::kDecodingFailure, "protocol");
  expect_error([] { cni::port_mappings(with_ports(R"({"hostPort":80})")); }, cni::kDecodingFailure, "a list");
  expect_error([] { cni::port_mappings(with_ports(R"([5])")); }, cni::kDecodingFailure, "portMappings[0]");
  expect_error([] { cni::port_mappings(with_ports(R"([{"hostPort":18446744073709551615,"containerPort":1}])")); },
               cni::kInvalidConfig, "1..65535");
}

// ---------------------------------------------------------------------------------------
// GC attachments

TEST(CniAttachments, ReadsBothKeysDeduplicated) {
  json conf = json::parse(R"({
    "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth0"},{"containerID":"c2","ifname":"eth0"}],
    "cni.dev/attachments":[{"containerID":"c2","ifname":"eth0"},{"containerID":"c3","ifname":"net1"}]})");
  auto a = cni::valid_attachments(conf);
  EXPECT_EQ(a, (std::vector<cni::Attachment>{{"c1", "eth0"}, {"c2", "eth0"}, {"c3", "net1"}}));
  EXPECT_EQ(cni::valid_attachments(json::parse(R"({"cni.dev/attachments":[{"containerID":"old","ifname":"eth0"}]})")),
            (std::vector<cni::Attachment>{{"old", "eth0"}}));
  EXPECT_TRUE(cni::valid_attachments(json::parse(R"({"name":"n"})")).empty());
  expect_error([] { cni::valid_attachments(json::parse(R"({"cni.dev/valid-attachments":{}})")); },
               cni::kDecodingFailure, "cni.dev/valid-attachments");
  expect_error([] { cni::valid_attachments(json::parse(R"({"cni.dev/valid-attachments":[{"containerID":1}]})")); },
               cni::kDecodingFailure, "containerID");
}

// ---------------------------------------------------------------------------------------
// Conflists

TEST(CniNetworkList, ParsesAConflist) {
  auto l = cni::parse_network_list(R"({
    "cniVersion":"1.0.0","name":"containerd-net","disableCheck":true,
    "plugins":[{"type":"ferry-bridge","bridge":"cni0"},{"type":"ferry-portmap","capabilities":{"portMappings":true}}]})");
  EXPECT_EQ(l.name, "containerd-net");
  EXPECT_EQ(l.cni_version, "1.0.0");
  EXPECT_TRUE(l.disable_check);
  EXPECT_FALSE(l.disable_gc);
  ASSERT_EQ(l.plugins.size(), 2u);
  EXPECT_EQ(l.plugins[1]["type"], "ferry-portmap");
}

TEST(CniNetworkList, SelectsTheHighestVersionWeSpeak) {
  auto pick = [](const char* versions) {
    return cni::parse_network_list(std::string(R"({"name":"n","plugins":[{"type":"t"}],)") + versions + "}").cni_version;
  };
  EXPECT_EQ(pick(R"("cniVersion":"0.4.0","cniVersions":["0.3.1","1.0.0"])"), "1.0.0");
  EXPECT_EQ(pick(R"("cniVersion":"1.1.0","cniVersions":["0.3.1","1.0.0"])"), "1.1.0");
  EXPECT_EQ(pick(R"("cniVersions":["1.0.0","1.1.0","2.0.0"])"), "1.1.0");
  EXPECT_EQ(pick(R"("cniVersion":"9.0.0","cniVersions":["0.3.1"])"), "0.3.1");
  expect_error([] { cni::parse_network_list(R"({"name":"n","cniVersion":"0.2.0","plugins":[{"type":"t"}]})"); },
               cni::kIncompatibleVersion, "config lists [0.2.0]");
  expect_error([] { cni::parse_network_list(R"({"name":"n","plugins":[{"type":"t"}]})"); },
               cni::kIncompatibleVersion, "no supported cniVersion");
  expect_error([] { cni::parse_network_list(R"({"name":"n","cniVersions":"1.0.0","plugins":[{"type":"t"}]})"); },
               cni::kDecodingFailure, "cniVersions");
}

TEST(CniNetworkList, DisableFlagsAcceptBoolStrings) {
  auto parse = [](const char* extra) {
    return cni::parse_network_list(std::string(R"({"name":"n","cniVersion":"1.1.0","plugins":[{"type":"t"}],)") + extra + "}");
  };
  EXPECT_TRUE(parse(R"("disableCheck":"true")").disable_check);
  EXPECT_TRUE(parse(R"("disableCheck":"TRUE")").disable_check);
  EXPECT_FALSE(parse(R"("disableCheck":"false")").disable_check);
  EXPECT_TRUE(parse(R"("disableGC":true)").disable_gc);
  expect_error([&] { parse(R"("disableCheck":"yes")"); }, cni::kDecodingFailure, "disableCheck");
  expect_error([&] { parse(R"("disableGC":1)"); }, cni::kDecodingFailure, "disableGC");
}

TEST(CniNetworkList, UpconvertsASingleConf) {
  auto l = cni::parse_network_list(R"({"cniVersion":"0.3.1","name":"old","type":"ferry-bridge","bridge":"br0"})");
  EXPECT_EQ(l.name, "old");
  EXPECT_EQ(l.cni_version, "0.3.1");
  ASSERT_EQ(l.plugins.size(), 1u);
  EXPECT_EQ(l.plugins[0]["type"], "ferry-bridge");
  EXPECT_EQ(l.plugins[0]["bridge"], "br0");
}

TEST(CniNetworkList, StructuralErrors) {
  expect_error([] { cni::parse_network_list("{"); }, cni::kDecodingFailure, "network configuration list");
  expect_error([] { cni::parse_network_list(R"({"cniVersion":"1.0.0","plugins":[{"type":"t"}]})"); },
               cni::kInvalidConfig, "missing network name");
  expect_error([] { cni::parse_network_list(R"({"cniVersion":"1.0.0","name":"n/x","plugins":[{"type":"t"}]})"); },
               cni::kInvalidConfig, "invalid characters");
  expect_error([] { cni::parse_network_list(R"({"cniVersion":"1.0.0","name":"n","plugins":[]})"); },
               cni::kInvalidConfig, "no plugins");
  expect_error([] { cni::parse_network_list(R"({"cniVersion":"1.0.0","name":"n","plugins":{}})"); },
               cni::kInvalidConfig, "\"plugins\" must be a list");
  expect_error([] { cni::parse_network_list(R"({"cniVersion":"1.0.0","name":"n","plugins":[{"bridge":"x"}]})"); },
               cni::kInvalidConfig, "plugins[0] has no \"type\"");
  expect_error([] { cni::parse_network_list(R"({"cniVersion":"1.0.0","name":"n","plugins":[7]})"); },
               cni::kDecodingFailure, "plugins[0]");
  expect_error([] { cni::parse_network_list(R"({"cniVersion":"1.0.0","name":"n"})"); }, cni::kInvalidConfig,
               "neither \"plugins\"");
}

// ---------------------------------------------------------------------------------------
// build_plugin_config

TEST(CniBuildPluginConfig, InjectsNameVersionCapabilitiesAndPrevResult) {
  auto l = cni::parse_network_list(R"({
    "cniVersion":"0.4.0","name":"net1",
    "plugins":[{"type":"ferry-bridge","ipam":{"type":"ferry-host-local"}},
               {"type":"ferry-portmap","capabilities":{"portMappings":true,"bandwidth":false,"ips":true},
                "runtimeConfig":{"stale":1},"snat":true}]})");
  json caps = json::parse(R"({"portMappings":[{"hostPort":8080,"containerPort":80}],"bandwidth":{"ingressRate":1}})");

  json first = cni::build_plugin_config(l, 0, caps, std::nullopt);
  EXPECT_EQ(first, json::parse(R"({"type":"ferry-bridge","ipam":{"type":"ferry-host-local"},
                                  "name":"net1","cniVersion":"0.4.0"})"));

  cni::Result prev;
  prev.cni_version = "1.1.0";
  prev.interfaces.push_back({"eth0", "aa:bb:cc:dd:ee:ff", "/run/netns/x", 1500, "", ""});
  prev.ips.push_back({0, *cni::IPNet::parse("10.1.0.5/16"), cni::IPAddr::parse("10.1.0.1")});
  json second = cni::build_plugin_config(l, 1, caps, prev);
  EXPECT_EQ(second, json::parse(R"({
    "type":"ferry-portmap","capabilities":{"portMappings":true,"bandwidth":false,"ips":true},"snat":true,
    "name":"net1","cniVersion":"0.4.0",
    "runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80}]},
    "prevResult":{"cniVersion":"0.4.0",
                  "interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"/run/netns/x"}],
                  "ips":[{"version":"4","interface":0,"address":"10.1.0.5/16","gateway":"10.1.0.1"}],
                  "dns":{}}})"));

  // No data for any declared capability: runtimeConfig is left as the file had it.
  json third = cni::build_plugin_config(l, 1, json::object(), std::nullopt);
  EXPECT_EQ(third["runtimeConfig"], json::parse(R"({"stale":1})"));
  EXPECT_FALSE(third.contains("prevResult"));

  expect_error([&] { cni::build_plugin_config(l, 2, caps, std::nullopt); }, cni::kInvalidConfig, "no plugin 2");
}

TEST(CniBuildPluginConfig, OverridesNameAndVersionFromTheList) {
  auto l = cni::parse_network_list(
      R"({"cniVersion":"1.1.0","name":"outer","plugins":[{"type":"t","name":"inner","cniVersion":"0.3.0"}]})");
  json c = cni::build_plugin_config(l, 0, json::object(), std::nullopt);
  EXPECT_EQ(c["name"], "outer");
  EXPECT_EQ(c["cniVersion"], "1.1.0");
  // And the plugin can parse what it is handed.
  cni::NetConf conf = cni::parse_net_conf(c.dump());
  EXPECT_EQ(conf.name, "outer");
}
