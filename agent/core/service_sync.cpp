// Services in the agent: build the node's ServiceSet (agent/services) from the cluster state,
// apply it through the backend only when it changed; persist the frontend/backend ids (stable
// across restarts) and services.json for ferryctl.
#include <sys/socket.h>

#include <algorithm>

#include <spdlog/spdlog.h>

#include "agent/core/agent.h"
#include "agent/core/files.h"
#include "agent/model/model.h"

namespace ferry::agent {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kServiceIdsFile = "services-ids.json";
constexpr const char* kServicesFile = "services.json";

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

bool is_loopback_or_link_local(const net::Ip& ip) {
  const auto& b = ip.bytes;
  if (ip.family == AF_INET) return b[0] == 127 || (b[0] == 169 && b[1] == 254);
  const bool loopback = std::all_of(b.begin(), b.begin() + 15, [](uint8_t x) { return x == 0; }) && b[15] == 1;
  return loopback || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80);
}

net::Prefix prefix_of(const cni::IPNet& n) { return {{n.addr.family, n.addr.bytes}, n.prefix}; }

}  // namespace

std::vector<net::Ip> nodeport_addresses_of(const std::vector<net::Ip>& host, const model::Node* node,
                                           const std::vector<net::Prefix>& wanted) {
  std::vector<net::Ip> known = host;
  std::vector<net::Prefix> pod_cidrs;
  if (node) {
    for (const cni::IPAddr& a : node->internal_ips) known.push_back({a.family, a.bytes});
    for (const cni::IPNet& n : node->pod_cidrs) pod_cidrs.push_back(prefix_of(n));
  }
  std::vector<net::Ip> out;
  for (const net::Ip& ip : known) {
    bool keep;
    if (!wanted.empty())
      keep = std::any_of(wanted.begin(), wanted.end(), [&](const net::Prefix& p) { return p.contains(ip); });
    else
      keep = !is_loopback_or_link_local(ip) &&
             std::none_of(pod_cidrs.begin(), pod_cidrs.end(), [&](const net::Prefix& p) { return p.contains(ip); });
    if (keep) out.push_back(ip);
  }
  auto order = [](const net::Ip& a, const net::Ip& b) { return std::tie(a.family, a.bytes) < std::tie(b.family, b.bytes); };
  std::sort(out.begin(), out.end(), order);
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

json services_file_json(const dataplane::ServiceSet& set, const ServicesFileContext& ctx) {
  json j = services::to_json(set);
  json addrs = json::array();
  for (const net::Ip& ip : ctx.nodeport_addresses) addrs.push_back(ip.str());
  j["node"] = ctx.node;
  j["datapath"] = ctx.datapath;
  j["bpffs_root"] = ctx.bpffs_root;
  j["enabled"] = ctx.enabled;
  j["lb_algorithm"] = ctx.lb_algorithm;
  j["nodeport_addresses"] = addrs;
  j["problems"] = ctx.problems;
  return j;
}

void Agent::load_service_ids() {
  const std::string path = config_.state_dir + "/" + kServiceIdsFile;
  const std::string text = read_file_text(path);
  services_file_written_ = read_file_text(config_.state_dir + "/" + kServicesFile);
  if (text.empty()) return;
  try {
    service_ids_.load(json::parse(text));
    service_ids_written_ = service_ids_.save().dump(2) + "\n";
    spdlog::info("services: {} frontend and {} backend ids from {}", service_ids_.frontends.ids().size(),
                 service_ids_.backends.ids().size(), path);
  } catch (const std::exception& e) {
    // New ids cost one rewrite of the service maps and break conntrack's memory of the old ones.
    service_ids_ = services::ServiceIds();
    spdlog::warn("services: ignoring malformed id file \"{}\": {}", path, e.what());
  }
}

const model::ClusterState& Agent::services_input(const model::ClusterState& state, model::ClusterState& view,
                                                 std::vector<std::string>& problems) const {
  if (config_.datastore == "kubernetes") return state;  // the API server allocates and slices
  for (const model::Service* svc : state.services())
    if (svc->type != model::Service::Type::ExternalName && !svc->headless && svc->cluster_ips.empty())
      problems.push_back("Service " + svc->meta.ns + "/" + svc->meta.name +
                         " has no spec.clusterIP: skipped (a manifest directory has no ClusterIP allocator; "
                         "give it one in the manifest)");
  std::vector<model::EndpointSlice> derived = model::derive_endpoint_slices(state);
  if (derived.empty()) return state;
  std::vector<model::Object> objects;  // what build_services reads: Services and EndpointSlices
  for (const model::Service* s : state.services()) objects.emplace_back(*s);
  for (const model::EndpointSlice* s : state.endpoint_slices()) objects.emplace_back(*s);
  for (model::EndpointSlice& s : derived) objects.emplace_back(std::move(s));
  view.replace_all(std::move(objects));
  return view;
}

void Agent::sync_services(const char* why, bool force) {
  std::string error;
  auto write_if_changed = [&](const char* file, const std::string& text, std::string& written) {
    if (text == written) return;
    write_file_atomic(config_.state_dir + "/" + file, text);
    written = text;
  };
  try {
    static const model::ClusterState kEmptyCluster;
    const model::ClusterState* state = parts_.cluster->state();
    const bool enabled = config_.services == "on";
    std::vector<net::Ip> host = parts_.host_addresses ? parts_.host_addresses() : std::vector<net::Ip>{};
    std::vector<net::Ip> nodeports =
        nodeport_addresses_of(host, state ? state->node(config_.node) : nullptr, config_.nodeport_addresses);

    const Clock::time_point t0 = Clock::now();
    std::vector<std::string> problems;
    services::BuildResult built;
    if (enabled) {
      model::ClusterState view;
      const model::ClusterState& input = services_input(state ? *state : kEmptyCluster, view, problems);
      built = services::build_services(input, config_.node, nodeports, service_ids_);
    }
    const double build_s = seconds_since(t0);
    metrics_.services_build_duration.observe(build_s);
    problems.insert(problems.end(), built.problems.begin(), built.problems.end());
    for (const std::string& p : problems)
      if (std::find(service_problems_.begin(), service_problems_.end(), p) == service_problems_.end())
        spdlog::warn("services: {}", p);
    service_problems_ = problems;
    metrics_.services_problems = problems.size();

    // Ids reach the disk before the kernel: a crash after the apply cannot renumber them.
    write_if_changed(kServiceIdsFile, service_ids_.save().dump(2) + "\n", service_ids_written_);

    const dataplane::ServiceSet& set = built.set;
    const bool changed = !applied_services_ || *applied_services_ != set;
    double apply_s = 0;
    if (changed || force) {
      applied_services_.reset();  // unknown until program_services returns
      const Clock::time_point t1 = Clock::now();
      backend_->program_services(set);
      apply_s = seconds_since(t1);
      ++metrics_.services_applies_total;
      metrics_.services_apply_duration.observe(apply_s);
      applied_services_ = set;
    }
    metrics_.services_frontends = set.frontends.size();
    metrics_.services_backends = set.backends.size();
    if (changed)
      spdlog::info("{}: services applied{}: {} frontends, {} backends, {} problems; build {:.2f} ms, apply {:.2f} ms",
                   why, enabled ? "" : " (--services off: nothing translated)", set.frontends.size(),
                   set.backends.size(), problems.size(), build_s * 1e3, apply_s * 1e3);
    else
      spdlog::debug("{}: services unchanged (build {:.2f} ms{})", why, build_s * 1e3, force ? ", re-applied" : "");

    ServicesFileContext ctx{config_.node, backend_->name(), config_.bpffs_root, enabled, config_.lb_algorithm,
                            nodeports, problems};
    write_if_changed(kServicesFile, services_file_json(set, ctx).dump(2) + "\n", services_file_written_);
  } catch (const std::exception& e) {
    applied_services_.reset();  // what the backend holds is unknown: the retry re-applies
    error = e.what();
  }
  if (!error.empty()) {
    ++metrics_.services_errors_total;
    // A backend that keeps failing the same way is logged once, not every 5 s.
    if (error != services_error_) spdlog::error("{}: services: {}", why, error);
    else spdlog::debug("{}: services: {}", why, error);
  } else if (!services_ok_) {
    spdlog::info("{}: services: recovered", why);
  }
  services_ok_ = error.empty();
  services_error_ = error;
}

}  // namespace ferry::agent
