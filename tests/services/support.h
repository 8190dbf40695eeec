// Helpers shared by the services tests: Kubernetes objects in one line each, and a fixture that
// builds the node's ServiceSet and shows frontends and backends by their canonical names.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include "agent/model/model.h"
#include "agent/services/services.h"

namespace ferry::services::testing {

using model::Protocol;

inline cni::IPAddr ip(const std::string& s) {
  auto a = cni::IPAddr::parse(s);
  EXPECT_TRUE(a) << s;
  return a.value_or(cni::IPAddr{});
}

inline net::Ip nip(const std::string& s) {
  auto a = net::Ip::parse(s);
  EXPECT_TRUE(a) << s;
  return a.value_or(net::Ip{});
}

inline model::ServicePort port(std::string name, Protocol proto, int port, model::IntOrString target,
                               std::optional<int> node_port = std::nullopt) {
  return model::ServicePort{std::move(name), proto, port, std::move(target), node_port};
}

// A ClusterIP Service in namespace "default" (change the returned value for other types).
inline model::Service service(const std::string& name, std::vector<std::string> cluster_ips,
                              std::vector<model::ServicePort> ports) {
  model::Service s;
  s.meta.name = name;
  s.meta.ns = "default";
  for (const auto& a : cluster_ips) s.cluster_ips.push_back(ip(a));
  s.ports = std::move(ports);
  s.selector = {{"app", name}};
  return s;
}

struct Conditions {
  std::optional<bool> ready, serving, terminating;
};
inline constexpr Conditions kReady{true, true, false};
inline constexpr Conditions kNotReady{false, false, false};
inline constexpr Conditions kServingTerminating{false, true, true};
inline constexpr Conditions kNotServingTerminating{false, false, true};
inline constexpr Conditions kUnset{};

inline model::EndpointSlice::Endpoint ep(const std::string& address, const std::string& node,
                                         Conditions c = kReady) {
  model::EndpointSlice::Endpoint e;
  e.addresses.push_back(ip(address));
  e.node_name = node;
  e.ready = c.ready;
  e.serving = c.serving;
  e.terminating = c.terminating;
  return e;
}

inline model::EndpointSlice::Port slice_port(std::string name, Protocol proto, std::optional<int> number) {
  return model::EndpointSlice::Port{std::move(name), proto, number};
}

// An EndpointSlice of Service `service` in "default"; the address type follows the first endpoint.
inline model::EndpointSlice slice(const std::string& name, const std::string& service,
                                  std::vector<model::EndpointSlice::Port> ports,
                                  std::vector<model::EndpointSlice::Endpoint> endpoints) {
  model::EndpointSlice s;
  s.meta.name = name;
  s.meta.ns = "default";
  s.service_name = service;
  s.ports = std::move(ports);
  s.endpoints = std::move(endpoints);
  if (!s.endpoints.empty() && !s.endpoints.front().addresses.empty() && s.endpoints.front().addresses.front().is_v6())
    s.address_type = model::EndpointSlice::AddressType::IPv6;
  return s;
}

// This node is "n1" with addresses 192.168.0.1, 192.168.1.1 and fd00:192::1.
class ServicesTest : public ::testing::Test {
 protected:
  void add(model::Object o) { cluster.upsert(std::move(o)); }

  const BuildResult& build() {
    result = build_services(cluster, node, node_addresses, ids);
    return result;
  }

  // The frontend named "address:port/PROTO", or a test failure.
  const ServiceFrontend& fe(const std::string& key) {
    for (const auto& [id, f] : result.set.frontends)
      if (frontend_key(f) == key) return f;
    ADD_FAILURE() << "no frontend " << key << "; have: " << frontend_names();
    static const ServiceFrontend none;
    return none;
  }
  bool has_fe(const std::string& key) const {
    for (const auto& [id, f] : result.set.frontends)
      if (frontend_key(f) == key) return true;
    return false;
  }
  std::string frontend_names() const {
    std::string out;
    for (const auto& [id, f] : result.set.frontends) out += frontend_key(f) + " ";
    return out;
  }
  std::vector<std::string> frontend_keys() const {
    std::vector<std::string> out;
    for (const auto& [id, f] : result.set.frontends) out.push_back(frontend_key(f));
    std::sort(out.begin(), out.end());
    return out;
  }
  // Backends as "address:port/PROTO", in the list's order.
  std::vector<std::string> names(const std::vector<BackendId>& ids_) const {
    std::vector<std::string> out;
    for (BackendId id : ids_) {
      auto it = result.set.backends.find(id);
      out.push_back(it == result.set.backends.end() ? "<missing " + std::to_string(id) + ">" : backend_key(it->second));
    }
    return out;
  }
  std::vector<std::string> backends(const std::string& frontend) { return names(fe(frontend).backends); }
  std::vector<std::string> others(const std::string& frontend) { return names(fe(frontend).other_backends); }
  const ServiceBackend& backend(const std::string& key) const {
    for (const auto& [id, b] : result.set.backends)
      if (backend_key(b) == key) return b;
    ADD_FAILURE() << "no backend " << key;
    static const ServiceBackend none;
    return none;
  }

  model::ClusterState cluster;
  std::string node = "n1";
  std::vector<net::Ip> node_addresses{nip("192.168.0.1"), nip("192.168.1.1"), nip("fd00:192::1")};
  ServiceIds ids;
  BuildResult result;
};

using Names = std::vector<std::string>;

}  // namespace ferry::services::testing
