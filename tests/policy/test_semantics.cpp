// Truth tables for every NetworkPolicy rule, one test per rule. Each verdict is also checked
// against the oracle (PolicyWorld::allowed).
#include <gtest/gtest.h>

#include "tests/policy/fixture.h"

namespace ferry::policy::testing {
namespace {

constexpr uint8_t TCP = IPPROTO_TCP, UDP = IPPROTO_UDP, SCTP = IPPROTO_SCTP, ICMP = IPPROTO_ICMP;
using dataplane::PolicyEntry;

// x/a 10.1.0.1, x/b 10.1.0.2, y/a 10.1.0.3, y/b 10.1.0.4 on this node; z/c 10.2.0.1 on node-1.
class Semantics : public ::testing::Test {
 protected:
  PolicyWorld w;
  void SetUp() override {
    w.ns("x", {{"team", "x"}});
    w.ns("y", {{"team", "y"}});
    w.ns("z", {{"team", "z"}});
    w.pod("x/a", {"10.1.0.1"}, {{"pod", "a"}}, {"http:TCP:80", "dns:UDP:53"});
    w.pod("x/b", {"10.1.0.2"}, {{"pod", "b"}}, {"http:TCP:8080"});
    w.pod("y/a", {"10.1.0.3"}, {{"pod", "a"}});
    w.pod("y/b", {"10.1.0.4"}, {{"pod", "b"}}, {"http:TCP:81"});
    w.pod("z/c", {"10.2.0.1"}, {{"pod", "c"}}, {"http:UDP:80"}, "node-1");
  }
};

TEST_F(Semantics, NoPolicyAllowsEverything) {
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3"));
  EXPECT_TRUE(w.egress("x/a", "8.8.8.8", UDP, 53));
  EXPECT_FALSE(w.compiled().set.endpoints.at(w.endpoint_of("x/a")).ingress_isolated);
}

TEST_F(Semantics, PolicyOfAnotherNamespaceDoesNotIsolate) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: y}
spec: {podSelector: {}}
)");
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3"));
  EXPECT_FALSE(w.ingress("y/a", "10.1.0.1"));
}

TEST_F(Semantics, DefaultDenyIngressLeavesEgressOpen) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {}}
)");
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.2"));  // same namespace too
  EXPECT_FALSE(w.ingress("x/b", "10.2.0.1"));
  EXPECT_FALSE(w.ingress("x/a", "8.8.8.8", UDP, 53));
  EXPECT_TRUE(w.egress("x/a", "10.1.0.3"));
  EXPECT_TRUE(w.ingress("y/a", "10.1.0.1"));
}

TEST_F(Semantics, PodSelectorOfThePolicyChoosesTheIsolatedPods) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-a, namespace: x}
spec: {podSelector: {matchLabels: {pod: a}}}
)");
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.2"));
  EXPECT_TRUE(w.ingress("x/b", "10.1.0.1"));
}

TEST_F(Semantics, PolicyTypesAbsentIsolatesEgressOnlyWithEgressRules) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: egress-rules, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  egress: [{to: [{podSelector: {matchLabels: {pod: b}}}]}]
)");
  const auto& ep = w.compiled().set.endpoints.at(w.endpoint_of("x/a"));
  EXPECT_TRUE(ep.ingress_isolated);  // absent policyTypes: Ingress always
  EXPECT_TRUE(ep.egress_isolated);
  EXPECT_TRUE(w.egress("x/a", "10.1.0.2"));
  EXPECT_FALSE(w.egress("x/a", "10.1.0.3"));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.2"));
}

TEST_F(Semantics, PolicyTypesEgressOnlyLeavesIngressOpen) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-egress, namespace: x}
spec: {podSelector: {}, policyTypes: [Egress]}
)");
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3"));
  EXPECT_FALSE(w.egress("x/a", "10.1.0.3"));
  EXPECT_FALSE(w.egress("x/a", "10.0.0.1"));  // egress to the node is not implied
  EXPECT_FALSE(w.egress("x/a", "8.8.8.8", UDP, 53));
}

