// ClusterWatch against the fake API server: initial sync (paged), incremental updates, a
// dropped watch, 410 Gone (ERROR event and HTTP 410), bookmarks, bad objects, token rotation,
// and the errors a user sees for a wrong token, a wrong CA and an unreachable server.
#include <gtest/gtest.h>
#include <poll.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "agent/k8s/k8s.h"
#include "tests/k8s/fake_api_server.h"
#include "tests/k8s/objects.h"

namespace ferry::k8s::test {
namespace {

using model::Kind;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fyk8s-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Keys and the resourceVersion-free JSON of what the server holds, to compare with the client.
std::set<std::string> server_keys(const FakeApiServer& server) {
  std::set<std::string> out;
  for (const Resource& r : default_resources())
    for (const nlohmann::json& o : server.objects(r.path)) {
      model::ObjectDecode d = model::decode_object(o);
      if (d.object) out.insert(model::key_of(*d.object).str());
    }
  return out;
}

std::set<std::string> state_keys(const model::ClusterState& state) {
  std::set<std::string> out;
  for (const model::Object& o : state.objects()) out.insert(model::key_of(o).str());
  return out;
}

struct WatchTest : ::testing::Test {
  void SetUp() override {
    pki = make_test_pki(tmp.path());
    server = std::make_unique<FakeApiServer>(pki, "s3cret");
    server->put(node_json("node-1", "10.244.1.0/24", "172.18.0.2"));
    server->put(node_json("node-2", "10.244.2.0/24", "172.18.0.3"));
    server->put(namespace_json("default"));
    server->put(namespace_json("shop"));
    for (int i = 0; i < 5; ++i)
      server->put(pod_json("shop", "web-" + std::to_string(i), i % 2 ? "node-1" : "node-2", "10.244.1." + std::to_string(10 + i)));
    server->put(service_json("shop", "web", "10.96.0.10"));
    server->put(endpointslice_json("shop", "web", "10.244.1.10", "node-1"));
    server->put(networkpolicy_json("shop", "web-ingress"));
  }

  ClientConfig config(const std::string& token = "s3cret") const {
    ClientConfig c;
    c.server = server->url();
    c.ca_file = pki.ca_cert;
    c.token = token;
    c.origin = "test";
    return c;
  }

  ClusterWatch::Options options() const {
    ClusterWatch::Options o;
    o.page_size = 2;  // the 5 pods come in 3 pages
    o.backoff_initial = std::chrono::milliseconds(100);
    o.backoff_max = std::chrono::milliseconds(400);
    o.sync_wait = std::chrono::milliseconds(2000);
    return o;
  }

  // Applies changes until `done` holds (bounded: fails after 20 s, never asserts speed).
  template <typename Pred>
  void wait_until(ClusterWatch& watch, Pred done, const char* what) {
    for (int i = 0; i < 200 && !done(); ++i) {
      pollfd p{watch.fd(), POLLIN, 0};
      if (poll(&p, 1, 100) > 0) watch.apply(state);
    }
    ASSERT_TRUE(done()) << "not reached: " << what;
  }

  // Each collection has its watch open.
  void wait_watching(ClusterWatch& watch) {
    wait_until(watch, [&] { return server->open_watches() == 6; }, "six open watches");
  }

  int count(Kind k) const {
    for (const model::KindCount& c : state.counts())
      if (c.kind == k) return static_cast<int>(c.count);
    return -1;
  }

  std::vector<FakeApiServer::Request> watch_requests(const std::string& path) const {
    std::vector<FakeApiServer::Request> out;
    for (const auto& r : server->requests())
      if (r.path == path && r.params.count("watch")) out.push_back(r);
    return out;
  }

