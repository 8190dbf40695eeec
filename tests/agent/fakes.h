// Test doubles for the agent's control logic: a Dataplane that keeps endpoints in memory and
// counts "kernel writes", links for the registry, and a cluster feed; ferry-bridge's side of the
// agent socket (BridgeClient) and an agent loop on a thread (Running). Katran style: the
// reconcile logic runs against these without a kernel.
#pragma once

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <set>
#include <string>
#include <thread>

#include "agent/core/agent.h"
#include "agent/dataplane/dataplane.h"
#include "agent/registry/registry.h"
#include "net/net.h"
#include "plugins/bridge/endpoint.h"

namespace ferry::agent::test {

// What a FakeDataplane "kernel" holds; outlives backend instances, as pinned maps do.
struct FakeKernel {
  std::map<uint32_t, dataplane::Endpoint> endpoints;
  std::set<uint32_t> fail_program;  // program_endpoint throws for these ids
  std::set<uint32_t> fail_remove;
  bool fail_installed = false;
  std::atomic<bool> fail_policy = false;  // flipped by tests while the loop runs
  dataplane::PolicySet policy;
  int policy_programs = 0;
  dataplane::ServiceSet services;
  int service_programs = 0;
  // Called (on the loop's thread) with every set program_policy accepts.
  std::function<void(const dataplane::PolicySet&)> on_policy;
  bool started = false;
  int cleanups = 0;
  int maintains = 0;
};

class FakeDataplane : public dataplane::Dataplane {
 public:
  FakeDataplane(FakeKernel& kernel, std::string name = "ebpf") : kernel_(kernel), name_(std::move(name)) {}
  std::string name() const override { return name_; }
  void start() override { kernel_.started = true; }
  std::vector<dataplane::Endpoint> installed_endpoints() override {
    if (kernel_.fail_installed) throw dataplane::DataplaneError("fake: cannot read installed endpoints");
    std::vector<dataplane::Endpoint> out;
    for (const auto& [id, ep] : kernel_.endpoints) out.push_back(ep);
    return out;
  }
  void program_endpoint(const dataplane::Endpoint& ep) override {
    if (kernel_.fail_program.count(ep.endpoint_id))
      throw dataplane::DataplaneError("fake: program of endpoint " + std::to_string(ep.endpoint_id) + " failed");
    kernel_.endpoints[ep.endpoint_id] = ep;
    ++writes_;
  }
  void remove_endpoint(const dataplane::Endpoint& ep) override {
    if (kernel_.fail_remove.count(ep.endpoint_id))
      throw dataplane::DataplaneError("fake: remove of endpoint " + std::to_string(ep.endpoint_id) + " failed");
    auto it = kernel_.endpoints.find(ep.endpoint_id);
    if (it != kernel_.endpoints.end() && it->second.host_ifindex == ep.host_ifindex) kernel_.endpoints.erase(it);
    ++writes_;
  }
  void program_policy(const dataplane::PolicySet& desired) override {
    if (kernel_.fail_policy) throw dataplane::DataplaneError("fake: program of policy failed");
    if (kernel_.policy != desired) ++writes_;
    kernel_.policy = desired;
    ++kernel_.policy_programs;
    if (kernel_.on_policy) kernel_.on_policy(desired);
  }
  void program_services(const dataplane::ServiceSet& desired) override {
    if (kernel_.services != desired) ++writes_;
    kernel_.services = desired;
    ++kernel_.service_programs;
  }
  void maintain() override { ++kernel_.maintains; }
  void cleanup_all() override {
    ++kernel_.cleanups;
    writes_ += kernel_.endpoints.size();
    kernel_.endpoints.clear();
  }
  dataplane::Stats stats() override {
    dataplane::Stats s;
    s.kernel_writes = writes_;
    s.counters = {{"redirect_local", false, 10, 1000}, {"spoofed", true, 3, 180}};
    s.maps["ferry_ep_v1"] = {kernel_.endpoints.size(), 65536};
    return s;
  }

 private:
  FakeKernel& kernel_;
  std::string name_;
  uint64_t writes_ = 0;
};

// Links of a node that has bridge "ferry0" and whatever veths a test declares.
class FakeLinks : public registry::LinkLookup {
 public:
  static constexpr net::Mac kBridgeMac = {0x02, 0xfe, 0x00, 0x00, 0x00, 0x01};
  explicit FakeLinks(std::map<int, std::string>* veths) : veths_(veths) {}
  std::optional<net::Mac> bridge_mac(const std::string& bridge) override {
    if (bridge == "ferry0") return kBridgeMac;
    return std::nullopt;
  }
  bool link_present(int index, const std::string& name) override {
    if (!veths_) return true;
    auto it = veths_->find(index);
    return it != veths_->end() && it->second == name;
  }