TEST_F(Semantics, AllowAllIngressWithAnEmptyRule) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-all, namespace: x}
spec: {podSelector: {}, ingress: [{}]}
)");
  EXPECT_TRUE(w.ingress("x/a", "8.8.8.8", ICMP, 0));
  EXPECT_TRUE(w.ingress("x/a", "10.2.0.1", SCTP, 9999));
  const auto& ep = w.compiled().set.endpoints.at(w.endpoint_of("x/a"));
  EXPECT_TRUE(ep.ingress_isolated);
  EXPECT_EQ(ep.ingress, (std::vector<PolicyEntry>{{0, 0, 0, 65535}}));  // the host entry is folded in
}

TEST_F(Semantics, PodSelectorPeerMeansThePolicysNamespace) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-a, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: a}}}]}]
)");
  EXPECT_TRUE(w.ingress("x/b", "10.1.0.1"));   // x/a
  EXPECT_FALSE(w.ingress("x/b", "10.1.0.3"));  // y/a: same labels, other namespace
}

TEST_F(Semantics, NamespaceSelectorPeerMeansEveryPodOfMatchingNamespaces) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-y, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: y}}}]}]
)");
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3"));
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.4"));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.2"));  // own namespace not selected
  EXPECT_FALSE(w.ingress("x/a", "10.2.0.1"));
}

TEST_F(Semantics, EmptyNamespaceSelectorMeansEveryNamespace) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-all-a, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {}, podSelector: {matchLabels: {pod: a}}}]}]
)");
  EXPECT_TRUE(w.ingress("x/b", "10.1.0.1"));
  EXPECT_TRUE(w.ingress("x/b", "10.1.0.3"));
  EXPECT_FALSE(w.ingress("x/b", "10.1.0.4"));
  EXPECT_FALSE(w.ingress("x/b", "8.8.8.8"));  // selectors never match non-pods
}

TEST_F(Semantics, BothSelectorsInOnePeerAreAndTwoPeersAreOr) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: and, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: y}}, podSelector: {matchLabels: {pod: b}}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: or, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: y}}}, {podSelector: {matchLabels: {pod: b}}}]}]
)");
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.4"));   // y/b
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3"));  // y/a: namespace yes, pod no
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.2"));  // x/b: pod yes, namespace no
  EXPECT_TRUE(w.ingress("x/b", "10.1.0.3"));   // y/a by the namespace peer
  EXPECT_TRUE(w.ingress("x/b", "10.1.0.2"));   // x/b by the pod peer
  EXPECT_FALSE(w.ingress("x/b", "10.1.0.1"));  // x/a by neither
}

TEST_F(Semantics, MatchExpressionOperators) {
  w.pod("x/t1", {"10.1.0.11"}, {{"tier", "web"}});
  w.pod("x/t2", {"10.1.0.12"}, {{"tier", "db"}});
  w.pod("x/t3", {"10.1.0.13"}, {});
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: in, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: In, values: [web, api]}]}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: notin, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: NotIn, values: [web]}]}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: exists, namespace: x}
spec:
  podSelector: {matchLabels: {tier: web}}
  ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: Exists}]}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: doesnotexist, namespace: x}
spec:
  podSelector: {matchLabels: {tier: db}}
  ingress: [{from: [{podSelector: {matchExpressions: [{key: tier, operator: DoesNotExist}]}}]}]
)");
  // In: only tier=web.
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.11"));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.12"));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.13"));
  // NotIn: tier=db and no tier at all, not tier=web.
  EXPECT_FALSE(w.ingress("x/b", "10.1.0.11"));
  EXPECT_TRUE(w.ingress("x/b", "10.1.0.12"));
  EXPECT_TRUE(w.ingress("x/b", "10.1.0.13"));
  // Exists: both tiers, not the unlabelled pod.
  EXPECT_TRUE(w.ingress("x/t1", "10.1.0.12"));
  EXPECT_TRUE(w.ingress("x/t1", "10.1.0.11"));
  EXPECT_FALSE(w.ingress("x/t1", "10.1.0.13"));
  // DoesNotExist: only pods without the key.
  EXPECT_TRUE(w.ingress("x/t2", "10.1.0.13"));
  EXPECT_TRUE(w.ingress("x/t2", "10.1.0.1"));
  EXPECT_FALSE(w.ingress("x/t2", "10.1.0.11"));
}

