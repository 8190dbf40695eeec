// List + watch: the resources ferry reads, paged lists, and ClusterWatch (one thread per
// resource streaming its watch; the owner's thread applies the queued changes).
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/k8s/k8s.h"

namespace ferry::k8s {

namespace {

std::string url_escape(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

std::string str_at(const nlohmann::json& j, const char* a, const char* b) {
  if (!j.is_object() || !j.contains(a) || !j[a].is_object()) return "";
  const nlohmann::json& inner = j[a];
  return inner.contains(b) && inner[b].is_string() ? inner[b].get<std::string>() : "";
}

std::string with_selector(std::string query, const Resource& r) {
  if (!r.field_selector.empty()) query += "&fieldSelector=" + url_escape(r.field_selector);
  return query;
}

}  // namespace

std::vector<Resource> default_resources() {
  using model::Kind;
  return {
      {Kind::Node, "/api/v1/nodes", ""},
      {Kind::Namespace, "/api/v1/namespaces", ""},
      {Kind::Pod, "/api/v1/pods", "status.phase!=Succeeded,status.phase!=Failed"},
      {Kind::Service, "/api/v1/services", ""},
      {Kind::EndpointSlice, "/apis/discovery.k8s.io/v1/endpointslices", ""},
      {Kind::NetworkPolicy, "/apis/networking.k8s.io/v1/networkpolicies", ""},
  };
}

ListResult list_resource(ApiClient& client, const Resource& resource, int page_size) {
  ListResult out;
  std::string cont;
  for (;;) {
    std::string path = with_selector(resource.path + "?limit=" + std::to_string(page_size), resource);
    if (!cont.empty()) path += "&continue=" + url_escape(cont);
    HttpResponse r = client.get(path);
    if (r.status == 410 && !cont.empty()) {  // the continue token expired: start over
      spdlog::info("kubernetes: list of {} expired between pages; listing again", resource.path);
      out = ListResult{};
      cont.clear();
      continue;
    }
    if (r.status != 200)
      throw K8sError(describe_http_error(client.config(), path, r), r.status != 401 && r.status != 403);
    nlohmann::json list = nlohmann::json::parse(r.body, nullptr, false);
    if (!list.is_object() || (list.contains("items") && !list["items"].is_array() && !list["items"].is_null()))
      throw K8sError("Kubernetes API " + client.config().server + ": GET " + path + ": not a list response");
    if (out.pages++ == 0) out.resource_version = str_at(list, "metadata", "resourceVersion");
    if (list.contains("items") && list["items"].is_array()) {
      for (const nlohmann::json& item : list["items"]) {
        model::ObjectDecode d = model::decode_object(item, resource.kind);
        if (d.object) out.objects.push_back(std::move(*d.object));
        else if (d.error) out.problems.push_back(resource.path + ": " + d.error->message);
      }
    }
    cont = str_at(list, "metadata", "continue");
    if (cont.empty()) return out;
  }
}

// ---------------------------------------------------------------------------------------

namespace {

// One queued change, applied on the owner's thread.
struct Change {
  enum class Type { Upsert, Erase, Replace } type;
  model::Kind kind;
  std::optional<model::Object> object;  // Upsert
  model::ObjectKey key;                 // Erase
  std::vector<model::Object> objects;   // Replace: every object of `kind`
};

enum class WatchEnd { Closed, Gone, Failed };

}  // namespace

struct ClusterWatch::Impl {
  ClientConfig config;
  Options options;
  int event_fd = -1;
  std::atomic<bool> stopping{false};
  mutable std::mutex mu;
  std::condition_variable wake;  // interrupts backoff sleeps at shutdown
  std::deque<Change> queue;
  Stats stats;
  std::map<std::string, std::string> versions;
  std::vector<std::thread> threads;

  void push(Change c) {
    {
      std::lock_guard lock(mu);
      queue.push_back(std::move(c));
    }
    uint64_t one = 1;
    [[maybe_unused]] ssize_t n = write(event_fd, &one, sizeof one);
  }

  void set_version(const Resource& r, const std::string& rv) {
    std::lock_guard lock(mu);
    versions[r.path] = rv;
  }

  // Sleeps ~`backoff` (uniformly in [backoff/2, backoff]: jitter spreads reconnecting agents)
  // and doubles it up to the maximum. Returns false when stopping.
  bool sleep_backoff(std::chrono::milliseconds& backoff) {
    static thread_local std::mt19937 rng(std::random_device{}());
    auto half = backoff.count() / 2;
    std::chrono::milliseconds d(half + std::uniform_int_distribution<long long>(0, half)(rng));
    backoff = std::min(backoff * 2, options.backoff_max);
    std::unique_lock lock(mu);
    return !wake.wait_for(lock, d, [&] { return stopping.load(); });
  }

