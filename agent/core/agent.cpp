// Agent: startup order (DESIGN.md "Restart") and the single-threaded epoll loop.
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "agent/core/agent.h"
#include "agent/core/files.h"
#include "agent/model/model.h"
#include "agent/registry/registry.h"

namespace ferry::agent {

namespace {

constexpr auto kMaintenancePeriod = std::chrono::seconds(5);

int check(int rc, const char* what) {
  if (rc < 0) throw AgentError(std::string(what) + " failed: " + std::strerror(errno));
  return rc;
}

std::string read_small_file(const std::string& path) {
  std::ifstream in(path);
  std::string word;
  in >> word;
  return word;
}

}  // namespace

struct Agent::Loop {
  int epoll_fd = -1;
  int timer_fd = -1;
  int stop_fd = -1;
  std::unique_ptr<registry::AgentSocket> socket;
  std::unique_ptr<Reconciler> reconciler;

  ~Loop() {
    for (int fd : {epoll_fd, timer_fd, stop_fd})
      if (fd >= 0) close(fd);
  }
};

Agent::Agent(AgentConfig config, Parts parts)
    : config_(std::move(config)), parts_(std::move(parts)), loop_(std::make_unique<Loop>()) {
  loop_->stop_fd = check(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC), "eventfd");
}

Agent::~Agent() = default;

void Agent::stop() {
  uint64_t one = 1;
  if (write(loop_->stop_fd, &one, sizeof one) < 0) spdlog::warn("stop: eventfd write failed");
}

void Agent::start() {
  status_.set_loop_alive();
  // Bound first: an ADD during a slow start queues here instead of finding no agent.
  loop_->socket = std::make_unique<registry::AgentSocket>(config_.agent_socket);
  spdlog::info("agent socket {}", config_.agent_socket);

  // 1. Cluster state and endpoint records: the kernel is touched only after a full sync.
  status_.set_ready(false, "loading cluster state");
  parts_.cluster->load();
  metrics_.cluster_objects = parts_.cluster->object_counts();
  size_t records = parts_.registry->load_all();
  spdlog::info("first sync: {} cluster objects, {} endpoint records in {}",
               [&] {
                 uint64_t n = 0;
                 for (const auto& [kind, count] : metrics_.cluster_objects) n += count;
                 return n;
               }(),
               records, parts_.registry->endpoint_dir());
  status_.set_loop_alive();

  // 2. Datapath mode switch: the other backend's state goes before this one starts.
  const std::string mode_file = config_.state_dir + "/datapath";
  const std::string previous = read_small_file(mode_file);
  if (!previous.empty() && previous != parts_.mode) {
    if (previous != "ebpf" && previous != "iptables") {
      spdlog::warn("\"{}\" names unknown datapath \"{}\"; not cleaning up after it", mode_file, previous);
    } else {
      spdlog::info("datapath switch {} -> {}: removing the {} datapath", previous, parts_.mode, previous);
      try {
        parts_.backends(previous)->cleanup_all();
      } catch (const std::exception& e) {
        throw AgentError("datapath switch " + previous + " -> " + parts_.mode + ": cleanup of the " + previous +
                         " datapath failed: " + e.what());
      }
    }
  }
  write_file_atomic(mode_file, parts_.mode + "\n");

  // 3. Backend, first reconcile, ready.
  status_.set_ready(false, "starting the " + parts_.mode + " datapath");
  backend_ = parts_.backends(parts_.mode);
  backend_->start();
  metrics_.datapath = backend_->name();
  if (parts_.overlay && config_.overlay == "none") {
    // --overlay none: whatever an earlier --overlay vxlan run made goes (the device by name).
    try {
      uint64_t writes = parts_.overlay->cleanup();
      backend_->program_overlay({});
      metrics_.overlay_kernel_writes = parts_.overlay->kernel_writes();
      if (writes) spdlog::info("overlay none: removed the VXLAN overlay ({} kernel writes)", writes);
    } catch (const std::exception& e) {
      ++metrics_.overlay_errors_total;
      spdlog::error("overlay none: removing the overlay failed: {}", e.what());
    }
  }
  loop_->reconciler = std::make_unique<Reconciler>(*backend_);
  spdlog::info("policy {}: NetworkPolicy {}", config_.policy,
               config_.policy == "on" ? "enforced" : "not enforced (every flow allowed)");
  load_identities();
  spdlog::info("services {}: {}", config_.services,
               config_.services == "on" ? "load-balanced (lb-algorithm " + config_.lb_algorithm + ")"
                                        : std::string("not translated"));
  load_service_ids();
  full_resync("first reconcile");
  first_reconcile_.kernel_writes = metrics_.stats.kernel_writes;  // since start: start() included
  spdlog::info("first reconcile: {} endpoints, {} programmed, {} removed, kernel writes {}", first_reconcile_.desired,
               first_reconcile_.programmed, first_reconcile_.removed, first_reconcile_.kernel_writes);
  if (parts_.overlay && config_.overlay == "vxlan")
    spdlog::info("overlay: {} remote nodes, {} kernel writes", first_overlay_.remote_nodes,
                 first_overlay_.kernel_writes);
  spdlog::info("first policy pass: {} identities, {} + {} entries, {} endpoints isolated (ingress), {} (egress){}",
               metrics_.policy_identities, metrics_.policy_entries_ingress, metrics_.policy_entries_egress,
               metrics_.policy_isolated_ingress, metrics_.policy_isolated_egress,
               policy_ok_ ? "" : "; failed: " + policy_error_);
  started_ = true;  // ready only now: metrics published, first passes logged
  update_ready();
  status_.set_loop_alive();
}

