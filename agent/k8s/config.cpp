// Where the API server is: the in-cluster service account or a kubeconfig file.
#include <openssl/evp.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "agent/k8s/k8s.h"

namespace ferry::k8s {

namespace {

bool readable(const std::string& path) {
  std::ifstream in(path);
  return in.good();
}

std::string base64_decode(const std::string& text, const std::string& what) {
  std::string in;
  for (char c : text)
    if (!std::isspace(static_cast<unsigned char>(c))) in += c;
  if (in.size() % 4 != 0) throw K8sError(what + ": not base64");
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()), static_cast<int>(in.size()));
  if (n < 0) throw K8sError(what + ": not base64");
  size_t padding = 0;
  for (size_t i = in.size(); i > 0 && in[i - 1] == '='; --i) ++padding;
  out.resize(static_cast<size_t>(n) - padding);
  return out;
}

// The entry named `name` of a kubeconfig list (clusters, users, contexts): [{name, <field>}].
YAML::Node named(const YAML::Node& root, const char* list, const char* field, const std::string& name,
                 const std::string& where) {
  if (root[list] && root[list].IsSequence())
    for (const YAML::Node& entry : root[list])
      if (entry["name"] && entry["name"].as<std::string>() == name && entry[field]) return entry[field];
  throw K8sError(where + ": no " + std::string(list).substr(0, std::string(list).size() - 1) + " named \"" + name +
                 "\"");
}

std::string scalar(const YAML::Node& n, const char* key) {
  return n[key] && n[key].IsScalar() ? n[key].as<std::string>() : std::string();
}

}  // namespace

ClientConfig in_cluster_config(const std::string& sa_dir, std::function<const char*(const char*)> getenv) {
  if (!getenv) getenv = [](const char* name) { return std::getenv(name); };
  const char* host = getenv("KUBERNETES_SERVICE_HOST");
  const char* port = getenv("KUBERNETES_SERVICE_PORT");
  if (!host || !*host || !port || !*port)
    throw K8sError("not running in a Kubernetes pod (KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are not set); "
                   "pass --kubeconfig FILE");
  ClientConfig c;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";  // IPv6 service address
  c.server = "https://" + h + ":" + port;
  c.token_file = sa_dir + "/token";
  c.ca_file = sa_dir + "/ca.crt";
  for (const std::string& f : {c.token_file, c.ca_file})
    if (!readable(f)) throw K8sError("in-cluster configuration: cannot read " + f + " (is a service account mounted?)");
  c.origin = "in-cluster service account (" + sa_dir + ")";
  return c;
}

ClientConfig load_kubeconfig(const std::string& path, const std::string& context) {
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::BadFile&) {
    throw K8sError("cannot read kubeconfig \"" + path + "\"");
  } catch (const YAML::Exception& e) {
    throw K8sError("kubeconfig \"" + path + "\": " + e.what());
  }
  const std::string where = "kubeconfig \"" + path + "\"";
  if (!root.IsMap()) throw K8sError(where + ": not a kubeconfig (expected a mapping)");
  try {
    std::string ctx_name = context.empty() ? scalar(root, "current-context") : context;
    if (ctx_name.empty()) throw K8sError(where + ": no current-context (and no context chosen)");
    YAML::Node ctx = named(root, "contexts", "context", ctx_name, where);
    YAML::Node cluster = named(root, "clusters", "cluster", scalar(ctx, "cluster"), where);
    YAML::Node user;
    if (!scalar(ctx, "user").empty()) user = named(root, "users", "user", scalar(ctx, "user"), where);

    // Relative paths in a kubeconfig are relative to the file itself.
    const std::filesystem::path dir = std::filesystem::absolute(path).parent_path();
    auto file = [&](const YAML::Node& n, const char* key) {
      std::string f = scalar(n, key);
      return f.empty() || f.front() == '/' ? f : (dir / f).string();
    };
    auto data = [&](const YAML::Node& n, const char* key) {
      std::string d = scalar(n, key);
      return d.empty() ? d : base64_decode(d, where + ": " + key);
    };

    ClientConfig c;
    c.origin = where + " (context \"" + ctx_name + "\")";
    c.server = scalar(cluster, "server");
    while (!c.server.empty() && c.server.back() == '/') c.server.pop_back();
    if (c.server.empty()) throw K8sError(where + ": cluster \"" + scalar(ctx, "cluster") + "\" has no server");
    c.ca_file = file(cluster, "certificate-authority");
    c.ca_data = data(cluster, "certificate-authority-data");
    c.insecure = scalar(cluster, "insecure-skip-tls-verify") == "true";
    if (user) {
      if (user["exec"] || user["auth-provider"])
        throw K8sError(where + ": user \"" + scalar(ctx, "user") +
                       "\" uses an exec/auth-provider plugin, which ferry-agent does not run; use a token or a "
                       "client certificate");
      c.token = scalar(user, "token");
      c.token_file = file(user, "tokenFile");
      c.client_cert_file = file(user, "client-certificate");
      c.client_key_file = file(user, "client-key");
      c.client_cert_data = data(user, "client-certificate-data");
      c.client_key_data = data(user, "client-key-data");
    }
    return c;
  } catch (const YAML::Exception& e) {
    throw K8sError(where + ": " + e.what());
  }
}

}  // namespace ferry::k8s