TEST_F(Semantics, NamespaceWithoutObjectHasNoLabels) {
  w.pod("ghost/g", {"10.1.0.20"}, {{"pod", "a"}});
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-labelled, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{namespaceSelector: {matchExpressions: [{key: team, operator: Exists}]}}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-any-ns, namespace: x}
spec:
  podSelector: {matchLabels: {pod: b}}
  ingress: [{from: [{namespaceSelector: {}}]}]
)");
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.20"));
  EXPECT_TRUE(w.ingress("x/b", "10.1.0.20"));
}

TEST_F(Semantics, IpBlockWithExceptMatchesAnyAddressPodsIncluded) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: cidr, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{ipBlock: {cidr: 10.1.0.0/24, except: [10.1.0.4/32]}}, {ipBlock: {cidr: 8.8.8.0/24}}]}]
)");
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3"));   // a pod inside the cidr
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.4"));  // the except
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.5"));   // no pod there: still in the block
  EXPECT_FALSE(w.ingress("x/a", "10.2.0.1"));
  EXPECT_TRUE(w.ingress("x/a", "8.8.8.255"));
  EXPECT_FALSE(w.ingress("x/a", "8.8.9.0"));
  EXPECT_FALSE(w.ingress("x/a", "8.8.7.255"));
}

TEST_F(Semantics, NestedIpBlocksCidrExceptCidr) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: nested, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  egress:
  - to: [{ipBlock: {cidr: 172.16.0.0/12, except: [172.16.0.0/16]}}]
    ports: [{port: 443}]
  - to: [{ipBlock: {cidr: 172.16.1.0/24}}]
    ports: [{port: 80}]
)");
  EXPECT_TRUE(w.egress("x/a", "172.17.0.1", TCP, 443));
  EXPECT_FALSE(w.egress("x/a", "172.17.0.1", TCP, 80));
  EXPECT_FALSE(w.egress("x/a", "172.16.0.1", TCP, 443));  // except
  EXPECT_TRUE(w.egress("x/a", "172.16.1.1", TCP, 80));    // inner cidr inside the except
  EXPECT_FALSE(w.egress("x/a", "172.16.1.1", TCP, 443));
  EXPECT_FALSE(w.egress("x/a", "172.32.0.0", TCP, 443));
}

TEST_F(Semantics, NumericPortAndProtocol) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: tcp80, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: 80}, {protocol: SCTP, port: 80}]}]
)");
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3", TCP, 80));  // protocol defaults to TCP
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3", SCTP, 80));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", UDP, 80));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", TCP, 81));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", ICMP, 0));
}

TEST_F(Semantics, EndPortRangeIsInclusive) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: range, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{protocol: UDP, port: 32000, endPort: 32768}]}]
)");
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", UDP, 31999));
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3", UDP, 32000));
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3", UDP, 32400));
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3", UDP, 32768));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", UDP, 32769));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", TCP, 32400));
}

TEST_F(Semantics, PortWithoutNumberMeansEveryPortOfTheProtocol) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: all-udp, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{protocol: UDP}]}]
)");
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3", UDP, 1));
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3", UDP, 65535));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", TCP, 53));
}

TEST_F(Semantics, NoPortsMeansEveryProtocol) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
)");
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.2", ICMP, 0));
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.2", SCTP, 7));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", ICMP, 0));
}

TEST_F(Semantics, NamedPortOnIngressIsTheEndpointsOwnPort) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: http, namespace: x}
spec:
  podSelector: {}
  ingress: [{ports: [{port: http}]}]
)");
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3", TCP, 80));     // x/a: http = 80
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", TCP, 8080));
  EXPECT_TRUE(w.ingress("x/b", "10.1.0.3", TCP, 8080));   // x/b: http = 8080
  EXPECT_FALSE(w.ingress("x/b", "10.1.0.3", TCP, 80));
}

TEST_F(Semantics, NamedPortOnEgressIsTheDestinationPodsPort) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: http-out, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  egress: [{ports: [{port: http}]}]
)");
  EXPECT_TRUE(w.egress("x/a", "10.1.0.2", TCP, 8080));  // x/b declares http=8080
  EXPECT_FALSE(w.egress("x/a", "10.1.0.2", TCP, 80));
  EXPECT_TRUE(w.egress("x/a", "10.1.0.4", TCP, 81));    // y/b: http=81
  EXPECT_FALSE(w.egress("x/a", "10.1.0.3", TCP, 80));   // y/a declares nothing
  EXPECT_FALSE(w.egress("x/a", "10.2.0.1", TCP, 80));   // z/c: http is UDP
  EXPECT_FALSE(w.egress("x/a", "8.8.8.8", TCP, 80));    // not a pod
}

