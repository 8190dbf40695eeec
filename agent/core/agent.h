// agent/core/agent.h — ferry-agent: configuration, the reconcile logic, the single-threaded
// event loop and what it exports over HTTP (/healthz, /readyz, /metrics).
//
// Data flow: cluster-state source -> ClusterState; endpoint records -> EndpointRegistry ->
// desired endpoints; Reconciler diffs them against what the backend has installed and applies
// the difference. ClusterState's Node objects -> overlay plan -> overlay::Applier (kernel) ->
// Dataplane::program_overlay, and the node's CNI conflist. ClusterState + the registry's pods +
// the node's addresses -> policy::compile -> Dataplane::program_policy (policy_sync.cpp).
// ClusterState (+ EndpointSlices derived from Pods with a manifest directory) + the NodePort
// addresses -> services::build_services -> Dataplane::program_services (service_sync.cpp).
// Everything below the loop is replaceable (ClusterFeed, Dataplane, LinkLookup)
// so the control logic is tested without a kernel.
//
// Errors: configuration problems throw ConfigError (message names the flag or YAML key);
// startup failures throw AgentError; during the loop every backend/registry exception is
// caught, logged, counted and retried on the next pass — the loop itself never dies of one.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "agent/dataplane/dataplane.h"
#include "agent/overlay/overlay.h"
#include "agent/services/services.h"
#include "policy/policy.h"

namespace ferry::registry {
class EndpointRegistry;
}

namespace ferry::agent {

class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};
class AgentError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------
// Configuration: defaults < YAML file (--config) < command-line flags.

struct AgentConfig {
  std::string node;                 // default: hostname
  std::string datastore = "dir:/etc/ferry/manifests";
  std::string manifest_dir;         // from datastore "dir:PATH"
  std::string kubeconfig;           // datastore "kubernetes": this file; "" = in-cluster config
  std::string datapath = "auto";    // ebpf | iptables | auto
  std::string bpffs_root;           // default /sys/fs/bpf/ferry/<node>
  std::string state_dir;            // default /run/ferry/<node>
  std::string endpoint_dir;         // default <state_dir>/endpoints
  std::string agent_socket;         // default <state_dir>/agent.sock
  std::string listen = "127.0.0.1:9400";
  std::string log_level = "info";   // trace | debug | info | warn | error
  std::chrono::milliseconds resync_interval{30000};
  std::string config_file;          // the --config it came from, if any
  // The VXLAN overlay (agent/overlay). "none" removes whatever an earlier "vxlan" run made.
  std::string overlay = "vxlan";    // vxlan | none
  uint32_t vxlan_vni = 1;
  uint16_t vxlan_port = 8472;
  std::string underlay_interface;   // "" = the interface that holds the node's InternalIP
  int mtu = 0;                      // 0 = underlay MTU - 50
  std::string cni_conflist;         // "" = do not write the node's conflist
  std::string cni_network = "ferry";
  std::string ipam_dir = "/var/lib/cni/networks";
  std::string policy = "on";        // on | off: enforce NetworkPolicy (PolicySet::enforce)
  // Services (service_sync.cpp). "off" programs an empty set: nothing is translated.
  std::string services = "on";      // on | off
  std::string lb_algorithm = "random";  // random | maglev (ebpf::EbpfConfig::lb_algorithm)
  // Where NodePorts listen: node addresses inside one of these prefixes (kube-proxy's
  // --nodeport-addresses); empty = the node's addresses (nodeport_addresses_of).
  std::vector<net::Prefix> nodeport_addresses;
  // Devices the eBPF NodePort programs attach to; empty = the interfaces holding the NodePort
  // addresses.
  std::vector<std::string> nodeport_devices;
};

// Parses argv (argv[0] is the program name). Returns nullopt after printing --help or
// --version to `out` (exit 0). Throws ConfigError for unknown flags, unknown YAML keys and bad
// values.
std::optional<AgentConfig> parse_config(const std::vector<std::string>& argv, std::string* out = nullptr);
// "30s", "500ms", "2m", "1h" or a plain number of seconds. Throws ConfigError naming `what`.
std::chrono::milliseconds parse_duration(const std::string& text, const std::string& what);
// "127.0.0.1:9400", "[::1]:9400", ":9400" (all addresses). Throws ConfigError.
struct ListenAddress {
  std::string host;
  int port = 0;
};
ListenAddress parse_listen(const std::string& text);

// ---------------------------------------------------------------------------------------
// Reconcile: make the backend hold exactly the desired endpoints.

