// `ferry-probe connect`: one probe per protocol. TCP and UDP ask a ferry-probe server for its
// name; SCTP sends an INIT over a raw socket and waits for the INIT-ACK with our tag; ICMP is
// one echo request answered by the kernel.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/icmp.h>
#include <linux/icmpv6.h>
#include <netinet/in.h>
#include <poll.h>

#include <cerrno>
#include <cstring>

#include "sockets.h"

namespace ferry::probe {
namespace {

std::string timeout_reason(int timeout_ms) {
  return "timed out: no answer within " + std::to_string(timeout_ms) + " ms";
}

// Waits for `events` on fd until the deadline. Returns revents, 0 on timeout.
int wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    int n = poll(&p, 1, ms_left(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return 0;
    return p.revents;
  }
}

// Non-blocking connect bounded by the deadline; returns "" or the reason it failed.
std::string connect_with_deadline(int fd, const Endpoint& to, Clock::time_point deadline,
                                  int timeout_ms) {
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&to.addr), to.len) == 0) return "";
  if (errno != EINPROGRESS) return errno_reason(errno);
  if (wait_for(fd, POLLOUT, deadline) == 0) return timeout_reason(timeout_ms);
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
  return err ? errno_reason(err) : "";
}

ProbeResult probe_tcp(ProbeResult r, const Endpoint& to, int timeout_ms) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(timeout_ms);
  Fd fd = open_socket(to.family(), SOCK_STREAM, 0, "TCP");
  if (r.error = connect_with_deadline(fd.get(), to, deadline, timeout_ms); !r.error.empty()) return r;
  const std::string hello = "ferry-probe\n";
  if (send(fd.get(), hello.data(), hello.size(), MSG_NOSIGNAL) < 0) {
    r.error = errno_reason(errno);
    return r;
  }
  std::string line;
  while (line.find('\n') == std::string::npos) {
    if (wait_for(fd.get(), POLLIN, deadline) == 0) {
      r.error = "connected, but " + timeout_reason(timeout_ms);
      return r;
    }
    char buf[512];
    ssize_t n = recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0 && errno == EAGAIN) continue;
    if (n < 0) {
      r.error = "connected, then " + errno_reason(errno);
      return r;
    }
    if (n == 0) break;
    line.append(buf, size_t(n));
  }
  if (line.empty()) {
    r.error = "connected, but the server closed without answering";
    return r;
  }
  r.rtt_us = micros_since(start);
  parse_reply_line(line, r);
  r.ok = true;
  return r;
}

ProbeResult probe_udp(ProbeResult r, const Endpoint& to, int timeout_ms) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(timeout_ms);
  Fd fd = open_socket(to.family(), SOCK_DGRAM, 0, "UDP");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&to.addr), to.len) != 0) {
    r.error = errno_reason(errno);
    return r;
  }
  // Datagrams may be lost (first packet to a new neighbour): resend a few times.
  const auto resend_every = std::chrono::milliseconds(std::max(timeout_ms / 4, 50));
  auto next_send = start;
  const std::string hello = "ferry-probe\n";
  for (;;) {
    if (Clock::now() >= next_send) {
      (void)send(fd.get(), hello.data(), hello.size(), 0);
      next_send += resend_every;
    }
    if (Clock::now() >= deadline) {
      r.error = timeout_reason(timeout_ms);
      return r;
    }
    int ev = wait_for(fd.get(), POLLIN, std::min(deadline, next_send));
    if (ev == 0) continue;
    char buf[512];
    ssize_t n = recv(fd.get(), buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      r.error = errno == ECONNREFUSED ? "refused: ICMP port unreachable (nothing listens)" : errno_reason(errno);
      return r;
    }
    r.rtt_us = micros_since(start);
    parse_reply_line(std::string(buf, size_t(n)), r);
    r.ok = true;
    return r;
  }
}

// A raw socket connected to the target (so the kernel filters other peers' packets), with
// ICMP errors queued for us.
Fd raw_socket_to(const Endpoint& to, int protocol, const std::string& what) {
  Fd fd = open_socket(to.family(), SOCK_RAW, protocol, what);
  if (to.family() == AF_INET) {
    set_int_option(fd.get(), IPPROTO_IP, IP_RECVERR, 1, "IP_RECVERR");
  } else {
    set_int_option(fd.get(), IPPROTO_IPV6, IPV6_RECVERR, 1, "IPV6_RECVERR");
  }
  Endpoint target = to;
  if (target.family() == AF_INET) reinterpret_cast<sockaddr_in*>(&target.addr)->sin_port = 0;
  else reinterpret_cast<sockaddr_in6*>(&target.addr)->sin6_port = 0;
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&target.addr), target.len) != 0)
    throw_errno("connect raw " + what + " socket", errno);
  return fd;
}

// Receives one raw packet; strips the IPv4 header. Returns false on error (reason set).
bool recv_raw(int fd, int family, std::vector<uint8_t>& out, std::string& reason) {
  out.resize(4096);
  ssize_t n = recv(fd, out.data(), out.size(), MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EAGAIN) {
      out.clear();
      return true;
    }
    reason = errno_reason(errno);
    return false;
  }
  out.resize(size_t(n));
  if (family == AF_INET) {
    const size_t ihl = out.empty() ? 0 : size_t(out[0] & 0x0F) * 4;
    if (out.size() < ihl) {
      out.clear();
      return true;
    }
    out.erase(out.begin(), out.begin() + long(ihl));
  }
  return true;
}

