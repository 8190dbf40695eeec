// The IR's names, its JSON for ferryctl, and the Maglev table of a frontend.
#include <netinet/in.h>

#include "agent/services/services.h"

namespace ferry::services {
namespace {

std::string address_port(const net::Ip& ip, uint16_t port, uint8_t proto) {
  std::string a = ip.family == AF_INET6 ? "[" + ip.str() + "]" : ip.str();
  return a + ":" + std::to_string(port) + "/" + std::string(proto_name(proto));
}

}  // namespace

std::string frontend_key(const ServiceFrontend& f) { return address_port(f.address, f.port, f.proto); }
std::string backend_key(const ServiceBackend& b) { return address_port(b.address, b.port, b.proto); }

std::string_view kind_name(FrontendKind k) {
  switch (k) {
    case FrontendKind::NodePort: return "NodePort";
    case FrontendKind::ExternalIP: return "ExternalIP";
    case FrontendKind::ClusterIP: break;
  }
  return "ClusterIP";
}

std::string_view state_name(BackendState s) {
  switch (s) {
    case BackendState::Terminating: return "terminating";
    case BackendState::NotServing: return "not-serving";
    case BackendState::Active: break;
  }
  return "active";
}

std::string_view proto_name(uint8_t proto) {
  switch (proto) {
    case IPPROTO_TCP: return "TCP";
    case IPPROTO_UDP: return "UDP";
    case IPPROTO_SCTP: return "SCTP";
    default: return "?";
  }
}

nlohmann::json to_json(const ServiceSet& set) {
  auto backend_list = [&](const std::vector<BackendId>& ids) {
    nlohmann::json out = nlohmann::json::array();
    for (BackendId id : ids) {
      auto it = set.backends.find(id);
      if (it == set.backends.end()) continue;
      const ServiceBackend& b = it->second;
      out.push_back({{"id", id}, {"address", b.address.str()}, {"port", b.port},
                     {"state", state_name(b.state)}, {"node", b.node}, {"local", b.local}});
    }
    return out;
  };
  nlohmann::json frontends = nlohmann::json::array();
  for (const auto& [id, f] : set.frontends) {
    nlohmann::json j = {{"id", id},
                        {"address", f.address.str()},
                        {"port", f.port},
                        {"protocol", proto_name(f.proto)},
                        {"kind", kind_name(f.kind)},
                        {"service", f.service},
                        {"port_name", f.port_name},
                        {"traffic_policy", f.traffic_policy == TrafficPolicy::Local ? "Local" : "Cluster"},
                        {"when_empty", f.when_empty == WhenEmpty::Reject ? "reject" : "drop"},
                        {"backends", backend_list(f.backends)},
                        {"other_backends", backend_list(f.other_backends)}};
    if (f.affinity) j["affinity_timeout_seconds"] = f.affinity_timeout_seconds;
    if (f.pod_and_host_backends) j["pod_and_host_backends"] = backend_list(*f.pod_and_host_backends);
    frontends.push_back(std::move(j));
  }
  return {{"frontends", frontends}};
}

std::vector<BackendId> maglev_table_for(const ServiceSet& set, const ServiceFrontend& frontend,
                                        uint32_t table_size) {
  std::vector<MaglevBackend> backends;
  for (BackendId id : frontend.backends) {
    auto it = set.backends.find(id);
    if (it != set.backends.end()) backends.push_back(MaglevBackend{backend_key(it->second), id, 1});
  }
  return maglev_table(backends, table_size);
}

}  // namespace ferry::services
