// build_services: one test per kube-proxy rule (services.h lists them).
#include <netinet/in.h>

#include "support.h"

namespace ferry::services::testing {
namespace {

using model::Service;

TEST_F(ServicesTest, ClusterIPFrontendPerPortAndProtocol) {
  add(service("web", {"10.96.0.10"},
              {port("http", Protocol::TCP, 80, "http"), port("dns", Protocol::UDP, 53, 5353),
               port("sig", Protocol::SCTP, 9, 9999)}));
  add(slice("web-1", "web",
            {slice_port("http", Protocol::TCP, 8080), slice_port("dns", Protocol::UDP, 5353),
             slice_port("sig", Protocol::SCTP, 9999)},
            {ep("10.1.0.5", "n1"), ep("10.1.1.5", "n2")}));
  build();

  EXPECT_EQ(frontend_keys(), (Names{"10.96.0.10:53/UDP", "10.96.0.10:80/TCP", "10.96.0.10:9/SCTP"}));
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), (Names{"10.1.0.5:8080/TCP", "10.1.1.5:8080/TCP"}));
  EXPECT_EQ(backends("10.96.0.10:53/UDP"), (Names{"10.1.0.5:5353/UDP", "10.1.1.5:5353/UDP"}));
  EXPECT_EQ(backends("10.96.0.10:9/SCTP"), (Names{"10.1.0.5:9999/SCTP", "10.1.1.5:9999/SCTP"}));
  const ServiceFrontend& f = fe("10.96.0.10:53/UDP");
  EXPECT_EQ(f.kind, FrontendKind::ClusterIP);
  EXPECT_EQ(f.proto, IPPROTO_UDP);
  EXPECT_EQ(f.service, "default/web");
  EXPECT_EQ(f.port_name, "dns");
  EXPECT_FALSE(f.affinity);
  EXPECT_TRUE(result.problems.empty());
  EXPECT_TRUE(backend("10.1.0.5:8080/TCP").local);
  EXPECT_FALSE(backend("10.1.1.5:8080/TCP").local);
  EXPECT_EQ(backend("10.1.1.5:8080/TCP").node, "n2");
}

// The endpointslice controller resolves a named targetPort per pod and writes one slice per
// distinct number; kube-proxy takes each endpoint's port from its slice's port of the same name.
TEST_F(ServicesTest, NamedTargetPortResolvedPerEndpointFromSlicePortNames) {
  add(service("web", {"10.96.0.10"}, {port("http", Protocol::TCP, 80, "web-http")}));
  add(slice("web-a", "web", {slice_port("http", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n1")}));
  add(slice("web-b", "web", {slice_port("http", Protocol::TCP, 9090)}, {ep("10.1.0.6", "n1")}));
  // A pod without the named port ends up in a slice without that port name: not a backend.
  add(slice("web-c", "web", {slice_port("metrics", Protocol::TCP, 9100)}, {ep("10.1.0.7", "n1")}));
  build();
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), (Names{"10.1.0.5:8080/TCP", "10.1.0.6:9090/TCP"}));
  EXPECT_EQ(others("10.96.0.10:80/TCP"), Names{});
}

TEST_F(ServicesTest, SeveralNamedPortsEachUseTheirOwnSlicePort) {
  add(service("web", {"10.96.0.10"},
              {port("http", Protocol::TCP, 80, "http"), port("admin", Protocol::TCP, 81, "admin")}));
  // One pod serves both, another only http.
  add(slice("web-a", "web", {slice_port("http", Protocol::TCP, 8080), slice_port("admin", Protocol::TCP, 8081)},
            {ep("10.1.0.5", "n1")}));
  add(slice("web-b", "web", {slice_port("http", Protocol::TCP, 8080)}, {ep("10.1.0.6", "n1")}));
  build();
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), (Names{"10.1.0.5:8080/TCP", "10.1.0.6:8080/TCP"}));
  EXPECT_EQ(backends("10.96.0.10:81/TCP"), (Names{"10.1.0.5:8081/TCP"}));
}

TEST_F(ServicesTest, SlicePortMatchesOnNameAndProtocol) {
  add(service("dns", {"10.96.0.53"}, {port("dns", Protocol::UDP, 53, 53), port("dns-tcp", Protocol::TCP, 53, 53)}));
  // "dns" over TCP is not the UDP port "dns"; "dns-tcp" over TCP is.
  add(slice("dns-1", "dns", {slice_port("dns", Protocol::TCP, 53), slice_port("dns-tcp", Protocol::TCP, 53)},
            {ep("10.1.0.5", "n1")}));
  build();
  EXPECT_EQ(backends("10.96.0.53:53/UDP"), Names{});
  EXPECT_EQ(fe("10.96.0.53:53/UDP").when_empty, WhenEmpty::Reject);
  EXPECT_EQ(backends("10.96.0.53:53/TCP"), (Names{"10.1.0.5:53/TCP"}));
}

