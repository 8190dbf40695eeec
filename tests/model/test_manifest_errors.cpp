// Every way an object can be wrong, with the exact message a user sees: file, document,
// object, field path, what was wrong.
#include "support.h"

using namespace ferry::model;
using namespace ferry::model::testing;

namespace {

// A Pod document with `field` spliced into its spec.
std::string pod_with_spec(const std::string& spec) {
  return "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x}\nspec: " + spec + "\n";
}

std::string policy_with_spec(const std::string& spec) {
  return "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: np, namespace: x}\nspec: " + spec +
         "\n";
}

std::string service_with_spec(const std::string& spec) {
  return "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\nspec: " + spec + "\n";
}

}  // namespace

TEST(ModelManifestErrors, TheBriefsExampleSecondDocument) {
  ManifestDecode d = decode_manifest("pods.yaml", R"(
apiVersion: v1
kind: Pod
metadata: {name: ok, namespace: x}
---
apiVersion: v1
kind: Pod
metadata: {name: a, namespace: x}
spec:
  containers:
  - name: web
    ports:
    - containerPort: eighty
)");
  ASSERT_EQ(d.objects.size(), 1u);  // the good object still decodes
  EXPECT_EQ(key_of(d.objects[0]).name, "ok");
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_EQ(d.errors[0].message,
            "pods.yaml: document 2 (Pod x/a): spec.containers[0].ports[0].containerPort: expected an integer "
            "1-65535, got \"eighty\"");
  ASSERT_TRUE(d.errors[0].key);
  EXPECT_EQ(*d.errors[0].key, (ObjectKey{Kind::Pod, "x", "a"}));
  EXPECT_FALSE(d.syntax_error);
}

TEST(ModelManifestErrors, PodFields) {
  const std::pair<std::string, std::string> cases[] = {
      {"{containers: [{ports: [{containerPort: 0}]}]}",
       "spec.containers[0].ports[0].containerPort: expected an integer 1-65535, got 0"},
      {"{containers: [{ports: [{containerPort: 65536}]}]}",
       "spec.containers[0].ports[0].containerPort: expected an integer 1-65535, got 65536"},
      {"{containers: [{ports: [{containerPort: \"80\"}]}]}",
       "spec.containers[0].ports[0].containerPort: expected an integer 1-65535, got \"80\""},
      {"{containers: [{ports: [{containerPort: 80.5}]}]}",
       "spec.containers[0].ports[0].containerPort: expected an integer 1-65535, got 80.5"},
      {"{containers: [{ports: [{name: http}]}]}", "spec.containers[0].ports[0].containerPort: required"},
      {"{containers: [{ports: [{containerPort: 80, protocol: tcp}]}]}",
       "spec.containers[0].ports[0].protocol: expected one of TCP, UDP, SCTP, got \"tcp\""},
      {"{containers: [{ports: [{containerPort: 80, name: HTTP}]}]}",
       "spec.containers[0].ports[0].name: invalid port name \"HTTP\": must contain only lower case alphanumeric "
       "characters or '-'"},
      {"{containers: [{ports: [{containerPort: 80, name: \"8080\"}]}]}",
       "spec.containers[0].ports[0].name: invalid port name \"8080\": must contain at least one letter"},
      {"{containers: [{ports: [{containerPort: 80, name: a-very-long-port-name}]}]}",
       "spec.containers[0].ports[0].name: invalid port name \"a-very-long-port-name\": must be no more than 15 "
       "characters"},
      {"{containers: [{ports: {containerPort: 80}}]}",
       "spec.containers[0].ports: expected a list, got an object"},
      {"{containers: [web]}", "spec.containers[0]: expected an object, got \"web\""},
      {"{hostNetwork: yes}", "spec.hostNetwork: expected true or false, got \"yes\""},  // YAML 1.2: yes is a string
      {"{nodeName: Node_1}",
       "spec.nodeName: invalid node name \"Node_1\": must consist of lower case alphanumeric characters, '-' or '.', "
       "and must start and end with an alphanumeric character"},
      {"[]", "spec: expected an object, got an array"},
  };
  for (const auto& [spec, want] : cases)
    EXPECT_EQ(only_error(pod_with_spec(spec), "pods.yaml"), "pods.yaml: document 1 (Pod x/a): " + want) << spec;

  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: a}, status: {podIP: 10.0.0.300}}"),
            "test.yaml: document 1 (Pod default/a): status.podIP: expected an IP address, got \"10.0.0.300\"");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: a}, status: {podIPs: [{ip: 10.0.0.1}, {}]}}"),
            "test.yaml: document 1 (Pod default/a): status.podIPs[1].ip: required");
}

