// Decoding real Kubernetes object shapes (kubectl get -o json/yaml output, examples from the
// Kubernetes documentation) into the model.
#include "support.h"

using namespace ferry::model;
using namespace ferry::model::testing;

namespace {

// `kubectl get pod -o json` for a running dual-stack pod on a kind cluster (managedFields kept:
// unknown fields must be ignored).
constexpr const char* kRunningPodJson = R"({
  "apiVersion": "v1",
  "kind": "Pod",
  "metadata": {
    "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-02T10:00:00Z"},
    "creationTimestamp": "2024-05-02T10:00:01Z",
    "generateName": "web-7d4b9c8f5-",
    "labels": {"app": "web", "pod-template-hash": "7d4b9c8f5"},
    "managedFields": [{"apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {}},
                       "manager": "kube-controller-manager", "operation": "Update", "time": "2024-05-02T10:00:01Z"}],
    "name": "web-7d4b9c8f5-x2x9z",
    "namespace": "shop",
    "ownerReferences": [{"apiVersion": "apps/v1", "blockOwnerDeletion": true, "controller": true,
                         "kind": "ReplicaSet", "name": "web-7d4b9c8f5", "uid": "0c7d0e5e-1111-2222-3333-444455556666"}],
    "resourceVersion": "123456",
    "uid": "6f1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff"
  },
  "spec": {
    "containers": [
      {"image": "nginx:1.25", "imagePullPolicy": "IfNotPresent", "name": "nginx",
       "ports": [{"containerPort": 80, "name": "http", "protocol": "TCP"},
                 {"containerPort": 8443, "name": "https"}],
       "resources": {}, "terminationMessagePath": "/dev/termination-log",
       "volumeMounts": [{"mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "name": "kube-api-access-abcde", "readOnly": true}]},
      {"image": "coredns/coredns:1.11.1", "name": "dns",
       "ports": [{"containerPort": 53, "name": "dns", "protocol": "UDP"},
                 {"containerPort": 9153, "protocol": "SCTP"}]}
    ],
    "dnsPolicy": "ClusterFirst",
    "enableServiceLinks": true,
    "nodeName": "kind-worker",
    "preemptionPolicy": "PreemptLowerPriority",
    "priority": 0,
    "restartPolicy": "Always",
    "schedulerName": "default-scheduler",
    "securityContext": {},
    "serviceAccountName": "default",
    "terminationGracePeriodSeconds": 30,
    "tolerations": [{"effect": "NoExecute", "key": "node.kubernetes.io/not-ready", "operator": "Exists", "tolerationSeconds": 300}]
  },
  "status": {
    "conditions": [{"lastProbeTime": null, "lastTransitionTime": "2024-05-02T10:00:01Z", "status": "True", "type": "Ready"}],
    "containerStatuses": [{"name": "nginx", "ready": true, "restartCount": 0, "started": true,
                           "state": {"running": {"startedAt": "2024-05-02T10:00:03Z"}}}],
    "hostIP": "172.18.0.3",
    "hostIPs": [{"ip": "172.18.0.3"}],
    "phase": "Running",
    "podIP": "10.244.1.5",
    "podIPs": [{"ip": "10.244.1.5"}, {"ip": "fd00:10:244:1::5"}],
    "qosClass": "BestEffort",
    "startTime": "2024-05-02T10:00:01Z"
  }
})";

}  // namespace

