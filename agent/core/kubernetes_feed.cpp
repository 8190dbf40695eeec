// ClusterFeed over the Kubernetes API (agent/k8s): the same ClusterState the manifest
// directory fills, so the reconcile, overlay and policy paths are the same.
#include <spdlog/spdlog.h>

#include "agent/core/agent.h"
#include "agent/k8s/k8s.h"
#include "agent/model/model.h"

namespace ferry::agent {

namespace {

class KubernetesFeed : public ClusterFeed {
 public:
  explicit KubernetesFeed(const k8s::ClientConfig& config) : watch_(config) {
    spdlog::info("kubernetes datastore: {} from {}", config.server, config.origin);
  }

  void load() override {
    try {
      watch_.load(state_);
    } catch (const k8s::K8sError& e) {
      throw AgentError(std::string("kubernetes datastore: first sync failed: ") + e.what());
    }
    spdlog::info("cluster state from the Kubernetes API: {} objects, {} skipped", state_.size(),
                 watch_.stats().bad_objects);
  }

  int fd() const override { return watch_.fd(); }

  bool handle_events() override {
    bool changed = watch_.apply(state_);
    if (changed) spdlog::debug("cluster state changed: {} objects (revision {})", state_.size(), state_.revision());
    return changed;
  }

  const model::ClusterState* state() const override { return &state_; }

 private:
  k8s::ClusterWatch watch_;
  model::ClusterState state_;
};

}  // namespace

std::unique_ptr<ClusterFeed> make_kubernetes_feed(const std::string& kubeconfig) {
  try {
    return std::make_unique<KubernetesFeed>(kubeconfig.empty() ? k8s::in_cluster_config()
                                                               : k8s::load_kubeconfig(kubeconfig));
  } catch (const k8s::K8sError& e) {
    throw AgentError(std::string("kubernetes datastore: ") + e.what());
  }
}

}  // namespace ferry::agent