void Agent::record(const ReconcileResult& r) {
  ++metrics_.reconcile_total;
  if (!r.ok()) {
    ++metrics_.reconcile_errors_total;
    metrics_.datapath_errors_total += r.errors.size();
    last_reconcile_ok_ = false;
    last_error_ = r.errors.front();
  }
  metrics_.reconcile_duration.observe(r.seconds);
  update_ready();
}

void Agent::publish() {
  metrics_.endpoints = parts_.registry->size();
  if (backend_) {
    try {
      metrics_.stats = backend_->stats();
    } catch (const std::exception& e) {
      ++metrics_.datapath_errors_total;
      spdlog::warn("{} datapath: reading stats failed: {}", backend_->name(), e.what());
    }
  }
  status_.publish(metrics_);
}

void Agent::full_resync(const char* why) {
  next_resync_ = std::chrono::steady_clock::now() + config_.resync_interval;
  try {
    parts_.registry->load_all();
  } catch (const std::exception& e) {
    spdlog::error("{}: reading endpoint records failed: {}", why, e.what());
  }
  ReconcileResult r = loop_->reconciler->reconcile_all(parts_.registry->desired());
  // A clean full pass clears an earlier failure; a failed one sets it (record()).
  last_reconcile_ok_ = r.ok();
  if (!r.ok()) last_error_ = r.errors.front();
  // Re-applied even when unchanged, so a backend that lost state heals; before record(), so
  // /readyz turns 200 only with policy in place.
  sync_policy(why, /*force=*/true);
  sync_services(why, /*force=*/true);  // same pass; not part of readiness
  record(r);
  const bool first = std::string_view(why) == "first reconcile";  // start() logs that one
  if (!first && (r.programmed || r.removed || !r.ok()))
    spdlog::info("{}: {} endpoints, {} programmed, {} removed, {} errors, kernel writes {}", why, r.desired,
                 r.programmed, r.removed, r.errors.size(), r.kernel_writes);
  if (first) first_reconcile_ = r;
  sync_overlay(why);
  publish();
}

void Agent::sync_overlay(const char* why) {
  const model::ClusterState* state = parts_.cluster->state();
  if (!state) return;
  overlay::OverlayConfig oc;
  oc.vni = config_.vxlan_vni;
  oc.port = config_.vxlan_port;
  oc.underlay_interface = config_.underlay_interface;
  oc.mtu = config_.mtu;
  overlay::OverlayPlan plan = overlay::plan_overlay(*state, config_.node, oc);
  if (plan.skipped != overlay_skipped_) {
    for (const std::string& s : plan.skipped)
      if (std::find(overlay_skipped_.begin(), overlay_skipped_.end(), s) == overlay_skipped_.end())
        spdlog::warn("overlay: skipping {}", s);
    overlay_skipped_ = plan.skipped;
  }
  bool ok = true;
  if (parts_.overlay && config_.overlay == "vxlan") {
    if (!plan.ready()) {
      if (!overlay_waiting_logged_)
        spdlog::warn("overlay: waiting for Node {} with an InternalIP in the cluster state", config_.node);
      overlay_waiting_logged_ = true;
    } else {
      overlay_waiting_logged_ = false;
      // Cluster changes that leave the plan as it is (Pods, Services) skip the kernel read-back;
      // resyncs always compare with the kernel.
      const bool unchanged = std::string_view(why) == "cluster state changed" && overlay_ok_ && applied_plan_ == plan;
      if (!unchanged) {
        try {
          applied_plan_.reset();
          overlay::ApplyResult r = parts_.overlay->apply(plan);
          backend_->program_overlay(parts_.overlay->dataplane_view());
          overlay_mtu_ = r.mtu;
          metrics_.overlay_remote_nodes = r.remote_nodes;
          if (std::string_view(why) == "first reconcile") first_overlay_ = r;
          else if (r.kernel_writes)
            spdlog::info("{}: overlay: {} remote nodes, {} kernel writes", why, r.remote_nodes, r.kernel_writes);
          applied_plan_ = plan;
        } catch (const std::exception& e) {
          ok = false;
          spdlog::error("{}: overlay: {}", why, e.what());
        }
      }
      metrics_.overlay_kernel_writes = parts_.overlay->kernel_writes();
    }
  }
  if (!config_.cni_conflist.empty()) {
    try {
      write_conflist(plan);
    } catch (const std::exception& e) {
      ok = false;
      spdlog::error("{}: writing the CNI conflist: {}", why, e.what());
    }
  }
  if (!ok) ++metrics_.overlay_errors_total;
  overlay_ok_ = ok;
}