TEST(ModelDecodePod, RunningPodFromKubectlJson) {
  Pod p = decode_one<Pod>(kRunningPodJson, "pod.json");
  EXPECT_EQ(p.meta.name, "web-7d4b9c8f5-x2x9z");
  EXPECT_EQ(p.meta.ns, "shop");
  EXPECT_EQ(p.meta.uid, "6f1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff");
  EXPECT_EQ(p.meta.resource_version, "123456");
  EXPECT_EQ(p.meta.labels, (Labels{{"app", "web"}, {"pod-template-hash", "7d4b9c8f5"}}));
  EXPECT_EQ(p.meta.annotations.at("kubectl.kubernetes.io/restartedAt"), "2024-05-02T10:00:00Z");
  EXPECT_FALSE(p.deleting());
  EXPECT_EQ(p.node_name, "kind-worker");
  EXPECT_FALSE(p.host_network);
  EXPECT_EQ(p.phase, "Running");
  EXPECT_EQ(p.pod_ips, (std::vector<ferry::cni::IPAddr>{ip("10.244.1.5"), ip("fd00:10:244:1::5")}));
  ASSERT_EQ(p.ports.size(), 4u);
  EXPECT_EQ(p.ports[0], (ContainerPort{"nginx", "http", 80, Protocol::TCP}));
  EXPECT_EQ(p.ports[1], (ContainerPort{"nginx", "https", 8443, Protocol::TCP}));  // protocol defaults to TCP
  EXPECT_EQ(p.ports[2], (ContainerPort{"dns", "dns", 53, Protocol::UDP}));
  EXPECT_EQ(p.ports[3], (ContainerPort{"dns", "", 9153, Protocol::SCTP}));
}

TEST(ModelDecodePod, PendingHostNetworkAndTerminatingPods) {
  Pod pending = decode_one<Pod>(R"(
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c, image: busybox}]}
status: {phase: Pending, podIP: ""}
)");
  EXPECT_EQ(pending.meta.ns, "default");  // as kubectl apply defaults it
  EXPECT_EQ(pending.node_name, "");
  EXPECT_EQ(pending.phase, "Pending");
  EXPECT_TRUE(pending.pod_ips.empty());
  EXPECT_TRUE(pending.ports.empty());

  Pod host = decode_one<Pod>(R"(
apiVersion: v1
kind: Pod
metadata: {name: kube-proxy-abc, namespace: kube-system, deletionTimestamp: "2024-05-02T10:00:00Z", deletionGracePeriodSeconds: 30}
spec: {hostNetwork: true, nodeName: node-1, containers: [{name: c}]}
status: {podIP: 172.18.0.2, podIPs: [{ip: 172.18.0.2}]}
)");
  EXPECT_TRUE(host.host_network);
  EXPECT_TRUE(host.deleting());
  EXPECT_EQ(host.pod_ips, std::vector<ferry::cni::IPAddr>{ip("172.18.0.2")});  // podIP and podIPs[0] merged
}

TEST(ModelDecodeNode, PodCidrsAndInternalIPs) {
  Node n = decode_one<Node>(R"(
apiVersion: v1
kind: Node
metadata:
  name: kind-worker
  labels: {kubernetes.io/hostname: kind-worker, kubernetes.io/os: linux}
  resourceVersion: "900"
spec:
  podCIDR: 10.244.1.0/24
  podCIDRs: [10.244.1.0/24, "fd00:10:244:1::/64"]
  providerID: kind://docker/kind/kind-worker
status:
  addresses:
  - {address: 172.18.0.3, type: InternalIP}
  - {address: "fc00:f853:ccd:e793::3", type: InternalIP}
  - {address: kind-worker, type: Hostname}
  capacity: {cpu: "8", pods: "110"}
)");
  EXPECT_EQ(n.meta.name, "kind-worker");
  EXPECT_EQ(n.meta.ns, "");
  EXPECT_EQ(n.meta.labels.at("kubernetes.io/os"), "linux");
  EXPECT_EQ(n.pod_cidrs, (std::vector<ferry::cni::IPNet>{net("10.244.1.0/24"), net("fd00:10:244:1::/64")}));
  EXPECT_EQ(n.internal_ips, (std::vector<ferry::cni::IPAddr>{ip("172.18.0.3"), ip("fc00:f853:ccd:e793::3")}));
}

TEST(ModelDecodeNode, PodCidrIsStoredInNetworkForm) {
  Node n = decode_one<Node>("{apiVersion: v1, kind: Node, metadata: {name: n}, spec: {podCIDR: 10.244.1.7/24}}");
  EXPECT_EQ(n.pod_cidrs, std::vector<ferry::cni::IPNet>{net("10.244.1.0/24")});
  EXPECT_TRUE(n.internal_ips.empty());
}