TEST_F(Semantics, NamedPortProtocolMustMatch) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: dns, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{ports: [{port: dns}]}]
  egress: [{ports: [{protocol: UDP, port: http}]}]
)");
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", TCP, 53));  // dns is UDP on x/a; the rule says TCP
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", UDP, 53));
  EXPECT_TRUE(w.egress("x/a", "10.2.0.1", UDP, 80));
  EXPECT_FALSE(w.egress("x/a", "10.1.0.2", UDP, 8080));
}

TEST_F(Semantics, NamedPortNobodyDeclaresAllowsNothing) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: nope, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Ingress, Egress]
  ingress: [{ports: [{port: nope}]}]
  egress: [{ports: [{port: nope}]}]
)");
  const auto& ep = w.compiled().set.endpoints.at(w.endpoint_of("x/a"));
  EXPECT_TRUE(ep.egress.empty());
  EXPECT_FALSE(w.egress("x/a", "10.1.0.2", TCP, 80));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.2", TCP, 80));
}

TEST_F(Semantics, SeveralPoliciesUnion) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p1, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}], ports: [{port: 80}]}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p2, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: y}}}], ports: [{port: 81}]}]
)");
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.2", TCP, 80));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.2", TCP, 81));
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.3", TCP, 81));
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.3", TCP, 80));
  EXPECT_EQ(w.compiled().endpoint_policies.at(w.endpoint_of("x/a")), (std::vector<std::string>{"x/p1", "x/p2"}));
  EXPECT_EQ(w.compiled().endpoint_policies.at(w.endpoint_of("x/b")), (std::vector<std::string>{"x/p2"}));
}

TEST_F(Semantics, ThisNodeIsAlwaysAllowedOnIsolatedIngress) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-all, namespace: x}
spec: {podSelector: {}, policyTypes: [Ingress, Egress]}
)");
  EXPECT_TRUE(w.ingress("x/a", "10.0.0.1", TCP, 8080));    // bridge gateway (host_ips)
  EXPECT_TRUE(w.ingress("x/a", "192.168.0.1", ICMP, 0));   // the Node's InternalIP
  EXPECT_FALSE(w.ingress("x/a", "192.168.0.2", TCP, 80));  // another node
  EXPECT_FALSE(w.egress("x/a", "10.0.0.1", TCP, 80));      // only ingress
}

TEST_F(Semantics, IPv6PodsAndBlocks) {
  w.pod("x/v6", {"10.1.0.30", "fd00::30"}, {{"pod", "v6"}});
  w.pod("y/v6", {"fd00::31"}, {{"pod", "v6"}});
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: v6, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress:
  - from: [{podSelector: {matchLabels: {pod: v6}}}]
  - from: [{ipBlock: {cidr: "2001:db8::/32", except: ["2001:db8:1::/48"]}}]
)");
  EXPECT_TRUE(w.ingress("x/a", "fd00::30"));
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.30"));
  EXPECT_FALSE(w.ingress("x/a", "fd00::31"));  // other namespace
  EXPECT_TRUE(w.ingress("x/a", "2001:db8::1"));
  EXPECT_FALSE(w.ingress("x/a", "2001:db8:1::1"));
  EXPECT_FALSE(w.ingress("x/a", "2001:db9::1"));
}

TEST_F(Semantics, EndpointWithoutPodIsAbsentAndAllowed) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny, namespace: x}
spec: {podSelector: {}}
)");
  LocalEndpoint unknown;
  unknown.endpoint_id = 100;
  unknown.pod_namespace = "x";
  unknown.pod_name = "not-yet";
  unknown.ips = {ip("10.1.0.99")};
  LocalEndpoint by_ip;  // no names: found through its address
  by_ip.endpoint_id = 101;
  by_ip.ips = {ip("10.1.0.2")};
  w.endpoints.push_back(unknown);
  w.endpoints.push_back(by_ip);
  CompileInput in{&w.cluster, PolicyWorld::kNode, w.host_ips, w.endpoints, true};
  auto c = compile(in, w.allocator);
  EXPECT_FALSE(c.set.endpoints.count(100));
  EXPECT_FALSE(c.endpoint_pods.count(100));
  EXPECT_TRUE(allows(c.set, 100, Direction::Ingress, ip("10.1.0.3"), TCP, 80));
  EXPECT_EQ(c.endpoint_pods.at(101), "x/b");
  EXPECT_FALSE(allows(c.set, 101, Direction::Ingress, ip("10.1.0.3"), TCP, 80));
}