TEST_F(ServicesTest, NumericTargetPortOfAnUnnamedPort) {
  add(service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 8080)}));
  add(slice("web-1", "web", {slice_port("", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n1")}));
  build();
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), (Names{"10.1.0.5:8080/TCP"}));
  EXPECT_EQ(fe("10.96.0.10:80/TCP").port_name, "");
}

TEST_F(ServicesTest, SlicePortWithoutNumberIsIgnored) {
  add(service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 8080)}));
  add(slice("web-1", "web", {slice_port("", Protocol::TCP, std::nullopt)}, {ep("10.1.0.5", "n1")}));
  add(slice("web-2", "web", {slice_port("", Protocol::TCP, 0)}, {ep("10.1.0.6", "n1")}));
  build();
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), Names{});
}

TEST_F(ServicesTest, DualStackFrontendsGetEndpointsOfTheirOwnFamily) {
  add(service("web", {"10.96.0.10", "fd00:96::10"}, {port("http", Protocol::TCP, 80, 8080)}));
  add(slice("web-v4", "web", {slice_port("http", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n1"), ep("10.1.1.5", "n2")}));
  add(slice("web-v6", "web", {slice_port("http", Protocol::TCP, 8080)}, {ep("fd00:1::5", "n1")}));
  build();
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), (Names{"10.1.0.5:8080/TCP", "10.1.1.5:8080/TCP"}));
  EXPECT_EQ(backends("[fd00:96::10]:80/TCP"), (Names{"[fd00:1::5]:8080/TCP"}));
  EXPECT_EQ(others("10.96.0.10:80/TCP"), Names{});
}

TEST_F(ServicesTest, SingleStackServiceIgnoresTheOtherFamily) {
  Service s = service("web", {"10.96.0.10"}, {port("http", Protocol::TCP, 80, 8080, 30080)});
  s.type = Service::Type::NodePort;
  s.external_ips = {ip("203.0.113.7"), ip("2001:db8::7")};
  add(s);
  add(slice("web-v6", "web", {slice_port("http", Protocol::TCP, 8080)}, {ep("fd00:1::5", "n1")}));
  add(slice("web-v4", "web", {slice_port("http", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n1")}));
  build();
  // No IPv6 frontend at all: not the NodePort on fd00:192::1, not the IPv6 externalIP.
  EXPECT_EQ(frontend_keys(), (Names{"10.96.0.10:80/TCP", "192.168.0.1:30080/TCP", "192.168.1.1:30080/TCP",
                                    "203.0.113.7:80/TCP"}));
  for (const auto& [id, f] : result.set.frontends) EXPECT_EQ(names(f.backends), (Names{"10.1.0.5:8080/TCP"}));
}

TEST_F(ServicesTest, SeveralSlicesAreMergedAndDuplicatesCountOnce) {
  add(service("web", {"10.96.0.10"}, {port("http", Protocol::TCP, 80, 8080)}));
  add(slice("web-a", "web", {slice_port("http", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n1"), ep("10.1.0.6", "n1")}));
  // While an endpoint moves between slices it can be in both.
  add(slice("web-b", "web", {slice_port("http", Protocol::TCP, 8080)}, {ep("10.1.0.6", "n1"), ep("10.1.0.7", "n2")}));
  build();
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), (Names{"10.1.0.5:8080/TCP", "10.1.0.6:8080/TCP", "10.1.0.7:8080/TCP"}));
  EXPECT_EQ(result.set.backends.size(), 3u);
}

TEST_F(ServicesTest, ADuplicateOnThisNodeWins) {
  add(service("web", {"10.96.0.10"}, {port("http", Protocol::TCP, 80, 8080)}));
  add(slice("web-a", "web", {slice_port("http", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n2")}));
  add(slice("web-b", "web", {slice_port("http", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n1")}));
  build();
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), (Names{"10.1.0.5:8080/TCP"}));
  EXPECT_TRUE(backend("10.1.0.5:8080/TCP").local);
  EXPECT_EQ(backend("10.1.0.5:8080/TCP").node, "n1");
}

TEST_F(ServicesTest, OnlySlicesLabelledWithTheServiceAndWithAddressesCount) {
  add(service("web", {"10.96.0.10"}, {port("http", Protocol::TCP, 80, 8080)}));
  add(slice("other-1", "other", {slice_port("http", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n1")}));
  model::EndpointSlice fqdn = slice("web-fqdn", "web", {slice_port("http", Protocol::TCP, 8080)}, {});
  fqdn.address_type = model::EndpointSlice::AddressType::FQDN;
  model::EndpointSlice::Endpoint named;
  named.fqdns = {"db.example.com"};
  fqdn.endpoints = {named};
  add(fqdn);
  build();
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), Names{});
}

// Endpoint conditions, kube-proxy's way: ready endpoints; when none is ready, the serving and
// terminating ones (KEP-1669); unset ready/serving mean true, unset terminating false.
TEST_F(ServicesTest, EndpointConditionsTruthTable) {
  struct Row {
    const char* what;
    std::vector<Conditions> endpoints;  // for 10.1.0.1, 10.1.0.2, ...
    Names chosen;
    Names other;
    WhenEmpty when_empty;
  };
  const std::vector<Row> rows = {
      {"ready", {kReady}, {"10.1.0.1"}, {}, WhenEmpty::Reject},
      {"unset conditions = ready", {kUnset}, {"10.1.0.1"}, {}, WhenEmpty::Reject},
      {"not ready is never chosen", {kReady, kNotReady}, {"10.1.0.1"}, {"10.1.0.2"}, WhenEmpty::Reject},
      {"terminating waits while some are ready", {kServingTerminating, kReady}, {"10.1.0.2"}, {"10.1.0.1"},
       WhenEmpty::Reject},
      {"no ready: serving+terminating fallback", {kServingTerminating, kNotServingTerminating, kNotReady},
       {"10.1.0.1"}, {"10.1.0.2", "10.1.0.3"}, WhenEmpty::Reject},
      {"unset serving counts as serving", {Conditions{false, std::nullopt, true}}, {"10.1.0.1"}, {}, WhenEmpty::Reject},
      {"not serving and terminating: no backend", {kNotServingTerminating}, {}, {"10.1.0.1"}, WhenEmpty::Reject},
      {"not ready, not terminating: no backend", {kNotReady, Conditions{false, true, false}}, {},
       {"10.1.0.1", "10.1.0.2"}, WhenEmpty::Reject},
      {"no endpoints", {}, {}, {}, WhenEmpty::Reject},
  };
  for (const Row& row : rows) {
    SCOPED_TRACE(row.what);
    cluster = model::ClusterState{};
    add(service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 80)}));
    std::vector<model::EndpointSlice::Endpoint> eps;
    for (size_t i = 0; i < row.endpoints.size(); ++i)
      eps.push_back(ep("10.1.0." + std::to_string(i + 1), "n2", row.endpoints[i]));
    add(slice("web-1", "web", {slice_port("", Protocol::TCP, 80)}, eps));
    build();
    auto addr = [](Names keys) {
      for (auto& k : keys) k = k.substr(0, k.find(':'));
      return keys;
    };
    EXPECT_EQ(addr(backends("10.96.0.10:80/TCP")), row.chosen);
    EXPECT_EQ(addr(others("10.96.0.10:80/TCP")), row.other);
    if (row.chosen.empty()) {
      EXPECT_EQ(fe("10.96.0.10:80/TCP").when_empty, row.when_empty);
    }
  }
}

TEST_F(ServicesTest, BackendStateFollowsConditions) {
  add(service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 80)}));
  add(slice("web-1", "web", {slice_port("", Protocol::TCP, 80)},
            {ep("10.1.0.1", "n1", kReady), ep("10.1.0.2", "n1", kServingTerminating),
             ep("10.1.0.3", "n1", kNotServingTerminating), ep("10.1.0.4", "n1", kNotReady)}));
  build();
  EXPECT_EQ(backend("10.1.0.1:80/TCP").state, BackendState::Active);
  EXPECT_EQ(backend("10.1.0.2:80/TCP").state, BackendState::Terminating);
  EXPECT_EQ(backend("10.1.0.3:80/TCP").state, BackendState::NotServing);
  EXPECT_EQ(backend("10.1.0.4:80/TCP").state, BackendState::NotServing);
}

TEST_F(ServicesTest, ServiceWithoutEndpointsRejects) {
  Service s = service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 80, 30080)});
  s.type = Service::Type::NodePort;
  add(s);
  build();
  ASSERT_EQ(result.set.frontends.size(), 3u);  // ClusterIP + NodePort on the two IPv4 addresses
  for (const auto& [id, f] : result.set.frontends) {
    EXPECT_TRUE(f.backends.empty());
    EXPECT_EQ(f.when_empty, WhenEmpty::Reject) << frontend_key(f);
  }
  EXPECT_TRUE(result.set.backends.empty());
}

TEST_F(ServicesTest, NodePortOnEveryNodeAddressForNodePortAndLoadBalancer) {
  Service np = service("np", {"10.96.0.10", "fd00:96::10"}, {port("", Protocol::TCP, 80, 80, 30080)});
  np.type = Service::Type::NodePort;
  Service lb = service("lb", {"10.96.0.11"}, {port("", Protocol::UDP, 53, 53, 30053)});
  lb.type = Service::Type::LoadBalancer;
  Service lb_no_np = service("lb-no-np", {"10.96.0.12"}, {port("", Protocol::TCP, 443, 443)});
  lb_no_np.type = Service::Type::LoadBalancer;  // allocateLoadBalancerNodePorts: false
  add(np);
  add(lb);
  add(lb_no_np);
  add(slice("np-1", "np", {slice_port("", Protocol::TCP, 80)}, {ep("10.1.0.5", "n1"), ep("fd00:1::5", "n1")}));
  build();
  EXPECT_EQ(frontend_keys(),
            (Names{"10.96.0.10:80/TCP", "10.96.0.11:53/UDP", "10.96.0.12:443/TCP", "192.168.0.1:30053/UDP",
                   "192.168.0.1:30080/TCP", "192.168.1.1:30053/UDP", "192.168.1.1:30080/TCP",
                   "[fd00:192::1]:30080/TCP", "[fd00:96::10]:80/TCP"}));
  EXPECT_EQ(fe("192.168.1.1:30080/TCP").kind, FrontendKind::NodePort);
  EXPECT_EQ(fe("192.168.1.1:30080/TCP").service, "default/np");
  EXPECT_EQ(backends("192.168.1.1:30080/TCP"), (Names{"10.1.0.5:80/TCP"}));
  EXPECT_EQ(backends("[fd00:192::1]:30080/TCP"), (Names{"[fd00:1::5]:80/TCP"}));
}

TEST_F(ServicesTest, ClusterIPServiceHasNoNodePort) {
  add(service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 80, 30080)}));  // nodePort ignored
  build();
  EXPECT_EQ(frontend_keys(), (Names{"10.96.0.10:80/TCP"}));
}

TEST_F(ServicesTest, ExternalIPsAreFrontendsOnTheServicePort) {
  Service s = service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 8080)});
  s.external_ips = {ip("203.0.113.7"), ip("203.0.113.8")};
  add(s);
  add(slice("web-1", "web", {slice_port("", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n2")}));
  build();
  EXPECT_EQ(frontend_keys(), (Names{"10.96.0.10:80/TCP", "203.0.113.7:80/TCP", "203.0.113.8:80/TCP"}));
  EXPECT_EQ(fe("203.0.113.7:80/TCP").kind, FrontendKind::ExternalIP);
  EXPECT_EQ(backends("203.0.113.8:80/TCP"), (Names{"10.1.0.5:8080/TCP"}));
}

// externalTrafficPolicy Local: NodePorts and external IPs choose this node's endpoints only;
// traffic from pods and the node itself still reaches every endpoint; the clusterIP is unaffected.
TEST_F(ServicesTest, ExternalTrafficPolicyLocal) {
  Service s = service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 8080, 30080)});
  s.type = Service::Type::NodePort;
  s.external_ips = {ip("203.0.113.7")};
  s.external_traffic_policy = Service::TrafficPolicy::Local;
  add(s);
  add(slice("web-1", "web", {slice_port("", Protocol::TCP, 8080)},
            {ep("10.1.0.5", "n1"), ep("10.1.1.5", "n2"), ep("10.1.2.5", "n3")}));
  build();
  const Names all{"10.1.0.5:8080/TCP", "10.1.1.5:8080/TCP", "10.1.2.5:8080/TCP"};
  for (const char* key : {"192.168.0.1:30080/TCP", "203.0.113.7:80/TCP"}) {
    SCOPED_TRACE(key);
    const ServiceFrontend& f = fe(key);
    EXPECT_EQ(f.traffic_policy, TrafficPolicy::Local);
    EXPECT_EQ(names(f.backends), (Names{"10.1.0.5:8080/TCP"}));
    ASSERT_TRUE(f.pod_and_host_backends);
    EXPECT_EQ(names(*f.pod_and_host_backends), all);
    EXPECT_EQ(names(f.other_backends), Names{});
  }
  EXPECT_EQ(fe("10.96.0.10:80/TCP").traffic_policy, TrafficPolicy::Cluster);
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), all);
  EXPECT_FALSE(fe("10.96.0.10:80/TCP").pod_and_host_backends);
}