TEST(ModelDecodeNamespace, LabelsAndClusterScope) {
  Namespace ns = decode_one<Namespace>(R"(
apiVersion: v1
kind: Namespace
metadata:
  name: shop
  namespace: ignored-for-cluster-scoped
  labels: {kubernetes.io/metadata.name: shop, team: payments}
)");
  EXPECT_EQ(ns.meta.name, "shop");
  EXPECT_EQ(ns.meta.ns, "");
  EXPECT_EQ(ns.meta.labels, (Labels{{"kubernetes.io/metadata.name", "shop"}, {"team", "payments"}}));
}

TEST(ModelDecodeService, ClusterIPServiceFromKubectl) {
  Service s = decode_one<Service>(R"({
  "apiVersion": "v1", "kind": "Service",
  "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": {"k8s-app": "kube-dns"}},
  "spec": {
    "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
    "internalTrafficPolicy": "Cluster", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
    "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
              {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
              {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153}],
    "selector": {"k8s-app": "kube-dns"}, "sessionAffinity": "None", "type": "ClusterIP"},
  "status": {"loadBalancer": {}}})", "svc.json");
  EXPECT_EQ(s.type, Service::Type::ClusterIP);
  EXPECT_FALSE(s.headless);
  EXPECT_EQ(s.cluster_ips, std::vector<ferry::cni::IPAddr>{ip("10.96.0.10")});
  EXPECT_EQ(s.ip_families, std::vector<IPFamily>{IPFamily::IPv4});
  ASSERT_EQ(s.ports.size(), 3u);
  EXPECT_EQ(s.ports[0], (ServicePort{"dns", Protocol::UDP, 53, 53, std::nullopt}));
  EXPECT_EQ(s.ports[2].target_port, IntOrString(9153));
  EXPECT_EQ(s.selector, (Labels{{"k8s-app", "kube-dns"}}));
  EXPECT_EQ(s.session_affinity, Service::SessionAffinity::None);
  EXPECT_EQ(s.session_affinity_timeout_seconds, 10800);
  EXPECT_EQ(s.external_traffic_policy, Service::TrafficPolicy::Cluster);
  EXPECT_EQ(s.internal_traffic_policy, Service::TrafficPolicy::Cluster);
}

TEST(ModelDecodeService, NodePortDualStackAffinityAndNamedTargetPort) {
  Service s = decode_one<Service>(R"(
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  type: NodePort
  clusterIP: 10.96.12.34
  clusterIPs: [10.96.12.34, "fd00:10:96::1234"]
  ipFamilies: [IPv4, IPv6]
  externalIPs: [192.0.2.10]
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http, nodePort: 30080}
  - {name: raw, port: 8080, protocol: SCTP}
  sessionAffinity: ClientIP
  sessionAffinityConfig: {clientIP: {timeoutSeconds: 600}}
  externalTrafficPolicy: Local
  internalTrafficPolicy: Local
)");
  EXPECT_EQ(s.type, Service::Type::NodePort);
  EXPECT_EQ(s.cluster_ips, (std::vector<ferry::cni::IPAddr>{ip("10.96.12.34"), ip("fd00:10:96::1234")}));
  EXPECT_EQ(s.ip_families, (std::vector<IPFamily>{IPFamily::IPv4, IPFamily::IPv6}));
  EXPECT_EQ(s.external_ips, std::vector<ferry::cni::IPAddr>{ip("192.0.2.10")});
  ASSERT_EQ(s.ports.size(), 2u);
  EXPECT_EQ(s.ports[0].target_port, IntOrString(std::string("http")));
  EXPECT_EQ(s.ports[0].node_port, 30080);
  EXPECT_EQ(s.ports[1].protocol, Protocol::SCTP);
  EXPECT_EQ(s.ports[1].target_port, IntOrString(8080));  // absent targetPort = port
  EXPECT_EQ(s.ports[1].node_port, std::nullopt);
  EXPECT_EQ(s.session_affinity, Service::SessionAffinity::ClientIP);
  EXPECT_EQ(s.session_affinity_timeout_seconds, 600);
  EXPECT_EQ(s.external_traffic_policy, Service::TrafficPolicy::Local);
  EXPECT_EQ(s.internal_traffic_policy, Service::TrafficPolicy::Local);
}

