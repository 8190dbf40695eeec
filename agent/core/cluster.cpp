// ClusterFeed over the manifest directory source (agent/source) and ClusterState (agent/model).
#include <filesystem>

#include <spdlog/spdlog.h>

#include "agent/core/agent.h"
#include "agent/model/model.h"
#include "agent/source/source.h"

namespace ferry::agent {

namespace {

class ManifestFeed : public ClusterFeed {
 public:
  explicit ManifestFeed(const std::string& dir) {
    std::error_code ec;
    if (!std::filesystem::exists(dir, ec)) {
      // An empty cluster until manifests arrive, rather than an agent that cannot start.
      spdlog::warn("manifest directory \"{}\" does not exist; creating it (empty cluster state)", dir);
      std::filesystem::create_directories(dir, ec);
    }
    try {
      source_ = std::make_unique<source::ManifestDirSource>(dir);
    } catch (const std::exception& e) {
      throw AgentError(std::string("manifest datastore: ") + e.what());
    }
  }

  void load() override {
    try {
      source_->load();
    } catch (const std::exception& e) {
      throw AgentError(std::string("manifest datastore: ") + e.what());
    }
    // Problems were logged by the source with their file names; they never block the agent.
    state_.replace_all(source_->objects());
    spdlog::info("cluster state from {}: {} objects, {} problems", source_->dir(), state_.size(),
                 source_->errors().size());
  }

  int fd() const override { return source_->fd(); }

  bool handle_events() override {
    bool changed = false;
    try {
      if (source_->handle_events()) changed = state_.replace_all(source_->objects());
    } catch (const std::exception& e) {
      spdlog::error("manifest datastore: {}", e.what());
      return false;
    }
    if (changed) spdlog::info("cluster state changed: {} objects (revision {})", state_.size(), state_.revision());
    return changed;
  }

  const model::ClusterState* state() const override { return &state_; }

 private:
  std::unique_ptr<source::ManifestDirSource> source_;
  model::ClusterState state_;
};

}  // namespace

std::map<std::string, uint64_t> ClusterFeed::object_counts() const {
  std::map<std::string, uint64_t> out;
  if (const model::ClusterState* s = state())
    for (const model::KindCount& c : s->counts()) out[std::string(model::kind_name(c.kind))] = c.count;
  return out;
}

std::unique_ptr<ClusterFeed> make_manifest_feed(const std::string& dir) { return std::make_unique<ManifestFeed>(dir); }

}  // namespace ferry::agent