TEST(ModelManifestErrors, MetadataAndEnvelope) {
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod}"), "test.yaml: document 1 (Pod): metadata.name: required");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: \"\"}}"),
            "test.yaml: document 1 (Pod): metadata.name: required");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: 5}}"),
            "test.yaml: document 1 (Pod): metadata.name: expected a string, got 5");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: [a]}"),
            "test.yaml: document 1 (Pod): metadata: expected an object, got an array");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: Web}}"),
            "test.yaml: document 1 (Pod default/Web): metadata.name: invalid name \"Web\": must consist of lower case "
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: a, namespace: my.ns}}"),
            "test.yaml: document 1 (Pod my.ns/a): metadata.namespace: invalid namespace \"my.ns\": must consist of lower "
            "case alphanumeric characters or '-'");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: a, labels: {app: 1}}}"),
            "test.yaml: document 1 (Pod default/a): metadata.labels[\"app\"]: expected a string, got 1");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: a, labels: {app: \"-web\"}}}"),
            "test.yaml: document 1 (Pod default/a): metadata.labels[\"app\"]: invalid label value \"-web\": must start "
            "and end with an alphanumeric character");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: a, labels: {\"a b\": x}}}"),
            "test.yaml: document 1 (Pod default/a): metadata.labels[\"a b\"]: invalid label key \"a b\": must consist "
            "of alphanumeric characters, '-', '_' or '.'");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: a, annotations: {x: [1]}}}"),
            "test.yaml: document 1 (Pod default/a): metadata.annotations[\"x\"]: expected a string, got an array");
  EXPECT_EQ(only_error("{apiVersion: apps/v1, kind: Pod, metadata: {name: a}}"),
            "test.yaml: document 1 (Pod default/a): apiVersion: expected \"v1\" for Pod, got \"apps/v1\"");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: NetworkPolicy, metadata: {name: a}}"),
            "test.yaml: document 1 (NetworkPolicy default/a): apiVersion: expected \"networking.k8s.io/v1\" for "
            "NetworkPolicy, got \"v1\"");
  EXPECT_EQ(only_error("{kind: Pod, metadata: {name: a}}"), "test.yaml: document 1 (Pod default/a): apiVersion: required");
  EXPECT_EQ(only_error("{apiVersion: v1, metadata: {name: a}}"), "test.yaml: document 1: kind: required");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: [Pod]}"), "test.yaml: document 1: kind: expected a string, got an array");
  EXPECT_EQ(only_error("just a string\n"), "test.yaml: document 1: expected an object, got \"just a string\"");
  EXPECT_EQ(only_error("[1, 2]\n", "list.json"), "list.json: document 1: expected an object, got an array");
}