ProbeResult probe_sctp(ProbeResult r, const Endpoint& to, int timeout_ms) {
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(timeout_ms);
  Fd fd = raw_socket_to(to, IPPROTO_SCTP, "raw SCTP");
  const uint16_t our_port = uint16_t(49152 + random_u32() % 16384);
  SctpInit init;
  init.initiate_tag = random_u32() | 1;
  init.initial_tsn = random_u32();
  const auto packet = sctp_build_init(our_port, r.port, init);
  const auto resend_every = std::chrono::milliseconds(std::max(timeout_ms / 4, 50));
  auto next_send = start;
  std::vector<uint8_t> in;
  for (;;) {
    if (Clock::now() >= next_send) {
      (void)send(fd.get(), packet.data(), packet.size(), 0);
      next_send += resend_every;
    }
    if (Clock::now() >= deadline) {
      r.error = timeout_reason(timeout_ms) + " (no INIT-ACK)";
      return r;
    }
    int ev = wait_for(fd.get(), POLLIN, std::min(deadline, next_send));
    if (ev == 0) continue;
    if (ev & POLLERR) {
      r.error = error_queue_reason(fd.get());
      return r;
    }
    if (!recv_raw(fd.get(), to.family(), in, r.error)) return r;
    auto p = sctp_parse(in);
    if (!p || p->type != SctpChunkType::kInitAck || p->src_port != r.port || p->dst_port != our_port ||
        p->verification_tag != init.initiate_tag || !p->checksum_ok || !p->init)
      continue;
    r.rtt_us = micros_since(start);
    parse_reply_line(std::string(p->cookie.begin(), p->cookie.end()), r);
    r.ok = true;
    // Be polite: tear down the half-open association the server may remember.
    const auto abort = sctp_build_abort(our_port, r.port, p->init->initiate_tag);
    (void)send(fd.get(), abort.data(), abort.size(), 0);
    return r;
  }
}

uint16_t inet_checksum(const uint8_t* data, size_t len) {
  uint32_t sum = 0;
  for (size_t i = 0; i + 1 < len; i += 2) sum += uint32_t(data[i] << 8 | data[i + 1]);
  if (len & 1) sum += uint32_t(data[len - 1] << 8);
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return uint16_t(~sum);
}

ProbeResult probe_icmp(ProbeResult r, const Endpoint& to, int timeout_ms) {
  const bool v6 = to.family() == AF_INET6;
  const auto start = Clock::now();
  const auto deadline = start + std::chrono::milliseconds(timeout_ms);
  Fd fd = raw_socket_to(to, v6 ? int(IPPROTO_ICMPV6) : int(IPPROTO_ICMP), v6 ? "raw ICMPv6" : "raw ICMP");
  const uint16_t id = uint16_t(random_u32());
  const uint8_t echo_request = v6 ? ICMPV6_ECHO_REQUEST : ICMP_ECHO;
  const uint8_t echo_reply = v6 ? ICMPV6_ECHO_REPLY : ICMP_ECHOREPLY;
  uint16_t seq = 0;
  const auto resend_every = std::chrono::milliseconds(std::max(timeout_ms / 4, 50));
  auto next_send = start;
  std::vector<uint8_t> in;
  for (;;) {
    if (Clock::now() >= next_send) {
      ++seq;
      // type, code, checksum, id, seq, payload; the kernel fills in the ICMPv6 checksum.
      std::vector<uint8_t> echo = {echo_request, 0, 0, 0, uint8_t(id >> 8), uint8_t(id), uint8_t(seq >> 8),
                                   uint8_t(seq), 'f', 'e', 'r', 'r', 'y', '-', 'p', 'r'};
      if (!v6) {
        uint16_t sum = inet_checksum(echo.data(), echo.size());
        echo[2] = uint8_t(sum >> 8);
        echo[3] = uint8_t(sum);
      }
      (void)send(fd.get(), echo.data(), echo.size(), 0);
      next_send += resend_every;
    }
    if (Clock::now() >= deadline) {
      r.error = timeout_reason(timeout_ms) + " (no echo reply)";
      return r;
    }
    int ev = wait_for(fd.get(), POLLIN, std::min(deadline, next_send));
    if (ev == 0) continue;
    if (ev & POLLERR) {
      r.error = error_queue_reason(fd.get());
      return r;
    }
    if (!recv_raw(fd.get(), to.family(), in, r.error)) return r;
    if (in.size() < 8 || in[0] != echo_reply || uint16_t(in[4] << 8 | in[5]) != id) continue;
    r.rtt_us = micros_since(start);
    r.ok = true;
    return r;
  }
}

}  // namespace

nlohmann::json ProbeResult::to_json() const {
  nlohmann::json j = {{"ok", ok}, {"proto", proto}, {"to", to}, {"port", port}};
  if (ok) {
    j["server"] = server.empty() ? nlohmann::json(nullptr) : nlohmann::json(server);
    j["seen_source"] = seen_source.empty() ? nlohmann::json(nullptr) : nlohmann::json(seen_source);
    j["rtt_us"] = rtt_us;
  } else {
    j["error"] = error;
  }
  return j;
}

ProbeResult connect_once(const std::string& proto, const std::string& to, uint16_t port,
                         int timeout_ms) {
  ProbeResult r;
  r.proto = proto;
  r.to = to;
  r.port = proto == "icmp" ? 0 : port;
  const Endpoint target = make_endpoint(to, port);
  if (proto == "tcp") return probe_tcp(r, target, timeout_ms);
  if (proto == "udp") return probe_udp(r, target, timeout_ms);
  if (proto == "sctp") return probe_sctp(r, target, timeout_ms);
  if (proto == "icmp") return probe_icmp(r, target, timeout_ms);
  throw ProbeError("unknown protocol \"" + proto + "\" (tcp, udp, sctp or icmp)");
}

}  // namespace ferry::probe