TEST_F(Semantics, HostNetworkAndFinishedPodsAreNotPeers) {
  model::Pod hostnet;
  hostnet.meta.ns = "x";
  hostnet.meta.name = "hostnet";
  hostnet.meta.labels = {{"pod", "b"}};
  hostnet.host_network = true;
  hostnet.pod_ips = {*cni::IPAddr::parse("192.168.0.2")};
  model::Pod done = hostnet;
  done.meta.name = "done";
  done.host_network = false;
  done.phase = "Succeeded";
  done.pod_ips = {*cni::IPAddr::parse("10.1.0.50")};
  w.cluster.upsert(hostnet);
  w.cluster.upsert(done);
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: from-b, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  ingress: [{from: [{podSelector: {matchLabels: {pod: b}}}]}]
)");
  EXPECT_TRUE(w.ingress("x/a", "10.1.0.2"));
  EXPECT_FALSE(w.ingress("x/a", "192.168.0.2"));  // the node's address, not a pod's
  EXPECT_FALSE(w.ingress("x/a", "10.1.0.50"));    // a finished pod gave its address back
}

TEST_F(Semantics, NotIsolatedEndpointIsPresentWithoutEntries) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: only-b, namespace: x}
spec: {podSelector: {matchLabels: {pod: b}}}
)");
  const auto& c = w.compiled();
  EXPECT_EQ(c.set.endpoints.at(w.endpoint_of("x/a")), dataplane::EndpointPolicy{});
  EXPECT_EQ(c.set.endpoints.at(w.endpoint_of("y/a")), dataplane::EndpointPolicy{});
  EXPECT_EQ(c.endpoint_pods.at(w.endpoint_of("x/a")), "x/a");
  EXPECT_FALSE(c.endpoint_policies.count(w.endpoint_of("x/a")));
  // Default deny: only the Host entry.
  const auto& b = c.set.endpoints.at(w.endpoint_of("x/b"));
  EXPECT_TRUE(b.ingress_isolated);
  EXPECT_FALSE(b.egress_isolated);
  EXPECT_EQ(b.ingress, (std::vector<PolicyEntry>{{dataplane::kIdentityHost, 0, 0, 65535}}));
}

TEST_F(Semantics, EntriesAreSortedMergedAndDeduplicated) {
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: ports, namespace: x}
spec:
  podSelector: {matchLabels: {pod: a}}
  policyTypes: [Egress]
  egress:
  - to: [{ipBlock: {cidr: 8.8.8.8/32}}]
    ports: [{port: 85}, {port: 80}, {port: 81}, {port: 82, endPort: 90}, {port: 85}, {port: 92}, {protocol: UDP, port: 80}]
  - ports: [{port: 92}]                       # any peer: covers (8.8.8.8, tcp 92)
  - to: [{ipBlock: {cidr: 9.9.9.9/32}}]
    ports: [{port: 443}]
  - to: [{ipBlock: {cidr: 9.9.9.9/32}}]       # no ports: covers 9.9.9.9's tcp 443
)");
  const auto& c = w.compiled();
  Identity dns = lookup_identity(c.set, ip("8.8.8.8")), quad9 = lookup_identity(c.set, ip("9.9.9.9"));
  std::vector<PolicyEntry> want = {{0, TCP, 92, 92}, {dns, TCP, 80, 90}, {dns, UDP, 80, 80}, {quad9, 0, 0, 65535}};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(c.set.endpoints.at(w.endpoint_of("x/a")).egress, want);
  EXPECT_TRUE(w.egress("x/a", "8.8.8.8", TCP, 86));
  EXPECT_FALSE(w.egress("x/a", "8.8.8.8", TCP, 91));
}

}  // namespace
}  // namespace ferry::policy::testing
