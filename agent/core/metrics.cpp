// Prometheus text format and the status the HTTP thread reads.
#include <charconv>
#include <cmath>
#include <sstream>

#include "agent/core/agent.h"

namespace ferry::agent {

namespace {

// Label values escape backslash, double quote and newline.
std::string label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general);  // shortest text that round-trips
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

class Writer {
 public:
  void family(const std::string& name, const char* type, const char* help) {
    out_ << "# HELP " << name << ' ' << help << '\n' << "# TYPE " << name << ' ' << type << '\n';
  }
  void sample(const std::string& name, uint64_t v) { out_ << name << ' ' << v << '\n'; }
  // A family with one unlabelled sample.
  void single(const std::string& name, const char* type, const char* help, uint64_t v) {
    family(name, type, help);
    sample(name, v);
  }
  void sample(const std::string& name, const std::string& key, const std::string& value, uint64_t v) {
    out_ << name << '{' << key << "=\"" << label(value) << "\"} " << v << '\n';
  }
  void raw(const std::string& line) { out_ << line << '\n'; }
  void histogram(const std::string& name, const char* help, const Histogram& h) {
    family(name, "histogram", help);
    uint64_t cumulative = 0;
    for (size_t i = 0; i < std::size(Histogram::kBounds); ++i) {
      cumulative += h.buckets[i];
      raw(name + "_bucket{le=\"" + number(Histogram::kBounds[i]) + "\"} " + std::to_string(cumulative));
    }
    raw(name + "_bucket{le=\"+Inf\"} " + std::to_string(h.count));
    raw(name + "_sum " + number(h.sum));
    raw(name + "_count " + std::to_string(h.count));
  }
  std::string str() const { return out_.str(); }

 private:
  std::ostringstream out_;
};

}  // namespace

void Histogram::observe(double seconds) {
  ++count;
  sum += seconds;
  for (size_t i = 0; i < std::size(kBounds); ++i)
    if (seconds <= kBounds[i]) {
      ++buckets[i];
      break;
    }
}

