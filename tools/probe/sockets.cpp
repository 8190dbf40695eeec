// Socket helpers shared by the server and the clients: addresses, errors, random numbers.
#include "sockets.h"

// <net/if.h> before any <linux/...> header: the UAPI headers then skip their duplicate ifreq.
#include <net/if.h>
#include <arpa/inet.h>
#include <linux/errqueue.h>
#include <netinet/ip_icmp.h>
#include <sys/random.h>

#include <cerrno>
#include <cstring>

namespace ferry::probe {

[[noreturn]] void throw_errno(const std::string& what, int err) {
  throw ProbeError(what + ": " + std::strerror(err));
}

Fd open_socket(int family, int type, int protocol, const std::string& what) {
  int fd = ::socket(family, type | SOCK_CLOEXEC, protocol);
  if (fd < 0) throw_errno("failed to open " + what + " socket", errno);
  return Fd(fd);
}

void set_int_option(int fd, int level, int name, int value, const std::string& what) {
  if (setsockopt(fd, level, name, &value, sizeof value) != 0) throw_errno("setsockopt " + what, errno);
}

Endpoint make_endpoint(const std::string& ip, uint16_t port) {
  Endpoint e;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&e.addr);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&e.addr);
  if (inet_pton(AF_INET, ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
    e.len = sizeof *v4;
    return e;
  }
  std::string host = ip;
  uint32_t scope = 0;
  if (auto pct = ip.find('%'); pct != std::string::npos) {
    host = ip.substr(0, pct);
    scope = if_nametoindex(ip.substr(pct + 1).c_str());
    if (scope == 0) throw ProbeError("unknown interface in scoped address \"" + ip + "\"");
  }
  if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
    v6->sin6_scope_id = scope;
    e.len = sizeof *v6;
    return e;
  }
  throw ProbeError("\"" + ip + "\" is not an IPv4 or IPv6 address");
}

std::string ip_text(const sockaddr* sa) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (sa->sa_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, buf, sizeof buf);
    return buf;
  }
  if (sa->sa_family == AF_INET6) {
    const auto& a = reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&a)) {
      inet_ntop(AF_INET, &a.s6_addr[12], buf, sizeof buf);
    } else {
      inet_ntop(AF_INET6, &a, buf, sizeof buf);
    }
    return buf;
  }
  return "?";
}

uint32_t random_u32() {
  uint32_t v = 0;
  while (getrandom(&v, sizeof v, 0) != sizeof v) {
  }
  return v;
}

std::string errno_reason(int err) {
  switch (err) {
    case ECONNREFUSED: return "connection refused";
    case EHOSTUNREACH: return "host unreachable";
    case ENETUNREACH: return "network unreachable";
    case ETIMEDOUT: return "timed out";
    case ECONNRESET: return "connection reset";
    case EACCES:
    case EPERM: return "not permitted (administratively prohibited)";
    default: return std::strerror(err);
  }
}

std::string error_queue_reason(int fd) {
  char data[512];
  char control[512];
  sockaddr_storage from{};
  iovec iov{data, sizeof data};
  msghdr msg{};
  msg.msg_name = &from;
  msg.msg_namelen = sizeof from;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  if (recvmsg(fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) return errno_reason(errno);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (!((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
          (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)))
      continue;
    sock_extended_err ee{};
    std::memcpy(&ee, CMSG_DATA(c), sizeof ee);
    std::string text = errno_reason(int(ee.ee_errno));
    if (ee.ee_origin == SO_EE_ORIGIN_ICMP || ee.ee_origin == SO_EE_ORIGIN_ICMP6) {
      const auto* offender = SO_EE_OFFENDER(reinterpret_cast<sock_extended_err*>(CMSG_DATA(c)));
      text += " (ICMP type " + std::to_string(ee.ee_type) + " code " + std::to_string(ee.ee_code);
      if (offender->sa_family != AF_UNSPEC) text += " from " + ip_text(offender);
      text += ")";
      if (ee.ee_origin == SO_EE_ORIGIN_ICMP && ee.ee_type == ICMP_DEST_UNREACH &&
          ee.ee_code == ICMP_PROT_UNREACH)
        text = "protocol unreachable: nothing listens for this protocol" + text.substr(text.find(" ("));
    }
    return text;
  }
  return "unknown socket error";
}

std::string reply_line(const std::string& name, const sockaddr* client) {
  return name + " " + ip_text(client) + "\n";
}

void parse_reply_line(const std::string& line, ProbeResult& r) {
  std::string text = line;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  auto space = text.rfind(' ');
  if (space == std::string::npos) {
    r.server = text;
    return;
  }
  r.server = text.substr(0, space);
  r.seen_source = text.substr(space + 1);
}

}  // namespace ferry::probe