void Agent::write_conflist(const overlay::OverlayPlan& plan) {
  overlay::ConflistOptions o;
  o.network = config_.cni_network;
  o.mtu = overlay_mtu_ > 0 ? overlay_mtu_ : config_.mtu;
  o.endpoint_dir = config_.endpoint_dir;
  o.agent_socket = config_.agent_socket;
  o.ipam_dir = config_.ipam_dir;
  const std::string text = overlay::render_conflist(plan.local_pod_cidrs, o);
  if (text.empty()) return;  // no pod CIDR on our Node yet: keep whatever is there
  if (read_file_text(config_.cni_conflist) == text) return;
  std::error_code ec;
  std::filesystem::create_directories(std::filesystem::path(config_.cni_conflist).parent_path(), ec);
  write_file_atomic(config_.cni_conflist, text);
  spdlog::info("wrote CNI conflist {} (network {}, MTU {})", config_.cni_conflist, o.network, o.mtu);
}

void Agent::handle_datagram() {
  while (auto d = loop_->socket->receive()) {
    const std::string name = d->text;
    std::string answer;
    if (!registry::is_record_file_name(name)) {
      answer = "error \"" + name + "\" is not an endpoint record file name";
    } else {
      uint32_t id_before = parts_.registry->id_of(name);
      auto change = parts_.registry->reload(name);
      uint32_t id = parts_.registry->id_of(name);
      if (id == 0) id = id_before;
      std::string problem;
      if (change == registry::EndpointRegistry::Change::kInvalid) {
        auto problems = parts_.registry->problems();
        problem = "endpoint record \"" + name + "\" is malformed";
        for (const std::string& p : problems)
          if (p.find(name) != std::string::npos) problem = p;
      } else if (id != 0) {
        try {
          ReconcileResult r = loop_->reconciler->reconcile_one(id, parts_.registry->desired_one(name));
          record(r);
          if (!r.ok()) problem = r.errors.front();
        } catch (const std::exception& e) {  // links of the record are missing
          problem = e.what();
        }
        // The eBPF datapath is fail-closed for an endpoint without policy entries: its policy
        // is in place before ADD is answered. A DEL is answered ok even if this fails.
        const bool present = parts_.registry->id_of(name) != 0;
        std::string policy_error = sync_policy(present ? "endpoint added or changed" : "endpoint removed");
        if (problem.empty() && present && !policy_error.empty()) problem = "policy: " + policy_error;
      }
      answer = problem.empty() ? "ok " + name : "error " + problem;
    }
    if (d->has_sender()) loop_->socket->reply(*d, answer);
    spdlog::debug("agent socket: \"{}\" -> \"{}\"", name, answer);
  }
  publish();
}

void Agent::handle_record_events() {
  std::vector<std::string> names = parts_.registry->read_watch_events();
  if (names.size() == 1 && names.front() == "*") {
    full_resync("endpoint directory changed");
    return;
  }
  bool changed = false;
  for (const std::string& name : names) {
    uint32_t id_before = parts_.registry->id_of(name);
    auto change = parts_.registry->reload(name);
    if (change == registry::EndpointRegistry::Change::kUnchanged ||
        change == registry::EndpointRegistry::Change::kInvalid)
      continue;
    uint32_t id = parts_.registry->id_of(name);
    if (id == 0) id = id_before;
    try {
      record(loop_->reconciler->reconcile_one(id, parts_.registry->desired_one(name)));
    } catch (const std::exception& e) {
      spdlog::warn("endpoint record {}: {}", name, e.what());
    }
    changed = true;
  }
  if (changed) {
    sync_policy("endpoint records changed");
    publish();
  }
}