  // One watch request, streamed until it ends. `rv` follows every event and bookmark.
  WatchEnd watch_once(ApiClient& client, const Resource& r, std::string& rv, bool& got_lines) {
    const std::string path = with_selector(r.path + "?watch=1&allowWatchBookmarks=true&resourceVersion=" +
                                               url_escape(rv) + "&timeoutSeconds=" +
                                               std::to_string(options.watch_timeout.count()),
                                           r);
    bool gone = false;
    auto on_line = [&](const std::string& line) {
      got_lines = true;
      nlohmann::json ev = nlohmann::json::parse(line, nullptr, false);
      if (!ev.is_object() || !ev.contains("type") || !ev["type"].is_string() || !ev.contains("object")) {
        spdlog::warn("kubernetes: watch of {}: not a watch event, skipped: {:.200}", r.path, line);
        return true;
      }
      const std::string type = ev["type"].get<std::string>();
      const nlohmann::json& obj = ev["object"];
      if (type == "ERROR") {
        int code = obj.is_object() && obj.contains("code") && obj["code"].is_number_integer() ? obj["code"].get<int>() : 0;
        std::string message = obj.is_object() && obj.contains("message") && obj["message"].is_string()
                                  ? obj["message"].get<std::string>() : "";
        if (code == 410) {
          gone = true;
          spdlog::info("kubernetes: watch of {} from resourceVersion {}: 410 Gone ({}); relisting", r.path, rv, message);
        } else {
          spdlog::warn("kubernetes: watch of {}: ERROR event {}: {}", r.path, code, message);
        }
        return false;
      }
      const std::string new_rv = str_at(obj, "metadata", "resourceVersion");
      if (type == "BOOKMARK") {
        if (!new_rv.empty()) rv = new_rv;
        std::lock_guard lock(mu);
        ++stats.bookmarks;
        versions[r.path] = rv;
        return true;
      }
      std::optional<Change> change;
      if (type == "DELETED") {
        Change c{Change::Type::Erase, r.kind, std::nullopt, {}, {}};
        c.key.kind = r.kind;
        c.key.name = str_at(obj, "metadata", "name");
        if (model::namespaced(r.kind)) {
          c.key.ns = str_at(obj, "metadata", "namespace");
          if (c.key.ns.empty()) c.key.ns = "default";
        }
        change = std::move(c);
      } else if (type == "ADDED" || type == "MODIFIED") {
        model::ObjectDecode d = model::decode_object(obj, r.kind);
        if (d.object) {
          change = Change{Change::Type::Upsert, r.kind, std::move(d.object), {}, {}};
        } else {
          spdlog::warn("kubernetes: watch of {}: {} object skipped: {}", r.path, type,
                       d.error ? d.error->message : d.note);
          std::lock_guard lock(mu);
          ++stats.bad_objects;
        }
      } else {
        spdlog::warn("kubernetes: watch of {}: unknown event type \"{}\" skipped", r.path, type);
      }
      if (!new_rv.empty()) rv = new_rv;
      {
        // Before the change is queued: whoever sees the change also sees its resourceVersion.
        std::lock_guard lock(mu);
        ++stats.events;
        versions[r.path] = rv;
      }
      if (change) push(std::move(*change));
      return true;
    };
    std::string error_body;
    long status = 0;
    try {
      status = client.stream(path, options.watch_timeout + std::chrono::seconds(30), on_line,
                             [this] { return stopping.load(); }, &error_body);
    } catch (const K8sError& e) {
      spdlog::warn("kubernetes: watch of {} ended: {}", r.path, e.what());
      return WatchEnd::Failed;
    }
    if (gone || status == 410) {
      if (status == 410) spdlog::info("kubernetes: watch of {} from resourceVersion {}: HTTP 410 Gone; relisting", r.path, rv);
      return WatchEnd::Gone;
    }
    if (status != 200) {
      spdlog::warn("kubernetes: {}", describe_http_error(config, path, HttpResponse{status, error_body}));
      return WatchEnd::Failed;
    }
    return WatchEnd::Closed;
  }