TEST(ModelDecodeService, HeadlessExternalNameAndSelectorless) {
  Service headless = decode_one<Service>(
      "{apiVersion: v1, kind: Service, metadata: {name: db}, spec: {clusterIP: None, clusterIPs: [None], "
      "selector: {app: db}, ports: [{port: 5432}]}}");
  EXPECT_TRUE(headless.headless);
  EXPECT_TRUE(headless.cluster_ips.empty());

  Service ext = decode_one<Service>(
      "{apiVersion: v1, kind: Service, metadata: {name: ext}, spec: {type: ExternalName, externalName: db.example.com}}");
  EXPECT_EQ(ext.type, Service::Type::ExternalName);
  EXPECT_EQ(ext.external_name, "db.example.com");

  Service manual = decode_one<Service>("{apiVersion: v1, kind: Service, metadata: {name: m}, spec: {ports: [{port: 80}]}}");
  EXPECT_TRUE(manual.selector.empty());
  EXPECT_TRUE(manual.cluster_ips.empty());  // not allocated (no API server behind a manifest)
  EXPECT_EQ(manual.type, Service::Type::ClusterIP);
}

TEST(ModelDecodeEndpointSlice, FromKubectlYaml) {
  EndpointSlice s = decode_one<EndpointSlice>(R"(
addressType: IPv4
apiVersion: discovery.k8s.io/v1
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: kind-worker
  targetRef: {kind: Pod, name: web-7d4b9c8f5-x2x9z, namespace: shop, uid: 6f1c2d3e-aaaa-bbbb-cccc-ddddeeeeffff}
  zone: zone-a
- addresses: [10.244.2.7]
  conditions: {ready: false, serving: true, terminating: true}
  nodeName: kind-worker2
- addresses: [10.244.2.8]
kind: EndpointSlice
metadata:
  generateName: web-
  labels: {endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io, kubernetes.io/service-name: web}
  name: web-abcde
  namespace: shop
  ownerReferences: [{apiVersion: v1, kind: Service, name: web, uid: 1}]
ports:
- {name: http, port: 8080, protocol: TCP}
- {name: dns, port: 53, protocol: UDP}
)");
  EXPECT_EQ(s.service_name, "web");
  EXPECT_EQ(s.address_type, EndpointSlice::AddressType::IPv4);
  ASSERT_EQ(s.endpoints.size(), 3u);
  EXPECT_EQ(s.endpoints[0].addresses, std::vector<ferry::cni::IPAddr>{ip("10.244.1.5")});
  EXPECT_EQ(s.endpoints[0].ready, true);
  EXPECT_EQ(s.endpoints[0].serving, true);
  EXPECT_EQ(s.endpoints[0].terminating, false);
  EXPECT_EQ(s.endpoints[0].node_name, "kind-worker");
  EXPECT_EQ(s.endpoints[0].zone, "zone-a");
  ASSERT_TRUE(s.endpoints[0].target_ref);
  EXPECT_EQ(*s.endpoints[0].target_ref, (EndpointSlice::ObjectRef{"Pod", "shop", "web-7d4b9c8f5-x2x9z"}));
  EXPECT_EQ(s.endpoints[1].ready, false);
  EXPECT_EQ(s.endpoints[1].terminating, true);
  EXPECT_EQ(s.endpoints[2].ready, std::nullopt);  // no conditions: unknown, not false
  EXPECT_EQ(s.endpoints[2].serving, std::nullopt);
  EXPECT_FALSE(s.endpoints[2].target_ref);
  ASSERT_EQ(s.ports.size(), 2u);
  EXPECT_EQ(s.ports[0], (EndpointSlice::Port{"http", Protocol::TCP, 8080}));
  EXPECT_EQ(s.ports[1], (EndpointSlice::Port{"dns", Protocol::UDP, 53}));
}

