// ferry-portmap configuration: defaults, every validation error with its spec code, the
// containerd-style capitalised portMappings keys, and which prevResult addresses are used.
#include <gtest/gtest.h>

#include "cni/cni.h"
#include "plugins/portmap/config.h"

namespace ferry::portmap {
namespace {

using cni::json;

json base() {
  return json{{"cniVersion", "1.0.0"}, {"name", "mynet"}, {"type", "ferry-portmap"}};
}

Config parse(const json& j) { return parse_config(cni::parse_net_conf(j.dump())); }

int error_code(const json& j) {
  try {
    parse(j);
  } catch (const cni::Error& e) {
    return e.code();
  }
  return 0;
}

std::string error_text(const json& j) {
  try {
    parse(j);
  } catch (const cni::Error& e) {
    return e.msg() + " | " + e.details();
  }
  return "";
}

TEST(PortmapConfig, DefaultsMatchTheReference) {
  Config c = parse(base());
  EXPECT_EQ(c.network, "mynet");
  EXPECT_TRUE(c.snat);
  EXPECT_FALSE(c.masq_all);
  EXPECT_EQ(c.mark_masq_bit, 13);
  EXPECT_FALSE(c.external_set_mark_chain);
  EXPECT_TRUE(c.conditions_v4.empty());
  EXPECT_TRUE(c.conditions_v6.empty());
  EXPECT_TRUE(c.mappings.empty());
}

TEST(PortmapConfig, ReadsEveryField) {
  json j = base();
  j["snat"] = false;
  j["masqAll"] = true;
  j["markMasqBit"] = 20;
  j["backend"] = "iptables";
  j["conditionsV4"] = {"-s", "10.0.0.0/8"};
  j["conditionsV6"] = {"!", "-s", "fd00::/8"};
  j["runtimeConfig"] = {{"portMappings",
                         {{{"hostPort", 8080}, {"containerPort", 80}, {"protocol", "tcp"}},
                          {{"hostPort", 53}, {"containerPort", 5353}, {"protocol", "UDP"},
                           {"hostIP", "192.168.1.1"}}}}};
  Config c = parse(j);
  EXPECT_FALSE(c.snat);
  EXPECT_TRUE(c.masq_all);
  EXPECT_EQ(c.mark_masq_bit, 20);
  EXPECT_EQ(c.conditions_v4, (std::vector<std::string>{"-s", "10.0.0.0/8"}));
  EXPECT_EQ(c.conditions_v6, (std::vector<std::string>{"!", "-s", "fd00::/8"}));
  ASSERT_EQ(c.mappings.size(), 2u);
  EXPECT_EQ(c.mappings[0].host_port, 8080);
  EXPECT_EQ(c.mappings[0].container_port, 80);
  EXPECT_EQ(c.mappings[1].protocol, "udp");
  EXPECT_EQ(c.mappings[1].host_ip, "192.168.1.1");
}

TEST(PortmapConfig, AcceptsContainerdCapitalisedKeys) {
  json j = base();
  j["runtimeConfig"] = {{"portMappings",
                         {{{"HostPort", 8080}, {"ContainerPort", 80}, {"Protocol", "tcp"}, {"HostIP", ""}}}}};
  Config c = parse(j);
  ASSERT_EQ(c.mappings.size(), 1u);
  EXPECT_EQ(c.mappings[0].host_port, 8080);
  EXPECT_EQ(c.mappings[0].container_port, 80);
  EXPECT_EQ(c.mappings[0].protocol, "tcp");
  EXPECT_EQ(c.mappings[0].host_ip, "");
}

TEST(PortmapConfig, ProtocolDefaultsToTcp) {
  json j = base();
  j["runtimeConfig"] = {{"portMappings", {{{"hostPort", 8080}, {"containerPort", 80}}}}};
  EXPECT_EQ(parse(j).mappings.at(0).protocol, "tcp");
}

TEST(PortmapConfig, NullMarkBitMeansDefault) {
  json j = base();
  j["markMasqBit"] = nullptr;
  j["externalSetMarkChain"] = "KUBE-MARK-MASQ";
  Config c = parse(j);
  EXPECT_EQ(c.external_set_mark_chain.value_or(""), "KUBE-MARK-MASQ");
}

TEST(PortmapConfig, MarkBitAndExternalChainAreExclusive) {
  json j = base();
  j["markMasqBit"] = 13;
  j["externalSetMarkChain"] = "KUBE-MARK-MASQ";
  EXPECT_EQ(error_code(j), cni::kInvalidConfig);
  EXPECT_NE(error_text(j).find("externalSetMarkChain"), std::string::npos);
}

TEST(PortmapConfig, MarkBitRange) {
  for (int bit : {0, 31}) {
    json j = base();
    j["markMasqBit"] = bit;
    EXPECT_EQ(parse(j).mark_masq_bit, bit);
  }
  for (int bit : {-1, 32}) {
    json j = base();
    j["markMasqBit"] = bit;
    EXPECT_EQ(error_code(j), cni::kInvalidConfig) << bit;
    EXPECT_NE(error_text(j).find("between 0 and 31"), std::string::npos);
  }
}

TEST(PortmapConfig, WrongTypesAreDecodingFailures) {
  for (const char* key : {"snat", "masqAll", "markMasqBit", "conditionsV4", "backend"}) {
    json j = base();
    j[key] = json::object({{"x", 1}});
    EXPECT_EQ(error_code(j), cni::kDecodingFailure) << key;
  }
  json j = base();
  j["markMasqBit"] = "13";
  EXPECT_EQ(error_code(j), cni::kDecodingFailure);
}

TEST(PortmapConfig, NftablesBackendIsUnsupported) {
  json j = base();
  j["backend"] = "nftables";
  EXPECT_EQ(error_code(j), cni::kUnsupportedField);
  EXPECT_NE(error_text(j).find("iptables only"), std::string::npos);
}

TEST(PortmapConfig, UnknownBackendIsInvalid) {
  json j = base();
  j["backend"] = "ebpf";
  EXPECT_EQ(error_code(j), cni::kInvalidConfig);
  j["backend"] = "iptables";
  EXPECT_EQ(error_code(j), 0);
}

TEST(PortmapConfig, NftSyntaxConditions) {
  json j = base();
  j["conditionsV4"] = {"ip", "saddr", "10.0.0.0/8"};
  EXPECT_EQ(error_code(j), cni::kUnsupportedField);  // would select the nftables backend
  j["backend"] = "iptables";
  EXPECT_EQ(error_code(j), cni::kInvalidConfig);  // contradicts the chosen backend
  j = base();
  j["conditionsV6"] = {"ip6", "saddr", "fd00::/8"};
  EXPECT_EQ(error_code(j), cni::kUnsupportedField);
}

TEST(PortmapConfig, InvalidExternalChainName) {
  for (const char* name : {"", "has space", "-starts-with-dash", "A-CHAIN-NAME-LONGER-THAN-28-CHARS"}) {
    json j = base();
    j["externalSetMarkChain"] = name;
    EXPECT_EQ(error_code(j), cni::kInvalidConfig) << name;
  }
}

TEST(PortmapConfig, InvalidMappings) {
  auto with = [](json m) {
    json j = base();
    j["runtimeConfig"] = {{"portMappings", json::array({m})}};
    return j;
  };
  EXPECT_EQ(error_code(with({{"hostPort", 0}, {"containerPort", 80}})), cni::kInvalidConfig);
  EXPECT_EQ(error_code(with({{"hostPort", 8080}, {"containerPort", 0}})), cni::kInvalidConfig);
  EXPECT_EQ(error_code(with({{"hostPort", 65536}, {"containerPort", 80}})), cni::kInvalidConfig);
  EXPECT_EQ(error_code(with({{"hostPort", 8080}, {"containerPort", 80}, {"protocol", "icmp"}})),
            cni::kInvalidConfig);
  EXPECT_EQ(error_code(with({{"hostPort", 8080}, {"containerPort", 80}, {"hostIP", "not-an-ip"}})),
            cni::kInvalidConfig);
  EXPECT_NE(error_text(with({{"hostPort", 8080}, {"containerPort", 80}, {"hostIP", "not-an-ip"}}))
                .find("not-an-ip"),
            std::string::npos);
  EXPECT_EQ(error_code(with({{"hostPort", 8080}, {"containerPort", 80}, {"protocol", "sctp"}})), 0);
}

cni::Result result_from(const json& j) { return cni::result_from_json(j); }

TEST(PortmapConfig, ContainerAddrsTakeTheSandboxInterface) {
  cni::Result r = result_from(json::parse(R"({
    "cniVersion": "1.0.0",
    "interfaces": [
      {"name": "cni0", "mac": "00:11:22:33:44:55"},
      {"name": "veth1", "mac": "00:11:22:33:44:66"},
      {"name": "eth0", "mac": "00:11:22:33:44:77", "sandbox": "/run/netns/x"},
      {"name": "eth1", "mac": "00:11:22:33:44:88", "sandbox": "/run/netns/x"}
    ],
    "ips": [
      {"address": "10.9.0.1/24", "interface": 0},
      {"address": "10.8.0.5/24", "interface": 3},
      {"address": "10.1.0.5/24", "interface": 2, "gateway": "10.1.0.1"},
      {"address": "10.1.0.6/24", "interface": 2},
      {"address": "fd00::5/64", "interface": 2}
    ]})"));
  ContainerAddrs a = container_addrs(r, "eth0");
  ASSERT_TRUE(a.v4);
  EXPECT_EQ(a.v4->str(), "10.1.0.5/24");
  ASSERT_TRUE(a.v6);
  EXPECT_EQ(a.v6->str(), "fd00::5/64");

  ContainerAddrs b = container_addrs(r, "eth1");
  ASSERT_TRUE(b.v4);
  EXPECT_EQ(b.v4->str(), "10.8.0.5/24");
  EXPECT_FALSE(b.v6);

  EXPECT_FALSE(container_addrs(r, "eth9").v4);
}

TEST(PortmapConfig, ContainerAddrsWithoutInterfaceIndex) {
  cni::Result r = result_from(json::parse(R"({
    "cniVersion": "1.0.0",
    "ips": [{"address": "10.1.0.5/24"}, {"address": "10.1.0.7/24"}]})"));
  ContainerAddrs a = container_addrs(r, "eth0");
  ASSERT_TRUE(a.v4);
  EXPECT_EQ(a.v4->str(), "10.1.0.5/24");
  EXPECT_FALSE(a.v6);
}

}  // namespace
}  // namespace ferry::portmap
