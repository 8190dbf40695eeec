// ferry-probe: traffic tool for pods (see probe.h). Subcommands: serve, connect, batch, spread, stream, rr.
#include <CLI/CLI.hpp>

#include <iostream>
#include <sstream>

#include "probe.h"

namespace {

using ferry::probe::ProbeError;

// "80,81" -> {80, 81}
std::vector<uint16_t> parse_ports(const std::string& text) {
  std::vector<uint16_t> ports;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (item.empty()) continue;
    size_t used = 0;
    unsigned long v = 0;
    try {
      v = std::stoul(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v == 0 || v > 65535)
      throw ProbeError("\"" + item + "\" is not a port (1-65535)");
    ports.push_back(uint16_t(v));
  }
  return ports;
}

void print(const nlohmann::json& j, bool as_json, const std::string& text) {
  if (as_json) {
    std::cout << j.dump() << std::endl;
  } else {
    std::cout << text << std::endl;
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ferry-probe: traffic tool for pods (servers answer with their name and the source IP they saw)"};
  app.require_subcommand(1);

  ferry::probe::ServeOptions serve_opts;
  std::string tcp_ports, udp_ports, sctp_ports, sink_ports, rr_ports;
  auto* serve = app.add_subcommand("serve", "answer TCP/UDP/SCTP probes with \"<name> <client-ip>\"");
  serve->add_option("--name", serve_opts.name, "name reported to clients")->required();
  serve->add_option("--tcp", tcp_ports, "TCP ports, comma-separated");
  serve->add_option("--udp", udp_ports, "UDP ports, comma-separated");
  serve->add_option("--sctp", sctp_ports, "SCTP ports, comma-separated (raw sockets)");
  serve->add_option("--sink", sink_ports, "TCP ports that read and discard (for `stream`)");
  serve->add_option("--rr", rr_ports, "TCP ports that echo single bytes (for `rr`)");
  serve->add_option("--pidfile", serve_opts.pidfile, "written once every port listens");

  std::string proto = "tcp", to, output;
  int port = 80, timeout_ms = 1000;
  auto* connect = app.add_subcommand("connect", "probe one destination; exit 0 if it answered");
  connect->add_option("--proto", proto, "tcp, udp, sctp or icmp")
      ->check(CLI::IsMember({"tcp", "udp", "sctp", "icmp"}));
  connect->add_option("--to", to, "destination IP")->required();
  connect->add_option("--port", port, "destination port (not for icmp)")->check(CLI::Range(1, 65535));
  connect->add_option("--timeout-ms", timeout_ms, "how long to wait for an answer")->check(CLI::Range(1, 600000));
  connect->add_option("-o,--output", output, "\"json\" for one JSON object")->check(CLI::IsMember({"json", "text"}));

  double duration = 10;
  int stall_ms = 5000;
  auto* stream = app.add_subcommand("stream", "send a continuous TCP stream to a `serve --sink` port");
  stream->add_option("--to", to, "destination IP")->required();
  stream->add_option("--port", port, "destination port")->required()->check(CLI::Range(1, 65535));
  stream->add_option("--duration", duration, "seconds")->check(CLI::Range(0.1, 86400.0));
  stream->add_option("--stall-ms", stall_ms, "no progress for this long counts as a break")->check(CLI::Range(100, 600000));
  stream->add_option("--timeout-ms", timeout_ms, "connect timeout")->check(CLI::Range(1, 600000));

  auto* rr = app.add_subcommand("rr", "1-byte TCP request/response against a `serve --rr` port");
  rr->add_option("--to", to, "destination IP")->required();
  rr->add_option("--port", port, "destination port")->required()->check(CLI::Range(1, 65535));
  rr->add_option("--duration", duration, "seconds")->check(CLI::Range(0.1, 86400.0));
  rr->add_option("--timeout-ms", timeout_ms, "per-transaction timeout")->check(CLI::Range(1, 600000));

  int parallel = 256;
  auto* batch = app.add_subcommand(
      "batch", "probes from stdin, one \"<id> <proto> <ip> <port>\" per line, all at once; one JSON line each");
  batch->add_option("--timeout-ms", timeout_ms, "how long each probe waits for an answer")->check(CLI::Range(1, 600000));
  batch->add_option("--parallel", parallel, "probes in flight at most")->check(CLI::Range(1, 4096));

  ferry::probe::SpreadOptions spread_opts;
  auto* spread = app.add_subcommand(
      "spread", "new connections to one destination, counted by the server that answered; one JSON object");
  spread->add_option("--proto", spread_opts.proto, "tcp, udp or sctp")
      ->required()
      ->check(CLI::IsMember({"tcp", "udp", "sctp"}));
  spread->add_option("--to", spread_opts.to, "destination IP")->required();
  spread->add_option("--port", spread_opts.port, "destination port")->required()->check(CLI::Range(1, 65535));
  auto* spread_count = spread->add_option("--count", spread_opts.count, "this many connections")
                           ->check(CLI::Range(1, 1000000));
  spread->add_option("--parallel", spread_opts.parallel, "with --count: connections in flight at most")
      ->check(CLI::Range(1, 1024));
  auto* spread_duration =
      spread->add_option("--duration", spread_opts.duration_s, "a client loop: one connection after the other, seconds")
          ->check(CLI::Range(0.1, 86400.0));
  spread_count->excludes(spread_duration);
  spread->add_option("--interval-ms", spread_opts.interval_ms, "with --duration: start one connection every MS")
      ->check(CLI::Range(0, 600000));
  spread->add_option("--timeout-ms", spread_opts.timeout_ms, "how long each connection waits for an answer")
      ->check(CLI::Range(1, 600000));
  spread->add_flag("--each", spread_opts.each, "list every connection with its start time (Unix seconds)");

  CLI11_PARSE(app, argc, argv);

  try {
    if (serve->parsed()) {
      serve_opts.tcp = parse_ports(tcp_ports);
      serve_opts.udp = parse_ports(udp_ports);
      serve_opts.sctp = parse_ports(sctp_ports);
      serve_opts.sink = parse_ports(sink_ports);
      serve_opts.rr = parse_ports(rr_ports);
      return ferry::probe::serve(serve_opts);
    }
    if (connect->parsed()) {
      auto r = ferry::probe::connect_once(proto, to, uint16_t(port), timeout_ms);
      std::string where = proto == "icmp" ? to : to + " port " + std::to_string(port);
      std::string text = r.ok ? "ok " + proto + " " + where + ": " +
                                    (r.server.empty() ? std::string("echo reply")
                                                      : "server " + r.server + " saw " + r.seen_source) +
                                    " (" + std::to_string(r.rtt_us) + " us)"
                              : "FAILED " + proto + " " + where + ": " + r.error;
      print(r.to_json(), output == "json", text);
      return r.ok ? 0 : 1;
    }
    if (batch->parsed()) {
      const auto probes = ferry::probe::parse_batch(std::cin);
      for (const auto& j : ferry::probe::run_batch(probes, timeout_ms, size_t(parallel))) std::cout << j.dump() << '\n';
      std::cout.flush();
      return 0;
    }
    if (spread->parsed()) {
      if (spread_opts.count == 0 && spread_opts.duration_s == 0) throw ProbeError("spread: give --count or --duration");
      std::cout << ferry::probe::spread(spread_opts).dump() << std::endl;
      return 0;
    }
    if (stream->parsed()) {
      auto r = ferry::probe::stream(to, uint16_t(port), duration, stall_ms, timeout_ms);
      std::cout << r.to_json().dump() << std::endl;
      return r.ok ? 0 : 1;
    }
    if (rr->parsed()) {
      auto r = ferry::probe::request_response(to, uint16_t(port), duration, timeout_ms);
      std::cout << r.to_json().dump() << std::endl;
      return r.ok ? 0 : 1;
    }
  } catch (const std::exception& e) {
    std::cerr << "ferry-probe: " << e.what() << std::endl;
    return 2;
  }
  return 2;
}