 private:
  std::map<int, std::string>* veths_;  // nullptr: every veth is there
};

class FakeFeed : public ClusterFeed {
 public:
  void load() override { loaded = true; }
  int fd() const override { return -1; }
  bool handle_events() override { return false; }
  std::map<std::string, uint64_t> object_counts() const override { return {{"Pod", 2}, {"Node", 1}}; }
  bool loaded = false;
};

// A temporary directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "fyag-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline bridge::EndpointRecord make_record(const std::string& container_id, int ifindex, std::string ip4,
                                          std::string ip6 = "") {
  bridge::EndpointRecord r;
  r.container_id = container_id;
  r.ifname = "eth0";
  r.netns = "/run/netns/" + container_id;
  r.network = "ferrynet";
  r.bridge = "ferry0";
  r.host_veth = "ferry" + container_id.substr(0, 10);
  r.host_veth_index = ifindex;
  char mac[18];
  snprintf(mac, sizeof mac, "0a:58:0a:f4:01:%02x", ifindex & 0xff);
  r.container_mac = mac;
  r.mtu = 1500;
  if (!ip6.empty()) r.ips.push_back(ip6);  // out of order on purpose: desired() sorts
  r.ips.push_back(ip4);
  r.gateways = {"10.244.1.1"};
  r.pod_namespace = "default";
  r.pod_name = "pod-" + container_id;
  return r;
}

inline std::string record_file(const bridge::EndpointRecord& r) { return r.container_id + "-" + r.ifname + ".json"; }

// A client as ferry-bridge with "agentRequired" is: an autobound datagram socket.
class BridgeClient {
 public:
  BridgeClient() {
    fd_ = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_un self{};
    self.sun_family = AF_UNIX;
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&self), sizeof(sa_family_t)), 0);  // autobind
  }
  ~BridgeClient() { close(fd_); }
  void send(const std::string& path, const std::string& text) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size());
    ASSERT_EQ(sendto(fd_, text.data(), text.size(), 0, reinterpret_cast<sockaddr*>(&addr), sizeof addr),
              static_cast<ssize_t>(text.size()));
  }
  // An answer waits in the socket (the agent has replied).
  bool answer_queued() const {
    pollfd p{fd_, POLLIN, 0};
    return poll(&p, 1, 0) == 1;
  }
  // Waits (bounded) for the agent's answer; "" if none came.
  std::string receive(int timeout_ms = 20000) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) != 1) return "";
    char buf[4096];
    ssize_t n = recv(fd_, buf, sizeof buf, 0);
    return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
  }

 private:
  int fd_ = -1;
};

// Runs an agent's loop on a thread; stops and joins on destruction.
class Running {
 public:
  explicit Running(Agent& agent) : agent_(agent), thread_([this] { rc_ = agent_.run(); }) {}
  ~Running() { stop(); }
  int stop() {
    if (thread_.joinable()) {
      agent_.stop();
      thread_.join();
    }
    return rc_;
  }

 private:
  Agent& agent_;
  int rc_ = -1;
  std::thread thread_;
};

// ---- for tests with a real manifest directory, and ferryctl runs ---------------------------

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Bounded wait for something the loop thread does (never a timing assertion).
template <typename Pred>
bool eventually(Pred pred) {
  for (int i = 0; i < 2000; ++i) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return pred();
}

// An agent configuration whose state, records, socket and pins are all under `tmp`.
inline AgentConfig config_under(const TempDir& tmp, const std::string& node = "node-1") {
  AgentConfig c;
  c.node = node;
  c.state_dir = tmp / "state";
  c.endpoint_dir = tmp / "state/endpoints";
  c.agent_socket = tmp / "state/agent.sock";
  c.bpffs_root = tmp / "bpffs";
  return c;
}

// An agent over the manifest directory `dir` (created), with fake links (`veths`, see FakeLinks).
inline std::unique_ptr<Agent> make_manifest_agent(const AgentConfig& config, const std::string& dir,
                                                  BackendFactory backends,
                                                  std::function<std::vector<net::Ip>()> host_addresses,
                                                  std::map<int, std::string>* veths = nullptr) {
  Agent::Parts parts;
  parts.cluster = make_manifest_feed(dir);
  parts.registry = std::make_unique<registry::EndpointRegistry>(config.endpoint_dir, config.state_dir,
                                                                std::make_unique<FakeLinks>(veths));
  parts.backends = std::move(backends);
  parts.mode = "ebpf";
  parts.host_addresses = std::move(host_addresses);
  return std::make_unique<Agent>(config, std::move(parts));
}

// Replaced atomically, as an editor or `kubectl get -o yaml >` + mv would.
inline void replace_file(const std::string& dir, const std::string& name, const std::string& text) {
  const std::string tmp_path = dir + "/." + name + ".tmp";
  std::ofstream(tmp_path) << text;
  ASSERT_EQ(std::rename(tmp_path.c_str(), (dir + "/" + name).c_str()), 0) << name;
}

#ifdef FERRYCTL_BINARY
constexpr const char* kFerryctl = FERRYCTL_BINARY;
#else
constexpr const char* kFerryctl = "";
#endif

struct CtlResult {
  int status = -1;
  std::string out, err;
};

// ferryctl `args` --state-dir `state_dir`.
inline CtlResult run_ferryctl(std::vector<std::string> args, const std::string& state_dir) {
  args.insert(args.begin(), kFerryctl);
  args.insert(args.end(), {"--state-dir", state_dir});
  net::CommandResult r = net::run_command(args);
  return {r.status, r.out, r.err};
}

}  // namespace ferry::agent::test