TEST_F(ServicesTest, ExternalTrafficPolicyLocalWithoutLocalEndpointsDrops) {
  Service s = service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 8080, 30080)});
  s.type = Service::Type::NodePort;
  s.external_traffic_policy = Service::TrafficPolicy::Local;
  add(s);
  add(slice("web-1", "web", {slice_port("", Protocol::TCP, 8080)}, {ep("10.1.1.5", "n2")}));
  build();
  const ServiceFrontend& f = fe("192.168.0.1:30080/TCP");
  EXPECT_TRUE(f.backends.empty());
  EXPECT_EQ(f.when_empty, WhenEmpty::Drop);  // endpoints exist elsewhere: drop, not reject
  EXPECT_EQ(names(*f.pod_and_host_backends), (Names{"10.1.1.5:8080/TCP"}));
}

// Local and Cluster fall back to terminating endpoints independently (KEP-1669).
TEST_F(ServicesTest, LocalPolicyFallsBackToLocalTerminatingEndpointsOnItsOwn) {
  Service s = service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 8080, 30080)});
  s.type = Service::Type::NodePort;
  s.external_traffic_policy = Service::TrafficPolicy::Local;
  add(s);
  add(slice("web-1", "web", {slice_port("", Protocol::TCP, 8080)},
            {ep("10.1.0.5", "n1", kServingTerminating), ep("10.1.1.5", "n2", kReady)}));
  build();
  const ServiceFrontend& f = fe("192.168.0.1:30080/TCP");
  EXPECT_EQ(names(f.backends), (Names{"10.1.0.5:8080/TCP"}));
  EXPECT_EQ(names(*f.pod_and_host_backends), (Names{"10.1.1.5:8080/TCP"}));
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), (Names{"10.1.1.5:8080/TCP"}));
  EXPECT_EQ(others("10.96.0.10:80/TCP"), (Names{"10.1.0.5:8080/TCP"}));
}