void Agent::handle_cluster_events() {
  if (!parts_.cluster->handle_events()) return;
  metrics_.cluster_objects = parts_.cluster->object_counts();
  sync_overlay("cluster state changed");
  sync_policy("cluster state changed");
  sync_services("cluster state changed");
  status_.publish(metrics_);
}

void Agent::maintain() {
  try {
    backend_->maintain();
  } catch (const std::exception& e) {
    ++metrics_.datapath_errors_total;
    spdlog::error("{} datapath maintenance failed: {}", backend_->name(), e.what());
  }
  if (std::chrono::steady_clock::now() >= next_resync_) full_resync("periodic resync");
  else if (!last_reconcile_ok_) full_resync("retry after error");
  else {
    if (!overlay_ok_) sync_overlay("overlay retry after error");
    if (!policy_ok_) sync_policy("policy retry after error");
    if (!services_ok_) sync_services("services retry after error");
    publish();
  }
}

int Agent::run(int signal_fd) {
  if (!backend_) throw AgentError("Agent::run() before start()");
  Loop& l = *loop_;
  l.epoll_fd = check(epoll_create1(EPOLL_CLOEXEC), "epoll_create1");
  l.timer_fd = check(timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC), "timerfd_create");
  itimerspec period{};
  period.it_interval.tv_sec = std::chrono::duration_cast<std::chrono::seconds>(kMaintenancePeriod).count();
  period.it_value = period.it_interval;
  check(timerfd_settime(l.timer_fd, 0, &period, nullptr), "timerfd_settime");
  enum Source : uint64_t { kSocket, kRecords, kCluster, kTimer, kSignal, kStop };
  auto watch = [&](int fd, Source what) {
    if (fd < 0) return;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = what;
    check(epoll_ctl(l.epoll_fd, EPOLL_CTL_ADD, fd, &ev), "epoll_ctl");
  };
  watch(l.socket->fd(), kSocket);
  watch(parts_.registry->watch_fd(), kRecords);
  watch(parts_.cluster->fd(), kCluster);
  watch(l.timer_fd, kTimer);
  watch(signal_fd, kSignal);
  watch(l.stop_fd, kStop);

  spdlog::info("ready: {} datapath, {} endpoints", backend_->name(), parts_.registry->size());
  for (;;) {
    status_.set_loop_alive();
    epoll_event events[8];
    int n = epoll_wait(l.epoll_fd, events, 8, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw AgentError(std::string("epoll_wait failed: ") + std::strerror(errno));
    }
    status_.set_loop_alive();
    for (int i = 0; i < n; ++i) {
      switch (events[i].data.u64) {
        case kSocket:
          handle_datagram();
          break;
        case kRecords:
          handle_record_events();
          break;
        case kCluster:
          handle_cluster_events();
          break;
        case kTimer: {
          uint64_t expirations;
          if (read(l.timer_fd, &expirations, sizeof expirations) > 0) maintain();
          break;
        }
        case kSignal: {
          signalfd_siginfo info{};
          if (read(signal_fd, &info, sizeof info) != sizeof info) break;
          const char* name = sigabbrev_np(static_cast<int>(info.ssi_signo));
          spdlog::info("received SIG{}; exiting with the datapath left in place (programs attached, maps pinned)",
                       name ? name : "?");
          return 0;
        }
        case kStop: {
          uint64_t v;
          if (read(l.stop_fd, &v, sizeof v) < 0) spdlog::warn("stop: eventfd read failed");
          spdlog::info("stopping; the datapath stays in place");
          return 0;
        }
      }
    }
  }
}

}  // namespace ferry::agent

namespace ferry::agent {

void setup_logging(const std::string& level) {
  auto parsed = spdlog::level::from_str(level);
  if (parsed == spdlog::level::off && level != "off")
    throw ConfigError("log level \"" + level + "\" is not one of trace, debug, info, warn, error");
  spdlog::drop("ferry-agent");
  auto logger = spdlog::stderr_logger_mt("ferry-agent");
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %l %v");
  logger->set_level(parsed);
  spdlog::set_default_logger(logger);
}

}  // namespace ferry::agent