struct ReconcileResult {
  size_t desired = 0;
  size_t programmed = 0;
  size_t removed = 0;
  uint64_t kernel_writes = 0;          // Stats::kernel_writes delta over the pass
  std::vector<std::string> errors;     // one line per failed endpoint operation
  double seconds = 0;
  bool ok() const { return errors.empty(); }
};

class Reconciler {
 public:
  explicit Reconciler(dataplane::Dataplane& backend) : backend_(backend) {}
  // Full pass: removes first (an interface may change hands), then programs. An error on one
  // endpoint is recorded and does not stop the others; the next pass retries it.
  ReconcileResult reconcile_all(const std::vector<dataplane::Endpoint>& desired);
  // One endpoint (the ADD/DEL path): `desired` nullopt means endpoint `endpoint_id` is gone.
  // Also removes an installed endpoint of another id on the same interface.
  ReconcileResult reconcile_one(uint32_t endpoint_id, const std::optional<dataplane::Endpoint>& desired);

 private:
  ReconcileResult apply(const std::vector<dataplane::Endpoint>& desired,
                        const std::vector<dataplane::Endpoint>& installed, size_t desired_count);
  dataplane::Dataplane& backend_;
};

// ---------------------------------------------------------------------------------------
// Metrics: a snapshot the loop publishes and the HTTP thread renders.

struct Histogram {
  static constexpr double kBounds[] = {0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};
  std::vector<uint64_t> buckets = std::vector<uint64_t>(std::size(kBounds), 0);  // non-cumulative
  uint64_t count = 0;
  double sum = 0;
  void observe(double seconds);
};

struct MetricsSnapshot {
  std::string datapath;  // "ebpf" / "iptables" ("" before the backend is chosen)
  uint64_t endpoints = 0;
  uint64_t reconcile_total = 0;
  uint64_t reconcile_errors_total = 0;  // passes that ended with an error
  Histogram reconcile_duration;
  uint64_t datapath_errors_total = 0;   // backend calls that threw
  dataplane::Stats stats;
  std::map<std::string, uint64_t> cluster_objects;  // kind -> count
  uint64_t overlay_remote_nodes = 0;    // remote nodes the overlay routes to
  uint64_t overlay_kernel_writes = 0;   // overlay kernel writes since start
  uint64_t overlay_errors_total = 0;    // overlay passes that failed
  // NetworkPolicy (as of the last successful policy pass)
  bool policy_enforced = true;
  uint64_t policy_identities = 0;
  uint64_t policy_ipcache_entries = 0;
  uint64_t policy_entries_ingress = 0;     // allow entries over all local endpoints
  uint64_t policy_entries_egress = 0;
  uint64_t policy_isolated_ingress = 0;    // local endpoints isolated in that direction
  uint64_t policy_isolated_egress = 0;
  uint64_t policy_applies_total = 0;       // program_policy calls
  uint64_t policy_errors_total = 0;        // policy passes that failed
  Histogram policy_compile_duration;       // every pass
  Histogram policy_apply_duration;         // passes that called program_policy
  // Services (as of the last successful services pass)
  uint64_t services_frontends = 0;
  uint64_t services_backends = 0;
  uint64_t services_problems = 0;          // build problems (logged once each)
  uint64_t services_applies_total = 0;     // program_services calls
  uint64_t services_errors_total = 0;      // services passes that failed
  Histogram services_build_duration;       // every pass
  Histogram services_apply_duration;       // passes that called program_services
};
// Prometheus text exposition format 0.0.4.
std::string render_metrics(const MetricsSnapshot& m);

// What /healthz and /readyz answer; the loop writes it, the HTTP thread reads it.
class AgentStatus {
 public:
  void set_loop_alive();
  void set_ready(bool ready, std::string reason);
  void publish(MetricsSnapshot m);
  // 200 when the loop ran within `max_age`.
  bool healthy(std::chrono::steady_clock::duration max_age = std::chrono::seconds(10)) const;
  bool ready(std::string* reason) const;
  MetricsSnapshot metrics() const;

 private:
  mutable std::mutex mu_;
  std::chrono::steady_clock::time_point last_loop_{};
  bool ready_ = false;
  std::string not_ready_reason_ = "starting";
  MetricsSnapshot metrics_;
};