TEST(ModelManifestErrors, NodeNamespaceEndpointSliceFields) {
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Node, metadata: {name: n}, spec: {podCIDR: 10.244.1.0}}"),
            "test.yaml: document 1 (Node n): spec.podCIDR: expected a CIDR like 10.0.0.0/16, got \"10.244.1.0\"");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Node, metadata: {name: n}, spec: {podCIDRs: [10.244.1.0/24, 10.244.2.0/33]}}"),
            "test.yaml: document 1 (Node n): spec.podCIDRs[1]: expected a CIDR like 10.0.0.0/16, got \"10.244.2.0/33\"");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Node, metadata: {name: n}, status: {addresses: [{type: InternalIP, address: n1}]}}"),
            "test.yaml: document 1 (Node n): status.addresses[0].address: expected an IP address, got \"n1\"");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Namespace, metadata: {name: a.b}}"),
            "test.yaml: document 1 (Namespace a.b): metadata.name: invalid name \"a.b\": must consist of lower case "
            "alphanumeric characters or '-'");

  std::string slice = "{apiVersion: discovery.k8s.io/v1, kind: EndpointSlice, metadata: {name: s, namespace: x}, ";
  EXPECT_EQ(only_error(slice + "endpoints: []}"), "test.yaml: document 1 (EndpointSlice x/s): addressType: required");
  EXPECT_EQ(only_error(slice + "addressType: ipv4}"),
            "test.yaml: document 1 (EndpointSlice x/s): addressType: expected one of IPv4, IPv6, FQDN, got \"ipv4\"");
  EXPECT_EQ(only_error(slice + "addressType: IPv4, endpoints: [{addresses: []}]}"),
            "test.yaml: document 1 (EndpointSlice x/s): endpoints[0].addresses: must contain at least one address");
  EXPECT_EQ(only_error(slice + "addressType: IPv4, endpoints: [{addresses: ['fd00::1']}]}"),
            "test.yaml: document 1 (EndpointSlice x/s): endpoints[0].addresses[0]: expected an IPv4 address "
            "(addressType IPv4), got \"fd00::1\"");
  EXPECT_EQ(only_error(slice + "addressType: IPv4, endpoints: [{addresses: [10.0.0.1], conditions: {ready: \"true\"}}]}"),
            "test.yaml: document 1 (EndpointSlice x/s): endpoints[0].conditions.ready: expected true or false, got "
            "\"true\"");
  EXPECT_EQ(only_error(slice + "addressType: IPv4, ports: [{port: 0}]}"),
            "test.yaml: document 1 (EndpointSlice x/s): ports[0].port: expected an integer 1-65535, got 0");
}

TEST(ModelManifestErrors, ServiceFields) {
  const std::pair<std::string, std::string> cases[] = {
      {"{type: Internal}", "spec.type: expected one of ClusterIP, NodePort, LoadBalancer, ExternalName, got \"Internal\""},
      {"{type: ExternalName}", "spec.externalName: required for type ExternalName"},
      {"{clusterIP: 10.96.0.300}", "spec.clusterIP: expected an IP address, got \"10.96.0.300\""},
      {"{clusterIP: 10.96.0.1, clusterIPs: [10.96.0.2]}",
       "spec.clusterIPs[0]: must equal spec.clusterIP (\"10.96.0.1\"), got \"10.96.0.2\""},
      {"{clusterIP: None, clusterIPs: [None, 10.96.0.2]}",
       "spec.clusterIPs[1]: a headless service (clusterIP None) has no other cluster IPs, got \"10.96.0.2\""},
      {"{ipFamilies: [IPv5]}", "spec.ipFamilies[0]: expected one of IPv4, IPv6, got \"IPv5\""},
      {"{ports: [{port: 70000}]}", "spec.ports[0].port: expected an integer 1-65535, got 70000"},
      {"{ports: [{name: a}]}", "spec.ports[0].port: required"},
      {"{ports: [{name: a, port: 80}, {port: 81}]}", "spec.ports[1].name: required when a service has several ports"},
      {"{ports: [{port: 80, targetPort: \"80\"}]}",
       "spec.ports[0].targetPort: invalid port name \"80\": must contain at least one letter"},
      {"{ports: [{port: 80, targetPort: 80.0}]}",
       "spec.ports[0].targetPort: expected a port number 1-65535 or a port name, got 80.0"},
      {"{ports: [{port: 80, nodePort: -1}]}", "spec.ports[0].nodePort: expected an integer 0-65535, got -1"},
      {"{selector: {app: [web]}}", "spec.selector[\"app\"]: expected a string, got an array"},
      {"{sessionAffinity: Sticky}", "spec.sessionAffinity: expected one of None, ClientIP, got \"Sticky\""},
      {"{sessionAffinity: ClientIP, sessionAffinityConfig: {clientIP: {timeoutSeconds: 0}}}",
       "spec.sessionAffinityConfig.clientIP.timeoutSeconds: expected an integer 1-86400, got 0"},
      {"{externalTrafficPolicy: Global}", "spec.externalTrafficPolicy: expected one of Cluster, Local, got \"Global\""},
      {"{internalTrafficPolicy: local}", "spec.internalTrafficPolicy: expected one of Cluster, Local, got \"local\""},
  };
  for (const auto& [spec, want] : cases)
    EXPECT_EQ(only_error(service_with_spec(spec), "svc.yaml"), "svc.yaml: document 1 (Service x/s): " + want) << spec;
}