TEST(ModelDecodeEndpointSlice, IPv6AndFqdnSlices) {
  EndpointSlice v6 = decode_one<EndpointSlice>(
      "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s}, addressType: IPv6, "
      "endpoints: [{addresses: ['fd00:10:244:1::5']}], ports: [{}]}");
  EXPECT_EQ(v6.address_type, EndpointSlice::AddressType::IPv6);
  EXPECT_EQ(v6.endpoints[0].addresses, std::vector<ferry::cni::IPAddr>{ip("fd00:10:244:1::5")});
  EXPECT_EQ(v6.service_name, "");
  ASSERT_EQ(v6.ports.size(), 1u);
  EXPECT_EQ(v6.ports[0].port, std::nullopt);  // unset: all ports
  EXPECT_EQ(v6.ports[0].protocol, Protocol::TCP);

  EndpointSlice fqdn = decode_one<EndpointSlice>(
      "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s}, addressType: FQDN, "
      "endpoints: [{addresses: [db.example.com]}]}");
  EXPECT_EQ(fqdn.endpoints[0].fqdns, std::vector<std::string>{"db.example.com"});
  EXPECT_TRUE(fqdn.endpoints[0].addresses.empty());
}

// The examples of https://kubernetes.io/docs/concepts/services-networking/network-policies/
TEST(ModelDecodeNetworkPolicy, TheDocumentationExample) {
  NetworkPolicy np = decode_one<NetworkPolicy>(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
  - Ingress
  - Egress
  ingress:
  - from:
    - ipBlock:
        cidr: 172.17.0.0/16
        except:
        - 172.17.1.0/24
    - namespaceSelector:
        matchLabels:
          project: myproject
    - podSelector:
        matchLabels:
          role: frontend
    ports:
    - protocol: TCP
      port: 6379
  egress:
  - to:
    - ipBlock:
        cidr: 10.0.0.0/24
    ports:
    - protocol: TCP
      port: 5978
)");
  EXPECT_EQ(np.meta.name, "test-network-policy");
  EXPECT_EQ(np.pod_selector.match_labels, (Labels{{"role", "db"}}));
  EXPECT_TRUE(np.policy_types_given);
  EXPECT_EQ(np.policy_types, (std::vector<NetworkPolicy::PolicyType>{NetworkPolicy::PolicyType::Ingress,
                                                                      NetworkPolicy::PolicyType::Egress}));
  ASSERT_EQ(np.ingress.size(), 1u);
  const auto& from = np.ingress[0].peers;
  ASSERT_EQ(from.size(), 3u);
  ASSERT_TRUE(from[0].ip_block);
  EXPECT_EQ(from[0].ip_block->cidr, net("172.17.0.0/16"));
  EXPECT_EQ(from[0].ip_block->except, std::vector<ferry::cni::IPNet>{net("172.17.1.0/24")});
  EXPECT_FALSE(from[0].pod_selector);
  EXPECT_FALSE(from[1].pod_selector);  // absent, not {}: all pods of the selected namespaces
  ASSERT_TRUE(from[1].namespace_selector);
  EXPECT_EQ(from[1].namespace_selector->match_labels, (Labels{{"project", "myproject"}}));
  ASSERT_TRUE(from[2].pod_selector);
  EXPECT_FALSE(from[2].namespace_selector);
  ASSERT_EQ(np.ingress[0].ports.size(), 1u);
  EXPECT_EQ(np.ingress[0].ports[0], (NetworkPolicyPort{Protocol::TCP, IntOrString(6379), std::nullopt}));
  ASSERT_EQ(np.egress.size(), 1u);
  EXPECT_EQ(np.egress[0].peers[0].ip_block->cidr, net("10.0.0.0/24"));
  EXPECT_EQ(np.egress[0].ports[0].port, IntOrString(5978));
  EXPECT_TRUE(np.isolates_ingress());
  EXPECT_TRUE(np.isolates_egress());
}

