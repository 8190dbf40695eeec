// NetworkPolicy in the agent: compile (policy/) from the cluster state, the registry's pods and
// the node's addresses; apply through the backend only when the compiled set changed; persist
// identities (stable across restarts) and policy.json for ferryctl.
#include <spdlog/spdlog.h>

#include "agent/core/agent.h"
#include "agent/core/files.h"
#include "agent/model/model.h"
#include "agent/registry/registry.h"

namespace ferry::agent {

namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kIdentitiesFile = "identities.json";
constexpr const char* kPolicyFile = "policy.json";

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

json entries_json(const std::vector<dataplane::PolicyEntry>& entries) {
  json out = json::array();
  for (const dataplane::PolicyEntry& e : entries)
    out.push_back({{"peer", e.peer}, {"proto", e.proto}, {"port_first", e.port_first}, {"port_last", e.port_last}});
  return out;
}

size_t count_entries(const dataplane::PolicySet& set, dataplane::Direction dir) {
  size_t n = 0;
  for (const auto& [id, ep] : set.endpoints) n += (dir == dataplane::Direction::Ingress ? ep.ingress : ep.egress).size();
  return n;
}

size_t count_isolated(const dataplane::PolicySet& set, dataplane::Direction dir) {
  size_t n = 0;
  for (const auto& [id, ep] : set.endpoints)
    n += dir == dataplane::Direction::Ingress ? ep.ingress_isolated : ep.egress_isolated;
  return n;
}

}  // namespace

std::vector<net::Ip> node_addresses() {
  net::Socket sock = net::Socket::open();
  std::vector<net::Ip> out;
  for (const net::Address& a : net::list_addresses(sock)) out.push_back(a.prefix.ip);
  return out;
}

json policy_file_json(const policy::CompileResult& compiled, const std::vector<policy::LocalEndpoint>& endpoints,
                      const PolicyFileContext& ctx) {
  json eps = json::array();
  for (const policy::LocalEndpoint& le : endpoints) {
    json ips = json::array();
    for (const net::Ip& ip : le.ips) ips.push_back(ip.str());
    auto pod = compiled.endpoint_pods.find(le.endpoint_id);
    const bool known = pod != compiled.endpoint_pods.end();
    // Unknown pods (no Pod object yet) show what the record says, if anything.
    const std::string pod_name = known ? pod->second
                                 : le.pod_name.empty() ? ""
                                                       : le.pod_namespace + "/" + le.pod_name;
    auto pols = compiled.endpoint_policies.find(le.endpoint_id);
    auto pol = compiled.set.endpoints.find(le.endpoint_id);
    const dataplane::EndpointPolicy none;  // absent = not isolated
    const dataplane::EndpointPolicy& p = pol == compiled.set.endpoints.end() ? none : pol->second;
    eps.push_back({{"endpoint_id", le.endpoint_id},
                   {"pod", pod_name},
                   {"pod_known", known},
                   {"ips", ips},
                   {"policies", pols != compiled.endpoint_policies.end() ? pols->second : std::vector<std::string>{}},
                   {"ingress", {{"isolated", p.ingress_isolated}, {"entries", entries_json(p.ingress)}}},
                   {"egress", {{"isolated", p.egress_isolated}, {"entries", entries_json(p.egress)}}}});
  }
  json ids = json::array();
  for (const auto& [id, info] : compiled.identities) ids.push_back({{"identity", id}, {"info", info.to_json()}});
  json ipcache = json::array();
  for (const dataplane::IpcacheEntry& e : compiled.set.ipcache)
    ipcache.push_back({{"prefix", e.prefix.str()}, {"identity", e.identity}});
  return {{"node", ctx.node},       {"datapath", ctx.datapath}, {"bpffs_root", ctx.bpffs_root},
          {"enforce", compiled.set.enforce}, {"endpoints", eps}, {"identities", ids},
          {"ipcache", ipcache}};
}

void Agent::load_identities() {
  const std::string path = config_.state_dir + "/" + kIdentitiesFile;
  const std::string text = read_file_text(path);
  policy_file_written_ = read_file_text(config_.state_dir + "/" + kPolicyFile);
  if (text.empty()) return;
  try {
    json j = json::parse(text);
    identities_.load(j);
    identities_written_ = identities_.save().dump(2) + "\n";
    spdlog::info("policy: {} identities from {}", identities_.identities().size(), path);
  } catch (const std::exception& e) {
    // Losing identities costs one rewrite of the policy maps, not correctness: start afresh.
    identities_ = policy::IdentityAllocator();
    spdlog::warn("policy: ignoring malformed identity file \"{}\": {}", path, e.what());
  }
}

