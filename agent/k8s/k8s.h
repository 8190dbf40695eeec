// agent/k8s/k8s.h — the Kubernetes API as a cluster-state source: where the API server is and
// how to authenticate (in-cluster service account or a kubeconfig file), an HTTPS client over
// libcurl, and ClusterWatch, which lists and then watches Nodes, Namespaces, Pods, Services,
// EndpointSlices and NetworkPolicies and hands the changes to the agent's loop thread.
//
// Threads: ClusterWatch runs one thread per resource (list, then a streamed watch). The threads
// never touch a ClusterState: they queue changes and make fd() readable; apply() runs on the
// owner's thread (the agent's epoll loop) and updates the ClusterState there.
//
// Errors: configuration problems (kubeconfig unreadable or incomplete, not in a cluster) throw
// K8sError from load_kubeconfig()/in_cluster_config(). ClusterWatch::load() throws K8sError when
// the first full sync cannot be done: at once for a rejected token (401/403) or a certificate
// the CA does not verify, otherwise after retrying for Options::sync_wait. After load(), nothing
// throws: lost connections are re-watched with backoff, 410 Gone relists, bad objects are logged
// (spdlog) and skipped.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "agent/model/model.h"

namespace ferry::k8s {

class K8sError : public std::runtime_error {
 public:
  // `retryable` false: waiting will not help (token rejected, certificate not trusted).
  explicit K8sError(const std::string& message, bool retryable = true)
      : std::runtime_error(message), retryable_(retryable) {}
  bool retryable() const { return retryable_; }

 private:
  bool retryable_;
};

// ---------------------------------------------------------------------------------------
// Where the API server is and who we are.

struct ClientConfig {
  std::string server;       // "https://10.96.0.1:443" (no trailing slash)
  std::string ca_file;      // PEM bundle that verifies the server; or
  std::string ca_data;      // the same PEM text inline (kubeconfig certificate-authority-data)
  bool insecure = false;    // kubeconfig insecure-skip-tls-verify: no server verification
  std::string token;        // static bearer token; or
  std::string token_file;   // a file holding it, re-read before every request (rotation)
  std::string client_cert_file, client_key_file;  // client certificate auth (PEM files), or
  std::string client_cert_data, client_key_data;  // the same inline
  std::string origin;       // for messages: "in-cluster service account", "kubeconfig X (context Y)"
};

// The pod's service account: KUBERNETES_SERVICE_HOST/PORT from `getenv` (std::getenv when
// empty), token and ca.crt from `sa_dir`. Throws K8sError naming what is missing.
inline constexpr const char* kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";
ClientConfig in_cluster_config(const std::string& sa_dir = kServiceAccountDir,
                               std::function<const char*(const char*)> getenv = {});

// A kubeconfig file (YAML): the cluster, user and context of `context` (current-context when
// empty). Relative file paths are relative to the kubeconfig's directory; *-data fields are
// base64 as kubectl writes them. Exec/auth-provider plugins are not supported (K8sError says so).
ClientConfig load_kubeconfig(const std::string& path, const std::string& context = "");

// ---------------------------------------------------------------------------------------
// HTTPS requests (libcurl).

struct HttpResponse {
  long status = 0;
  std::string body;
};

// One connection (reused between requests); use it from one thread at a time.
class ApiClient {
 public:
  explicit ApiClient(ClientConfig config);
  ~ApiClient();
  ApiClient(const ApiClient&) = delete;
  ApiClient& operator=(const ApiClient&) = delete;

  // GET `path` ("/api/v1/pods?limit=500"). Throws K8sError for transport failures (no
  // connection, TLS, timeout) with a message that says which; any HTTP status is returned.
  HttpResponse get(const std::string& path, std::chrono::seconds timeout = std::chrono::seconds(60));
  // GET a streamed response: `on_line` receives each complete line of a 200 body as it arrives
  // (a partial line is kept until its newline; a line longer than `max_line` ends the stream
  // with K8sError, so a broken server cannot grow the buffer). Returning false from on_line or
  // `cancelled` returning true ends the stream early. Returns the status; a non-200 body is
  // returned in `error_body`. Throws K8sError for transport failures, including a connection
  // the server dropped mid-stream.
  long stream(const std::string& path, std::chrono::seconds timeout,
              const std::function<bool(const std::string& line)>& on_line, const std::function<bool()>& cancelled,
              std::string* error_body, size_t max_line = 64u << 20);

  const ClientConfig& config() const { return config_; }

 private:
  struct Impl;
  ClientConfig config_;
  std::unique_ptr<Impl> impl_;
};

// "401 Unauthorized: ..." style text for a failed request, with a hint for 401/403 and the
// Status message of the body when there is one.
std::string describe_http_error(const ClientConfig& config, const std::string& path, const HttpResponse& r);

// ---------------------------------------------------------------------------------------
// What is watched.

struct Resource {
  model::Kind kind;
  std::string path;            // collection path: "/api/v1/pods"
  std::string field_selector;  // "" = none
};
// The six resources the agent models. Field selectors: pods exclude finished pods
// (status.phase!=Succeeded,status.phase!=Failed: they hold no IP, and their IPs are reused);
// every other kind is needed in full (remote pods too: policy peers select by labels and IPs).
std::vector<Resource> default_resources();

// All objects of a resource, page by page (limit/continue); a continue token that expired
// (410) restarts the list. Bad objects go to `problems` and are skipped. Throws K8sError on
// transport errors and unexpected statuses.
struct ListResult {
  std::vector<model::Object> objects;
  std::string resource_version;  // of the list: where the watch starts
  std::vector<std::string> problems;
  int pages = 0;
};
ListResult list_resource(ApiClient& client, const Resource& resource, int page_size = 500);

// ---------------------------------------------------------------------------------------
// List + watch of every resource.

class ClusterWatch {
 public:
  struct Options {
    std::vector<Resource> resources = default_resources();
    int page_size = 500;
    std::chrono::seconds watch_timeout{300};  // timeoutSeconds of each watch request
    std::chrono::milliseconds backoff_initial{500};
    std::chrono::milliseconds backoff_max{30000};
    std::chrono::milliseconds sync_wait{60000};  // how long load() retries an unreachable API
  };
  // Counters for logs, metrics and tests (since construction).
  struct Stats {
    uint64_t events = 0;       // watch events applied (bookmarks excluded)
    uint64_t bookmarks = 0;
    uint64_t relists = 0;      // after 410 Gone
    uint64_t rewatches = 0;    // watch requests after the first per resource
    uint64_t bad_objects = 0;  // skipped (decode errors)
  };

  ClusterWatch(ClientConfig config, Options options);
  ClusterWatch(ClientConfig config) : ClusterWatch(std::move(config), Options{}) {}
  ~ClusterWatch();  // stops and joins the watch threads
  ClusterWatch(const ClusterWatch&) = delete;
  ClusterWatch& operator=(const ClusterWatch&) = delete;

  // First full sync: lists every resource into `state` (replace_all), then starts the watch
  // threads from the lists' resourceVersions. Throws K8sError (see the file comment).
  void load(model::ClusterState& state);
  // Readable (eventfd, non-blocking) while changes are queued.
  int fd() const;
  // Applies the queued changes to `state` (ADDED/MODIFIED upsert, DELETED erase, a relist
  // replaces that kind's objects). Returns whether the content changed.
  bool apply(model::ClusterState& state);
  Stats stats() const;
  // The resourceVersion each resource's watch continues from (by collection path).
  std::map<std::string, std::string> resource_versions() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::k8s
