// tools/probe/probe.h — ferry-probe: the traffic tool of the tests, the harness and the
// benchmarks. A server (`serve`) answers TCP, UDP and SCTP on chosen ports with its name and
// the source IP it saw; a client (`connect`) says whether a server (or, for ICMP, the
// kernel) answered; `stream` and `rr` measure a long-lived TCP connection.
//
// The kernel of the test machine has no SCTP protocol, so SCTP is spoken over raw sockets:
// the client sends an INIT, the server answers with a hand-built INIT-ACK whose state cookie
// carries "<name> <client-ip>". The packet code is pure (sctp_* below) and unit-tested.
//
// Error convention: the socket layer throws ProbeError (a std::runtime_error whose message
// says what failed, e.g. `bind [::]:80/tcp: Address already in use`); a probe that simply got
// no answer is not an error but a ProbeResult with ok=false and a reason.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <istream>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ferry::probe {

class ProbeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// ---------------------------------------------------------------------------------------
// SCTP packets (RFC 9260), built and parsed without a kernel SCTP stack.

// CRC32c (Castagnoli, reflected, init ~0, final xor) as SCTP uses it.
uint32_t crc32c(std::span<const uint8_t> data);

enum class SctpChunkType : uint8_t { kInit = 1, kInitAck = 2, kAbort = 6 };

struct SctpInit {          // the fields INIT and INIT-ACK share
  uint32_t initiate_tag = 0;
  uint32_t a_rwnd = 65536;
  uint16_t outbound_streams = 1;
  uint16_t inbound_streams = 1;
  uint32_t initial_tsn = 0;
};

struct SctpPacket {
  uint16_t src_port = 0;
  uint16_t dst_port = 0;
  uint32_t verification_tag = 0;
  bool checksum_ok = false;      // set by sctp_parse
  SctpChunkType type{};          // first chunk's type (INIT must be alone in its packet)
  uint8_t chunk_flags = 0;
  std::optional<SctpInit> init;  // INIT / INIT-ACK body
  std::vector<uint8_t> cookie;   // INIT-ACK: the State Cookie parameter's value
};

// INIT: verification tag 0 (RFC 9260 §8.5.1), our random initiate tag.
std::vector<uint8_t> sctp_build_init(uint16_t src_port, uint16_t dst_port, const SctpInit& init);
// INIT-ACK in answer to `peer_init`: tagged with the peer's initiate tag, carries `cookie`.
std::vector<uint8_t> sctp_build_init_ack(uint16_t src_port, uint16_t dst_port, uint32_t peer_tag,
                                         const SctpInit& ours, std::span<const uint8_t> cookie);
// ABORT tagged with the peer's tag (T bit clear).
std::vector<uint8_t> sctp_build_abort(uint16_t src_port, uint16_t dst_port, uint32_t peer_tag);
// Parses the SCTP part of a packet (no IP header). nullopt when too short or malformed;
// a wrong checksum is reported in checksum_ok, not rejected.
std::optional<SctpPacket> sctp_parse(std::span<const uint8_t> bytes);

// ---------------------------------------------------------------------------------------
// Addresses

struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  int family() const { return addr.ss_family; }
};
// "10.244.1.5" / "fd00::5" / "fe80::1%eth0" + port; throws ProbeError if not an IP.
Endpoint make_endpoint(const std::string& ip, uint16_t port);
// IP text of a socket address; IPv4-mapped IPv6 addresses are shown as IPv4.
std::string ip_text(const sockaddr* sa);

// ---------------------------------------------------------------------------------------
// Server

struct ServeOptions {
  std::string name;
  std::vector<uint16_t> tcp, udp, sctp;
  std::vector<uint16_t> sink;  // TCP: read and discard
  std::vector<uint16_t> rr;    // TCP: 1-byte ping-pong
  std::string pidfile;         // written once every socket listens
};
// Binds everything (IPv4 and IPv6, all addresses), then serves until SIGTERM/SIGINT.
// Throws ProbeError when a socket cannot be opened or bound.
int serve(const ServeOptions& opts);

// ---------------------------------------------------------------------------------------
// Clients

struct ProbeResult {
  bool ok = false;
  std::string proto, to;
  uint16_t port = 0;
  std::string server;       // server name ("" for ICMP)
  std::string seen_source;  // the source IP the server saw ("" for ICMP)
  int64_t rtt_us = 0;
  std::string error;        // why not, when !ok
  nlohmann::json to_json() const;
};

// proto: tcp, udp, sctp, icmp. Never throws for "no answer"; throws ProbeError for bad input
// or when a socket cannot even be opened.
ProbeResult connect_once(const std::string& proto, const std::string& to, uint16_t port,
                         int timeout_ms);

// `batch`: many probes at once from one namespace (the NetworkPolicy matrices). One probe per
// input line "<id> <proto> <ip> <port>"; `id` is echoed back so the caller can match results.
struct BatchProbe {
  std::string id, proto, to;
  uint16_t port = 0;
};
// Throws ProbeError naming the line when a line is malformed.
std::vector<BatchProbe> parse_batch(std::istream& in);
// Runs every probe concurrently (at most max_parallel at a time), each with timeout_ms; the
// results are connect_once's JSON plus "id", in input order. Never throws for a probe: a
// probe that cannot even start is a result with ok=false and the reason.
std::vector<nlohmann::json> run_batch(const std::vector<BatchProbe>& probes, int timeout_ms, size_t max_parallel);

// `spread`: new connections to one destination, counted by the server that answered each
// (load-balancer spread, session affinity, which backends a Service reaches after a change).
struct SpreadOptions {
  std::string proto, to;  // tcp, udp or sctp
  uint16_t port = 0;
  int count = 0;            // this many connections, `parallel` at a time ...
  size_t parallel = 1;
  double duration_s = 0;    // ... or, when > 0, one after the other for this long,
  int interval_ms = 0;      //     starting one every interval_ms (a client loop)
  int timeout_ms = 1000;
  bool each = false;        // also list every connection with its wall-clock start time
};
// {"proto", "to", "port", "connections", "answered", "servers": {name: n}, "seen_sources":
// {ip: n}, "errors": {reason: n}} and with `each` "each": [{"t" (Unix seconds), "ok",
// "server", "seen_source" | "error"}], in start order. Throws ProbeError for bad input (an
// address that is not an IP, icmp); a connection that got no answer is counted in "errors".
nlohmann::json spread(const SpreadOptions& opts);

struct StreamResult {
  bool ok = false;  // ran the whole duration without the connection breaking
  uint64_t bytes = 0;
  double seconds = 0;
  int64_t max_stall_ms = 0;  // longest time no byte could be sent
  std::string error;
  nlohmann::json to_json() const;
};
// Sends continuously for `duration_s`; a send error, or no progress for `stall_ms`, is a break.
StreamResult stream(const std::string& to, uint16_t port, double duration_s, int stall_ms,
                    int connect_timeout_ms);

struct RrResult {
  bool ok = false;
  uint64_t transactions = 0;
  double seconds = 0;
  double per_second = 0;
  std::string error;
  nlohmann::json to_json() const;
};
// 1-byte request/response on one TCP connection for `duration_s`.
RrResult request_response(const std::string& to, uint16_t port, double duration_s,
                          int timeout_ms);

}  // namespace ferry::probe
