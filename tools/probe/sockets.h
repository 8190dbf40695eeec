// Internal to tools/probe: a file-descriptor guard and small socket helpers shared by the
// server and the clients.
#pragma once

#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "probe.h"

namespace ferry::probe {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = o.release();
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

// socket(2) that throws ProbeError with `what` and errno text.
Fd open_socket(int family, int type, int protocol, const std::string& what);
[[noreturn]] void throw_errno(const std::string& what, int err);
void set_int_option(int fd, int level, int name, int value, const std::string& what);

using Clock = std::chrono::steady_clock;
inline int64_t micros_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - t).count();
}
inline int ms_left(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left < 0 ? 0 : int(left);
}

uint32_t random_u32();
// "probe: <text>" for an errno from a failed connect/recv: refused, unreachable, ...
std::string errno_reason(int err);
// Reads the socket's error queue (IP_RECVERR / IPV6_RECVERR) and describes the ICMP error.
std::string error_queue_reason(int fd);

// The reply text of every server: "<name> <client-ip>\n".
std::string reply_line(const std::string& name, const sockaddr* client);
// Splits "<name> <ip>" into the result's server and seen_source.
void parse_reply_line(const std::string& line, ProbeResult& r);

}  // namespace ferry::probe