std::string render_metrics(const MetricsSnapshot& m) {
  Writer w;
  w.family("ferry_endpoints", "gauge", "Local endpoints the agent manages (valid endpoint records).");
  w.sample("ferry_endpoints", m.endpoints);
  w.family("ferry_reconcile_total", "counter", "Reconcile passes (full and single-endpoint).");
  w.sample("ferry_reconcile_total", m.reconcile_total);
  w.family("ferry_reconcile_errors_total", "counter", "Reconcile passes that ended with at least one error.");
  w.sample("ferry_reconcile_errors_total", m.reconcile_errors_total);

  w.histogram("ferry_reconcile_duration_seconds", "Duration of reconcile passes.", m.reconcile_duration);

  w.family("ferry_datapath_errors_total", "counter", "Datapath backend operations that failed.");
  w.sample("ferry_datapath_errors_total", m.datapath_errors_total);
  w.family("ferry_datapath_kernel_writes_total", "counter",
           "Kernel writes by the datapath backend since the agent started (map updates, attaches, rule changes).");
  w.sample("ferry_datapath_kernel_writes_total", m.stats.kernel_writes);

  w.family("ferry_datapath_packets_total", "counter", "Packets the datapath counted, by counter.");
  for (const dataplane::Counter& c : m.stats.counters)
    if (!c.drop) w.sample("ferry_datapath_packets_total", "counter", c.name, c.packets);
  w.family("ferry_datapath_bytes_total", "counter", "Bytes the datapath counted, by counter.");
  for (const dataplane::Counter& c : m.stats.counters)
    if (!c.drop) w.sample("ferry_datapath_bytes_total", "counter", c.name, c.bytes);
  w.family("ferry_datapath_drops_total", "counter", "Packets the datapath dropped, by reason.");
  for (const dataplane::Counter& c : m.stats.counters)
    if (c.drop)  // backends name drop counters "drop_<reason>"; the label is the reason
      w.sample("ferry_datapath_drops_total", "reason", c.name.starts_with("drop_") ? c.name.substr(5) : c.name,
               c.packets);

  w.family("ferry_bpf_map_entries", "gauge", "Entries in each pinned BPF map.");
  for (const auto& [name, fill] : m.stats.maps) w.sample("ferry_bpf_map_entries", "map", name, fill.entries);
  w.family("ferry_bpf_map_capacity", "gauge", "max_entries of each pinned BPF map.");
  for (const auto& [name, fill] : m.stats.maps) w.sample("ferry_bpf_map_capacity", "map", name, fill.max_entries);

  w.family("ferry_cluster_objects", "gauge", "Objects in the agent's cluster state, by kind.");
  for (const auto& [kind, n] : m.cluster_objects) w.sample("ferry_cluster_objects", "kind", kind, n);

  w.family("ferry_overlay_remote_nodes", "gauge", "Remote nodes the VXLAN overlay routes to.");
  w.sample("ferry_overlay_remote_nodes", m.overlay_remote_nodes);
  w.family("ferry_overlay_kernel_writes_total", "counter",
           "Kernel writes by the overlay since the agent started (device, addresses, routes, neighbours, FDB, "
           "masquerade).");
  w.sample("ferry_overlay_kernel_writes_total", m.overlay_kernel_writes);
  w.family("ferry_overlay_errors_total", "counter", "Overlay passes (kernel or conflist) that failed.");
  w.sample("ferry_overlay_errors_total", m.overlay_errors_total);

  w.family("ferry_policy_enforced", "gauge", "1 when NetworkPolicy is enforced (--policy on), else 0.");
  w.sample("ferry_policy_enforced", m.policy_enforced ? 1 : 0);
  w.family("ferry_policy_identities", "gauge", "Security identities the compiled policy names.");
  w.sample("ferry_policy_identities", m.policy_identities);
  w.family("ferry_policy_ipcache_entries", "gauge", "Prefixes in the compiled ipcache (IP/prefix -> identity).");
  w.sample("ferry_policy_ipcache_entries", m.policy_ipcache_entries);
  w.family("ferry_policy_entries", "gauge", "Allow entries of all local endpoints, by direction.");
  w.sample("ferry_policy_entries", "direction", "ingress", m.policy_entries_ingress);
  w.sample("ferry_policy_entries", "direction", "egress", m.policy_entries_egress);
  w.family("ferry_policy_endpoints_isolated", "gauge", "Local endpoints isolated by NetworkPolicy, by direction.");
  w.sample("ferry_policy_endpoints_isolated", "direction", "ingress", m.policy_isolated_ingress);
  w.sample("ferry_policy_endpoints_isolated", "direction", "egress", m.policy_isolated_egress);
  w.family("ferry_policy_applies_total", "counter", "Compiled policy sets handed to the datapath (changed, or resync).");
  w.sample("ferry_policy_applies_total", m.policy_applies_total);
  w.family("ferry_policy_errors_total", "counter", "Policy passes that failed (retried at the next tick).");
  w.sample("ferry_policy_errors_total", m.policy_errors_total);
  w.histogram("ferry_policy_compile_seconds", "Duration of policy compilation (every policy pass).",
              m.policy_compile_duration);
  w.histogram("ferry_policy_apply_seconds", "Duration of Dataplane::program_policy (passes that applied).",
              m.policy_apply_duration);

  w.single("ferry_services_frontends", "gauge", "Service frontends (address, port, protocol) the datapath serves.",
           m.services_frontends);
  w.single("ferry_services_backends", "gauge", "Service backends (address, port, protocol) the frontends name.",
           m.services_backends);
  w.single("ferry_services_problems", "gauge", "Services or ports skipped or conflicting in the last build (logged).",
           m.services_problems);
  w.single("ferry_services_applies_total", "counter", "Service sets handed to the datapath (changed, or resync).",
           m.services_applies_total);
  w.single("ferry_services_errors_total", "counter", "Services passes that failed (retried at the next tick).",
           m.services_errors_total);
  w.histogram("ferry_services_build_seconds", "Duration of building the service set (every services pass).",
              m.services_build_duration);
  w.histogram("ferry_services_apply_seconds", "Duration of Dataplane::program_services (passes that applied).",
              m.services_apply_duration);

  w.family("ferry_datapath_info", "gauge", "The datapath mode in use.");
  if (!m.datapath.empty()) w.sample("ferry_datapath_info", "mode", m.datapath, 1);
  return w.str();
}

void AgentStatus::set_loop_alive() {
  std::lock_guard lock(mu_);
  last_loop_ = std::chrono::steady_clock::now();
}

void AgentStatus::set_ready(bool ready, std::string reason) {
  std::lock_guard lock(mu_);
  ready_ = ready;
  not_ready_reason_ = std::move(reason);
}

void AgentStatus::publish(MetricsSnapshot m) {
  std::lock_guard lock(mu_);
  metrics_ = std::move(m);
}

bool AgentStatus::healthy(std::chrono::steady_clock::duration max_age) const {
  std::lock_guard lock(mu_);
  return last_loop_ != std::chrono::steady_clock::time_point{} &&
         std::chrono::steady_clock::now() - last_loop_ <= max_age;
}

bool AgentStatus::ready(std::string* reason) const {
  std::lock_guard lock(mu_);
  if (reason) *reason = ready_ ? "" : not_ready_reason_;
  return ready_;
}

MetricsSnapshot AgentStatus::metrics() const {
  std::lock_guard lock(mu_);
  return metrics_;
}

}  // namespace ferry::agent