std::string Agent::sync_policy(const char* why, bool force) {
  std::string error;
  auto fail = [&](const std::string& what) {
    if (error.empty()) error = what;
    spdlog::error("{}: policy: {}", why, what);
  };
  // State files are rewritten only when their text changes; a failed write fails the pass
  // (retried) but does not keep the policy from the datapath.
  auto write_if_changed = [&](const char* file, const std::string& text, std::string& written) {
    if (text == written) return;
    try {
      write_file_atomic(config_.state_dir + "/" + file, text);
      written = text;
    } catch (const std::exception& e) {
      fail(e.what());
    }
  };
  try {
    static const model::ClusterState kEmptyCluster;
    const model::ClusterState* state = parts_.cluster->state();
    policy::CompileInput in;
    in.cluster = state ? state : &kEmptyCluster;
    in.node = config_.node;
    in.enforce = config_.policy == "on";
    if (parts_.host_addresses) in.host_ips = parts_.host_addresses();
    for (registry::EndpointRegistry::PodEndpoint& p : parts_.registry->pod_endpoints())
      in.endpoints.push_back({p.endpoint_id, std::move(p.pod_namespace), std::move(p.pod_name), std::move(p.ips)});

    const Clock::time_point t0 = Clock::now();
    policy::CompileResult compiled = policy::compile(in, identities_);
    const double compile_s = seconds_since(t0);
    metrics_.policy_compile_duration.observe(compile_s);

    // Identities reach the disk before the kernel: a crash after the apply cannot renumber them.
    write_if_changed(kIdentitiesFile, identities_.save().dump(2) + "\n", identities_written_);

    const bool changed = !applied_policy_ || *applied_policy_ != compiled.set;
    double apply_s = 0;
    if (changed || force) {
      applied_policy_.reset();  // unknown until program_policy returns
      const Clock::time_point t1 = Clock::now();
      backend_->program_policy(compiled.set);
      apply_s = seconds_since(t1);
      ++metrics_.policy_applies_total;
      metrics_.policy_apply_duration.observe(apply_s);
      applied_policy_ = compiled.set;
    }

    const dataplane::PolicySet& set = compiled.set;
    metrics_.policy_enforced = set.enforce;
    metrics_.policy_identities = compiled.identities.size();
    metrics_.policy_ipcache_entries = set.ipcache.size();
    metrics_.policy_entries_ingress = count_entries(set, dataplane::Direction::Ingress);
    metrics_.policy_entries_egress = count_entries(set, dataplane::Direction::Egress);
    metrics_.policy_isolated_ingress = count_isolated(set, dataplane::Direction::Ingress);
    metrics_.policy_isolated_egress = count_isolated(set, dataplane::Direction::Egress);
    if (changed)
      spdlog::info(
          "{}: policy applied: {} endpoints ({} isolated ingress, {} egress), {} + {} entries, {} identities, {} "
          "ipcache; compile {:.2f} ms, apply {:.2f} ms",
          why, in.endpoints.size(), metrics_.policy_isolated_ingress, metrics_.policy_isolated_egress,
          metrics_.policy_entries_ingress, metrics_.policy_entries_egress, metrics_.policy_identities,
          metrics_.policy_ipcache_entries, compile_s * 1e3, apply_s * 1e3);
    else
      spdlog::debug("{}: policy unchanged (compile {:.2f} ms{})", why, compile_s * 1e3, force ? ", re-applied" : "");

    write_if_changed(kPolicyFile,
                     policy_file_json(compiled, in.endpoints, {config_.node, backend_->name(), config_.bpffs_root})
                             .dump(2) + "\n",
                     policy_file_written_);
  } catch (const std::exception& e) {
    applied_policy_.reset();  // what the backend holds is unknown: the retry re-applies
    fail(e.what());
  }
  if (!error.empty()) ++metrics_.policy_errors_total;
  policy_ok_ = error.empty();
  policy_error_ = error;
  update_ready();
  return error;
}

void Agent::update_ready() {
  if (!started_) return;  // start() says "starting ..." until it is done
  if (!last_reconcile_ok_) status_.set_ready(false, "last reconcile failed: " + last_error_);
  else if (!policy_ok_) status_.set_ready(false, "last policy pass failed: " + policy_error_);
  else status_.set_ready(true, "");
}

}  // namespace ferry::agent