// internalTrafficPolicy Local: the clusterIP chooses this node's endpoints only; NodePorts keep
// their own (external) policy.
TEST_F(ServicesTest, InternalTrafficPolicyLocal) {
  Service s = service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 8080, 30080)});
  s.type = Service::Type::NodePort;
  s.internal_traffic_policy = Service::TrafficPolicy::Local;
  add(s);
  add(slice("web-1", "web", {slice_port("", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n1"), ep("10.1.1.5", "n2")}));
  build();
  const ServiceFrontend& c = fe("10.96.0.10:80/TCP");
  EXPECT_EQ(c.traffic_policy, TrafficPolicy::Local);
  EXPECT_EQ(names(c.backends), (Names{"10.1.0.5:8080/TCP"}));
  EXPECT_EQ(names(c.other_backends), (Names{"10.1.1.5:8080/TCP"}));
  EXPECT_FALSE(c.pod_and_host_backends);
  EXPECT_EQ(backends("192.168.0.1:30080/TCP"), (Names{"10.1.0.5:8080/TCP", "10.1.1.5:8080/TCP"}));
}

TEST_F(ServicesTest, InternalTrafficPolicyLocalWithoutLocalEndpointsDrops) {
  Service s = service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 8080)});
  s.internal_traffic_policy = Service::TrafficPolicy::Local;
  add(s);
  add(slice("web-1", "web", {slice_port("", Protocol::TCP, 8080)}, {ep("10.1.1.5", "n2")}));
  build();
  EXPECT_EQ(backends("10.96.0.10:80/TCP"), Names{});
  EXPECT_EQ(fe("10.96.0.10:80/TCP").when_empty, WhenEmpty::Drop);
}

