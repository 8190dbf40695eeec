// The fake Kubernetes API server (see fake_api_server.h).
#include "tests/k8s/fake_api_server.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <stdexcept>

#include "tests/support/support.h"

namespace ferry::k8s::test {

namespace {

struct Collection {
  const char* path;
  const char* kind;
  const char* api_version;
  bool namespaced;
};
constexpr Collection kCollections[] = {
    {"/api/v1/nodes", "Node", "v1", false},
    {"/api/v1/namespaces", "Namespace", "v1", false},
    {"/api/v1/pods", "Pod", "v1", true},
    {"/api/v1/services", "Service", "v1", true},
    {"/apis/discovery.k8s.io/v1/endpointslices", "EndpointSlice", "discovery.k8s.io/v1", true},
    {"/apis/networking.k8s.io/v1/networkpolicies", "NetworkPolicy", "networking.k8s.io/v1", true},
};

const Collection& collection_of_kind(const std::string& kind) {
  for (const Collection& c : kCollections)
    if (kind == c.kind) return c;
  throw std::runtime_error("fake API server: no collection for kind " + kind);
}

nlohmann::json status_json(int code, const std::string& reason, const std::string& message) {
  return {{"kind", "Status"}, {"apiVersion", "v1"}, {"metadata", nlohmann::json::object()}, {"status", "Failure"},
          {"message", message}, {"reason", reason}, {"code", code}};
}

}  // namespace

TestPki make_test_pki(const std::string& dir) {
  TestPki p{dir + "/ca.crt", dir + "/server.crt", dir + "/server.key", dir + "/other-ca.crt"};
  std::ofstream(dir + "/san.ext") << "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
  const std::string ec = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ";
  ferry::test::sh("cd " + dir + " && openssl req -x509" + ec + "-keyout ca.key -out ca.crt -days 2 -subj /CN=ferry-test-ca 2>/dev/null" +
                  " && openssl req -x509" + ec + "-keyout other-ca.key -out other-ca.crt -days 2 -subj /CN=ferry-other-ca 2>/dev/null" +
                  " && openssl req" + ec + "-keyout server.key -out server.csr -subj /CN=fake-apiserver 2>/dev/null" +
                  " && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt" +
                  " -days 2 -extfile san.ext 2>/dev/null");
  return p;
}

void write_kubeconfig(const std::string& path, const std::string& server, const std::string& ca_file,
                      const std::string& token) {
  std::ofstream(path) << "apiVersion: v1\nkind: Config\ncurrent-context: fake\n"
                         "clusters:\n- name: fake\n  cluster:\n    server: " << server
                      << "\n    certificate-authority: " << ca_file
                      << "\nusers:\n- name: fake\n  user:\n    token: " << token
                      << "\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n";
}

struct FakeApiServer::Impl {
  struct Event {
    uint64_t rv;
    std::string line;  // the JSON event and '\n'
  };
  struct Store {
    std::map<std::string, nlohmann::json> objects;  // by "ns/name", sorted
    std::vector<Event> events;                      // in order
  };

  std::unique_ptr<httplib::SSLServer> server;
  std::thread thread;
  int port = 0;
  mutable std::mutex mu;
  std::condition_variable changed;
  std::string token;
  uint64_t rv = 100;
  uint64_t compacted = 0;  // watches from a resourceVersion below this get 410 Gone
  bool http_410 = false;
  bool paused = false;
  bool stopping = false;
  uint64_t drop_generation = 0;
  int watching = 0;
  std::map<std::string, Store> stores;  // by collection path
  std::vector<Request> log;

  void emit(const std::string& path, const std::string& type, const nlohmann::json& object, uint64_t at) {
    stores[path].events.push_back({at, nlohmann::json{{"type", type}, {"object", object}}.dump() + "\n"});
    changed.notify_all();
  }

  bool authorized(const httplib::Request& req, httplib::Response& res) {
    {
      std::lock_guard lock(mu);
      if (req.get_header_value("Authorization") == "Bearer " + token) return true;
    }
    res.status = 401;
    res.set_content(status_json(401, "Unauthorized", "Unauthorized").dump(), "application/json");
    return false;
  }

