// `ferry-probe stream` (a continuous TCP stream that must never break, for the restart tests)
// and `ferry-probe rr` (1-byte TCP request/response, for the datapath benchmark).
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "sockets.h"

namespace ferry::probe {
namespace {

// Connects with a deadline; throws nothing, returns the reason on failure.
std::string connect_tcp(Fd& fd, const std::string& to, uint16_t port, int timeout_ms) {
  const Endpoint target = make_endpoint(to, port);
  fd = open_socket(target.family(), SOCK_STREAM, 0, "TCP");
  fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) | O_NONBLOCK);
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&target.addr), target.len) == 0) return "";
  if (errno != EINPROGRESS) return "connect: " + errno_reason(errno);
  pollfd p{fd.get(), POLLOUT, 0};
  if (poll(&p, 1, timeout_ms) <= 0) return "connect: timed out after " + std::to_string(timeout_ms) + " ms";
  int err = 0;
  socklen_t len = sizeof err;
  getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
  return err ? "connect: " + errno_reason(err) : "";
}

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

}  // namespace

nlohmann::json StreamResult::to_json() const {
  nlohmann::json j = {{"ok", ok}, {"bytes", bytes}, {"seconds", seconds},
                      {"broken", !ok}, {"max_stall_ms", max_stall_ms}};
  j["mbit_per_s"] = seconds > 0 ? double(bytes) * 8 / seconds / 1e6 : 0.0;
  if (!error.empty()) j["error"] = error;
  return j;
}

nlohmann::json RrResult::to_json() const {
  nlohmann::json j = {{"ok", ok}, {"transactions", transactions}, {"seconds", seconds},
                      {"transactions_per_s", per_second}};
  if (!error.empty()) j["error"] = error;
  return j;
}

StreamResult stream(const std::string& to, uint16_t port, double duration_s, int stall_ms,
                    int connect_timeout_ms) {
  StreamResult r;
  Fd fd;
  if (r.error = connect_tcp(fd, to, port, connect_timeout_ms); !r.error.empty()) return r;
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration_s));
  std::vector<char> chunk(64 * 1024, 'f');
  auto last_progress = start;
  while (Clock::now() < end) {
    const int wait = std::min(ms_left(end), stall_ms) + 1;
    pollfd p{fd.get(), POLLOUT, 0};
    int n = poll(&p, 1, wait);
    const auto now = Clock::now();
    const int64_t stalled = std::chrono::duration_cast<std::chrono::milliseconds>(now - last_progress).count();
    r.max_stall_ms = std::max(r.max_stall_ms, stalled);
    if (stalled > stall_ms) {
      r.error = "stalled: nothing could be sent for " + std::to_string(stalled) + " ms";
      break;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) continue;
    ssize_t sent = send(fd.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (sent < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      r.error = "send: " + errno_reason(errno);
      break;
    }
    r.bytes += uint64_t(sent);
    last_progress = Clock::now();
  }
  r.seconds = seconds_since(start);
  r.ok = r.error.empty();
  shutdown(fd.get(), SHUT_WR);
  return r;
}

RrResult request_response(const std::string& to, uint16_t port, double duration_s, int timeout_ms) {
  RrResult r;
  Fd fd;
  if (r.error = connect_tcp(fd, to, port, timeout_ms); !r.error.empty()) return r;
  set_int_option(fd.get(), IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
  fcntl(fd.get(), F_SETFL, fcntl(fd.get(), F_GETFL) & ~O_NONBLOCK);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  const auto start = Clock::now();
  const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(duration_s));
  char byte = 'r';
  while (Clock::now() < end) {
    if (send(fd.get(), &byte, 1, MSG_NOSIGNAL) != 1) {
      r.error = "send: " + errno_reason(errno);
      break;
    }
    ssize_t n = recv(fd.get(), &byte, 1, 0);
    if (n != 1) {
      r.error = n == 0 ? "server closed the connection"
                       : (errno == EAGAIN ? "no response within " + std::to_string(timeout_ms) + " ms"
                                          : "recv: " + errno_reason(errno));
      break;
    }
    ++r.transactions;
  }
  r.seconds = seconds_since(start);
  r.per_second = r.seconds > 0 ? double(r.transactions) / r.seconds : 0;
  r.ok = r.error.empty();
  return r;
}

}  // namespace ferry::probe