TEST_F(ServicesTest, SessionAffinityClientIPOnEveryFrontendWithItsTimeout) {
  Service s = service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 8080, 30080)});
  s.type = Service::Type::NodePort;
  s.session_affinity = Service::SessionAffinity::ClientIP;
  s.session_affinity_timeout_seconds = 600;
  add(s);
  add(service("plain", {"10.96.0.11"}, {port("", Protocol::TCP, 80, 8080)}));
  build();
  for (const char* key : {"10.96.0.10:80/TCP", "192.168.0.1:30080/TCP", "192.168.1.1:30080/TCP"}) {
    EXPECT_TRUE(fe(key).affinity) << key;
    EXPECT_EQ(fe(key).affinity_timeout_seconds, 600u) << key;
  }
  EXPECT_FALSE(fe("10.96.0.11:80/TCP").affinity);
  EXPECT_EQ(fe("10.96.0.11:80/TCP").affinity_timeout_seconds, 0u);
}

TEST_F(ServicesTest, HeadlessExternalNameAndIPlessServicesAreSkipped) {
  Service headless = service("headless", {}, {port("", Protocol::TCP, 80, 80)});
  headless.headless = true;
  Service external_name = service("ext", {}, {port("", Protocol::TCP, 80, 80)});
  external_name.type = Service::Type::ExternalName;
  external_name.external_name = "db.example.com";
  Service no_ip = service("no-ip", {}, {port("", Protocol::TCP, 80, 80)});
  add(headless);
  add(external_name);
  add(no_ip);
  for (const char* name : {"headless", "ext", "no-ip"})
    add(slice(std::string(name) + "-1", name, {slice_port("", Protocol::TCP, 80)}, {ep("10.1.0.5", "n1")}));
  build();
  EXPECT_TRUE(result.set.frontends.empty()) << frontend_names();
  EXPECT_TRUE(result.set.backends.empty());
  EXPECT_TRUE(result.problems.empty());
}