// cpp-httplib server on its own thread. Binds in the constructor (throws AgentError when the
// address is taken) so a bad --listen fails at startup.
class HttpServer {
 public:
  HttpServer(const ListenAddress& addr, const AgentStatus& status);
  ~HttpServer();  // stops and joins
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;
  int port() const { return port_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

// ---------------------------------------------------------------------------------------
// The cluster state as the loop needs it (manifest directory today, Kubernetes API later).

class ClusterFeed {
 public:
  virtual ~ClusterFeed() = default;
  // First full sync; throws AgentError when the source cannot be read at all (a malformed
  // object is logged and skipped, not an error).
  virtual void load() = 0;
  virtual int fd() const = 0;  // readable when the source changed; -1 = nothing to watch
  // Drains the fd; returns true when the cluster state changed.
  virtual bool handle_events() = 0;
  // Objects per kind; the default counts state() (empty when it is nullptr).
  virtual std::map<std::string, uint64_t> object_counts() const;
  // The cluster state itself (the overlay plans from its Node objects); nullptr = not available.
  virtual const model::ClusterState* state() const { return nullptr; }
};
// ManifestDirSource + ClusterState (agent/source, agent/model).
std::unique_ptr<ClusterFeed> make_manifest_feed(const std::string& dir);
// The Kubernetes API (agent/k8s): `kubeconfig` or, when empty, the in-cluster service account.
// Throws AgentError when that configuration is unusable; load() throws when the API cannot be
// reached within a bounded wait.
std::unique_ptr<ClusterFeed> make_kubernetes_feed(const std::string& kubeconfig);

// ---------------------------------------------------------------------------------------
// NetworkPolicy: cluster state + local endpoints + the node's addresses -> policy::compile()
// -> Dataplane::program_policy(), only when the compiled set changed (full resyncs re-apply).
// Identities persist in <state_dir>/identities.json; <state_dir>/policy.json (written
// atomically, only when it changes) tells ferryctl what each endpoint enforces.

// Every address of the calling thread's network namespace (the node's), over netlink: the
// Host identity. Throws net::Error.
std::vector<net::Ip> node_addresses();

struct PolicyFileContext {
  std::string node;
  std::string datapath;    // "ebpf" / "iptables"
  std::string bpffs_root;  // where ferryctl finds ferry_pol_v1 in eBPF mode
};
// The content of policy.json: {node, datapath, bpffs_root, enforce, endpoints: [{endpoint_id,
// pod, ips, policies, ingress: {isolated, entries: [{peer, proto, port_first, port_last}]},
// egress: {...}}], identities: [{identity, info: IdentityInfo::to_json()}], ipcache: [{prefix,
// identity}]}. Every local endpoint is listed; one without a known pod is not isolated. Pure.
nlohmann::json policy_file_json(const policy::CompileResult& compiled,
                                const std::vector<policy::LocalEndpoint>& endpoints, const PolicyFileContext& ctx);

// ---------------------------------------------------------------------------------------
// Services: cluster state -> services::build_services -> Dataplane::program_services(), only
// when the set changed (full resyncs re-apply). Ids persist in <state_dir>/services-ids.json;
// <state_dir>/services.json (written atomically, only when it changes) is what ferryctl lists.

// The addresses NodePorts listen on. With `wanted` prefixes (--nodeport-addresses): every known
// node address inside one of them. Without: the known addresses except loopback, link-local
// and those inside the Node's pod CIDRs (bridge gateways, the VXLAN device's). Known = `host`
// (the node netns's addresses) plus the Node's InternalIPs (`node` may be nullptr). Sorted by
// (family, bytes), deduplicated. Pure.
std::vector<net::Ip> nodeport_addresses_of(const std::vector<net::Ip>& host, const model::Node* node,
                                           const std::vector<net::Prefix>& wanted);

struct ServicesFileContext {
  std::string node;
  std::string datapath;      // "ebpf" / "iptables"
  std::string bpffs_root;    // where ferryctl finds ferry_svc_v1 in eBPF mode
  bool enabled = true;       // --services
  std::string lb_algorithm;  // --lb-algorithm
  std::vector<net::Ip> nodeport_addresses;
  std::vector<std::string> problems;
};
// The content of services.json: services::to_json(set) ({"frontends": [...]}) plus node,
// datapath, bpffs_root, enabled, lb_algorithm, nodeport_addresses and problems. Pure.
nlohmann::json services_file_json(const dataplane::ServiceSet& set, const ServicesFileContext& ctx);

// ---------------------------------------------------------------------------------------
// Backends

// "ebpf"/"iptables" for "auto" by ebpf_supported(); `why` receives the reason for the log.
std::string choose_datapath(const std::string& requested, std::string* why);
// `cluster` (loaded) gives the Node whose addresses choose the default NodePort devices (eBPF);
// nullptr = none known.
std::unique_ptr<dataplane::Dataplane> make_backend(const std::string& mode, const AgentConfig& config,
                                                   const model::ClusterState* cluster = nullptr);
using BackendFactory = std::function<std::unique_ptr<dataplane::Dataplane>(const std::string& mode)>;

// ---------------------------------------------------------------------------------------
// The agent: startup (DESIGN.md "Restart") and the event loop.

class Agent {
 public:
  struct Parts {
    std::unique_ptr<ClusterFeed> cluster;
    std::unique_ptr<registry::EndpointRegistry> registry;
    BackendFactory backends;  // called for the chosen mode, and the previous one on a switch
    std::string mode;         // resolved: "ebpf" or "iptables"
    // The overlay's kernel side; nullptr = the agent leaves the overlay alone (tests).
    std::unique_ptr<overlay::Applier> overlay;
    // The node's own addresses (Host identity), read at every policy pass; nullptr = none
    // besides the Node object's InternalIPs (tests). ferry-agent passes node_addresses.
    std::function<std::vector<net::Ip>()> host_addresses;
  };
  Agent(AgentConfig config, Parts parts);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Startup up to the first reconcile: load cluster state and records, handle a datapath
  // mode switch, start the backend, reconcile, mark ready. Binds the agent socket first so
  // early ADDs queue. Throws AgentError (or the backend's DataplaneError) when it cannot start.
  void start();
  // The event loop; returns when stop() is called or (with `signal_fd` >= 0, a signalfd for
  // SIGTERM/SIGINT) a signal arrives. Returns the exit code.
  int run(int signal_fd = -1);
  void stop();  // thread-safe

  const AgentStatus& status() const { return status_; }
  const ReconcileResult& first_reconcile() const { return first_reconcile_; }
  // The overlay pass of the first reconcile (kernel writes 0 on a restart with nothing changed).
  const overlay::ApplyResult& first_overlay() const { return first_overlay_; }

 private:
  struct Loop;
  void full_resync(const char* why);
  void handle_datagram();
  void handle_record_events();
  void handle_cluster_events();
  void maintain();
  void record(const ReconcileResult& r);
  void publish();
  // Node objects -> plan -> kernel -> backend->program_overlay(), then the conflist. Errors are
  // logged and counted; the next resync (or the next 5 s tick after an error) retries.
  void sync_overlay(const char* why);
  void write_conflist(const overlay::OverlayPlan& plan);
  // Compiles the node's policy and calls backend->program_policy() when the set differs from
  // the last one applied (always with `force`). Errors are logged, counted, make /readyz 503
  // and are retried at the next 5 s tick; returns the error ("" = ok).
  std::string sync_policy(const char* why, bool force = false);
  void load_identities();
  void update_ready();
  // Builds the node's ServiceSet and calls backend->program_services() when it differs from the
  // last one applied (always with `force`). Errors are logged (once per distinct message),
  // counted and retried at the next 5 s tick; they do not affect /readyz or endpoint ADDs.
  void sync_services(const char* why, bool force = false);
  void load_service_ids();
  // Build input with a manifest directory: EndpointSlices derived from Pods for selector
  // Services without slices; Services without a clusterIP become problems.
  const model::ClusterState& services_input(const model::ClusterState& state, model::ClusterState& view,
                                            std::vector<std::string>& problems) const;

  AgentConfig config_;
  Parts parts_;
  std::unique_ptr<dataplane::Dataplane> backend_;
  std::unique_ptr<Loop> loop_;
  AgentStatus status_;
  MetricsSnapshot metrics_;
  ReconcileResult first_reconcile_;
  overlay::ApplyResult first_overlay_;
  bool overlay_ok_ = true;
  int overlay_mtu_ = 0;                      // the VXLAN device's MTU after the last apply
  std::vector<std::string> overlay_skipped_;  // last logged, so each problem is logged once
  bool overlay_waiting_logged_ = false;
  std::optional<overlay::OverlayPlan> applied_plan_;  // last plan applied without error
  policy::IdentityAllocator identities_;
  std::optional<dataplane::PolicySet> applied_policy_;  // last set program_policy() accepted
  std::string identities_written_;  // identities.json / policy.json as last written
  std::string policy_file_written_;
  bool policy_ok_ = true;
  std::string policy_error_;
  services::ServiceIds service_ids_;
  std::optional<dataplane::ServiceSet> applied_services_;  // last set program_services() accepted
  std::string service_ids_written_;  // services-ids.json / services.json as last written
  std::string services_file_written_;
  std::vector<std::string> service_problems_;  // as last logged, so each is logged once
  bool services_ok_ = true;
  std::string services_error_;  // the last failure, logged once until it changes
  bool last_reconcile_ok_ = false;
  bool started_ = false;  // start() finished: /readyz may say 200 (update_ready())
  std::string last_error_;
  std::chrono::steady_clock::time_point next_resync_{};
};

// Sets up logging to stderr at `level`; throws ConfigError for an unknown level.
void setup_logging(const std::string& level);

}  // namespace ferry::agent
