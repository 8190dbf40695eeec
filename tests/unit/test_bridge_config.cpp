// ferry-bridge configuration: defaults, every field, validation errors (reference messages).
#include <gtest/gtest.h>

#include "cni/cni.h"
#include "config.h"

namespace ferry::bridge {
namespace {

using cni::json;

BridgeConf parse(json extra, std::string_view cni_args = "") {
  json conf = {{"cniVersion", "1.0.0"}, {"name", "net1"}, {"type", "ferry-bridge"}};
  for (auto& [k, v] : extra.items()) conf[k] = v;
  return parse_conf(cni::parse_net_conf(conf.dump()), cni_args);
}

int error_code(json extra, std::string_view cni_args = "", std::string* msg = nullptr) {
  try {
    parse(std::move(extra), cni_args);
  } catch (const cni::Error& e) {
    if (msg) *msg = e.msg();
    return e.code();
  }
  return 0;
}

TEST(BridgeConfig, DefaultsMatchReference) {
  BridgeConf c = parse(json::object());
  EXPECT_EQ(c.network, "net1");
  EXPECT_EQ(c.bridge, "cni0");
  EXPECT_FALSE(c.is_gateway);
  EXPECT_FALSE(c.is_default_gateway);
  EXPECT_FALSE(c.force_address);
  EXPECT_FALSE(c.ip_masq);
  EXPECT_EQ(c.ip_masq_backend, MasqBackend::kDefault);
  EXPECT_EQ(c.mtu, 0);
  EXPECT_FALSE(c.hairpin_mode);
  EXPECT_FALSE(c.promisc_mode);
  EXPECT_EQ(c.vlan, 0);
  EXPECT_TRUE(c.vlan_trunk.empty());
  EXPECT_FALSE(c.preserve_default_vlan);
  EXPECT_FALSE(c.macspoofchk);
  EXPECT_FALSE(c.enable_dad);
  EXPECT_FALSE(c.disable_container_interface);
  EXPECT_FALSE(c.port_isolation);
  EXPECT_FALSE(c.layer3());
  EXPECT_FALSE(c.vlan_filtering());
  EXPECT_FALSE(c.mac.has_value());
  EXPECT_EQ(c.endpoint_dir, "/run/ferry/endpoints");
}

TEST(BridgeConfig, EveryFieldIsRead) {
  BridgeConf c = parse({{"bridge", "br9"},
                        {"isGateway", true},
                        {"forceAddress", true},
                        {"ipMasq", true},
                        {"ipMasqBackend", "nftables"},
                        {"mtu", 1400},
                        {"hairpinMode", true},
                        {"vlan", 100},
                        {"vlanTrunk", json::array({{{"id", 101}}, {{"minID", 200}, {"maxID", 202}}})},
                        {"preserveDefaultVlan", true},
                        {"macspoofchk", true},
                        {"enabledad", true},
                        {"portIsolation", true},
                        {"endpointDir", "/tmp/x"},
                        {"ipam", {{"type", "host-local"}, {"subnet", "10.1.0.0/24"}}},
                        {"dns", {{"nameservers", {"10.1.0.1"}}}}});
  EXPECT_EQ(c.bridge, "br9");
  EXPECT_TRUE(c.is_gateway);
  EXPECT_TRUE(c.force_address);
  EXPECT_TRUE(c.ip_masq);
  EXPECT_EQ(c.ip_masq_backend, MasqBackend::kNftables);
  EXPECT_EQ(c.mtu, 1400);
  EXPECT_TRUE(c.hairpin_mode);
  EXPECT_EQ(c.vlan, 100);
  EXPECT_EQ(c.vlan_trunk, (std::vector<int>{101, 200, 201, 202}));
  EXPECT_TRUE(c.vlan_filtering());
  EXPECT_TRUE(c.preserve_default_vlan);
  EXPECT_TRUE(c.macspoofchk);
  EXPECT_TRUE(c.enable_dad);
  EXPECT_TRUE(c.port_isolation);
  EXPECT_EQ(c.endpoint_dir, "/tmp/x");
  EXPECT_EQ(c.ipam_type, "host-local");
  EXPECT_TRUE(c.layer3());
  ASSERT_EQ(c.dns.nameservers.size(), 1u);
}

TEST(BridgeConfig, DefaultGatewayImpliesGateway) {
  BridgeConf c = parse({{"isDefaultGateway", true}});
  EXPECT_TRUE(c.is_gateway);
  EXPECT_TRUE(c.is_default_gateway);
}

TEST(BridgeConfig, KeysMatchCaseInsensitivelyLikeGo) {
  BridgeConf c = parse({{"IsGateway", true}, {"HAIRPINMODE", true}});
  EXPECT_TRUE(c.is_gateway);
  EXPECT_TRUE(c.hairpin_mode);
}

TEST(BridgeConfig, EmptyIpamTypeIsLayer2) {
  EXPECT_FALSE(parse({{"ipam", json::object()}}).layer3());
  EXPECT_FALSE(parse({{"ipam", {{"type", ""}}}}).layer3());
}

TEST(BridgeConfig, HairpinAndPromiscAreExclusive) {
  std::string msg;
  EXPECT_EQ(error_code({{"hairpinMode", true}, {"promiscMode", true}}, "", &msg), cni::kInvalidConfig);
  EXPECT_EQ(msg, "cannot set hairpin mode and promiscuous mode at the same time.");
}

TEST(BridgeConfig, IpamWithDisabledContainerInterfaceIsRejected) {
  std::string msg;
  EXPECT_EQ(error_code({{"disableContainerInterface", true}, {"ipam", {{"type", "host-local"}}}}, "", &msg),
            cni::kInvalidConfig);
  EXPECT_EQ(msg, "cannot use IPAM when DisableContainerInterface flag is set");
  EXPECT_EQ(error_code({{"disableContainerInterface", true}}), 0);
}

TEST(BridgeConfig, VlanRange) {
  std::string msg;
  EXPECT_EQ(error_code({{"vlan", 4095}}, "", &msg), cni::kInvalidConfig);
  EXPECT_EQ(msg, "invalid VLAN ID 4095 (must be between 0 and 4094)");
  EXPECT_EQ(error_code({{"vlan", -1}}), cni::kInvalidConfig);
  EXPECT_EQ(error_code({{"vlan", 4094}}), 0);
}

TEST(BridgeConfig, VlanTrunkValidation) {
  auto trunk_error = [](json item) {
    std::string msg;
    error_code({{"vlanTrunk", json::array({item})}}, "", &msg);
    return msg;
  };
  EXPECT_EQ(trunk_error({{"minID", 0}, {"maxID", 10}}), "incorrect trunk minID parameter");
  EXPECT_EQ(trunk_error({{"minID", 1}, {"maxID", 4095}}), "incorrect trunk maxID parameter");
  EXPECT_EQ(trunk_error({{"minID", 20}, {"maxID", 10}}), "minID is greater than maxID in trunk parameter");
  EXPECT_EQ(trunk_error({{"maxID", 10}}), "minID and maxID should be configured simultaneously, minID is missing");
  EXPECT_EQ(trunk_error({{"minID", 10}}), "minID and maxID should be configured simultaneously, maxID is missing");
  EXPECT_EQ(trunk_error({{"id", 0}}), "incorrect trunk id parameter");
  EXPECT_EQ(trunk_error({{"id", 5000}}), "incorrect trunk id parameter");
}

TEST(BridgeConfig, VlanTrunkIsSortedAndUnique) {
  BridgeConf c = parse({{"vlanTrunk", json::array({{{"id", 7}}, {{"minID", 5}, {"maxID", 7}}, {{"id", 1}}})}});
  EXPECT_EQ(c.vlan_trunk, (std::vector<int>{1, 5, 6, 7}));
}

TEST(BridgeConfig, WrongTypesAreDecodingErrors) {
  EXPECT_EQ(error_code({{"mtu", "1500"}}), cni::kDecodingFailure);
  EXPECT_EQ(error_code({{"isGateway", "true"}}), cni::kDecodingFailure);
  EXPECT_EQ(error_code({{"bridge", 5}}), cni::kDecodingFailure);
  EXPECT_EQ(error_code({{"vlanTrunk", {{"id", 3}}}}), cni::kDecodingFailure);
}

TEST(BridgeConfig, BadValuesAreConfigErrors) {
  EXPECT_EQ(error_code({{"ipMasqBackend", "ipvs"}}), cni::kInvalidConfig);
  EXPECT_EQ(error_code({{"mtu", -5}}), cni::kInvalidConfig);
  EXPECT_EQ(error_code({{"bridge", "this-name-is-too-long"}}), cni::kInvalidConfig);
  EXPECT_EQ(error_code({{"bridge", "a/b"}}), cni::kInvalidConfig);
  // "<bridge>.<vlan>" must fit in 15 characters when it carries the gateway.
  EXPECT_EQ(error_code({{"bridge", "bridge-name1"}, {"vlan", 1000}, {"isGateway", true}}), cni::kInvalidConfig);
}

TEST(BridgeConfig, MacPrecedenceCniArgsThenArgsThenRuntimeConfig) {
  EXPECT_EQ(net::mac_str(*parse(json::object(), "MAC=c2:11:22:33:44:01").mac), "c2:11:22:33:44:01");
  json args = {{"cni", {{"mac", "c2:11:22:33:44:02"}}}};
  EXPECT_EQ(net::mac_str(*parse({{"args", args}}, "MAC=c2:11:22:33:44:01").mac), "c2:11:22:33:44:02");
  json rc = {{"mac", "c2:11:22:33:44:03"}};
  EXPECT_EQ(net::mac_str(*parse({{"args", args}, {"runtimeConfig", rc}}, "MAC=c2:11:22:33:44:01").mac),
            "c2:11:22:33:44:03");
  // containerd capitalises capability keys.
  json rc_caps = {{"Mac", "c2:11:22:33:44:04"}};
  EXPECT_EQ(net::mac_str(*parse({{"runtimeConfig", rc_caps}}).mac), "c2:11:22:33:44:04");
}

TEST(BridgeConfig, InvalidMacIsRejected) {
  EXPECT_EQ(error_code(json::object(), "MAC=zz:11:22:33:44:55"), cni::kInvalidConfig);
  EXPECT_EQ(error_code({{"runtimeConfig", {{"mac", "c2:11:22"}}}}), cni::kInvalidConfig);
  EXPECT_EQ(error_code({{"runtimeConfig", {{"mac", "01:00:5e:00:00:01"}}}}), cni::kInvalidConfig);  // multicast
}

TEST(BridgeConfig, CniArgsUnknownKeysNeedIgnoreUnknown) {
  EXPECT_EQ(error_code(json::object(), "FOO=1"), cni::kInvalidEnvironment);
  EXPECT_EQ(error_code(json::object(), "IgnoreUnknown=1;FOO=1"), 0);
  BridgeConf c = parse(json::object(), "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns1;K8S_POD_NAME=web-0");
  EXPECT_EQ(c.pod_namespace, "ns1");
  EXPECT_EQ(c.pod_name, "web-0");
}

}  // namespace
}  // namespace ferry::bridge
