// tests/k8s: a fake Kubernetes API server for the ferry_k8s tests and the agent's end-to-end
// test. It speaks the real protocol over HTTPS (cpp-httplib + OpenSSL, a CA made at test time):
// bearer-token check, paged list responses ({"kind":"PodList","metadata":{"resourceVersion"},
// "items":[...]} with items in the API's shape, without kind/apiVersion), chunked watch streams
// of ADDED/MODIFIED/DELETED/BOOKMARK/ERROR events from a resourceVersion, 410 Gone for a
// compacted resourceVersion (as an ERROR event or as HTTP 410), and dropped connections.
//
// Errors: setup failures (openssl, bind) throw std::runtime_error.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

namespace ferry::k8s::test {

// A throw-away PKI made with the openssl CLI in `dir`: a CA, a server certificate it signed for
// 127.0.0.1/localhost, and a second CA that signed nothing (for "CA mismatch").
struct TestPki {
  std::string ca_cert, server_cert, server_key, other_ca_cert;
};
TestPki make_test_pki(const std::string& dir);

// A kubeconfig with one cluster/user/context ("fake") pointing at `server`.
void write_kubeconfig(const std::string& path, const std::string& server, const std::string& ca_file,
                      const std::string& token);

class FakeApiServer {
 public:
  FakeApiServer(const TestPki& pki, std::string token);
  ~FakeApiServer();
  FakeApiServer(const FakeApiServer&) = delete;
  FakeApiServer& operator=(const FakeApiServer&) = delete;

  std::string url() const;  // https://127.0.0.1:PORT
  void set_token(std::string token);

  // Stores an object (full JSON with apiVersion and kind) under the next resourceVersion and,
  // with `emit`, sends ADDED (new) or MODIFIED (existing) to the watches. emit=false changes
  // the store only, as if the events were lost to compaction.
  void put(nlohmann::json object, bool emit = true);
  void remove(const std::string& kind, const std::string& ns, const std::string& name, bool emit = true);
  // A BOOKMARK at the current resourceVersion on every open watch of `collection`.
  void bookmark(const std::string& collection);
  // Forgets all events so far: a watch from an older resourceVersion gets 410 Gone, as an
  // ERROR event (default) or as an HTTP 410 response.
  void compact(bool http_410 = false);
  // Sends an ERROR 410 event on the open watches of `collection` (after compact()).
  void send_gone(const std::string& collection);
  // Ends every open watch stream abruptly (no terminating chunk).
  void drop_watches();
  // While paused, new watch requests get 503 (so a test can change things "during the outage").
  void pause_watches(bool paused);

  // Current objects of a collection ("/api/v1/pods"), as stored.
  std::vector<nlohmann::json> objects(const std::string& collection) const;
  std::string resource_version() const;
  struct Request {
    std::string path;
    std::map<std::string, std::string> params;
    int status = 0;
  };
  std::vector<Request> requests() const;
  int open_watches() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ferry::k8s::test