  void list(const Collection& c, const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu);
    const Store& s = stores[c.path];
    size_t offset = 0;
    uint64_t list_rv = rv;
    if (req.has_param("continue")) {  // our token: "<rv>:<offset>"
      const std::string t = req.get_param_value("continue");
      list_rv = std::stoull(t.substr(0, t.find(':')));
      offset = std::stoull(t.substr(t.find(':') + 1));
    }
    size_t limit = req.has_param("limit") ? std::stoul(req.get_param_value("limit")) : s.objects.size();
    nlohmann::json items = nlohmann::json::array();
    auto it = s.objects.begin();
    std::advance(it, std::min(offset, s.objects.size()));
    for (; it != s.objects.end() && items.size() < limit; ++it) {
      nlohmann::json item = it->second;
      item.erase("kind");  // items of a typed list carry neither kind nor apiVersion
      item.erase("apiVersion");
      items.push_back(std::move(item));
    }
    nlohmann::json meta = {{"resourceVersion", std::to_string(list_rv)}};
    if (offset + items.size() < s.objects.size()) meta["continue"] = std::to_string(list_rv) + ":" + std::to_string(offset + items.size());
    nlohmann::json body = {{"kind", std::string(c.kind) + "List"}, {"apiVersion", c.api_version}, {"metadata", meta},
                           {"items", items}};
    res.set_content(body.dump(), "application/json");
  }

  void watch(const Collection& c, const httplib::Request& req, httplib::Response& res) {
    std::unique_lock lock(mu);
    if (paused) {
      res.status = 503;
      res.set_content(status_json(503, "ServiceUnavailable", "paused by the test").dump(), "application/json");
      return;
    }
    const uint64_t from = req.has_param("resourceVersion") ? std::stoull(req.get_param_value("resourceVersion")) : rv;
    if (from < compacted) {
      const std::string message = "too old resource version: " + std::to_string(from) + " (" + std::to_string(compacted) + ")";
      if (http_410) {
        res.status = 410;
        res.set_content(status_json(410, "Expired", message).dump(), "application/json");
      } else {
        res.set_content(nlohmann::json{{"type", "ERROR"}, {"object", status_json(410, "Expired", message)}}.dump() + "\n",
                        "application/json");
      }
      return;
    }
    const std::vector<Event>& events = stores[c.path].events;
    size_t next = 0;
    while (next < events.size() && events[next].rv <= from) ++next;
    const int timeout = req.has_param("timeoutSeconds") ? std::stoi(req.get_param_value("timeoutSeconds")) : 1800;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(timeout);
    const uint64_t generation = drop_generation;
    const std::string path = c.path;
    ++watching;
    res.set_chunked_content_provider(
        "application/json",
        [this, path, next, deadline, generation](size_t, httplib::DataSink& sink) mutable {
          std::unique_lock lock(mu);
          for (;;) {
            if (stopping || generation != drop_generation) return false;  // abrupt end
            const std::vector<Event>& events = stores[path].events;
            if (next < events.size()) {
              std::string out;
              for (; next < events.size(); ++next) out += events[next].line;
              lock.unlock();
              return sink.write(out.data(), out.size());
            }
            if (std::chrono::steady_clock::now() >= deadline) {
              sink.done();
              return true;
            }
            changed.wait_for(lock, std::chrono::milliseconds(50));
          }
        },
        [this](bool) {
          std::lock_guard lock(mu);
          --watching;
        });
  }
};

FakeApiServer::FakeApiServer(const TestPki& pki, std::string token) : impl_(std::make_unique<Impl>()) {
  impl_->token = std::move(token);
  impl_->server = std::make_unique<httplib::SSLServer>(pki.server_cert.c_str(), pki.server_key.c_str());
  if (!impl_->server->is_valid()) throw std::runtime_error("fake API server: cannot load the server certificate");
  // Six long-lived watches plus lists: more workers than httplib's default 8.
  impl_->server->new_task_queue = [] { return new httplib::ThreadPool(32); };
  for (const Collection& c : kCollections) {
    impl_->server->Get(c.path, [this, &c](const httplib::Request& req, httplib::Response& res) {
      Request r{req.path, {}, 0};
      for (const auto& [k, v] : req.params) r.params[k] = v;
      if (impl_->authorized(req, res)) {
        if (req.get_param_value("watch") == "1" || req.get_param_value("watch") == "true") impl_->watch(c, req, res);
        else impl_->list(c, req, res);
      }
      r.status = res.status == -1 ? 200 : res.status;  // a streamed response gets its 200 later
      std::lock_guard lock(impl_->mu);
      impl_->log.push_back(std::move(r));
    });
  }
  impl_->port = impl_->server->bind_to_any_port("127.0.0.1");
  if (impl_->port <= 0) throw std::runtime_error("fake API server: cannot bind");
  impl_->thread = std::thread([this] { impl_->server->listen_after_bind(); });
  // bind_to_any_port() already listens: early connections wait in the backlog.
}

