// ferry-agent: the node agent. See agent/README.md.
#include <sys/signalfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <iostream>

#include <spdlog/spdlog.h>

#include "agent/core/agent.h"
#include "agent/registry/registry.h"

namespace {

int run(int argc, char** argv) {
  using namespace ferry::agent;
  std::vector<std::string> args(argv, argv + argc);
  std::string printed;
  std::optional<AgentConfig> config;
  try {
    config = parse_config(args, &printed);
  } catch (const ConfigError& e) {
    std::cerr << "ferry-agent: " << e.what() << "\n";
    return 2;
  }
  if (!config) {
    std::cout << printed;
    return 0;
  }
  setup_logging(config->log_level);

  // SIGTERM/SIGINT arrive through a signalfd in the loop; block them before any thread starts
  // (the HTTP server's) so no thread takes them the default way.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  int signal_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signal_fd < 0) {
    spdlog::critical("signalfd failed");
    return 1;
  }

  try {
    spdlog::info("ferry-agent {} on node {}: datastore {}, state {}, endpoints {}, socket {}", FERRY_VERSION,
                 config->node, config->datastore, config->state_dir, config->endpoint_dir, config->agent_socket);
    std::string why;
    std::string mode = choose_datapath(config->datapath, &why);
    spdlog::info("datapath {} ({})", mode, why);

    AgentConfig cfg = *config;
    Agent::Parts parts;
    parts.mode = mode;
    parts.cluster = cfg.datastore == "kubernetes" ? make_kubernetes_feed(cfg.kubeconfig) : make_manifest_feed(cfg.manifest_dir);
    parts.registry = std::make_unique<ferry::registry::EndpointRegistry>(cfg.endpoint_dir, cfg.state_dir);
    // The Agent owns the feed for its whole life and loads it before it asks for a backend.
    const ClusterFeed* feed = parts.cluster.get();
    parts.backends = [cfg, feed](const std::string& m) { return make_backend(m, cfg, feed->state()); };
    parts.overlay = std::make_unique<ferry::overlay::KernelOverlay>();  // in this (the node's) netns
    parts.host_addresses = node_addresses;  // the Host identity: this netns's addresses
    Agent agent(cfg, std::move(parts));
    // Before start(): /healthz answers during a long first sync; /readyz says what it waits for.
    HttpServer http(parse_listen(cfg.listen), agent.status());
    agent.start();
    return agent.run(signal_fd);
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) { return run(argc, argv); }
