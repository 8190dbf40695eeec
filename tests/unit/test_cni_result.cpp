// Results: parsing every supported shape, rendering per version (golden JSON), conversion
// round trips, decode errors naming the field, DNS and resolv.conf.
#include <gtest/gtest.h>

#include "cni/cni.h"

namespace cni = ferry::cni;
using cni::json;

namespace {

// The spec's 1.1.0 example result, every optional field set.
const char* kFull11 = R"({
  "cniVersion": "1.1.0",
  "interfaces": [
    {"name": "cni0", "mac": "00:11:22:33:44:55"},
    {"name": "veth3243a1b2", "mac": "55:44:33:22:11:11"},
    {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue", "mtu": 1500,
     "socketPath": "/optional", "pciID": "0000:00:1f.6"}
  ],
  "ips": [{"interface": 2, "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
          {"interface": 2, "address": "fd00::5/64"}],
  "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1", "mtu": 1400, "advmss": 1360, "priority": 10,
              "table": 254, "scope": 0},
             {"dst": "::/0"}],
  "dns": {"nameservers": ["10.1.0.1"], "domain": "x", "search": ["a"], "options": ["ndots:5"]}
})";

cni::Result full() { return cni::result_from_json(json::parse(kFull11)); }

}  // namespace

TEST(CniResult, ParsesTheFull11Shape) {
  cni::Result r = full();
  EXPECT_EQ(r.cni_version, "1.1.0");
  ASSERT_EQ(r.interfaces.size(), 3u);
  EXPECT_EQ(r.interfaces[2].sandbox, "/var/run/netns/blue");
  EXPECT_EQ(r.interfaces[2].mtu, 1500);
  EXPECT_EQ(r.interfaces[2].pci_id, "0000:00:1f.6");
  ASSERT_EQ(r.ips.size(), 2u);
  EXPECT_EQ(r.ips[0].interface, 2);
  EXPECT_EQ(r.ips[0].address.str(), "10.1.0.5/16");
  EXPECT_EQ(r.ips[0].gateway->str(), "10.1.0.1");
  EXPECT_FALSE(r.ips[1].gateway);
  ASSERT_EQ(r.routes.size(), 2u);
  EXPECT_EQ(r.routes[0].mtu, 1400);
  EXPECT_EQ(r.routes[0].table, 254);
  EXPECT_EQ(r.routes[0].scope, 0);
  EXPECT_FALSE(r.routes[1].table);
  EXPECT_EQ(r.dns.nameservers, std::vector<std::string>{"10.1.0.1"});
}

TEST(CniResult, RendersIn110Unchanged) {
  EXPECT_EQ(cni::result_to_json(full(), "1.1.0"), json::parse(kFull11));
}

