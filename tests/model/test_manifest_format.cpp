// Manifest files as users write them: multi-document YAML, Lists, JSON from kubectl, YAML 1.2
// scalars, empty documents and kinds ferry does not use.
#include "support.h"

using namespace ferry::model;
using namespace ferry::model::testing;

TEST(ModelManifest, MultiDocumentYamlWithEmptyDocumentsAndUnknownKinds) {
  ManifestDecode d = decode_manifest("app.yaml", R"(# the shop app
---
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: shop}
spec: {replicas: 2}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec: {selector: {app: web}, ports: [{port: 80}]}
...
)");
  EXPECT_TRUE(d.ok());
  ASSERT_EQ(d.objects.size(), 2u);
  EXPECT_EQ(key_of(d.objects[0]), (ObjectKey{Kind::Namespace, "", "shop"}));
  EXPECT_EQ(key_of(d.objects[1]), (ObjectKey{Kind::Service, "shop", "web"}));
  ASSERT_EQ(d.notes.size(), 1u);
  EXPECT_EQ(d.notes[0], "app.yaml: document 3: skipped Deployment shop/web (apps/v1): kind not used by ferry");
}

TEST(ModelManifest, EmptyAndCommentOnlyFilesHaveNoObjects) {
  for (const char* text : {"", "\n", "# nothing yet\n", "---\n", "---\n...\n"}) {
    ManifestDecode d = decode_manifest("empty.yaml", text);
    EXPECT_TRUE(d.ok()) << text;
    EXPECT_TRUE(d.objects.empty()) << text;
  }
  ManifestDecode json = decode_manifest("empty.json", "  \n");
  EXPECT_TRUE(json.ok());
  EXPECT_TRUE(json.objects.empty());
}

TEST(ModelManifest, KindListWithMixedItemsAndABadOne) {
  ManifestDecode d = decode_manifest("all.yaml", R"(
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Node
  metadata: {name: node-a}
- apiVersion: v1
  kind: Pod
  metadata: {name: p, namespace: x}
  spec: {hostNetwork: 1}
- apiVersion: networking.k8s.io/v1
  kind: NetworkPolicy
  metadata: {name: deny, namespace: x}
  spec: {podSelector: {}}
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: cm}
)");
  ASSERT_EQ(d.objects.size(), 2u);
  EXPECT_EQ(kind_of(d.objects[0]), Kind::Node);
  EXPECT_EQ(kind_of(d.objects[1]), Kind::NetworkPolicy);
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_EQ(d.errors[0].message, "all.yaml: document 1, items[1] (Pod x/p): spec.hostNetwork: expected true or false, got 1");
  ASSERT_EQ(d.notes.size(), 1u);
  EXPECT_EQ(d.notes[0], "all.yaml: document 1, items[3]: skipped ConfigMap cm (v1): kind not used by ferry");
}

TEST(ModelManifest, TypedListFromTheApiWithoutItemKinds) {
  // `kubectl get --raw /api/v1/namespaces/x/pods`: items carry neither apiVersion nor kind.
  ManifestDecode d = decode_manifest("pods.json", R"({
    "kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "4242"},
    "items": [
      {"metadata": {"name": "a", "namespace": "x", "resourceVersion": "4000"}, "spec": {"nodeName": "n1"},
       "status": {"phase": "Running", "podIP": "10.244.1.2"}},
      {"metadata": {"name": "b", "namespace": "x"}, "spec": {"nodeName": "n2"}, "status": {"podIP": "bogus"}}
    ]})");
  ASSERT_EQ(d.objects.size(), 1u);
  const Pod& a = std::get<Pod>(d.objects[0]);
  EXPECT_EQ(a.meta.name, "a");
  EXPECT_EQ(a.pod_ips, std::vector<ferry::cni::IPAddr>{ip("10.244.1.2")});
  ASSERT_EQ(d.errors.size(), 1u);
  EXPECT_EQ(d.errors[0].message,
            "pods.json: document 1, items[1] (Pod x/b): status.podIP: expected an IP address, got \"bogus\"");

  ManifestDecode other = decode_manifest("deps.json",
      R"({"kind": "DeploymentList", "apiVersion": "apps/v1", "items": [{"metadata": {"name": "web"}}]})");
  EXPECT_TRUE(other.ok());
  EXPECT_TRUE(other.objects.empty());
  ASSERT_EQ(other.notes.size(), 1u);
  EXPECT_EQ(other.notes[0], "deps.json: document 1, items[0]: skipped Deployment web: kind not used by ferry");

  ManifestDecode bad = decode_manifest("x.yaml", "{apiVersion: v1, kind: List, items: {a: 1}}");
  ASSERT_EQ(bad.errors.size(), 1u);
  EXPECT_EQ(bad.errors[0].message, "x.yaml: document 1 (List): items: expected a list, got an object");
  ManifestDecode nested = decode_manifest("x.yaml", "{apiVersion: v1, kind: List, items: [{kind: List, items: []}]}");
  ASSERT_EQ(nested.errors.size(), 1u);
  EXPECT_EQ(nested.errors[0].message, "x.yaml: document 1, items[0]: a List inside a List is not supported");
}