TEST_F(ServicesTest, AFrontendClaimedTwiceGoesToTheFirstServiceByName) {
  Service a = service("a", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 80)});
  a.external_ips = {ip("203.0.113.7")};
  Service b = service("b", {"10.96.0.11"}, {port("http", Protocol::TCP, 80, 80)});
  b.external_ips = {ip("203.0.113.7")};
  add(b);
  add(a);
  build();
  EXPECT_EQ(fe("203.0.113.7:80/TCP").service, "default/a");
  ASSERT_EQ(result.problems.size(), 1u);
  EXPECT_EQ(result.problems[0], "Service default/b port http: frontend 203.0.113.7:80/TCP is already Service default/a's");
  EXPECT_TRUE(has_fe("10.96.0.11:80/TCP"));
}

TEST_F(ServicesTest, ABackendOfTwoServicesHasOneId) {
  add(service("a", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 8080)}));
  add(service("b", {"10.96.0.11"}, {port("", Protocol::TCP, 80, 8080)}));
  add(slice("a-1", "a", {slice_port("", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n1")}));
  add(slice("b-1", "b", {slice_port("", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n1")}));
  build();
  EXPECT_EQ(result.set.backends.size(), 1u);
  EXPECT_EQ(fe("10.96.0.10:80/TCP").backends, fe("10.96.0.11:80/TCP").backends);
}

TEST_F(ServicesTest, JsonListsFrontendsWithTheirBackends) {
  Service s = service("web", {"10.96.0.10"}, {port("http", Protocol::TCP, 80, 8080)});
  s.session_affinity = Service::SessionAffinity::ClientIP;
  add(s);
  add(slice("web-1", "web", {slice_port("http", Protocol::TCP, 8080)},
            {ep("10.1.0.5", "n1"), ep("10.1.0.6", "n1", kNotReady)}));
  build();
  nlohmann::json j = to_json(result.set);
  ASSERT_EQ(j["frontends"].size(), 1u);
  const auto& f = j["frontends"][0];
  EXPECT_EQ(f["address"], "10.96.0.10");
  EXPECT_EQ(f["port"], 80);
  EXPECT_EQ(f["protocol"], "TCP");
  EXPECT_EQ(f["kind"], "ClusterIP");
  EXPECT_EQ(f["service"], "default/web");
  EXPECT_EQ(f["port_name"], "http");
  EXPECT_EQ(f["affinity_timeout_seconds"], 10800);
  ASSERT_EQ(f["backends"].size(), 1u);
  EXPECT_EQ(f["backends"][0]["address"], "10.1.0.5");
  EXPECT_EQ(f["backends"][0]["state"], "active");
  EXPECT_EQ(f["other_backends"][0]["state"], "not-serving");
}

}  // namespace
}  // namespace ferry::services::testing
