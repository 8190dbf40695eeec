// plugins/bridge/endpoint.h — the endpoint record ferry-bridge leaves for the node agent
// (DESIGN.md "register endpoint"): <dir>/<containerID>-<ifname>.json, written atomically
// (temporary file + rename), removed by DEL and by GC. After each change the agent is told the
// file name in one datagram on its unix socket, if the socket exists; no agent is not an error.
#pragma once

#include <chrono>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cni/cni.h"

namespace ferry::bridge {

struct EndpointRecord {
  std::string container_id;
  std::string ifname;
  std::string netns;
  std::string network;
  std::string bridge;
  std::string host_veth;
  int host_veth_index = 0;
  std::string container_mac;
  int mtu = 0;
  std::vector<std::string> ips;       // "10.1.0.5/24"
  std::vector<std::string> gateways;  // "10.1.0.1"
  std::string pod_namespace;          // K8S_POD_NAMESPACE
  std::string pod_name;               // K8S_POD_NAME

  nlohmann::json to_json() const;
  static std::optional<EndpointRecord> from_json(const nlohmann::json& j);
};

// Throws cni::Error(kIOFailure) naming the path.
void write_endpoint(const std::string& dir, const EndpointRecord& rec);
std::optional<EndpointRecord> read_endpoint(const std::string& dir, const std::string& container_id,
                                            const std::string& ifname);
// true if a record was there. With `network`, also removes the temporary file an interrupted
// write of that network left.
bool remove_endpoint(const std::string& dir, const std::string& container_id, const std::string& ifname,
                     const std::string& network = {});
// Removes the records (and interrupted writes' temporary files) of `network` whose
// (containerID, ifname) is not in `valid`.
void gc_endpoints(const std::string& dir, const std::string& network, const std::set<cni::Attachment>& valid);
// Best effort, non-blocking; never throws.
void notify_agent(const std::string& socket_path, const std::string& file_name);
// The fail-closed handshake ("agentRequired"): sends the file name from an autobound socket
// and waits for the agent's "ok <file>" (the endpoint is programmed). Throws
// cni::Error(kTryAgainLater) when no agent listens, it answers "error <message>", or it is
// silent for `timeout`, so the runtime retries instead of starting an unprotected pod.
void confirm_with_agent(const std::string& socket_path, const std::string& file_name, std::chrono::milliseconds timeout);

}  // namespace ferry::bridge