TEST(CniResult, RendersIn100WithoutThe11Fields) {
  EXPECT_EQ(cni::result_to_json(full(), "1.0.0"), json::parse(R"({
    "cniVersion": "1.0.0",
    "interfaces": [
      {"name": "cni0", "mac": "00:11:22:33:44:55"},
      {"name": "veth3243a1b2", "mac": "55:44:33:22:11:11"},
      {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
    ],
    "ips": [{"interface": 2, "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
            {"interface": 2, "address": "fd00::5/64"}],
    "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "::/0"}],
    "dns": {"nameservers": ["10.1.0.1"], "domain": "x", "search": ["a"], "options": ["ndots:5"]}
  })"));
}

TEST(CniResult, RendersIn040WithIpVersions) {
  for (const char* v : {"0.3.0", "0.3.1", "0.4.0"}) {
    json expected = json::parse(R"({
      "interfaces": [
        {"name": "cni0", "mac": "00:11:22:33:44:55"},
        {"name": "veth3243a1b2", "mac": "55:44:33:22:11:11"},
        {"name": "eth0", "mac": "99:88:77:66:55:44", "sandbox": "/var/run/netns/blue"}
      ],
      "ips": [{"version": "4", "interface": 2, "address": "10.1.0.5/16", "gateway": "10.1.0.1"},
              {"version": "6", "interface": 2, "address": "fd00::5/64"}],
      "routes": [{"dst": "0.0.0.0/0", "gw": "10.1.0.1"}, {"dst": "::/0"}],
      "dns": {"nameservers": ["10.1.0.1"], "domain": "x", "search": ["a"], "options": ["ndots:5"]}
    })");
    expected["cniVersion"] = v;
    EXPECT_EQ(cni::result_to_json(full(), v), expected) << v;
  }
}

TEST(CniResult, EmptyDnsIsPrintedBefore100AndOmittedAfter) {
  cni::Result r;
  r.ips.push_back({std::nullopt, *cni::IPNet::parse("10.0.0.2/24"), std::nullopt});
  EXPECT_EQ(cni::result_to_json(r, "0.3.1"),
            json::parse(R"({"cniVersion":"0.3.1","ips":[{"version":"4","address":"10.0.0.2/24"}],"dns":{}})"));
  EXPECT_EQ(cni::result_to_json(r, "1.0.0"),
            json::parse(R"({"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]})"));
  EXPECT_EQ(cni::result_to_json(cni::Result{}, "1.1.0"), json::parse(R"({"cniVersion":"1.1.0"})"));
}

TEST(CniResult, RoundTripsThroughEveryVersion) {
  for (auto v : cni::kSupportedVersions) {
    json once = cni::result_to_json(full(), v);
    json twice = cni::result_to_json(cni::result_from_json(once), v);
    EXPECT_EQ(once, twice) << v;
    EXPECT_EQ(once["cniVersion"], std::string(v));
  }
  // Down to 0.4.0 and back up loses only the 1.1 extras.
  json up = cni::result_to_json(cni::result_from_json(cni::result_to_json(full(), "0.4.0")), "1.1.0");
  EXPECT_FALSE(up["interfaces"][2].contains("mtu"));
  EXPECT_FALSE(up["routes"][0].contains("table"));
  EXPECT_FALSE(up["ips"][0].contains("version"));
  EXPECT_EQ(up["ips"][0]["address"], "10.1.0.5/16");
}

TEST(CniResult, ParsesLegacy020Shape) {
  cni::Result r = cni::result_from_json(json::parse(R"({"cniVersion":"0.2.0",
      "ip4":{"ip":"10.1.0.5/16","gateway":"10.1.0.1","routes":[{"dst":"0.0.0.0/0","gw":"10.1.0.1"}]},
      "ip6":{"ip":"2001:db8::5/64"},"dns":{}})"));
  ASSERT_EQ(r.ips.size(), 2u);
  EXPECT_EQ(r.ips[0].address.str(), "10.1.0.5/16");
  EXPECT_EQ(r.ips[1].address.str(), "2001:db8::5/64");
  ASSERT_EQ(r.routes.size(), 1u);
  EXPECT_EQ(r.routes[0].gw->str(), "10.1.0.1");
}

TEST(CniResult, AcceptsNullsAndEmptyDns) {
  cni::Result r = cni::result_from_json(json::parse(
      R"({"cniVersion":"1.0.0","interfaces":null,"ips":[{"address":"10.0.0.2/24","interface":null,"gateway":null}],
          "dns":{}})"));
  EXPECT_TRUE(r.interfaces.empty());
  EXPECT_FALSE(r.ips[0].interface);
  EXPECT_TRUE(r.dns.empty());
}

TEST(CniResult, RejectsUnknownTargetVersion) {
  for (const char* v : {"0.2.0", "2.0.0", ""}) {
    try {
      cni::result_to_json(full(), v);
      ADD_FAILURE() << v;
    } catch (const cni::Error& e) {
      EXPECT_EQ(e.code(), cni::kIncompatibleVersion);
    }
  }
}

