// /healthz, /readyz, /metrics. Reads AgentStatus only: never the backend, never the registry.
#include <httplib.h>

#include <atomic>
#include <thread>

#include <spdlog/spdlog.h>

#include "agent/core/agent.h"

namespace ferry::agent {

struct HttpServer::Impl {
  httplib::Server server;
  std::thread thread;
  std::atomic<bool> finished{false};
};

HttpServer::HttpServer(const ListenAddress& addr, const AgentStatus& status) : impl_(std::make_unique<Impl>()) {
  httplib::Server& s = impl_->server;
  // Two workers are plenty for probes and a scraper; the default pool has 8+ threads.
  s.new_task_queue = [] { return new httplib::ThreadPool(2); };
  // httplib's default adds SO_REUSEPORT, which would let a second agent share the port
  // silently; SO_REUSEADDR alone still allows a quick restart.
  s.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  s.Get("/healthz", [&status](const httplib::Request&, httplib::Response& res) {
    if (status.healthy()) {
      res.set_content("ok\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content("event loop has not run for more than 10s\n", "text/plain");
    }
  });
  s.Get("/readyz", [&status](const httplib::Request&, httplib::Response& res) {
    std::string reason;
    if (status.ready(&reason)) {
      res.set_content("ok\n", "text/plain");
    } else {
      res.status = 503;
      res.set_content("not ready: " + reason + "\n", "text/plain");
    }
  });
  s.Get("/metrics", [&status](const httplib::Request&, httplib::Response& res) {
    res.set_content(render_metrics(status.metrics()), "text/plain; version=0.0.4; charset=utf-8");
  });
  if (addr.port == 0) {
    port_ = s.bind_to_any_port(addr.host);
    if (port_ <= 0) throw AgentError("failed to listen on " + addr.host + ":0");
  } else {
    if (!s.bind_to_port(addr.host, addr.port))
      throw AgentError("failed to listen on " + addr.host + ":" + std::to_string(addr.port) +
                       " (address in use or not local?); see --listen");
    port_ = addr.port;
  }
  impl_->thread = std::thread([impl = impl_.get()] {
    impl->server.listen_after_bind();
    impl->finished = true;
  });
  spdlog::info("serving /healthz, /readyz, /metrics on {}:{}", addr.host, port_);
}

HttpServer::~HttpServer() {
  // stop() only acts once the server runs; a destructor right after the constructor waits
  // for that (or for listen_after_bind to give up).
  while (!impl_->finished) {
    if (impl_->server.is_running()) {
      impl_->server.stop();
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace ferry::agent