  // The watch thread of one resource: watch from `rv`; on 410 relist (a Replace change), on a
  // failure back off and watch again from the last resourceVersion seen.
  void run(const Resource& r, std::string rv) {
    ApiClient client(config);
    std::chrono::milliseconds backoff = options.backoff_initial;
    bool need_list = false;
    bool first = true;
    while (!stopping) {
      if (need_list) {
        try {
          ListResult l = list_resource(client, r, options.page_size);
          for (const std::string& p : l.problems) spdlog::warn("kubernetes: skipped: {}", p);
          rv = l.resource_version;
          {
            std::lock_guard lock(mu);
            ++stats.relists;
            stats.bad_objects += l.problems.size();
            versions[r.path] = rv;
          }
          spdlog::info("kubernetes: relisted {}: {} objects at resourceVersion {}", r.path, l.objects.size(), rv);
          push(Change{Change::Type::Replace, r.kind, std::nullopt, {}, std::move(l.objects)});
          need_list = false;
        } catch (const K8sError& e) {
          spdlog::warn("kubernetes: relist of {} failed: {}", r.path, e.what());
          if (!sleep_backoff(backoff)) return;
          continue;
        }
      }
      if (!first) {
        std::lock_guard lock(mu);
        ++stats.rewatches;
      }
      first = false;
      bool got_lines = false;
      WatchEnd end = watch_once(client, r, rv, got_lines);
      if (stopping) return;
      if (got_lines) backoff = options.backoff_initial;
      if (end == WatchEnd::Gone) {
        need_list = true;
      } else if (end == WatchEnd::Failed || !got_lines) {
        // A server that closes at once must not make us spin; a normal timeout re-watches now.
        if (!sleep_backoff(backoff)) return;
      }
    }
  }
};

ClusterWatch::ClusterWatch(ClientConfig config, Options options) : impl_(std::make_unique<Impl>()) {
  impl_->config = std::move(config);
  impl_->options = std::move(options);
  impl_->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (impl_->event_fd < 0) throw K8sError("eventfd failed");
}

ClusterWatch::~ClusterWatch() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  for (std::thread& t : impl_->threads) t.join();
  close(impl_->event_fd);
}

void ClusterWatch::load(model::ClusterState& state) {
  Impl& m = *impl_;
  const auto deadline = std::chrono::steady_clock::now() + m.options.sync_wait;
  ApiClient client(m.config);
  std::vector<model::Object> all;
  std::vector<std::string> versions;
  for (const Resource& r : m.options.resources) {
    std::chrono::milliseconds backoff = m.options.backoff_initial;
    for (;;) {
      try {
        ListResult l = list_resource(client, r, m.options.page_size);
        for (const std::string& p : l.problems) spdlog::warn("kubernetes: skipped: {}", p);
        m.stats.bad_objects += l.problems.size();
        spdlog::info("kubernetes: listed {}: {} objects ({} pages) at resourceVersion {}", r.path, l.objects.size(),
                     l.pages, l.resource_version);
        std::move(l.objects.begin(), l.objects.end(), std::back_inserter(all));
        versions.push_back(l.resource_version);
        m.set_version(r, l.resource_version);
        break;
      } catch (const K8sError& e) {
        if (!e.retryable()) throw;
        if (std::chrono::steady_clock::now() + backoff > deadline)
          throw K8sError(std::string(e.what()) + " (gave up after " +
                         std::to_string(std::chrono::duration_cast<std::chrono::seconds>(m.options.sync_wait).count()) +
                         "s)");
        spdlog::warn("kubernetes: {}; retrying", e.what());
        if (!m.sleep_backoff(backoff)) throw K8sError("stopped");
      }
    }
  }
  state.replace_all(std::move(all));
  for (size_t i = 0; i < m.options.resources.size(); ++i)
    m.threads.emplace_back([this, i, rv = versions[i]] { impl_->run(impl_->options.resources[i], rv); });
}

int ClusterWatch::fd() const { return impl_->event_fd; }

bool ClusterWatch::apply(model::ClusterState& state) {
  uint64_t count;
  [[maybe_unused]] ssize_t n = read(impl_->event_fd, &count, sizeof count);
  std::deque<Change> changes;
  {
    std::lock_guard lock(impl_->mu);
    changes.swap(impl_->queue);
  }
  bool changed = false;
  for (Change& c : changes) {
    switch (c.type) {
      case Change::Type::Upsert:
        changed |= state.upsert(std::move(*c.object));
        break;
      case Change::Type::Erase:
        changed |= state.erase(c.key);
        break;
      case Change::Type::Replace: {
        // Only this kind: objects gone from the relist are erased, the rest upserted.
        std::set<model::ObjectKey> listed;
        for (const model::Object& o : c.objects) listed.insert(model::key_of(o));
        for (const model::Object& o : state.objects()) {
          model::ObjectKey k = model::key_of(o);
          if (k.kind == c.kind && !listed.count(k)) changed |= state.erase(k);
        }
        for (model::Object& o : c.objects) changed |= state.upsert(std::move(o));
        break;
      }
    }
  }
  return changed;
}

ClusterWatch::Stats ClusterWatch::stats() const {
  std::lock_guard lock(impl_->mu);
  return impl_->stats;
}

std::map<std::string, std::string> ClusterWatch::resource_versions() const {
  std::lock_guard lock(impl_->mu);
  return impl_->versions;
}

}  // namespace ferry::k8s
