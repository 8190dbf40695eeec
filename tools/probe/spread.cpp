// `ferry-probe spread`: many new connections to one destination (a Service address), counted
// by the server that answered each. Servers answer with their pod name, so the counts show how
// a load balancer spreads new connections; with `each`, every connection's wall-clock start
// time says which backend new connections reached after a change (tests/harness/services).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <thread>

#include "probe.h"

namespace ferry::probe {
namespace {

double wall_seconds_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// connect_once that never throws: a probe that cannot even start is a failed connection.
nlohmann::json one_connection(const SpreadOptions& opts) {
  const double started = wall_seconds_now();
  nlohmann::json j;
  try {
    j = connect_once(opts.proto, opts.to, opts.port, opts.timeout_ms).to_json();
  } catch (const std::exception& e) {
    j = {{"ok", false}, {"error", e.what()}};
  }
  j["t"] = started;
  return j;
}

nlohmann::json summarize(const SpreadOptions& opts, const std::vector<nlohmann::json>& connections) {
  std::map<std::string, int> servers, sources, errors;
  int answered = 0;
  for (const auto& c : connections) {
    if (c.value("ok", false)) {
      ++answered;
      ++servers[c["server"].is_string() ? c["server"].get<std::string>() : std::string("(none)")];
      if (c["seen_source"].is_string()) ++sources[c["seen_source"].get<std::string>()];
    } else {
      ++errors[c.value("error", std::string("?"))];
    }
  }
  nlohmann::json out = {{"proto", opts.proto}, {"to", opts.to},         {"port", opts.port},
                        {"connections", connections.size()},             {"answered", answered},
                        {"servers", servers},  {"seen_sources", sources}, {"errors", errors}};
  if (opts.each) {
    nlohmann::json list = nlohmann::json::array();
    for (const auto& c : connections) {
      nlohmann::json e = {{"t", c["t"]}, {"ok", c.value("ok", false)}};
      if (e["ok"]) {
        e["server"] = c["server"];
        e["seen_source"] = c["seen_source"];
      } else {
        e["error"] = c.value("error", std::string("?"));
      }
      list.push_back(std::move(e));
    }
    out["each"] = std::move(list);
  }
  return out;
}

}  // namespace

nlohmann::json spread(const SpreadOptions& opts) {
  if (opts.proto == "icmp") throw ProbeError("spread needs a server that names itself: tcp, udp or sctp");
  make_endpoint(opts.to, opts.port);  // bad input fails here, not once per connection
  std::vector<nlohmann::json> connections;
  if (opts.duration_s > 0) {
    // A client loop: one connection after the other, `interval_ms` apart, for the duration.
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(opts.duration_s);
    const auto interval = std::chrono::milliseconds(opts.interval_ms);
    auto next = std::chrono::steady_clock::now();
    while (std::chrono::steady_clock::now() < end) {
      connections.push_back(one_connection(opts));
      next += interval;
      std::this_thread::sleep_until(next);
    }
  } else {
    connections.resize(size_t(opts.count));
    std::atomic<size_t> next{0};
    auto worker = [&] {
      for (size_t i = next++; i < connections.size(); i = next++) connections[i] = one_connection(opts);
    };
    std::vector<std::thread> threads;
    for (size_t t = 0; t < std::max<size_t>(1, std::min(opts.parallel, connections.size())); ++t)
      threads.emplace_back(worker);
    for (auto& t : threads) t.join();
  }
  return summarize(opts, connections);
}

}  // namespace ferry::probe