TEST(ModelDecodeNetworkPolicy, AndCombinedSelectorsEndPortNamedPortsAndExpressions) {
  NetworkPolicy np = decode_one<NetworkPolicy>(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: multi-port-egress, namespace: default}
spec:
  podSelector:
    matchExpressions:
    - {key: app.kubernetes.io/name, operator: In, values: [web, api]}
    - {key: canary, operator: DoesNotExist}
  policyTypes: [Egress]
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {user: alice}}
      podSelector: {matchLabels: {role: client}}
    - namespaceSelector: {}
    - podSelector: {}
    ports:
    - {port: http}
    - {protocol: UDP}
  egress:
  - to:
    - ipBlock: {cidr: "fd00::/48", except: ["fd00:0:0:1::/64", "fd00:0:0:2::/64"]}
    ports:
    - protocol: TCP
      port: 32000
      endPort: 32768
  - {}
)");
  using Op = LabelSelectorRequirement::Operator;
  ASSERT_EQ(np.pod_selector.match_expressions.size(), 2u);
  EXPECT_EQ(np.pod_selector.match_expressions[0],
            (LabelSelectorRequirement{"app.kubernetes.io/name", Op::In, {"web", "api"}}));
  EXPECT_EQ(np.pod_selector.match_expressions[1], (LabelSelectorRequirement{"canary", Op::DoesNotExist, {}}));
  const auto& from = np.ingress[0].peers;
  ASSERT_EQ(from.size(), 3u);
  ASSERT_TRUE(from[0].pod_selector && from[0].namespace_selector);  // one peer: both must match
  ASSERT_TRUE(from[1].namespace_selector);
  EXPECT_TRUE(from[1].namespace_selector->empty());  // {} present: every namespace
  EXPECT_FALSE(from[1].pod_selector);
  ASSERT_TRUE(from[2].pod_selector);
  EXPECT_TRUE(from[2].pod_selector->empty());
  EXPECT_FALSE(from[2].namespace_selector);
  EXPECT_EQ(np.ingress[0].ports[0].port, IntOrString(std::string("http")));
  EXPECT_EQ(np.ingress[0].ports[0].protocol, Protocol::TCP);
  EXPECT_EQ(np.ingress[0].ports[1].port, std::nullopt);  // all UDP ports
  EXPECT_EQ(np.ingress[0].ports[1].protocol, Protocol::UDP);
  EXPECT_EQ(np.egress[0].peers[0].ip_block->except.size(), 2u);
  EXPECT_EQ(np.egress[0].ports[0], (NetworkPolicyPort{Protocol::TCP, IntOrString(32000), 32768}));
  EXPECT_TRUE(np.egress[1].peers.empty());  // {}: any destination, any port
  EXPECT_TRUE(np.egress[1].ports.empty());
  EXPECT_FALSE(np.isolates_ingress());  // policyTypes [Egress] overrides the ingress rules
  EXPECT_TRUE(np.isolates_egress());
}

TEST(ModelDecodeNetworkPolicy, DefaultDenyAndPolicyTypeDefaulting) {
  NetworkPolicy deny = decode_one<NetworkPolicy>(
      "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: default-deny-ingress}, "
      "spec: {podSelector: {}}}");
  EXPECT_TRUE(deny.pod_selector.empty());
  EXPECT_FALSE(deny.policy_types_given);
  EXPECT_TRUE(deny.isolates_ingress());
  EXPECT_FALSE(deny.isolates_egress());

  NetworkPolicy with_egress = decode_one<NetworkPolicy>(
      "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: e}, "
      "spec: {podSelector: {}, policyTypes: [], egress: [{to: [{podSelector: {}}]}]}}");
  EXPECT_FALSE(with_egress.policy_types_given);  // [] is defaulted like a missing list
  EXPECT_TRUE(with_egress.isolates_ingress());
  EXPECT_TRUE(with_egress.isolates_egress());

  NetworkPolicy allow_all = decode_one<NetworkPolicy>(
      "{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {name: allow-all-ingress}, "
      "spec: {podSelector: {}, ingress: [{}], policyTypes: [Ingress]}}");
  ASSERT_EQ(allow_all.ingress.size(), 1u);
  EXPECT_TRUE(allow_all.ingress[0].peers.empty());
}