FakeApiServer::~FakeApiServer() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->changed.notify_all();
  impl_->server->stop();
  impl_->thread.join();
}

std::string FakeApiServer::url() const { return "https://127.0.0.1:" + std::to_string(impl_->port); }

void FakeApiServer::set_token(std::string token) {
  std::lock_guard lock(impl_->mu);
  impl_->token = std::move(token);
}

void FakeApiServer::put(nlohmann::json object, bool emit) {
  const Collection& c = collection_of_kind(object.value("kind", ""));
  std::lock_guard lock(impl_->mu);
  const uint64_t at = ++impl_->rv;
  nlohmann::json& meta = object["metadata"];
  const std::string ns = c.namespaced ? meta.value("namespace", "default") : "";
  if (c.namespaced) meta["namespace"] = ns;
  const std::string key = ns + "/" + meta.value("name", "");
  Impl::Store& s = impl_->stores[c.path];
  const bool existed = s.objects.count(key) > 0;
  meta["resourceVersion"] = std::to_string(at);
  if (!meta.contains("uid")) meta["uid"] = existed ? s.objects[key]["metadata"].value("uid", "") : "uid-" + std::to_string(at);
  if (!meta.contains("creationTimestamp")) meta["creationTimestamp"] = "2024-05-01T10:00:00Z";
  s.objects[key] = object;
  if (emit) impl_->emit(c.path, existed ? "MODIFIED" : "ADDED", object, at);
}

void FakeApiServer::remove(const std::string& kind, const std::string& ns, const std::string& name, bool emit) {
  const Collection& c = collection_of_kind(kind);
  std::lock_guard lock(impl_->mu);
  Impl::Store& s = impl_->stores[c.path];
  auto it = s.objects.find((c.namespaced ? ns : "") + "/" + name);
  if (it == s.objects.end()) return;
  const uint64_t at = ++impl_->rv;
  nlohmann::json object = it->second;
  object["metadata"]["resourceVersion"] = std::to_string(at);
  s.objects.erase(it);
  if (emit) impl_->emit(c.path, "DELETED", object, at);
}

void FakeApiServer::bookmark(const std::string& collection) {
  std::lock_guard lock(impl_->mu);
  const Collection* c = nullptr;
  for (const Collection& x : kCollections)
    if (collection == x.path) c = &x;
  impl_->emit(collection, "BOOKMARK",
              {{"kind", c ? c->kind : ""}, {"apiVersion", c ? c->api_version : ""},
               {"metadata", {{"resourceVersion", std::to_string(impl_->rv)}}}},
              impl_->rv);
}

void FakeApiServer::compact(bool http_410) {
  std::lock_guard lock(impl_->mu);
  impl_->compacted = impl_->rv;  // watching from the current version still works, as in etcd
  impl_->http_410 = http_410;
}

void FakeApiServer::send_gone(const std::string& collection) {
  std::lock_guard lock(impl_->mu);
  Impl::Store& s = impl_->stores[collection];
  s.events.push_back({impl_->rv, nlohmann::json{{"type", "ERROR"},
                                                {"object", status_json(410, "Expired", "too old resource version")}}
                                         .dump() +
                                     "\n"});
  impl_->changed.notify_all();
}

void FakeApiServer::drop_watches() {
  std::lock_guard lock(impl_->mu);
  ++impl_->drop_generation;
  impl_->changed.notify_all();
}

void FakeApiServer::pause_watches(bool paused) {
  std::lock_guard lock(impl_->mu);
  impl_->paused = paused;
}

std::vector<nlohmann::json> FakeApiServer::objects(const std::string& collection) const {
  std::lock_guard lock(impl_->mu);
  std::vector<nlohmann::json> out;
  auto it = impl_->stores.find(collection);
  if (it != impl_->stores.end())
    for (const auto& [key, o] : it->second.objects) out.push_back(o);
  return out;
}

std::string FakeApiServer::resource_version() const {
  std::lock_guard lock(impl_->mu);
  return std::to_string(impl_->rv);
}

std::vector<FakeApiServer::Request> FakeApiServer::requests() const {
  std::lock_guard lock(impl_->mu);
  return impl_->log;
}

int FakeApiServer::open_watches() const {
  std::lock_guard lock(impl_->mu);
  return impl_->watching;
}

}  // namespace ferry::k8s::test
