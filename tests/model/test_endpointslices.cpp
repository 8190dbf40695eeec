// derive_endpoint_slices: the EndpointSlices a manifest directory gets in place of Kubernetes'
// endpointslice controller — selection, named ports, conditions, families, explicit slices, and
// a cluster that changes (pods added, removed, relabelled).
#include <gtest/gtest.h>

#include "agent/model/model.h"
#include "support.h"

namespace ferry::model {
namespace {

using testing::decode_one;
using testing::ip;

// Manifests as a user writes them; decoded as the agent does.
std::string service_yaml(const std::string& extra = "", const std::string& ports =
                                                           "[{name: http, port: 80, targetPort: web}]") {
  return "apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
         "spec: {clusterIP: 10.96.0.10, selector: {app: web}, ports: " + ports + extra + "}\n";
}

std::string pod_yaml(const std::string& name, const std::string& labels, const std::string& ips,
                     const std::string& status_extra = "phase: Running", int web_port = 8080,
                     const std::string& meta_extra = "") {
  return "apiVersion: v1\nkind: Pod\nmetadata: {name: " + name + ", namespace: shop, labels: " + labels + meta_extra +
         "}\nspec: {nodeName: node-1, containers: [{name: c, ports: [{name: web, containerPort: " +
         std::to_string(web_port) + "}]}]}\nstatus: {" + status_extra + ", podIPs: " + ips + "}\n";
}

struct DerivedSlices : ::testing::Test {
  ClusterState state;
  void add(const std::string& yaml) {
    ManifestDecode d = decode_manifest("test.yaml", yaml);
    ASSERT_TRUE(d.errors.empty()) << d.errors.front().message;
    for (Object& o : d.objects) state.upsert(std::move(o));
  }
  // "ip:port" of every endpoint of every derived slice of family `type`, with its slice name.
  std::vector<std::string> endpoints(EndpointSlice::AddressType type = EndpointSlice::AddressType::IPv4) {
    std::vector<std::string> out;
    for (const EndpointSlice& s : derive_endpoint_slices(state)) {
      if (s.address_type != type) continue;
      for (const EndpointSlice::Endpoint& e : s.endpoints)
        for (const EndpointSlice::Port& p : s.ports)
          out.push_back(e.addresses.at(0).str() + ":" + std::to_string(p.port.value_or(0)));
    }
    return out;
  }
};

TEST_F(DerivedSlices, SelectsRunningPodsOfTheNamespaceByLabels) {
  add(service_yaml());
  add(pod_yaml("a", "{app: web}", "[{ip: 10.244.1.5}]"));
  add(pod_yaml("b", "{app: web, tier: x}", "[{ip: 10.244.1.6}]"));
  add(pod_yaml("other-app", "{app: db}", "[{ip: 10.244.1.7}]"));
  add(pod_yaml("done", "{app: web}", "[{ip: 10.244.1.8}]", "phase: Succeeded"));
  add(pod_yaml("failed", "{app: web}", "[{ip: 10.244.1.9}]", "phase: Failed"));
  // Same labels in another namespace: not selected.
  add("apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: other, labels: {app: web}}\n"
      "spec: {nodeName: node-1}\nstatus: {phase: Running, podIP: 10.244.1.10}\n");

  std::vector<EndpointSlice> slices = derive_endpoint_slices(state);
  ASSERT_EQ(slices.size(), 1u);
  const EndpointSlice& s = slices[0];
  EXPECT_EQ(s.meta.ns, "shop");
  EXPECT_EQ(s.meta.name, "web-ferry-ipv4-0");
  EXPECT_EQ(s.service_name, "web");
  EXPECT_EQ(s.meta.labels.at("kubernetes.io/service-name"), "web");
  EXPECT_EQ(s.meta.labels.at("endpointslice.kubernetes.io/managed-by"), "ferry-agent");
  ASSERT_EQ(s.ports.size(), 1u);
  EXPECT_EQ(s.ports[0].name, "http");
  EXPECT_EQ(s.ports[0].protocol, Protocol::TCP);
  EXPECT_EQ(s.ports[0].port, 8080);  // targetPort "web" resolved through the container port
  ASSERT_EQ(s.endpoints.size(), 2u);
  EXPECT_EQ(s.endpoints[0].addresses, std::vector<cni::IPAddr>{ip("10.244.1.5")});
  EXPECT_EQ(s.endpoints[0].node_name, "node-1");
  ASSERT_TRUE(s.endpoints[0].target_ref);
  EXPECT_EQ(*s.endpoints[0].target_ref, (EndpointSlice::ObjectRef{"Pod", "shop", "a"}));
  EXPECT_EQ(s.endpoints[1].target_ref->name, "b");
}

TEST_F(DerivedSlices, NamedPortWithDifferentNumbersGivesOneSlicePerNumber) {
  add(service_yaml("", "[{name: http, port: 80, targetPort: web}, {name: metrics, port: 9000, targetPort: 9100}]"));
  add(pod_yaml("a", "{app: web}", "[{ip: 10.244.1.5}]", "phase: Running", 8080));
  add(pod_yaml("b", "{app: web}", "[{ip: 10.244.1.6}]", "phase: Running", 8081));
  add(pod_yaml("c", "{app: web}", "[{ip: 10.244.1.7}]", "phase: Running", 8080));
  // No container port named "web": only the numeric port applies to this pod.
  add("apiVersion: v1\nkind: Pod\nmetadata: {name: d, namespace: shop, labels: {app: web}}\n"
      "spec: {nodeName: node-2}\nstatus: {phase: Running, podIP: 10.244.2.5}\n");

  std::vector<EndpointSlice> slices = derive_endpoint_slices(state);
  ASSERT_EQ(slices.size(), 3u);
  std::map<std::string, std::vector<std::string>> pods_by_ports;
  for (const EndpointSlice& s : slices) {
    std::string ports;
    for (const auto& p : s.ports) ports += p.name + "=" + std::to_string(p.port.value_or(0)) + " ";
    for (const auto& e : s.endpoints) pods_by_ports[ports].push_back(e.target_ref->name);
  }
  EXPECT_EQ(pods_by_ports["http=8080 metrics=9100 "], (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(pods_by_ports["http=8081 metrics=9100 "], (std::vector<std::string>{"b"}));
  EXPECT_EQ(pods_by_ports["metrics=9100 "], (std::vector<std::string>{"d"}));
}

TEST_F(DerivedSlices, ProtocolMustMatchForANamedPort) {
  add(service_yaml("", "[{name: dns, port: 53, protocol: UDP, targetPort: web}]"));
  add(pod_yaml("a", "{app: web}", "[{ip: 10.244.1.5}]"));  // "web" is a TCP container port
  std::vector<EndpointSlice> slices = derive_endpoint_slices(state);
  ASSERT_EQ(slices.size(), 1u);
  EXPECT_TRUE(slices[0].ports.empty());
  EXPECT_TRUE(endpoints().empty());
}

TEST_F(DerivedSlices, ConditionsFollowPodReadinessAndDeletion) {
  add(service_yaml());
  add(pod_yaml("cond-true", "{app: web}", "[{ip: 10.244.1.1}]",
               "phase: Running, conditions: [{type: PodScheduled, status: 'True'}, {type: Ready, status: 'True'}]"));
  add(pod_yaml("cond-false", "{app: web}", "[{ip: 10.244.1.2}]",
               "phase: Running, conditions: [{type: Ready, status: 'False'}]"));
  add(pod_yaml("no-cond-running", "{app: web}", "[{ip: 10.244.1.3}]", "phase: Running"));
  add(pod_yaml("no-cond-pending", "{app: web}", "[{ip: 10.244.1.4}]", "phase: Pending"));
  add(pod_yaml("deleting", "{app: web}", "[{ip: 10.244.1.5}]", "phase: Running", 8080,
               ", deletionTimestamp: '2026-01-01T00:00:00Z'"));

  std::vector<EndpointSlice> slices = derive_endpoint_slices(state);
  ASSERT_EQ(slices.size(), 1u);
  std::map<std::string, std::tuple<bool, bool, bool>> conditions;  // ready, serving, terminating
  for (const auto& e : slices[0].endpoints)
    conditions[e.target_ref->name] = {e.ready.value(), e.serving.value(), e.terminating.value()};
  EXPECT_EQ(conditions["cond-true"], std::make_tuple(true, true, false));
  EXPECT_EQ(conditions["cond-false"], std::make_tuple(false, false, false));
  EXPECT_EQ(conditions["no-cond-running"], std::make_tuple(true, true, false));
  EXPECT_EQ(conditions["no-cond-pending"], std::make_tuple(false, false, false));
  EXPECT_EQ(conditions["deleting"], std::make_tuple(false, true, true));  // serving while terminating
}

TEST_F(DerivedSlices, DualStackServiceGetsOneSlicePerFamilyWithPodsOfThatFamily) {
  add("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: shop}\n"
      "spec: {clusterIPs: [10.96.0.10, 'fd00:96::10'], ipFamilies: [IPv4, IPv6], selector: {app: web}, "
      "ports: [{port: 80, targetPort: 8080}]}\n");
  add(pod_yaml("dual", "{app: web}", "[{ip: 10.244.1.5}, {ip: 'fd00:244:1::5'}]"));
  add(pod_yaml("v4-only", "{app: web}", "[{ip: 10.244.1.6}]"));
  add(pod_yaml("v6-only", "{app: web}", "[{ip: 'fd00:244:1::7'}]"));
  add(pod_yaml("no-ip", "{app: web}", "[]", "phase: Pending"));

  EXPECT_EQ(endpoints(EndpointSlice::AddressType::IPv4),
            (std::vector<std::string>{"10.244.1.5:8080", "10.244.1.6:8080"}));
  EXPECT_EQ(endpoints(EndpointSlice::AddressType::IPv6),
            (std::vector<std::string>{"fd00:244:1::5:8080", "fd00:244:1::7:8080"}));
  std::vector<std::string> names;
  for (const EndpointSlice& s : derive_endpoint_slices(state)) names.push_back(s.meta.name);
  EXPECT_EQ(names, (std::vector<std::string>{"web-ferry-ipv4-0", "web-ferry-ipv6-0"}));
}

TEST_F(DerivedSlices, ExplicitSliceWinsAndServicesWithoutSelectorGetNone) {
  add(service_yaml());
  add(pod_yaml("a", "{app: web}", "[{ip: 10.244.1.5}]"));
  add("apiVersion: v1\nkind: Service\nmetadata: {name: manual, namespace: shop}\n"
      "spec: {clusterIP: 10.96.0.11, ports: [{port: 80}]}\n");
  ASSERT_EQ(derive_endpoint_slices(state).size(), 1u);

  add("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-by-hand, namespace: shop, "
      "labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\n"
      "endpoints: [{addresses: [10.244.9.9]}]\nports: [{name: http, port: 80}]\n");
  EXPECT_TRUE(derive_endpoint_slices(state).empty());

  // A slice of a same-named Service in another namespace does not count.
  state.erase({Kind::EndpointSlice, "shop", "web-by-hand"});
  add("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-x, namespace: other, "
      "labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: []\n");
  EXPECT_EQ(derive_endpoint_slices(state).size(), 1u);
}

TEST_F(DerivedSlices, FollowsPodsAddedRemovedAndRelabelled) {
  add(service_yaml());
  EXPECT_TRUE(endpoints().empty());  // no pod yet: one family, no slice
  add(pod_yaml("a", "{app: web}", "[{ip: 10.244.1.5}]"));
  add(pod_yaml("b", "{app: web}", "[{ip: 10.244.1.6}]"));
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"10.244.1.5:8080", "10.244.1.6:8080"}));

  state.erase({Kind::Pod, "shop", "a"});
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"10.244.1.6:8080"}));

  add(pod_yaml("b", "{app: other}", "[{ip: 10.244.1.6}]"));  // relabelled away
  EXPECT_TRUE(endpoints().empty());
  add(pod_yaml("c", "{app: web}", "[{ip: 10.244.1.7}]"));
  EXPECT_EQ(endpoints(), (std::vector<std::string>{"10.244.1.7:8080"}));
}

TEST(DecodePod, ReadyConditionIsReadWhenPresent) {
  Pod with = decode_one<Pod>(
      "apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {phase: Running, conditions: "
      "[{type: Initialized, status: 'True'}, {type: Ready, status: 'False', reason: ContainersNotReady}]}\n");
  EXPECT_EQ(with.ready_condition, false);
  EXPECT_FALSE(with.ready());
  Pod without = decode_one<Pod>("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nstatus: {phase: Running}\n");
  EXPECT_EQ(without.ready_condition, std::nullopt);
  EXPECT_TRUE(without.ready());
}

}  // namespace
}  // namespace ferry::model
