// The kernel side of the iptables datapath: runs iptables-save / iptables-restore, ipset and
// conntrack, keeps a model of each family's filter and nat tables and of our ipsets, sets the
// br_netfilter sysctls.
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <utility>

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
const char* table_name(Table t) { return t == Table::kNat ? "nat" : "filter"; }

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
    conntrack_ = net::find_executable(config.conntrack);
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

  // nat first: a Service gaining endpoints is translated before its REJECT goes (the REJECT
  // matches only untranslated packets anyway).
  void program_services(const dataplane::ServiceSet& desired) override {
    if (!started_) start();
    // Unknown until this returns; the previous set tells which UDP flows went stale.
    const std::optional<dataplane::ServiceSet> before = std::exchange(applied_services_, std::nullopt);
    for (Family f : families()) {
      const ServiceTables want = service_tables(f, desired, config_.cluster_cidrs);
      for (auto [t, chains] : {std::pair{Table::kNat, &want.nat}, std::pair{Table::kFilter, &want.filter}})
        change(
            f, [&](const FilterTable& current) { return render_services(t, *chains, current); },
            "program the service chains", t);
    }
    if (before) delete_stale_udp_flows(stale_udp_flows(*before, desired));
    applied_services_ = desired;
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
      for (Table t : {Table::kFilter, Table::kNat}) {
        cache_[index(f, t)].reset();  // read the kernel afresh: cleanup must find everything of ours
        change(
            f, [&](const FilterTable& current) { return render_services_cleanup(t, current); },
            "remove the ferry service chains", t);
      }
      change(f, render_cleanup, "remove the ferry endpoint chains");
    }
    applied_services_.reset();
    sets_.reset();
    policy_.reset();
    change_sets([](const IdentitySets& have) { return render_set_destroy({}, have); },
                [](IdentitySets& have) { have.clear(); }, "destroy the policy ipsets");
    if (config_.manage_bridge_nf_call) disable_bridge_nf_call();
    started_ = false;
  }

  dataplane::Stats stats() override {
    dataplane::Stats s;
    dataplane::Counter spoofed{"drop_spoofed", true}, policy{"drop_policy", true},
        no_endpoint{"drop_no_service", true};
    for (Family f : families()) {
      const FilterTable t = parse_save(save(f, /*counters=*/true));
      for (auto [sum, c] : {std::pair{&spoofed, drop_spoofed_counter(t)}, std::pair{&policy, drop_policy_counter(t)},
                            std::pair{&no_endpoint, service_no_endpoint_counter(t)}}) {
        sum->packets += c.packets;
        sum->bytes += c.bytes;
      }
    }
    s.counters = {spoofed, policy, no_endpoint};
    s.kernel_writes = kernel_writes_;
    return s;
  }

 private:
  static size_t index(Family f) { return f == Family::kV4 ? 0 : 1; }
  static size_t index(Family f, Table t) { return index(f) + (t == Table::kNat ? 2 : 0); }

  std::vector<Family> families() const {
    if (config_.ipv6) return {Family::kV4, Family::kV6};
    return {Family::kV4};
  }

  std::string save(Family f, bool counters, Table t = Table::kFilter) {
    std::vector<std::string> argv = {save_[index(f)], "-t", table_name(t)};
    if (counters) argv.push_back("-c");
    net::CommandResult r = net::run_command(argv);
    if (r.status != 0)
      throw DataplaneError(std::string("failed to read the ") + family_name(f) + " " + table_name(t) + " table: " + argv[0] +
                           " exited with " + std::to_string(r.status) + ": " + trimmed(r.err));
    return r.out;
  }

  FilterTable& table(Family f, Table t = Table::kFilter) {
    auto& cached = cache_[index(f, t)];
    if (!cached) cached = parse_table_save(save(f, /*counters=*/false, t), t);
    return *cached;
  }

  // Renders against the model of the table and runs one restore. A failure usually means the
  // model is stale (someone else edited our chains): re-read the table, render, try once more.
  void change(Family f, const std::function<std::string(const FilterTable&)>& render, const std::string& what,
              Table table_kind = Table::kFilter) {
    const size_t slot = index(f, table_kind);
    for (int attempt = 0;; ++attempt) {
      FilterTable& t = table(f, table_kind);
      const std::string text = render(t);
      if (text.empty()) return;
      ++kernel_writes_;
      net::CommandResult r = net::run_command(
          {restore_[index(f)], "--wait=" + std::to_string(config_.lock_wait_seconds), "--noflush"}, text);
      if (r.status == 0) {
        try {
          apply_table_restore(t, table_kind, text);
        } catch (const DataplaneError&) {
          cache_[slot].reset();  // the kernel took it, our model did not: re-read next time
        }
        return;
      }
      cache_[slot].reset();
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

  // kube-proxy deletes these too: a UDP flow has no end, so its conntrack entry would keep
  // sending a client's datagrams to a backend that is gone. Without the tool they time out.
  void delete_stale_udp_flows(const std::vector<StaleUdpFlows>& stale) {
    if (!conntrack_) return;
    for (const StaleUdpFlows& flow : stale) {
      std::vector<std::string> argv = {*conntrack_,      "-D", "-p", "udp", "--orig-dst", flow.frontend.str(),
                                       "--orig-port-dst", std::to_string(flow.port)};
      if (flow.backend) argv.insert(argv.end(), {"--dst-nat", flow.backend->str()});
      // Exit status 1 means "no entry matched": nothing to delete is not an error.
      if (net::run_command(argv).status == 0) ++kernel_writes_;
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
  std::optional<FilterTable> cache_[4];  // [index(family, table)]: filter v4, v6, nat v4, v6
  std::optional<IdentitySets> sets_;
  struct AppliedPolicy {
    dataplane::PolicySet set;
    IdentitySets sets;
  };
  std::optional<AppliedPolicy> policy_;  // the last program_policy that succeeded
  std::optional<dataplane::ServiceSet> applied_services_;  // the last program_services that succeeded
  std::optional<std::string> conntrack_;
  uint64_t kernel_writes_ = 0;
  bool started_ = false;
};

}  // namespace

std::unique_ptr<dataplane::Dataplane> make_iptables_dataplane(const IptablesConfig& config) {
  return std::make_unique<IptablesDataplane>(config);
}

}  // namespace ferry::iptables