TEST(ModelManifestErrors, NetworkPolicyFields) {
  const std::pair<std::string, std::string> cases[] = {
      {"{policyTypes: [Ingress, Both]}", "spec.policyTypes[1]: expected one of Ingress, Egress, got \"Both\""},
      {"{podSelector: {matchLabels: {role: [db]}}}", "spec.podSelector.matchLabels[\"role\"]: expected a string, got an array"},
      {"{podSelector: {matchExpressions: [{key: env, operator: in, values: [a]}]}}",
       "spec.podSelector.matchExpressions[0].operator: expected one of In, NotIn, Exists, DoesNotExist, got \"in\""},
      {"{podSelector: {matchExpressions: [{key: env, values: [a]}]}}",
       "spec.podSelector.matchExpressions[0].operator: required"},
      {"{podSelector: {matchExpressions: [{operator: Exists}]}}", "spec.podSelector.matchExpressions[0].key: required"},
      {"{podSelector: {matchExpressions: [{key: env, operator: In}]}}",
       "spec.podSelector.matchExpressions[0].values: must be non-empty for operator In"},
      {"{podSelector: {matchExpressions: [{key: env, operator: Exists, values: [a]}]}}",
       "spec.podSelector.matchExpressions[0].values: must be empty for operator Exists"},
      {"{podSelector: {matchExpressions: [{key: env, operator: NotIn, values: [1]}]}}",
       "spec.podSelector.matchExpressions[0].values[0]: expected a string, got 1"},
      {"{ingress: [{from: [{}]}]}", "spec.ingress[0].from[0]: must specify podSelector, namespaceSelector or ipBlock"},
      {"{ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]}",
       "spec.ingress[0].from[0]: ipBlock cannot be combined with podSelector or namespaceSelector"},
      {"{ingress: [{from: [{ipBlock: {}}]}]}", "spec.ingress[0].from[0].ipBlock.cidr: required"},
      {"{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]}",
       "spec.egress[0].to[0].ipBlock.cidr: expected a CIDR like 10.0.0.0/16, got \"10.0.0.0/33\""},
      {"{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.1.0.0/24]}}]}]}",
       "spec.egress[0].to[0].ipBlock.except[0]: must be a strict subset of cidr 10.0.0.0/16, got \"10.1.0.0/24\""},
      {"{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: [10.0.0.0/16]}}]}]}",
       "spec.egress[0].to[0].ipBlock.except[0]: must be a strict subset of cidr 10.0.0.0/16, got \"10.0.0.0/16\""},
      {"{egress: [{to: [{ipBlock: {cidr: 10.0.0.0/16, except: ['fd00::/64']}}]}]}",
       "spec.egress[0].to[0].ipBlock.except[0]: must be a strict subset of cidr 10.0.0.0/16, got \"fd00::/64\""},
      {"{ingress: [{ports: [{port: 0}]}]}", "spec.ingress[0].ports[0].port: expected an integer 1-65535, got 0"},
      {"{ingress: [{ports: [{port: \"80\"}]}]}",
       "spec.ingress[0].ports[0].port: invalid port name \"80\": must contain at least one letter"},
      {"{ingress: [{ports: [{port: true}]}]}",
       "spec.ingress[0].ports[0].port: expected a port number 1-65535 or a port name, got true"},
      {"{ingress: [{ports: [{protocol: ICMP}]}]}",
       "spec.ingress[0].ports[0].protocol: expected one of TCP, UDP, SCTP, got \"ICMP\""},
      {"{egress: [{ports: [{port: http, endPort: 90}]}]}", "spec.egress[0].ports[0].endPort: requires a numeric port"},
      {"{egress: [{ports: [{endPort: 90}]}]}", "spec.egress[0].ports[0].endPort: requires a numeric port"},
      {"{egress: [{ports: [{port: 100, endPort: 90}]}]}",
       "spec.egress[0].ports[0].endPort: must be greater than or equal to port (100), got 90"},
      {"{ingress: {from: []}}", "spec.ingress: expected a list, got an object"},
  };
  for (const auto& [spec, want] : cases)
    EXPECT_EQ(only_error(policy_with_spec(spec), "np.yaml"), "np.yaml: document 1 (NetworkPolicy x/np): " + want) << spec;
}

