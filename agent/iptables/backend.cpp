// The kernel side of the iptables datapath: runs iptables-save / iptables-restore and ipset,
// keeps a model of each family's filter table and of our ipsets, sets the br_netfilter sysctls.
#include <unistd.h>

#include <cstdlib>
#include <functional>

#include "agent/iptables/iptables.h"

namespace ferry::iptables {

using dataplane::DataplaneError;
using dataplane::Endpoint;

namespace {

// Agents and tests do not always run with sbin in PATH; find_executable looks there too. When
// nothing is found, run_command reports "cannot run" with the name.
std::string resolve(const std::string& name) { return net::find_executable(name).value_or(name); }

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

const char* family_name(Family f) { return f == Family::kV4 ? "IPv4" : "IPv6"; }

// br_netfilter's switches. They are per network namespace (since Linux 5.3), so setting them
// in the node's netns makes only this node's bridged traffic traverse iptables; each simulated
// node on one machine decides for itself.
constexpr const char* kCallIptables = "net/bridge/bridge-nf-call-iptables";
constexpr const char* kCallIp6tables = "net/bridge/bridge-nf-call-ip6tables";

class IptablesDataplane final : public dataplane::Dataplane {
 public:
  explicit IptablesDataplane(const IptablesConfig& config) : config_(config) {
    restore_[0] = resolve(config.iptables_restore);
    restore_[1] = resolve(config.ip6tables_restore);
    save_[0] = resolve(config.iptables_save);
    save_[1] = resolve(config.ip6tables_save);
    ipset_ = resolve(config.ipset);
  }

  std::string name() const override { return "iptables"; }

  void start() override {
    if (config_.manage_bridge_nf_call) enable_bridge_nf_call();
    for (Family f : families()) change(f, render_start, "set up the FERRY-FORWARD/FERRY-INPUT base chains");
    started_ = true;
  }

  std::vector<Endpoint> installed_endpoints() override {
    for (Family f : families()) cache_[index(f)] = parse_save(save(f, /*counters=*/false));
    return endpoints_from_tables(*cache_[0], config_.ipv6 ? &*cache_[1] : nullptr);
  }

  void program_endpoint(const Endpoint& desired) override {
    if (!started_) start();
    for (Family f : families())
      change(
          f, [&](const FilterTable& t) { return render_program(f, desired, t); },
          "program endpoint " + std::to_string(desired.endpoint_id) + " (" + desired.host_veth + ")");
    // A new endpoint's policy chains start empty (open): fill them from the last policy now, so
    // the endpoint is enforced when this returns and not only after the next program_policy.
    if (policy_) {
      const std::map<uint32_t, std::string> veths = {{desired.endpoint_id, desired.host_veth}};
      for (Family f : families())
        change(
            f, [&](const FilterTable& t) { return render_policy(f, policy_->set, veths, policy_->sets, t); },
            "program the policy of endpoint " + std::to_string(desired.endpoint_id));
    }
  }

  void remove_endpoint(const Endpoint& installed) override {
    for (Family f : families())
      change(
          f, [&](const FilterTable& t) { return render_remove(installed, t); },
          "remove endpoint " + std::to_string(installed.endpoint_id) + " (" + installed.host_veth + ")");
  }

  // Chains nothing jumps to serve no traffic; they only appear when someone edits by hand.
  void maintain() override {
    for (Family f : families()) change(f, render_orphan_gc, "remove unreferenced FERRY-FROM/TO chains");
  }

  // PLACEHOLDER (issue 6, in progress): replaced by the kube-proxy layout renderer.
  void program_services(const dataplane::ServiceSet&) override {
    throw dataplane::DataplaneError("iptables: services are not implemented yet");
  }

  // Sets first (the new rules name them), then the chains that differ, then the sets no rule
  // names any more.
  void program_policy(const dataplane::PolicySet& desired) override {
    policy_.reset();  // unknown until this returns
    const IdentitySets want = identity_sets(desired);
    change_sets([&](const IdentitySets& have) { return render_set_update(want, have); },
                [&](IdentitySets& have) {
                  for (const auto& [name, set] : want) have[name] = set;
                },
                "create or update the policy ipsets");
    std::map<uint32_t, std::string> veths = endpoint_veths(table(Family::kV4));
    for (Family f : families())
      change(
          f, [&](const FilterTable& t) { return render_policy(f, desired, veths, want, t); },
          "program the policy chains");
    change_sets([&](const IdentitySets& have) { return render_set_destroy(want, have); },
                [&](IdentitySets& have) { std::erase_if(have, [&](const auto& kv) { return !want.count(kv.first); }); },
                "destroy unused policy ipsets");
    policy_ = AppliedPolicy{desired, want};
  }

  void cleanup_all() override {
    for (Family f : families()) {
      cache_[index(f)].reset();  // read the kernel afresh: cleanup must find everything of ours
      change(f, render_cleanup, "remove the ferry endpoint chains");
    }
    sets_.reset();
    policy_.reset();
    change_sets([](const IdentitySets& have) { return render_set_destroy({}, have); },
                [](IdentitySets& have) { have.clear(); }, "destroy the policy ipsets");
    if (config_.manage_bridge_nf_call) disable_bridge_nf_call();
    started_ = false;
  }

  dataplane::Stats stats() override {
    dataplane::Stats s;
    dataplane::Counter spoofed{"drop_spoofed", true}, policy{"drop_policy", true};
    for (Family f : families()) {
      const FilterTable t = parse_save(save(f, /*counters=*/true));
      for (auto [sum, c] : {std::pair{&spoofed, drop_spoofed_counter(t)}, std::pair{&policy, drop_policy_counter(t)}}) {
        sum->packets += c.packets;
        sum->bytes += c.bytes;
      }
    }
    s.counters = {spoofed, policy};
    s.kernel_writes = kernel_writes_;
    return s;
  }

