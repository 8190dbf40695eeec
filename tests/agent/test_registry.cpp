// EndpointRegistry: records written by ferry-bridge's own code -> desired endpoints.
#include <gtest/gtest.h>

#include <fstream>

#include <nlohmann/json.hpp>

#include "fakes.h"

namespace ferry::agent::test {
namespace {

using registry::EndpointRegistry;

struct RegistryTest : ::testing::Test {
  TempDir tmp;
  std::string endpoints = tmp / "endpoints";
  std::string state = tmp / "state";
  std::map<int, std::string> veths;

  std::unique_ptr<EndpointRegistry> open() {
    return std::make_unique<EndpointRegistry>(endpoints, state, std::make_unique<FakeLinks>(&veths));
  }
  bridge::EndpointRecord add(const std::string& id, int ifindex, const std::string& ip4, const std::string& ip6 = "") {
    auto rec = make_record(id, ifindex, ip4, ip6);
    veths[ifindex] = rec.host_veth;
    bridge::write_endpoint(endpoints, rec);
    return rec;
  }
};

TEST_F(RegistryTest, RecordsBecomeDesiredEndpoints) {
  auto reg = open();
  auto rec = add("aaaaaaaaaaaa", 7, "10.244.1.5/24", "fd00:10:244:1::5/64");
  EXPECT_EQ(reg->load_all(), 1u);
  auto eps = reg->desired();
  ASSERT_EQ(eps.size(), 1u);
  const dataplane::Endpoint& ep = eps[0];
  EXPECT_NE(ep.endpoint_id, 0u);
  EXPECT_EQ(ep.host_veth, rec.host_veth);
  EXPECT_EQ(ep.host_ifindex, 7);
  EXPECT_EQ(net::mac_str(ep.pod_mac), "0a:58:0a:f4:01:07");
  EXPECT_EQ(ep.host_mac, FakeLinks::kBridgeMac);
  ASSERT_EQ(ep.ips.size(), 2u);  // sorted: IPv4 first, prefix lengths dropped
  EXPECT_EQ(ep.ips[0].str(), "10.244.1.5");
  EXPECT_EQ(ep.ips[1].str(), "fd00:10:244:1::5");
  EXPECT_TRUE(ep.complete);
  EXPECT_EQ(reg->id_of(record_file(rec)), ep.endpoint_id);
}

TEST_F(RegistryTest, IdsAreStableAcrossRegistryInstances) {
  add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  add("bbbbbbbbbbbb", 8, "10.244.1.6/24");
  std::vector<dataplane::Endpoint> first;
  {
    auto reg = open();
    reg->load_all();
    first = reg->desired();
  }
  // A later record sorts first by name: a fresh numbering by file order would shuffle ids.
  add("000000000000", 9, "10.244.1.7/24");
  auto reg = open();
  reg->load_all();
  auto second = reg->desired();
  ASSERT_EQ(second.size(), 3u);
  for (const auto& ep : first) {
    auto it = std::find_if(second.begin(), second.end(), [&](auto& e) { return e.host_ifindex == ep.host_ifindex; });
    ASSERT_NE(it, second.end());
    EXPECT_EQ(*it, ep);
  }
  std::set<uint32_t> ids;
  for (const auto& ep : second) ids.insert(ep.endpoint_id);
  EXPECT_EQ(ids.size(), 3u);
  EXPECT_EQ(ids.count(0), 0u);
}

TEST_F(RegistryTest, IdOfARemovedRecordIsNotReusedSoon) {
  auto reg = open();
  auto a = add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  reg->load_all();
  uint32_t old_id = reg->id_of(record_file(a));
  bridge::remove_endpoint(endpoints, a.container_id, a.ifname);
  EXPECT_EQ(reg->reload(record_file(a)), EndpointRegistry::Change::kRemoved);
  EXPECT_EQ(reg->id_of(record_file(a)), 0u);
  auto b = add("bbbbbbbbbbbb", 8, "10.244.1.6/24");
  EXPECT_EQ(reg->reload(record_file(b)), EndpointRegistry::Change::kAdded);
  EXPECT_NE(reg->id_of(record_file(b)), old_id);
  EXPECT_TRUE(reg->desired().size() == 1);
}

TEST_F(RegistryTest, ReloadReportsChanges) {
  auto reg = open();
  auto rec = add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  const std::string file = record_file(rec);
  EXPECT_EQ(reg->reload(file), EndpointRegistry::Change::kAdded);
  EXPECT_EQ(reg->reload(file), EndpointRegistry::Change::kUnchanged);
  rec.ips = {"10.244.1.9/24"};
  bridge::write_endpoint(endpoints, rec);
  EXPECT_EQ(reg->reload(file), EndpointRegistry::Change::kUpdated);
  EXPECT_EQ(reg->desired_one(file)->ips[0].str(), "10.244.1.9");
  bridge::remove_endpoint(endpoints, rec.container_id, rec.ifname);
  EXPECT_EQ(reg->reload(file), EndpointRegistry::Change::kRemoved);
  EXPECT_FALSE(reg->desired_one(file));
  EXPECT_EQ(reg->reload("../etc/passwd"), EndpointRegistry::Change::kInvalid);
  EXPECT_EQ(reg->reload("x.json.tmp"), EndpointRegistry::Change::kInvalid);
}

TEST_F(RegistryTest, MalformedRecordsAreSkippedAndNamed) {
  auto reg = open();
  add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  std::ofstream(endpoints + "/broken-eth0.json") << "{not json";
  auto bad_mac = make_record("cccccccccccc", 9, "10.244.1.8/24");
  bad_mac.container_mac = "not-a-mac";
  bridge::write_endpoint(endpoints, bad_mac);
  auto bad_ip = make_record("dddddddddddd", 10, "10.244.1.300/24");
  bridge::write_endpoint(endpoints, bad_ip);
  std::ofstream(endpoints + "/types-eth0.json") << R"({"containerID": 5})";

  EXPECT_EQ(reg->load_all(), 1u);
  EXPECT_EQ(reg->desired().size(), 1u);
  std::string problems;
  for (const auto& p : reg->problems()) problems += p + "\n";
  EXPECT_NE(problems.find("broken-eth0.json"), std::string::npos) << problems;
  EXPECT_NE(problems.find("not-a-mac"), std::string::npos) << problems;
  EXPECT_NE(problems.find("10.244.1.300/24"), std::string::npos) << problems;
  EXPECT_NE(problems.find("types-eth0.json"), std::string::npos) << problems;
}

TEST_F(RegistryTest, MalformedUpdateKeepsThePreviousVersion) {
  auto reg = open();
  auto rec = add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  const std::string file = record_file(rec);
  reg->load_all();
  std::ofstream(endpoints + "/" + file) << "garbage";
  EXPECT_EQ(reg->reload(file), EndpointRegistry::Change::kInvalid);
  ASSERT_TRUE(reg->desired_one(file));
  EXPECT_EQ(reg->desired_one(file)->ips[0].str(), "10.244.1.5");
}

TEST_F(RegistryTest, StaleRecordsAreLeftOut) {
  auto reg = open();
  auto rec = add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  add("bbbbbbbbbbbb", 8, "10.244.1.6/24");
  reg->load_all();
  veths.erase(7);  // the pod's veth is gone (no DEL yet)
  auto eps = reg->desired();
  ASSERT_EQ(eps.size(), 1u);
  EXPECT_EQ(eps[0].host_ifindex, 8);
  EXPECT_THROW(reg->desired_one(record_file(rec)), registry::RegistryError);
  ASSERT_EQ(reg->problems().size(), 1u);
  EXPECT_NE(reg->problems()[0].find(rec.host_veth), std::string::npos);
}

TEST_F(RegistryTest, MissingBridgeIsAProblem) {
  auto reg = open();
  auto rec = make_record("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  rec.bridge = "nobridge";
  bridge::write_endpoint(endpoints, rec);
  reg->load_all();
  EXPECT_TRUE(reg->desired().empty());
  EXPECT_THROW(reg->desired_one(record_file(rec)), registry::RegistryError);
}

TEST_F(RegistryTest, IdFileIsWrittenAtomicallyAsJson) {
  auto reg = open();
  auto rec = add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  reg->load_all();
  std::ifstream in(state + "/endpoint-ids.json");
  auto j = nlohmann::json::parse(in);
  EXPECT_EQ(j["ids"][record_file(rec)].get<uint32_t>(), reg->id_of(record_file(rec)));
  EXPECT_FALSE(std::filesystem::exists(state + "/endpoint-ids.json.tmp"));
}

TEST_F(RegistryTest, RecordsRemovedWhileDownAreDroppedOnLoad) {
  auto a = add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  {
    auto reg = open();
    reg->load_all();
  }
  bridge::remove_endpoint(endpoints, a.container_id, a.ifname);
  auto reg = open();
  EXPECT_EQ(reg->load_all(), 0u);
  std::ifstream in(state + "/endpoint-ids.json");
  EXPECT_TRUE(nlohmann::json::parse(in)["ids"].empty());
}

TEST_F(RegistryTest, InotifyReportsChangedRecords) {
  auto reg = open();
  EXPECT_TRUE(reg->read_watch_events().empty());
  auto rec = add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  auto names = reg->read_watch_events();
  ASSERT_EQ(names.size(), 1u);  // the record; not its temporary file
  EXPECT_EQ(names[0], record_file(rec));
  bridge::remove_endpoint(endpoints, rec.container_id, rec.ifname);
  names = reg->read_watch_events();
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0], record_file(rec));
}

TEST_F(RegistryTest, InotifyRecoversWhenTheDirectoryIsRemoved) {
  auto reg = open();
  std::filesystem::remove_all(endpoints);
  auto names = reg->read_watch_events();
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0], "*");  // asks for a full reload
  EXPECT_TRUE(std::filesystem::is_directory(endpoints));
  auto rec = add("aaaaaaaaaaaa", 7, "10.244.1.5/24");
  names = reg->read_watch_events();
  ASSERT_EQ(names.size(), 1u);
  EXPECT_EQ(names[0], record_file(rec));
}

TEST(RegistryRecordNames, OnlyRecordFileNames) {
  EXPECT_TRUE(registry::is_record_file_name("abc-eth0.json"));
  EXPECT_FALSE(registry::is_record_file_name("abc-eth0.json.tmp"));
  EXPECT_FALSE(registry::is_record_file_name(".json"));
  EXPECT_FALSE(registry::is_record_file_name(".hidden.json"));
  EXPECT_FALSE(registry::is_record_file_name("a/b.json"));
  EXPECT_FALSE(registry::is_record_file_name(""));
}

TEST(RegistrySortIps, Ipv4FirstThenNumeric) {
  std::vector<net::Ip> ips = {*net::Ip::parse("fd00::2"), *net::Ip::parse("10.0.0.10"), *net::Ip::parse("fd00::1"),
                              *net::Ip::parse("10.0.0.9")};
  registry::sort_ips(ips);
  std::vector<std::string> text;
  for (const auto& ip : ips) text.push_back(ip.str());
  EXPECT_EQ(text, (std::vector<std::string>{"10.0.0.9", "10.0.0.10", "fd00::1", "fd00::2"}));
}

}  // namespace
}  // namespace ferry::agent::test