TEST(ModelManifestErrors, SyntaxErrorsMakeTheWholeFileAnError) {
  ManifestDecode yaml = decode_manifest("bad.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: a\n---\nkind: x\n");
  EXPECT_TRUE(yaml.syntax_error);
  EXPECT_TRUE(yaml.objects.empty());
  ASSERT_EQ(yaml.errors.size(), 1u);
  EXPECT_EQ(yaml.errors[0].message.rfind("bad.yaml: line ", 0), 0u) << yaml.errors[0].message;
  EXPECT_NE(yaml.errors[0].message.find("YAML syntax error"), std::string::npos) << yaml.errors[0].message;

  ManifestDecode json = decode_manifest("bad.json", "{\"apiVersion\": \"v1\", \"kind\": \"Pod\",}");
  EXPECT_TRUE(json.syntax_error);
  ASSERT_EQ(json.errors.size(), 1u);
  EXPECT_EQ(json.errors[0].message.rfind("bad.json: JSON parse error at line 1, column 36", 0), 0u)
      << json.errors[0].message;

  // yaml-cpp 0.7 would loop forever on text after a flow mapping; it is an error here.
  ManifestDecode stray = decode_manifest("stray.yaml", "{\"a\":\"12\"},\"items\":[{\"b\":1}]}\n");
  EXPECT_TRUE(stray.syntax_error);
  ASSERT_EQ(stray.errors.size(), 1u);
  EXPECT_EQ(stray.errors[0].message, "stray.yaml: line 1, column 11: YAML syntax error: unexpected text after the end of a document");

  ManifestDecode tabs = decode_manifest("tabs.yaml", "a:\n\t- b\n");
  EXPECT_TRUE(tabs.syntax_error);
}

TEST(ModelManifestErrors, DocumentLevelYamlProblemsSkipOnlyThatDocument) {
  const char* good = "apiVersion: v1\nkind: Namespace\nmetadata: {name: ok}\n";
  auto check = [&](const std::string& bad_doc, const std::string& want) {
    ManifestDecode d = decode_manifest("f.yaml", std::string(good) + "---\n" + bad_doc);
    EXPECT_FALSE(d.syntax_error) << bad_doc;
    EXPECT_EQ(d.objects.size(), 1u) << bad_doc;
    ASSERT_EQ(d.errors.size(), 1u) << bad_doc;
    EXPECT_EQ(d.errors[0].message, "f.yaml: document 2: " + want);
  };
  check("apiVersion: v1\nkind: Pod\nmetadata: {name: a, name: b}\n",
        "line 7, column 21: duplicate key \"name\" in metadata");
  check("apiVersion: v1\nkind: Pod\n? [a]\n: b\n", "line 7, column 3: a mapping key must be a plain value, not a list or mapping");
  check("a: !!int abc\n", "line 5, column 4: value \"abc\" does not match its tag !!int");
  check("a: \xff\n", "line 5, column 4: text is not valid UTF-8");  // a raw byte, not UTF-8
  std::string deep(150, '[');
  check(deep + std::string(150, ']') + "\n", "line 5, column 101: nested deeper than 100 levels");
}

TEST(ModelManifestErrors, AliasBombsAreCutOff) {
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  char prev = 'a';
  for (char c = 'b'; c <= 'j'; ++c, ++prev)
    bomb += std::string(1, c) + ": &" + c + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev +
            ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n";
  ManifestDecode d = decode_manifest("bomb.yaml", bomb);  // 10^10 nodes if expanded
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_NE(d.errors[0].message.find("too large after expanding aliases"), std::string::npos) << d.errors[0].message;

  ManifestDecode self = decode_manifest("self.yaml", "a: &a [*a]\n");
  EXPECT_EQ(self.errors.size(), 1u);
}