 private:
  static size_t index(Family f) { return f == Family::kV4 ? 0 : 1; }

  std::vector<Family> families() const {
    if (config_.ipv6) return {Family::kV4, Family::kV6};
    return {Family::kV4};
  }

  std::string save(Family f, bool counters) {
    std::vector<std::string> argv = {save_[index(f)], "-t", "filter"};
    if (counters) argv.push_back("-c");
    net::CommandResult r = net::run_command(argv);
    if (r.status != 0)
      throw DataplaneError(std::string("failed to read the ") + family_name(f) + " filter table: " + argv[0] +
                           " exited with " + std::to_string(r.status) + ": " + trimmed(r.err));
    return r.out;
  }

  FilterTable& table(Family f) {
    auto& cached = cache_[index(f)];
    if (!cached) cached = parse_save(save(f, /*counters=*/false));
    return *cached;
  }

  // Renders against the model of the table and runs one restore. A failure usually means the
  // model is stale (someone else edited our chains): re-read the table, render, try once more.
  void change(Family f, const std::function<std::string(const FilterTable&)>& render, const std::string& what) {
    for (int attempt = 0;; ++attempt) {
      FilterTable& t = table(f);
      const std::string text = render(t);
      if (text.empty()) return;
      ++kernel_writes_;
      net::CommandResult r = net::run_command(
          {restore_[index(f)], "--wait=" + std::to_string(config_.lock_wait_seconds), "--noflush"}, text);
      if (r.status == 0) {
        try {
          apply_restore(t, text);
        } catch (const DataplaneError&) {
          cache_[index(f)].reset();  // the kernel took it, our model did not: re-read next time
        }
        return;
      }
      cache_[index(f)].reset();
      if (attempt > 0)
        throw DataplaneError("failed to " + what + " (" + family_name(f) + "): " + restore_[index(f)] +
                             " exited with " + std::to_string(r.status) + ": " + trimmed(r.err.empty() ? r.out : r.err));
    }
  }

  // Our ipsets as the kernel holds them. Without the ipset binary there can be none of ours.
  IdentitySets& sets() {
    if (!sets_) {
      if (!net::find_executable(ipset_)) return sets_.emplace();
      net::CommandResult r = net::run_command({ipset_, "save"});
      if (r.status != 0)
        throw DataplaneError("failed to read the ipsets: " + ipset_ + " save exited with " + std::to_string(r.status) +
                             ": " + trimmed(r.err));
      sets_ = parse_ipset_save(r.out);
    }
    return *sets_;
  }

  // change() for ipsets: one `ipset restore` of the rendered text, then `applied` updates the
  // model. A failure re-reads the sets and retries once.
  void change_sets(const std::function<std::string(const IdentitySets&)>& render,
                   const std::function<void(IdentitySets&)>& applied, const std::string& what) {
    for (int attempt = 0;; ++attempt) {
      const std::string text = render(sets());
      if (text.empty()) return;
      ++kernel_writes_;
      net::CommandResult r = net::run_command({ipset_, "-exist", "restore"}, text);
      if (r.status == 0) {
        applied(*sets_);
        return;
      }
      sets_.reset();
      if (attempt > 0)
        throw DataplaneError("failed to " + what + ": " + ipset_ + " restore exited with " + std::to_string(r.status) +
                             ": " + trimmed(r.err.empty() ? r.out : r.err) + " (is the ipset package installed?)");
    }
  }

  void enable_bridge_nf_call() {
    // The sysctls exist once br_netfilter is loaded; physdev matches need it anyway.
    if (access("/proc/sys/net/bridge", F_OK) != 0) net::run_command({resolve("modprobe"), "br_netfilter"});
    std::vector<const char*> names = {kCallIptables};
    if (config_.ipv6) names.push_back(kCallIp6tables);
    for (const char* name : names) {
      try {
        if (net::ensure_sysctl(name, "1")) ++kernel_writes_;
      } catch (const net::Error& e) {
        throw DataplaneError(std::string("bridged pod traffic cannot reach iptables: ") + e.what() +
                             " (is the br_netfilter module loaded? try modprobe br_netfilter)");
      }
    }
  }

  void disable_bridge_nf_call() {
    if (access("/proc/sys/net/bridge", F_OK) != 0) return;  // br_netfilter gone: nothing to undo
    std::vector<const char*> names = {kCallIptables};
    if (config_.ipv6) names.push_back(kCallIp6tables);
    for (const char* name : names) {
      try {
        if (net::ensure_sysctl(name, "0")) ++kernel_writes_;
      } catch (const net::Error& e) {
        throw DataplaneError(std::string("failed to turn off br_netfilter's iptables hook: ") + e.what());
      }
    }
  }

  IptablesConfig config_;
  std::string restore_[2], save_[2], ipset_;
  std::optional<FilterTable> cache_[2];
  std::optional<IdentitySets> sets_;
  struct AppliedPolicy {
    dataplane::PolicySet set;
    IdentitySets sets;
  };
  std::optional<AppliedPolicy> policy_;  // the last program_policy that succeeded
  uint64_t kernel_writes_ = 0;
  bool started_ = false;
};

}  // namespace

std::unique_ptr<dataplane::Dataplane> make_iptables_dataplane(const IptablesConfig& config) {
  return std::make_unique<IptablesDataplane>(config);
}

}  // namespace ferry::iptables
