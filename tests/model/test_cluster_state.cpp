// ClusterState: keyed storage, lookups, counts and change detection (revision).
#include "support.h"

using namespace ferry::model;
using namespace ferry::model::testing;

namespace {

ObjectMeta meta(std::string ns, std::string name, Labels labels = {}) {
  ObjectMeta m;
  m.ns = std::move(ns);
  m.name = std::move(name);
  m.labels = std::move(labels);
  return m;
}

Pod pod(std::string ns, std::string name, std::string node, const char* ip_text = nullptr) {
  Pod p;
  p.meta = meta(std::move(ns), std::move(name));
  p.node_name = std::move(node);
  if (ip_text) p.pod_ips.push_back(ip(ip_text));
  return p;
}

Node node(std::string name, const char* cidr) {
  Node n;
  n.meta = meta("", std::move(name));
  n.pod_cidrs.push_back(net(cidr));
  return n;
}

}  // namespace

TEST(ModelClusterState, ReplaceAllDetectsChangesOnly) {
  ClusterState s;
  EXPECT_EQ(s.revision(), 0u);
  EXPECT_FALSE(s.replace_all({}));  // empty -> empty
  EXPECT_EQ(s.revision(), 0u);

  std::vector<Object> snapshot = {node("n1", "10.244.1.0/24"), pod("x", "a", "n1", "10.244.1.5"),
                                  pod("x", "b", "n2", "10.244.2.5")};
  EXPECT_TRUE(s.replace_all(snapshot));
  EXPECT_EQ(s.revision(), 1u);
  EXPECT_FALSE(s.replace_all(snapshot));  // same content
  EXPECT_EQ(s.revision(), 1u);

  std::vector<Object> reordered = {snapshot[2], snapshot[0], snapshot[1]};
  EXPECT_FALSE(s.replace_all(reordered));  // order does not matter
  EXPECT_EQ(s.revision(), 1u);

  snapshot[1] = pod("x", "a", "n1", "10.244.1.6");  // one field differs
  EXPECT_TRUE(s.replace_all(snapshot));
  EXPECT_EQ(s.revision(), 2u);
  ASSERT_TRUE(s.pod("x", "a"));
  EXPECT_EQ(s.pod("x", "a")->pod_ips, std::vector<ferry::cni::IPAddr>{ip("10.244.1.6")});

  snapshot.pop_back();  // one object gone
  EXPECT_TRUE(s.replace_all(snapshot));
  EXPECT_EQ(s.revision(), 3u);
  EXPECT_EQ(s.pod("x", "b"), nullptr);
  EXPECT_EQ(s.size(), 2u);
}

TEST(ModelClusterState, ResourceVersionAloneIsNotAChange) {
  ClusterState s;
  Pod p = pod("x", "a", "n1");
  p.meta.resource_version = "100";
  EXPECT_TRUE(s.upsert(p));
  p.meta.resource_version = "101";
  EXPECT_FALSE(s.upsert(p));
  EXPECT_EQ(s.revision(), 1u);
  EXPECT_EQ(s.pod("x", "a")->meta.resource_version, "101");  // stored all the same
  p.meta.resource_version = "102";
  EXPECT_FALSE(s.replace_all({p}));
  p.meta.labels["app"] = "web";
  EXPECT_TRUE(s.upsert(p));
  EXPECT_EQ(s.revision(), 2u);
}

TEST(ModelClusterState, UpsertAndErase) {
  ClusterState s;
  EXPECT_TRUE(s.upsert(pod("x", "a", "n1")));
  EXPECT_FALSE(s.upsert(pod("x", "a", "n1")));
  EXPECT_TRUE(s.upsert(pod("x", "a", "n2")));
  EXPECT_EQ(s.pod("x", "a")->node_name, "n2");
  EXPECT_EQ(s.revision(), 2u);
  EXPECT_FALSE(s.erase(ObjectKey{Kind::Pod, "x", "nope"}));
  EXPECT_FALSE(s.erase(ObjectKey{Kind::Service, "x", "a"}));  // same name, other kind
  EXPECT_EQ(s.revision(), 2u);
  EXPECT_TRUE(s.erase(ObjectKey{Kind::Pod, "x", "a"}));
  EXPECT_EQ(s.revision(), 3u);
  EXPECT_EQ(s.size(), 0u);
}

