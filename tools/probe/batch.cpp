// `ferry-probe batch`: many probes from one network namespace at once, for the NetworkPolicy
// matrices (tests/harness/netpol): every probe runs in its own thread, so a whole row of a
// truth table costs one timeout, not one timeout per blocked cell.
#include <algorithm>
#include <atomic>
#include <sstream>
#include <thread>

#include "probe.h"

namespace ferry::probe {

std::vector<BatchProbe> parse_batch(std::istream& in) {
  std::vector<BatchProbe> probes;
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string::npos || line[0] == '#') continue;
    std::istringstream words(line);
    BatchProbe p;
    long port = 0;
    if (!(words >> p.id >> p.proto >> p.to >> port) || port < 0 || port > 65535)
      throw ProbeError("batch line " + std::to_string(line_no) + ": expected \"<id> <proto> <ip> <port>\", got \"" +
                       line + "\"");
    if (p.proto != "tcp" && p.proto != "udp" && p.proto != "sctp" && p.proto != "icmp")
      throw ProbeError("batch line " + std::to_string(line_no) + ": unknown protocol \"" + p.proto + "\"");
    p.port = uint16_t(port);
    probes.push_back(std::move(p));
  }
  return probes;
}

std::vector<nlohmann::json> run_batch(const std::vector<BatchProbe>& probes, int timeout_ms, size_t max_parallel) {
  std::vector<nlohmann::json> results(probes.size());
  std::atomic<size_t> next{0};
  auto worker = [&] {
    for (size_t i = next++; i < probes.size(); i = next++) {
      const BatchProbe& p = probes[i];
      nlohmann::json j;
      try {
        j = connect_once(p.proto, p.to, p.port, timeout_ms).to_json();
      } catch (const std::exception& e) {  // bad address, no socket: a failed cell that says why
        j = {{"ok", false}, {"proto", p.proto}, {"to", p.to}, {"port", p.port}, {"error", e.what()}};
      }
      j["id"] = p.id;
      results[i] = std::move(j);
    }
  };
  std::vector<std::thread> threads;
  const size_t n = std::max<size_t>(1, std::min(max_parallel, probes.size()));
  threads.reserve(n);
  for (size_t t = 0; t < n; ++t) threads.emplace_back(worker);
  for (std::thread& t : threads) t.join();
  return results;
}

}  // namespace ferry::probe
