// Identities: canonical keys, JSON, reserved numbers, allocation, stability, save/load.
#include <gtest/gtest.h>

#include "tests/policy/fixture.h"

namespace ferry::policy::testing {
namespace {

using Kind = IdentityInfo::Kind;

IdentityInfo pod_identity(const std::string& ns, model::Labels labels) {
  IdentityInfo i;
  i.kind = Kind::Pod;
  i.ns = ns;
  i.labels = std::move(labels);
  return i;
}

TEST(Identity, KindNames) {
  EXPECT_EQ(kind_name(Kind::Host), "host");
  EXPECT_EQ(kind_name(Kind::RemoteNode), "remote-node");
  EXPECT_EQ(kind_name(Kind::World), "world");
  EXPECT_EQ(kind_name(Kind::Pod), "pod");
}

TEST(Identity, CanonicalIpBlock) {
  model::IPBlock b;
  b.cidr = *cni::IPNet::parse("10.0.3.4/16");
  b.except = {*cni::IPNet::parse("10.0.2.9/24"), *cni::IPNet::parse("10.0.1.0/24"), *cni::IPNet::parse("10.0.2.0/24")};
  EXPECT_EQ(canonical_ip_block(b), "10.0.0.0/16 except 10.0.1.0/24,10.0.2.0/24");
  b.except.clear();
  EXPECT_EQ(canonical_ip_block(b), "10.0.0.0/16");
}

TEST(Identity, KeyIsCanonicalAndJsonRoundTrips) {
  IdentityInfo a = pod_identity("x", {{"app", "web"}});
  a.ns_labels = {{"team", "x"}};
  a.named_ports = {{"http", IPPROTO_TCP, 80}, {"dns", IPPROTO_UDP, 53}};
  a.ip_blocks = {"10.0.0.0/8", "0.0.0.0/0"};
  IdentityInfo b = a;
  std::reverse(b.named_ports.begin(), b.named_ports.end());
  std::reverse(b.ip_blocks.begin(), b.ip_blocks.end());
  EXPECT_EQ(a.key(), b.key());
  auto back = IdentityInfo::from_json(a.to_json());
  ASSERT_TRUE(back);
  EXPECT_EQ(back->key(), a.key());
  EXPECT_EQ(back->named_ports, (std::vector<IdentityInfo::NamedPort>{{"dns", IPPROTO_UDP, 53}, {"http", IPPROTO_TCP, 80}}));
  EXPECT_EQ(a.to_json()["namedPorts"][0], nlohmann::json({{"name", "dns"}, {"protocol", "UDP"}, {"port", 53}}));
  EXPECT_NE(pod_identity("x", {{"app", "web"}}).key(), pod_identity("y", {{"app", "web"}}).key());
}

TEST(Identity, FromJsonRejectsMalformed) {
  for (const char* text : {R"([])", R"({})", R"({"kind":"martian"})", R"({"kind":"pod","labels":{"a":1}})",
                           R"({"kind":"pod","namespace":3})", R"({"kind":"pod","extra":true})",
                           R"({"kind":"pod","namedPorts":[{"name":"x","protocol":"TCP","port":70000}]})",
                           R"({"kind":"pod","namedPorts":[{"name":"x","protocol":"ICMPX","port":1}]})",
                           R"({"kind":"world","ipBlocks":[1]})"})
    EXPECT_FALSE(IdentityInfo::from_json(nlohmann::json::parse(text))) << text;
}

TEST(IdentityAllocator, ReservedNumbersAndLowestFree) {
  IdentityAllocator a;
  IdentityInfo host, remote, world;
  host.kind = Kind::Host;
  remote.kind = Kind::RemoteNode;
  world.kind = Kind::World;
  EXPECT_EQ(a.allocate(host), dataplane::kIdentityHost);
  EXPECT_EQ(a.allocate(remote), dataplane::kIdentityRemoteNode);
  EXPECT_EQ(a.allocate(world), dataplane::kIdentityWorld);
  IdentityInfo world_in_block = world;
  world_in_block.ip_blocks = {"8.8.8.0/24"};
  EXPECT_EQ(a.allocate(world_in_block), 256u);
  EXPECT_EQ(a.allocate(pod_identity("x", {})), 257u);
  EXPECT_EQ(a.allocate(pod_identity("y", {})), 258u);
  EXPECT_EQ(a.allocate(pod_identity("x", {})), 257u);  // existing number
  // Free 257: the next new identity takes the lowest free number.
  auto keep = a.identities();
  keep.erase(257);
  a.retain_only(keep);
  EXPECT_EQ(a.identities().count(257), 0u);
  EXPECT_EQ(a.allocate(pod_identity("z", {})), 257u);
  EXPECT_EQ(a.allocate(pod_identity("w", {})), 259u);
}

TEST(IdentityAllocator, SaveLoadRoundTrip) {
  IdentityAllocator a;
  IdentityInfo host;
  host.kind = Kind::Host;
  a.allocate(host);
  a.allocate(pod_identity("x", {{"app", "a"}}));
  Identity y = a.allocate(pod_identity("y", {{"app", "b"}}));
  IdentityAllocator b;
  b.allocate(pod_identity("stale", {}));  // load replaces what was there
  b.load(nlohmann::json::parse(a.save().dump()));
  EXPECT_EQ(b.identities(), a.identities());
  EXPECT_EQ(b.allocate(pod_identity("y", {{"app", "b"}})), y);
  EXPECT_EQ(b.allocate(pod_identity("new", {})), 258u);
}

TEST(IdentityAllocator, LoadRejectsMalformedFiles) {
  IdentityAllocator good;
  good.allocate(pod_identity("x", {}));
  const std::string pod = R"({"kind":"pod","namespace":"x"})";
  for (const std::string& text : {
           std::string(R"([])"),
           std::string(R"({"identities":[]})"),                       // no version
           std::string(R"({"version":2,"identities":[]})"),
           std::string(R"({"version":1})"),
           std::string(R"({"version":1,"identities":[{"id":"256","identity":)" + pod + "}]}"),
           std::string(R"({"version":1,"identities":[{"id":-1,"identity":)" + pod + "}]}"),
           std::string(R"({"version":1,"identities":[{"id":0,"identity":)" + pod + "}]}"),
           std::string(R"({"version":1,"identities":[{"id":100,"identity":)" + pod + "}]}"),
           std::string(R"({"version":1,"identities":[{"id":256}]})"),
           std::string(R"({"version":1,"identities":[{"id":256,"identity":{"kind":"host"}}]})"),
           std::string(R"({"version":1,"identities":[{"id":2,"identity":{"kind":"host"}}]})"),
           std::string(R"({"version":1,"identities":[{"id":256,"identity":)" + pod + R"(},{"id":256,"identity":{"kind":"pod"}}]})"),
           std::string(R"({"version":1,"identities":[{"id":256,"identity":)" + pod + R"(},{"id":257,"identity":)" + pod + "}]}"),
       }) {
    IdentityAllocator a = good;
    EXPECT_THROW(a.load(nlohmann::json::parse(text)), PolicyError) << text;
    EXPECT_EQ(a.identities(), good.identities()) << "a failed load must not change content: " << text;
  }
}

// Cluster-level stability: pods with equal labels share an identity; a change allocates only
// what is new and keeps every other number.
TEST(IdentityAllocator, CompileAllocatesOnlyWhatIsNew) {
  PolicyWorld w;
  w.ns("x");
  w.pod("x/a1", {"10.1.0.1"}, {{"app", "a"}});
  w.pod("x/a2", {"10.1.0.2"}, {{"app", "a"}});
  w.pod("x/b", {"10.1.0.3"}, {{"app", "b"}});
  auto before = w.compiled().set.ipcache;
  auto id_of = [&](const std::string& a) { return lookup_identity(w.compiled().set, ip(a)); };
  EXPECT_EQ(id_of("10.1.0.1"), id_of("10.1.0.2"));
  EXPECT_NE(id_of("10.1.0.1"), id_of("10.1.0.3"));
  EXPECT_GE(id_of("10.1.0.1"), dataplane::kFirstAllocatedIdentity);
  EXPECT_EQ(id_of("192.168.0.1"), dataplane::kIdentityHost);
  EXPECT_EQ(id_of("10.0.0.1"), dataplane::kIdentityHost);
  EXPECT_EQ(id_of("192.168.0.2"), dataplane::kIdentityRemoteNode);
  EXPECT_EQ(id_of("1.2.3.4"), dataplane::kIdentityWorld);
  EXPECT_EQ(id_of("2001:db8::1"), dataplane::kIdentityWorld);
  Identity a = id_of("10.1.0.1"), b = id_of("10.1.0.3");
  auto numbers_before = w.allocator.identities().size();

  w.pod("x/a3", {"10.1.0.4"}, {{"app", "a"}});  // same labels: nothing new
  EXPECT_EQ(id_of("10.1.0.4"), a);
  EXPECT_EQ(w.allocator.identities().size(), numbers_before);

  w.pod("x/b", {"10.1.0.3"}, {{"app", "c"}});  // relabel: one new number, the others kept
  EXPECT_EQ(id_of("10.1.0.1"), a);
  Identity c = id_of("10.1.0.3");
  EXPECT_NE(c, b);
  EXPECT_EQ(w.allocator.identities().count(b), 0u);  // no longer in use: freed
  EXPECT_EQ(w.allocator.identities().size(), numbers_before);
  EXPECT_EQ(w.compiled().identities.at(c).labels, (model::Labels{{"app", "c"}}));
}

TEST(IdentityAllocator, IdentityCarriesEverythingAPolicyCanTellApart) {
  PolicyWorld w;
  w.ns("x", {{"team", "x"}});
  w.ns("y", {{"team", "y"}});
  w.pod("x/plain", {"10.1.0.1"}, {{"app", "a"}});
  w.pod("x/ported", {"10.1.0.2"}, {{"app", "a"}}, {"http:TCP:80"});
  w.pod("y/plain", {"10.1.0.3"}, {{"app", "a"}});
  const auto& c = w.compiled();
  std::set<Identity> ids;
  for (const char* a : {"10.1.0.1", "10.1.0.2", "10.1.0.3"}) ids.insert(lookup_identity(c.set, ip(a)));
  EXPECT_EQ(ids.size(), 3u);
  const auto& ported = c.identities.at(lookup_identity(c.set, ip("10.1.0.2")));
  EXPECT_EQ(ported.kind, Kind::Pod);
  EXPECT_EQ(ported.ns, "x");
  EXPECT_EQ(ported.ns_labels, (model::Labels{{"kubernetes.io/metadata.name", "x"}, {"team", "x"}}));
  EXPECT_EQ(ported.named_ports, (std::vector<IdentityInfo::NamedPort>{{"http", IPPROTO_TCP, 80}}));
  // Namespace labels are part of it: relabelling the namespace changes the number.
  Identity before = lookup_identity(c.set, ip("10.1.0.3"));
  w.ns("y", {{"team", "z"}});
  EXPECT_NE(lookup_identity(w.compiled().set, ip("10.1.0.3")), before);
}

}  // namespace
}  // namespace ferry::policy::testing