TEST(ModelClusterState, LaterDuplicateWinsInASnapshot) {
  ClusterState s;
  EXPECT_TRUE(s.replace_all({pod("x", "a", "n1"), pod("x", "a", "n2")}));
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(s.pod("x", "a")->node_name, "n2");
}

TEST(ModelClusterState, TypedLookupsAndCounts) {
  ClusterState s;
  Namespace shop{meta("", "shop", {{"team", "a"}})};
  Service svc;
  svc.meta = meta("shop", "web");
  EndpointSlice slice1, slice2, other;
  slice1.meta = meta("shop", "web-1");
  slice1.service_name = "web";
  slice2.meta = meta("shop", "web-2");
  slice2.service_name = "web";
  other.meta = meta("other", "web-1");
  other.service_name = "web";
  NetworkPolicy np;
  np.meta = meta("shop", "deny");
  s.replace_all({node("n2", "10.244.2.0/24"), node("n1", "10.244.1.0/24"), shop, svc, slice1, slice2, other, np,
                 pod("shop", "b", "n1"), pod("shop", "a", "n1"), pod("other", "c", "n2"), pod("shop", "pending", "")});

  ASSERT_TRUE(s.node("n1"));
  EXPECT_EQ(s.node("n1")->pod_cidrs, std::vector<ferry::cni::IPNet>{net("10.244.1.0/24")});
  EXPECT_EQ(s.node("n3"), nullptr);
  ASSERT_TRUE(s.namespace_named("shop"));
  EXPECT_EQ(s.namespace_named("shop")->meta.labels.at("team"), "a");
  EXPECT_TRUE(s.service("shop", "web"));
  EXPECT_FALSE(s.service("other", "web"));
  EXPECT_EQ(s.find(ObjectKey{Kind::NetworkPolicy, "shop", "deny"}) != nullptr, true);

  auto names = [](const auto& list) {
    std::vector<std::string> out;
    for (const auto* o : list) out.push_back(o->meta.ns + "/" + o->meta.name);
    return out;
  };
  EXPECT_EQ(names(s.nodes()), (std::vector<std::string>{"/n1", "/n2"}));  // sorted
  EXPECT_EQ(names(s.pods()), (std::vector<std::string>{"other/c", "shop/a", "shop/b", "shop/pending"}));
  EXPECT_EQ(names(s.pods_on_node("n1")), (std::vector<std::string>{"shop/a", "shop/b"}));
  EXPECT_EQ(names(s.pods_on_node("n9")), std::vector<std::string>{});
  EXPECT_EQ(names(s.namespaces()), std::vector<std::string>{"/shop"});
  EXPECT_EQ(names(s.services()), std::vector<std::string>{"shop/web"});
  EXPECT_EQ(names(s.endpoint_slices()), (std::vector<std::string>{"other/web-1", "shop/web-1", "shop/web-2"}));
  EXPECT_EQ(names(s.endpoint_slices_of("shop", "web")), (std::vector<std::string>{"shop/web-1", "shop/web-2"}));
  EXPECT_EQ(names(s.network_policies()), std::vector<std::string>{"shop/deny"});
  EXPECT_EQ(s.objects().size(), 12u);

  std::vector<std::pair<std::string, std::size_t>> counts;
  for (const auto& c : s.counts()) counts.emplace_back(std::string(kind_name(c.kind)), c.count);
  EXPECT_EQ(counts, (std::vector<std::pair<std::string, std::size_t>>{
                        {"Node", 2}, {"Namespace", 1}, {"Pod", 4}, {"Service", 1}, {"EndpointSlice", 3}, {"NetworkPolicy", 1}}));
}

TEST(ModelClusterState, FedFromDecodedManifests) {
  ManifestDecode d = decode_manifest("c.yaml", R"(
apiVersion: v1
kind: Node
metadata: {name: n1}
spec: {podCIDR: 10.244.1.0/24}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec: {nodeName: n1}
status: {podIP: 10.244.1.5}
)");
  ClusterState s;
  EXPECT_TRUE(s.replace_all(d.objects));
  EXPECT_EQ(s.pods_on_node("n1").size(), 1u);
  // The pod's manifest is gone: a change, and only the node is left.
  EXPECT_TRUE(s.replace_all(
      decode_manifest("c2.yaml", "{apiVersion: v1, kind: Node, metadata: {name: n1}, spec: {podCIDR: 10.244.1.0/24}}").objects));
  EXPECT_EQ(s.size(), 1u);
  EXPECT_TRUE(s.node("n1"));
}