TEST(CniResult, DecodeErrorsNameTheField) {
  struct Case {
    const char* json;
    const char* field;
  } cases[] = {
      {R"({"ips":[{"address":"10.0.0.300/24"}]})", "ips[0].address"},
      {R"({"ips":[{"address":"10.0.0.3"}]})", "ips[0].address"},
      {R"({"ips":[{}]})", "ips[0].address"},
      {R"({"ips":[{"address":"10.0.0.3/24","gateway":"x"}]})", "ips[0].gateway"},
      {R"({"ips":[{"address":"10.0.0.3/24","interface":"0"}]})", "ips[0].interface"},
      {R"({"ips":[{"address":"10.0.0.3/24","version":4}]})", "ips[0].version"},
      {R"({"ips":{}})", "ips"},
      {R"({"interfaces":[{"name":5}]})", "interfaces[0].name"},
      {R"({"interfaces":[{"name":"a","mtu":1.5}]})", "interfaces[0].mtu"},
      {R"({"interfaces":["eth0"]})", "interfaces[0]"},
      {R"({"routes":[{"gw":"10.0.0.1"}]})", "routes[0].dst"},
      {R"({"routes":[{"dst":"0.0.0.0/0","table":"main"}]})", "routes[0].table"},
      {R"({"routes":[{"dst":"0.0.0.0/0","mtu":99999999999}]})", "routes[0].mtu"},
      {R"({"dns":{"nameservers":"1.1.1.1"}})", "dns.nameservers"},
      {R"({"dns":[]})", "dns"},
      {R"({"cniVersion":1})", "cniVersion"},
  };
  for (const Case& c : cases) {
    try {
      cni::result_from_json(json::parse(c.json));
      ADD_FAILURE() << "accepted " << c.json;
    } catch (const cni::Error& e) {
      EXPECT_EQ(e.code(), cni::kDecodingFailure) << c.json;
      EXPECT_NE(e.details().find(std::string("\"") + c.field + "\""), std::string::npos)
          << c.json << " -> " << e.details();
    }
  }
  EXPECT_THROW(cni::result_from_json(json::array()), cni::Error);
}

TEST(CniDns, ParsesResolvConf) {
  cni::DNS d = cni::parse_resolv_conf(
      "# generated\n"
      "nameserver 10.0.0.10\n"
      "  nameserver   fd00::10  \n"
      "; comment\n"
      "domain cluster.local\n"
      "search a.svc b.svc\n"
      "search ns.svc.cluster.local svc.cluster.local\n"
      "options ndots:5 timeout:1\n"
      "options attempts:2\n"
      "sortlist 1.2.3.4\n"
      "nameserver\n");
  EXPECT_EQ(d.nameservers, (std::vector<std::string>{"10.0.0.10", "fd00::10"}));
  EXPECT_EQ(d.domain, "cluster.local");
  EXPECT_EQ(d.search, (std::vector<std::string>{"ns.svc.cluster.local", "svc.cluster.local"}));
  EXPECT_EQ(d.options, (std::vector<std::string>{"ndots:5", "timeout:1", "attempts:2"}));
  EXPECT_TRUE(cni::parse_resolv_conf("").empty());
}

TEST(CniDns, JsonRoundTripAndErrors) {
  cni::DNS d;
  d.nameservers = {"1.1.1.1"};
  d.search = {"x"};
  EXPECT_EQ(cni::dns_to_json(d), json::parse(R"({"nameservers":["1.1.1.1"],"search":["x"]})"));
  cni::DNS back = cni::dns_from_json(cni::dns_to_json(d));
  EXPECT_EQ(back.nameservers, d.nameservers);
  EXPECT_EQ(back.search, d.search);
  EXPECT_EQ(cni::dns_to_json(cni::DNS{}), json::object());
  EXPECT_THROW(cni::dns_from_json(json::parse(R"({"domain":1})")), cni::Error);
  EXPECT_THROW(cni::dns_from_json(json::parse(R"({"options":[1]})")), cni::Error);
}