  TempDir tmp;
  TestPki pki;
  std::unique_ptr<FakeApiServer> server;
  model::ClusterState state;
};

TEST_F(WatchTest, InitialSyncListsEveryResourceInPages) {
  ClusterWatch watch(config(), options());
  watch.load(state);
  EXPECT_EQ(state_keys(state), server_keys(*server));
  EXPECT_EQ(count(Kind::Node), 2);
  EXPECT_EQ(count(Kind::Namespace), 2);
  EXPECT_EQ(count(Kind::Pod), 5);
  EXPECT_EQ(count(Kind::Service), 1);
  EXPECT_EQ(count(Kind::EndpointSlice), 1);
  EXPECT_EQ(count(Kind::NetworkPolicy), 1);
  const model::Pod* pod = state.pod("shop", "web-3");
  ASSERT_NE(pod, nullptr);
  EXPECT_EQ(pod->node_name, "node-1");
  ASSERT_EQ(pod->pod_ips.size(), 1u);
  EXPECT_EQ(pod->pod_ips[0].str(), "10.244.1.13");
  EXPECT_EQ(pod->meta.labels.at("app"), "web");
  ASSERT_NE(state.node("node-2"), nullptr);
  EXPECT_EQ(state.node("node-2")->pod_cidrs.at(0).str(), "10.244.2.0/24");

  // Pods came in three pages (limit 2 + continue), with the finished-pods field selector.
  int pod_lists = 0;
  for (const auto& r : server->requests())
    if (r.path == "/api/v1/pods" && !r.params.count("watch")) {
      ++pod_lists;
      EXPECT_EQ(r.params.at("limit"), "2");
      EXPECT_EQ(r.params.at("fieldSelector"), "status.phase!=Succeeded,status.phase!=Failed");
    }
  EXPECT_EQ(pod_lists, 3);

  // The watches start from the list's resourceVersion, with bookmarks and a timeout.
  wait_watching(watch);
  auto w = watch_requests("/api/v1/pods");
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(w[0].params.at("resourceVersion"), server->resource_version());
  EXPECT_EQ(w[0].params.at("allowWatchBookmarks"), "true");
  EXPECT_EQ(w[0].params.at("timeoutSeconds"), "300");
}

TEST_F(WatchTest, AppliesAddedModifiedDeletedOnTheOwnersThread) {
  ClusterWatch watch(config(), options());
  watch.load(state);
  wait_watching(watch);
  const uint64_t before = state.revision();

  server->put(pod_json("shop", "web-9", "node-1", "10.244.1.99"));
  nlohmann::json moved = pod_json("shop", "web-0", "node-1", "10.244.1.50", "api");
  server->put(moved);
  server->remove("Pod", "shop", "web-1");
  server->remove("NetworkPolicy", "shop", "web-ingress");
  server->put(node_json("node-3", "10.244.3.0/24", "172.18.0.4"));
  // Nothing changes until apply() runs here.
  EXPECT_EQ(state.revision(), before);

  wait_until(watch, [&] { return state_keys(state) == server_keys(*server) && state.pod("shop", "web-0")->meta.labels.at("app") == "api"; },
             "state equal to the server's");
  EXPECT_EQ(state.pod("shop", "web-0")->pod_ips.at(0).str(), "10.244.1.50");
  EXPECT_EQ(state.pod("shop", "web-1"), nullptr);
  EXPECT_EQ(count(Kind::NetworkPolicy), 0);
  EXPECT_EQ(count(Kind::Node), 3);
  EXPECT_EQ(watch.stats().events, 5u);
  EXPECT_EQ(watch.stats().relists, 0u);
}

TEST_F(WatchTest, DroppedWatchResumesFromTheLastResourceVersionWithoutLosingEvents) {
  ClusterWatch watch(config(), options());
  watch.load(state);
  wait_watching(watch);
  server->put(pod_json("shop", "seen", "node-1", "10.244.1.60"));
  wait_until(watch, [&] { return state.pod("shop", "seen") != nullptr; }, "pod seen");
  const std::string last_seen = watch.resource_versions().at("/api/v1/pods");
  EXPECT_EQ(last_seen, server->resource_version());

  // The outage: connections drop, re-watches are refused for a while, things change meanwhile.
  server->pause_watches(true);
  server->drop_watches();
  server->put(pod_json("shop", "during-outage", "node-2", "10.244.2.61"));
  server->remove("Pod", "shop", "web-2");
  server->put(pod_json("shop", "web-3", "node-1", "10.244.1.13", "moved"));
  wait_until(watch, [&] { return watch.stats().rewatches >= 6; }, "re-watch attempts during the outage");
  server->pause_watches(false);

  wait_until(watch, [&] { return state_keys(state) == server_keys(*server) && state.pod("shop", "web-3")->meta.labels.at("app") == "moved"; },
             "state equal to the server's after the outage");
  EXPECT_EQ(watch.stats().relists, 0u);  // the events were replayed, no relist needed
  EXPECT_EQ(count(Kind::Pod), 6);
  // The successful re-watch asked for exactly the events after the last one seen.
  auto w = watch_requests("/api/v1/pods");
  ASSERT_GE(w.size(), 2u);  // the first watch, any refused (503) during the outage, the resumed one
  EXPECT_EQ(w.back().status, 200);
  for (size_t i = 1; i < w.size(); ++i) EXPECT_EQ(w[i].params.at("resourceVersion"), last_seen);
}

TEST_F(WatchTest, GoneAsErrorEventRelistsThatKindWithoutLosingOrDuplicating) {
  ClusterWatch watch(config(), options());
  watch.load(state);
  wait_watching(watch);
  const uint64_t nodes_before = static_cast<uint64_t>(count(Kind::Node));

  // Changes whose events are lost (compacted away), then the server says 410 on the open watch.
  server->put(pod_json("shop", "lost-add", "node-1", "10.244.1.70"), false);
  server->remove("Pod", "shop", "web-4", false);
  server->put(pod_json("shop", "web-0", "node-2", "10.244.2.10", "relabelled"), false);
  server->compact();
  server->send_gone("/api/v1/pods");

  wait_until(watch, [&] { return watch.stats().relists == 1 && state.pod("shop", "lost-add") != nullptr; },
             "relist after 410");
  EXPECT_EQ(state_keys(state), server_keys(*server));
  EXPECT_EQ(state.pod("shop", "web-4"), nullptr);
  EXPECT_EQ(state.pod("shop", "web-0")->meta.labels.at("app"), "relabelled");
  EXPECT_EQ(count(Kind::Pod), 5);
  EXPECT_EQ(static_cast<uint64_t>(count(Kind::Node)), nodes_before);  // other kinds untouched

  // The watch continues from the relist's resourceVersion: later events still arrive.
  server->put(pod_json("shop", "after-relist", "node-1", "10.244.1.71"));
  wait_until(watch, [&] { return state.pod("shop", "after-relist") != nullptr; }, "event after the relist");
  EXPECT_EQ(state_keys(state), server_keys(*server));
}

TEST_F(WatchTest, GoneAsHttp410OnReWatchRelists) {
  ClusterWatch watch(config(), options());
  watch.load(state);
  wait_watching(watch);
  server->pause_watches(true);
  server->drop_watches();
  server->put(namespace_json("lost"), false);
  server->remove("Namespace", "", "shop", false);
  server->put(pod_json("default", "lost-pod", "node-1", "10.244.1.80"), false);
  server->compact(/*http_410=*/true);
  server->pause_watches(false);

  wait_until(watch, [&] { return state_keys(state) == server_keys(*server); }, "state equal after the relists");
  EXPECT_GE(watch.stats().relists, 2u);  // namespaces and pods (every kind's watch got 410)
  EXPECT_NE(state.namespace_named("lost"), nullptr);
  EXPECT_EQ(state.namespace_named("shop"), nullptr);
  bool saw_410 = false;
  for (const auto& r : watch_requests("/api/v1/namespaces")) saw_410 |= r.status == 410;
  EXPECT_TRUE(saw_410);
}

TEST_F(WatchTest, BookmarkMovesTheResourceVersionTheNextWatchStartsFrom) {
  ClusterWatch watch(config(), options());
  watch.load(state);
  wait_watching(watch);
  server->put(node_json("node-9", "10.244.9.0/24", "172.18.0.9"));  // an event on nodes only
  wait_until(watch, [&] { return state.node("node-9") != nullptr; }, "node-9");
  const std::string now = server->resource_version();
  EXPECT_NE(watch.resource_versions().at("/api/v1/pods"), now);
  server->bookmark("/api/v1/pods");
  wait_until(watch, [&] { return watch.resource_versions().at("/api/v1/pods") == now; }, "bookmark applied");
  EXPECT_EQ(watch.stats().bookmarks, 1u);

  server->drop_watches();
  wait_until(watch, [&] { return watch_requests("/api/v1/pods").size() >= 2 && server->open_watches() == 6; }, "re-watch");
  EXPECT_EQ(watch_requests("/api/v1/pods").back().params.at("resourceVersion"), now);
}

TEST_F(WatchTest, BadObjectsAreSkippedAndTheRestApplies) {
  nlohmann::json bad = pod_json("shop", "bad-port", "node-1", "10.244.1.90");
  bad["spec"]["containers"][0]["ports"][0]["containerPort"] = "eighty";
  server->put(bad);  // already bad in the list
  ClusterWatch watch(config(), options());
  watch.load(state);
  EXPECT_EQ(state.pod("shop", "bad-port"), nullptr);
  EXPECT_EQ(count(Kind::Pod), 5);
  EXPECT_EQ(watch.stats().bad_objects, 1u);
  wait_watching(watch);

  nlohmann::json bad_ip = pod_json("shop", "bad-ip", "node-1", "10.244.1.999");
  server->put(bad_ip);  // bad in a watch event
  server->put(pod_json("shop", "good", "node-1", "10.244.1.91"));
  wait_until(watch, [&] { return state.pod("shop", "good") != nullptr; }, "the good pod after the bad one");
  EXPECT_EQ(state.pod("shop", "bad-ip"), nullptr);
  EXPECT_EQ(watch.stats().bad_objects, 2u);
  EXPECT_EQ(count(Kind::Pod), 6);
}

TEST_F(WatchTest, TokenFileIsReReadSoARotatedTokenIsUsed) {
  const std::string token_file = tmp / "token";
  std::ofstream(token_file) << "s3cret\n";
  ClientConfig c = config("");
  c.token_file = token_file;
  ClusterWatch watch(c, options());
  watch.load(state);
  wait_watching(watch);

  server->set_token("rotated");
  std::ofstream(token_file) << "rotated\n";
  server->drop_watches();
  server->put(pod_json("shop", "after-rotation", "node-1", "10.244.1.95"));
  wait_until(watch, [&] { return state.pod("shop", "after-rotation") != nullptr; }, "event after rotation");
  int accepted = 0;  // the first watch and the one with the rotated token
  for (const auto& r : watch_requests("/api/v1/pods")) accepted += r.status == 200;
  EXPECT_GE(accepted, 2);
}

TEST_F(WatchTest, StreamDeliversWholeLinesAndRefusesToBufferAnOverlongOne) {
  ApiClient client(config());
  const std::string path = "/api/v1/pods?watch=1&resourceVersion=100&timeoutSeconds=30";
  std::vector<std::string> names;
  std::string error_body;
  long status = client.stream(
      path, std::chrono::seconds(60),
      [&](const std::string& line) {
        names.push_back(nlohmann::json::parse(line)["object"]["metadata"]["name"]);
        return names.size() < 5;  // the five pods of SetUp, then stop
      },
      {}, &error_body);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(names, (std::vector<std::string>{"web-0", "web-1", "web-2", "web-3", "web-4"}));

  // Each event line is longer than 100 bytes: the stream ends with an error instead.
  try {
    client.stream(path, std::chrono::seconds(60), [](const std::string&) { return true; }, {}, &error_body, 100);
    FAIL() << "an over-long line was buffered";
  } catch (const K8sError& e) {
    EXPECT_NE(std::string(e.what()).find("a line longer than 100 bytes"), std::string::npos) << e.what();
  }
}

TEST_F(WatchTest, WrongTokenFailsAtOnceWithAClearMessage) {
  ClusterWatch watch(config("wrong"), options());
  try {
    watch.load(state);
    FAIL() << "load() succeeded with a wrong token";
  } catch (const K8sError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("HTTP 401"), std::string::npos) << m;
    EXPECT_NE(m.find("bearer token was rejected"), std::string::npos) << m;
    EXPECT_NE(m.find(server->url()), std::string::npos) << m;
    EXPECT_FALSE(e.retryable());
  }
  EXPECT_EQ(server->requests().size(), 1u);  // no retries: waiting does not fix a token
}

TEST_F(WatchTest, CertificateFromAnotherCaFailsWithAClearMessage) {
  ClientConfig c = config();
  c.ca_file = pki.other_ca_cert;
  ClusterWatch watch(c, options());
  try {
    watch.load(state);
    FAIL() << "load() trusted a certificate the CA did not sign";
  } catch (const K8sError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("not trusted by the configured CA"), std::string::npos) << m;
    EXPECT_NE(m.find(pki.other_ca_cert), std::string::npos) << m;
  }
  EXPECT_TRUE(server->requests().empty());  // the TLS handshake failed before any request
}

TEST_F(WatchTest, UnreachableServerFailsAfterTheBoundedWait) {
  ClientConfig c = config();
  c.server = "https://127.0.0.1:1";  // nothing listens on port 1
  ClusterWatch watch(c, options());
  try {
    watch.load(state);
    FAIL() << "load() succeeded without a server";
  } catch (const K8sError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("cannot connect"), std::string::npos) << m;
    EXPECT_NE(m.find("gave up after 2s"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace ferry::k8s::test
