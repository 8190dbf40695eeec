// Where the API server is: kubeconfig files as kubectl/kind write them, and the in-cluster
// service account.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "agent/k8s/k8s.h"

namespace ferry::k8s::test {
namespace {

struct ConfigTest : ::testing::Test {
  void SetUp() override {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fyk8s-XXXXXX").string();
    dir = mkdtemp(tmpl.data());
  }
  void TearDown() override { std::filesystem::remove_all(dir); }
  std::string write(const std::string& name, const std::string& text) {
    std::ofstream(dir + "/" + name) << text;
    return dir + "/" + name;
  }
  std::string dir;
};

// "-----BEGIN CERTIFICATE-----\nabc\n" and "client-key" in base64, as kind writes *-data fields.
constexpr const char* kCaData = "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCmFiYwo=";

TEST_F(ConfigTest, KubeconfigOfKindWithInlineDataAndCurrentContext) {
  std::string path = write("config", std::string(R"(apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: )") + kCaData + R"(
    server: https://127.0.0.1:39847/
  name: kind-ferry
- cluster:
    server: https://other:6443
    insecure-skip-tls-verify: true
  name: other
contexts:
- context:
    cluster: kind-ferry
    user: kind-ferry
  name: kind-ferry
- context:
    cluster: other
    user: tokenuser
  name: other
current-context: kind-ferry
preferences: {}
users:
- name: kind-ferry
  user:
    client-certificate-data: Y2VydA==
    client-key-data: Y2xpZW50LWtleQ==
- name: tokenuser
  user:
    token: abc.def
)");
  ClientConfig c = load_kubeconfig(path);
  EXPECT_EQ(c.server, "https://127.0.0.1:39847");  // trailing slash dropped
  EXPECT_EQ(c.ca_data, "-----BEGIN CERTIFICATE-----\nabc\n");
  EXPECT_EQ(c.client_cert_data, "cert");
  EXPECT_EQ(c.client_key_data, "client-key");
  EXPECT_TRUE(c.token.empty());
  EXPECT_FALSE(c.insecure);
  EXPECT_NE(c.origin.find("kind-ferry"), std::string::npos);

  ClientConfig other = load_kubeconfig(path, "other");
  EXPECT_EQ(other.server, "https://other:6443");
  EXPECT_EQ(other.token, "abc.def");
  EXPECT_TRUE(other.insecure);
}

TEST_F(ConfigTest, RelativeFilePathsAreRelativeToTheKubeconfig) {
  std::string path = write("config", R"(clusters:
- name: c
  cluster: {server: "https://10.0.0.1:6443", certificate-authority: pki/ca.crt}
users:
- name: u
  user: {client-certificate: /etc/abs.crt, client-key: pki/u.key, tokenFile: token}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
)");
  ClientConfig c = load_kubeconfig(path);
  EXPECT_EQ(c.ca_file, dir + "/pki/ca.crt");
  EXPECT_EQ(c.client_cert_file, "/etc/abs.crt");
  EXPECT_EQ(c.client_key_file, dir + "/pki/u.key");
  EXPECT_EQ(c.token_file, dir + "/token");
}

TEST_F(ConfigTest, KubeconfigProblemsNameTheFileAndWhatIsMissing) {
  auto error = [&](const std::string& text, const std::string& context = "") {
    try {
      load_kubeconfig(write("bad", text), context);
    } catch (const K8sError& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  EXPECT_NE(error("clusters: []\n").find("no current-context"), std::string::npos);
  EXPECT_NE(error("current-context: x\ncontexts: []\n").find("no context named \"x\""), std::string::npos);
  EXPECT_NE(error("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n").find("no cluster named \"c\""),
            std::string::npos);
  EXPECT_NE(error("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\nclusters: [{name: c, cluster: {}}]\n")
                .find("has no server"),
            std::string::npos);
  EXPECT_NE(error("current-context: x\ncontexts: [{name: x, context: {cluster: c, user: u}}]\n"
                  "clusters: [{name: c, cluster: {server: 'https://a'}}]\n"
                  "users: [{name: u, user: {exec: {command: aws}}}]\n")
                .find("exec/auth-provider"),
            std::string::npos);
  EXPECT_NE(error("current-context: x\ncontexts: [{name: x, context: {cluster: c}}]\n"
                  "clusters: [{name: c, cluster: {server: 'https://a', certificate-authority-data: '!!'}}]\n")
                .find("certificate-authority-data: not base64"),
            std::string::npos);
  EXPECT_NE(error("a: [unclosed\n").find(dir + "/bad"), std::string::npos);
  try {
    load_kubeconfig(dir + "/missing");
    FAIL();
  } catch (const K8sError& e) {
    EXPECT_NE(std::string(e.what()).find("cannot read kubeconfig"), std::string::npos);
  }
}

TEST_F(ConfigTest, InClusterUsesTheServiceAccountAndTheServiceVariables) {
  write("token", "tok\n");
  write("ca.crt", "pem");
  auto env = [](const char* name) -> const char* {
    if (std::string(name) == "KUBERNETES_SERVICE_HOST") return "10.96.0.1";
    if (std::string(name) == "KUBERNETES_SERVICE_PORT") return "443";
    return nullptr;
  };
  ClientConfig c = in_cluster_config(dir, env);
  EXPECT_EQ(c.server, "https://10.96.0.1:443");
  EXPECT_EQ(c.token_file, dir + "/token");  // re-read before each request: rotation works
  EXPECT_EQ(c.ca_file, dir + "/ca.crt");

  auto env6 = [](const char* name) -> const char* {
    return std::string(name) == "KUBERNETES_SERVICE_HOST" ? "fd00:10:96::1" : "443";
  };
  EXPECT_EQ(in_cluster_config(dir, env6).server, "https://[fd00:10:96::1]:443");
}

TEST_F(ConfigTest, InClusterOutsideAPodSaysSo) {
  auto none = [](const char*) -> const char* { return nullptr; };
  try {
    in_cluster_config(dir, none);
    FAIL();
  } catch (const K8sError& e) {
    EXPECT_NE(std::string(e.what()).find("KUBERNETES_SERVICE_HOST"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("--kubeconfig"), std::string::npos);
  }
  auto env = [](const char* name) -> const char* {
    return std::string(name) == "KUBERNETES_SERVICE_HOST" ? "10.96.0.1" : "443";
  };
  try {
    in_cluster_config(dir, env);  // no token file in dir
    FAIL();
  } catch (const K8sError& e) {
    EXPECT_NE(std::string(e.what()).find(dir + "/token"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ferry::k8s::test
