// Reconciler: desired endpoints vs the backend's installed ones; errors per endpoint.
#include <spdlog/spdlog.h>

#include "agent/core/agent.h"

namespace ferry::agent {

namespace {

std::string describe(const dataplane::Endpoint& ep) {
  return "endpoint " + std::to_string(ep.endpoint_id) + " (" + ep.host_veth + ", ifindex " +
         std::to_string(ep.host_ifindex) + ")";
}

uint64_t kernel_writes(dataplane::Dataplane& backend) {
  try {
    return backend.stats().kernel_writes;
  } catch (const std::exception& e) {
    spdlog::warn("{} datapath: reading stats failed: {}", backend.name(), e.what());
    return 0;
  }
}

}  // namespace

ReconcileResult Reconciler::apply(const std::vector<dataplane::Endpoint>& desired,
                                  const std::vector<dataplane::Endpoint>& installed, size_t desired_count) {
  ReconcileResult r;
  r.desired = desired_count;
  dataplane::EndpointDiff diff = dataplane::diff_endpoints(desired, installed);
  // Removes first: a remove of an interface's previous endpoint must not undo its new one.
  for (const dataplane::Endpoint& ep : diff.remove) {
    try {
      backend_.remove_endpoint(ep);
      ++r.removed;
      spdlog::info("removed {}", describe(ep));
    } catch (const std::exception& e) {
      r.errors.push_back("remove " + describe(ep) + ": " + e.what());
    }
  }
  for (const dataplane::Endpoint& ep : diff.program) {
    try {
      backend_.program_endpoint(ep);
      ++r.programmed;
      spdlog::info("programmed {}", describe(ep));
    } catch (const std::exception& e) {
      r.errors.push_back("program " + describe(ep) + ": " + e.what());
    }
  }
  for (const std::string& err : r.errors) spdlog::error("reconcile: {}", err);
  return r;
}

ReconcileResult Reconciler::reconcile_all(const std::vector<dataplane::Endpoint>& desired) {
  auto t0 = std::chrono::steady_clock::now();
  uint64_t writes0 = kernel_writes(backend_);
  ReconcileResult r;
  try {
    r = apply(desired, backend_.installed_endpoints(), desired.size());
  } catch (const std::exception& e) {
    r.desired = desired.size();
    r.errors.push_back(std::string("reading installed endpoints: ") + e.what());
    spdlog::error("reconcile: {}", r.errors.back());
  }
  r.kernel_writes = kernel_writes(backend_) - writes0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

ReconcileResult Reconciler::reconcile_one(uint32_t endpoint_id, const std::optional<dataplane::Endpoint>& desired) {
  auto t0 = std::chrono::steady_clock::now();
  uint64_t writes0 = kernel_writes(backend_);
  ReconcileResult r;
  try {
    std::vector<dataplane::Endpoint> want;
    if (desired) want.push_back(*desired);
    // The installed endpoints that concern this one: its id, and whatever else sits on its
    // interface (an id the agent forgot, e.g. after its state directory was lost).
    std::vector<dataplane::Endpoint> have;
    for (dataplane::Endpoint& ep : backend_.installed_endpoints())
      if (ep.endpoint_id == endpoint_id || (desired && ep.host_ifindex == desired->host_ifindex))
        have.push_back(std::move(ep));
    r = apply(want, have, want.size());
  } catch (const std::exception& e) {
    r.desired = desired ? 1 : 0;
    r.errors.push_back("endpoint " + std::to_string(endpoint_id) + ": reading installed endpoints: " + e.what());
    spdlog::error("reconcile: {}", r.errors.back());
  }
  r.kernel_writes = kernel_writes(backend_) - writes0;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace ferry::agent