TEST(ModelManifest, JsonIsChosenByTheFileName) {
  // Valid JSON; as YAML the tab indentation would not even parse.
  std::string text = "{\n\t\"apiVersion\": \"v1\",\n\t\"kind\": \"Namespace\",\n\t\"metadata\": {\"name\": \"tabs\"}\n}\n";
  ManifestDecode as_json = decode_manifest("ns.json", text);
  ASSERT_EQ(as_json.objects.size(), 1u);
  EXPECT_EQ(key_of(as_json.objects[0]).name, "tabs");
  // The same text in a .yaml file is YAML (a JSON document is usually YAML, too).
  ManifestDecode as_yaml = decode_manifest("ns.yaml", "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"y\"}}");
  ASSERT_EQ(as_yaml.objects.size(), 1u);
}

TEST(ModelManifest, Yaml12CoreSchemaScalars) {
  // Label values must be strings: which scalars are strings decides whether the object is valid.
  auto label = [](const std::string& value) -> std::string {
    ManifestDecode d = decode_manifest("l.yaml", "{apiVersion: v1, kind: Namespace, metadata: {name: n, labels: {k: " + value + "}}}");
    if (!d.objects.empty()) return "string " + std::get<Namespace>(d.objects[0]).meta.labels["k"];
    return d.errors.empty() ? "?" : d.errors[0].message.substr(d.errors[0].message.find("got ") + 4);
  };
  EXPECT_EQ(label("yes"), "string yes");  // YAML 1.1 would make these booleans
  EXPECT_EQ(label("on"), "string on");
  EXPECT_EQ(label("no"), "string no");
  EXPECT_EQ(label("y"), "string y");
  EXPECT_EQ(label("'true'"), "string true");
  EXPECT_EQ(label("\"80\""), "string 80");
  EXPECT_EQ(label("!!str 80"), "string 80");
  EXPECT_EQ(label("1.2.3"), "string 1.2.3");
  EXPECT_EQ(label("0x1G"), "string 0x1G");
  EXPECT_EQ(label("true"), "true");
  EXPECT_EQ(label("False"), "false");
  EXPECT_EQ(label("80"), "80");
  EXPECT_EQ(label("-7"), "-7");
  EXPECT_EQ(label("0x1F"), "31");
  EXPECT_EQ(label("0o17"), "15");
  EXPECT_EQ(label("012"), "12");  // 1.2: decimal, not octal
  EXPECT_EQ(label("1.5"), "1.5");
  EXPECT_EQ(label("1e3"), "1000.0");
  EXPECT_EQ(label("~"), "string ");  // null: an empty value, as the API server decodes it
}

TEST(ModelManifest, NullValuesMeanUnset) {
  Pod p = decode_one<Pod>("apiVersion: v1\nkind: Pod\nmetadata: {name: a, labels: ~}\nspec:\n  nodeName:\n  containers: null\n");
  EXPECT_TRUE(p.meta.labels.empty());
  EXPECT_EQ(p.node_name, "");
}

TEST(ModelManifest, IntegerKeysAndAnchorsWithinBudget) {
  // Anchors/aliases within a document are expanded (small ones are normal in hand-written YAML).
  ManifestDecode d = decode_manifest("a.yaml", R"(
apiVersion: v1
kind: Service
metadata: {name: s, labels: &l {app: web}}
spec:
  selector: *l
  ports: [{port: 80}]
)");
  ASSERT_EQ(d.objects.size(), 1u) << (d.errors.empty() ? "" : d.errors[0].message);
  EXPECT_EQ(std::get<Service>(d.objects[0]).selector, (Labels{{"app", "web"}}));
}

TEST(ModelManifest, LargeNumbersAreRejectedNotWrapped) {
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: [{ports: [{containerPort: 4294967376}]}]}}"),
            "test.yaml: document 1 (Pod default/a): spec.containers[0].ports[0].containerPort: expected an integer "
            "1-65535, got 4294967376");
  EXPECT_EQ(only_error("{apiVersion: v1, kind: Pod, metadata: {name: a}, spec: {containers: [{ports: [{containerPort: "
                       "99999999999999999999999}]}]}}"),
            "test.yaml: document 1 (Pod default/a): spec.containers[0].ports[0].containerPort: expected an integer "
            "1-65535, got 9.999999999999999e+22");  // beyond 64 bits: a float, as in JSON
}

TEST(ModelManifest, LongValuesAreShortenedInMessages) {
  std::string name(300, 'a');
  std::string msg = only_error("{apiVersion: v1, kind: Pod, metadata: {name: a}, status: {podIP: " + name + "}}");
  EXPECT_EQ(msg, "test.yaml: document 1 (Pod default/a): status.podIP: expected an IP address, got \"" +
                     std::string(60, 'a') + "...\"");
}