TEST(ModelLabelSelector, MatchesWithKubernetesSemantics) {
  using Op = LabelSelectorRequirement::Operator;
  LabelSelector sel;
  EXPECT_TRUE(sel.matches({}));
  EXPECT_TRUE(sel.matches({{"a", "b"}}));
  sel.match_labels = {{"app", "web"}};
  EXPECT_TRUE(sel.matches({{"app", "web"}, {"x", "y"}}));
  EXPECT_FALSE(sel.matches({{"app", "api"}}));
  EXPECT_FALSE(sel.matches({}));
  sel.match_expressions = {{"tier", Op::In, {"front", "back"}}, {"canary", Op::DoesNotExist, {}}};
  EXPECT_TRUE(sel.matches({{"app", "web"}, {"tier", "back"}}));
  EXPECT_FALSE(sel.matches({{"app", "web"}, {"tier", "db"}}));
  EXPECT_FALSE(sel.matches({{"app", "web"}, {"tier", "back"}, {"canary", ""}}));
  LabelSelector not_in{{}, {{"env", Op::NotIn, {"prod"}}}};
  EXPECT_TRUE(not_in.matches({}));  // NotIn holds when the key is absent
  EXPECT_TRUE(not_in.matches({{"env", "dev"}}));
  EXPECT_FALSE(not_in.matches({{"env", "prod"}}));
  LabelSelector exists{{}, {{"env", Op::Exists, {}}}};
  EXPECT_TRUE(exists.matches({{"env", ""}}));
  EXPECT_FALSE(exists.matches({}));
}

TEST(ModelDecodeObject, TypedListItemsNeedTheKindHint) {
  auto item = nlohmann::json::parse(R"({"metadata":{"name":"a","namespace":"x"},"spec":{"nodeName":"n1"}})");
  ObjectDecode without = decode_object(item);
  ASSERT_TRUE(without.error);
  EXPECT_EQ(without.error->message, "kind: required");
  ObjectDecode with = decode_object(item, Kind::Pod);
  ASSERT_TRUE(with.object);
  EXPECT_EQ(std::get<Pod>(*with.object).node_name, "n1");
  EXPECT_EQ(key_of(*with.object), (ObjectKey{Kind::Pod, "x", "a"}));

  ObjectDecode wrong = decode_object(nlohmann::json::parse(
      R"({"apiVersion":"v1","kind":"Service","metadata":{"name":"a"}})"), Kind::Pod);
  ASSERT_TRUE(wrong.error);
  EXPECT_EQ(wrong.error->message, "Service default/a: kind: expected Pod, got \"Service\"");
}

TEST(ModelDecodeObject, UnknownKindIsANoteNotAnError) {
  ObjectDecode d = decode_object(nlohmann::json::parse(
      R"({"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"web","namespace":"shop"}})"));
  EXPECT_FALSE(d.object);
  EXPECT_FALSE(d.error);
  EXPECT_EQ(d.note, "skipped Deployment shop/web (apps/v1): kind not used by ferry");
}

TEST(ModelKinds, NamesVersionsAndKeys) {
  for (Kind k : kAllKinds) EXPECT_EQ(kind_from_name(kind_name(k)), k);
  EXPECT_EQ(kind_from_name("Deployment"), std::nullopt);
  EXPECT_EQ(api_version_of(Kind::NetworkPolicy), "networking.k8s.io/v1");
  EXPECT_EQ(api_version_of(Kind::EndpointSlice), "discovery.k8s.io/v1");
  EXPECT_EQ(api_version_of(Kind::Pod), "v1");
  EXPECT_FALSE(namespaced(Kind::Node));
  EXPECT_TRUE(namespaced(Kind::Service));
  EXPECT_EQ((ObjectKey{Kind::Pod, "x", "a"}).str(), "Pod x/a");
  EXPECT_EQ((ObjectKey{Kind::Node, "", "n1"}).str(), "Node n1");
  EXPECT_EQ(protocol_name(Protocol::SCTP), "SCTP");
  Object o = Namespace{ObjectMeta{"shop", "", "", "", {}, {}, false}};
  EXPECT_EQ(kind_of(o), Kind::Namespace);
  EXPECT_EQ(meta_of(o).name, "shop");
}
