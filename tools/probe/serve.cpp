// `ferry-probe serve`: answers TCP/UDP with "<name> <client-ip>", SCTP INITs with an INIT-ACK
// whose cookie says the same, sinks streams and echoes 1-byte request/response. One thread
// per listening socket, one per TCP connection; signals are taken by the main thread.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <signal.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <functional>
#include <iostream>
#include <mutex>
#include <set>
#include <thread>

#include "sockets.h"

namespace ferry::probe {
namespace {

std::mutex log_mutex;
void log_line(const std::string& text) {
  std::lock_guard lock(log_mutex);
  std::cout << text << std::endl;
}

Endpoint any_endpoint(int family, uint16_t port) {
  return make_endpoint(family == AF_INET ? "0.0.0.0" : "::", port);
}

std::string bind_name(int family, uint16_t port, const char* proto) {
  return std::string(family == AF_INET ? "0.0.0.0" : "[::]") + ":" + std::to_string(port) + "/" + proto;
}

// A socket bound to the wildcard address of `family`; IPv6 sockets are IPv6-only so the two
// families never compete for a port and each reports plain addresses.
Fd bound_socket(int family, int type, uint16_t port, const char* proto) {
  Fd fd = open_socket(family, type, 0, bind_name(family, port, proto));
  set_int_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR");
  if (family == AF_INET6) set_int_option(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, 1, "IPV6_V6ONLY");
  // Services are probed on addresses that may not be configured yet when we start.
  set_int_option(fd.get(), IPPROTO_IP, IP_FREEBIND, 1, "IP_FREEBIND");
  Endpoint e = any_endpoint(family, port);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&e.addr), e.len) != 0)
    throw_errno("bind " + bind_name(family, port, proto), errno);
  if (type == SOCK_STREAM && listen(fd.get(), 128) != 0)
    throw_errno("listen " + bind_name(family, port, proto), errno);
  return fd;
}

enum class TcpKind { kLine, kSink, kRr };

void set_recv_timeout(int fd, int seconds) {
  timeval tv{seconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

void serve_tcp_connection(Fd conn, TcpKind kind, std::string name, sockaddr_storage peer,
                          uint16_t port) {
  const auto* peer_sa = reinterpret_cast<const sockaddr*>(&peer);
  if (kind == TcpKind::kLine) {
    set_recv_timeout(conn.get(), 5);
    std::string line;
    char buf[512];
    while (line.find('\n') == std::string::npos && line.size() < 4096) {
      ssize_t n = recv(conn.get(), buf, sizeof buf, 0);
      if (n <= 0) break;
      line.append(buf, size_t(n));
    }
    const std::string reply = reply_line(name, peer_sa);
    (void)send(conn.get(), reply.data(), reply.size(), MSG_NOSIGNAL);
    log_line("tcp " + std::to_string(port) + " from " + ip_text(peer_sa));
    return;
  }
  if (kind == TcpKind::kSink) {
    log_line("sink " + std::to_string(port) + " from " + ip_text(peer_sa));
    std::vector<char> buf(256 * 1024);
    uint64_t total = 0;
    ssize_t n;
    while ((n = recv(conn.get(), buf.data(), buf.size(), 0)) > 0) total += uint64_t(n);
    log_line("sink " + std::to_string(port) + " from " + ip_text(peer_sa) + " closed after " +
             std::to_string(total) + " bytes");
    return;
  }
  set_int_option(conn.get(), IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
  log_line("rr " + std::to_string(port) + " from " + ip_text(peer_sa));
  char byte;
  while (recv(conn.get(), &byte, 1, 0) == 1) {
    if (send(conn.get(), &byte, 1, MSG_NOSIGNAL) != 1) break;
  }
}

void accept_loop(Fd listener, TcpKind kind, std::string name, uint16_t port) {
  for (;;) {
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    int c = accept4(listener.get(), reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
    if (c < 0) {
      if (errno == EINTR || errno == ECONNABORTED || errno == EMFILE || errno == ENFILE) continue;
      log_line("accept on port " + std::to_string(port) + " failed: " + std::strerror(errno));
      return;
    }
    std::thread(serve_tcp_connection, Fd(c), kind, name, peer, port).detach();
  }
}

// Control message carrying the source address for a reply: the address the request was sent
// to, so a client talking to one of several addresses hears back from that one.
struct ReplySource {
  alignas(cmsghdr) char buf[CMSG_SPACE(sizeof(in6_pktinfo))] = {};
  size_t len = 0;
};

ReplySource reply_source_from(msghdr& msg) {
  ReplySource out;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo info{};
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      in_pktinfo reply{};
      reply.ipi_spec_dst = info.ipi_addr;
      auto* r = reinterpret_cast<cmsghdr*>(out.buf);
      r->cmsg_level = IPPROTO_IP;
      r->cmsg_type = IP_PKTINFO;
      r->cmsg_len = CMSG_LEN(sizeof reply);
      std::memcpy(CMSG_DATA(r), &reply, sizeof reply);
      out.len = CMSG_SPACE(sizeof reply);
    } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo info{};
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      auto* r = reinterpret_cast<cmsghdr*>(out.buf);
      r->cmsg_level = IPPROTO_IPV6;
      r->cmsg_type = IPV6_PKTINFO;
      r->cmsg_len = CMSG_LEN(sizeof info);
      std::memcpy(CMSG_DATA(r), &info, sizeof info);
      out.len = CMSG_SPACE(sizeof info);
    }
  }
  return out;
}

// The destination address of a received packet, from its pktinfo (for logging).
std::string pktinfo_destination(msghdr& msg) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo info{};
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      return inet_ntop(AF_INET, &info.ipi_addr, buf, sizeof buf);
    }
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo info{};
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      return inet_ntop(AF_INET6, &info.ipi6_addr, buf, sizeof buf);
    }
  }
  return "?";
}

void enable_pktinfo(int fd, int family) {
  if (family == AF_INET) {
    set_int_option(fd, IPPROTO_IP, IP_PKTINFO, 1, "IP_PKTINFO");
  } else {
    set_int_option(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1, "IPV6_RECVPKTINFO");
  }
}

void udp_loop(Fd sock, std::string name, uint16_t port) {
  for (;;) {
    char data[2048];
    alignas(cmsghdr) char control[256];
    sockaddr_storage peer{};
    iovec iov{data, sizeof data};
    msghdr msg{};
    msg.msg_name = &peer;
    msg.msg_namelen = sizeof peer;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (recvmsg(sock.get(), &msg, 0) < 0) {
      if (errno == EINTR) continue;
      log_line("udp recv on port " + std::to_string(port) + " failed: " + std::strerror(errno));
      return;
    }
    const auto* peer_sa = reinterpret_cast<const sockaddr*>(&peer);
    std::string reply = reply_line(name, peer_sa);
    ReplySource src = reply_source_from(msg);
    iovec out_iov{reply.data(), reply.size()};
    msghdr out{};
    out.msg_name = &peer;
    out.msg_namelen = msg.msg_namelen;
    out.msg_iov = &out_iov;
    out.msg_iovlen = 1;
    out.msg_control = src.len ? src.buf : nullptr;
    out.msg_controllen = src.len;
    if (sendmsg(sock.get(), &out, 0) < 0)
      log_line("udp reply to " + ip_text(peer_sa) + " failed: " + std::strerror(errno));
    log_line("udp " + std::to_string(port) + " from " + ip_text(peer_sa));
  }
}

// SCTP without a kernel SCTP stack: a raw socket sees every SCTP packet addressed to this
// namespace. INITs to our ports get a hand-built INIT-ACK; everything else is only logged.
void sctp_loop(Fd sock, int family, std::string name, std::set<uint16_t> ports) {
  for (;;) {
    uint8_t data[4096];
    alignas(cmsghdr) char control[256];
    sockaddr_storage peer{};
    iovec iov{data, sizeof data};
    msghdr msg{};
    msg.msg_name = &peer;
    msg.msg_namelen = sizeof peer;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = recvmsg(sock.get(), &msg, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      log_line(std::string("sctp recv failed: ") + std::strerror(errno));
      return;
    }
    std::span<const uint8_t> packet(data, size_t(n));
    if (family == AF_INET) {  // IPv4 raw sockets deliver the IP header too
      if (packet.size() < sizeof(iphdr)) continue;
      const size_t ihl = size_t(data[0] & 0x0F) * 4;
      if (packet.size() < ihl) continue;
      packet = packet.subspan(ihl);
    }
    auto p = sctp_parse(packet);
    if (!p || p->type != SctpChunkType::kInit || !ports.contains(p->dst_port)) continue;
    const auto* peer_sa = reinterpret_cast<const sockaddr*>(&peer);
    const std::string client = ip_text(peer_sa);
    log_line("sctp " + std::to_string(p->dst_port) + " INIT from " + client + " port " +
             std::to_string(p->src_port) + " to " + pktinfo_destination(msg) + " tag " +
             std::to_string(p->init->initiate_tag) + (p->checksum_ok ? "" : " (BAD CHECKSUM, ignored)"));
    if (!p->checksum_ok || p->verification_tag != 0) continue;

    std::string cookie = name + " " + client;
    SctpInit ours;
    ours.initiate_tag = random_u32() | 1;  // never 0
    ours.initial_tsn = random_u32();
    auto reply = sctp_build_init_ack(p->dst_port, p->src_port, p->init->initiate_tag, ours,
                                     std::span(reinterpret_cast<const uint8_t*>(cookie.data()), cookie.size()));
    ReplySource src = reply_source_from(msg);
    if (family == AF_INET6) reinterpret_cast<sockaddr_in6*>(&peer)->sin6_port = 0;
    else reinterpret_cast<sockaddr_in*>(&peer)->sin_port = 0;
    iovec out_iov{reply.data(), reply.size()};
    msghdr out{};
    out.msg_name = &peer;
    out.msg_namelen = msg.msg_namelen;
    out.msg_iov = &out_iov;
    out.msg_iovlen = 1;
    out.msg_control = src.len ? src.buf : nullptr;
    out.msg_controllen = src.len;
    if (sendmsg(sock.get(), &out, 0) < 0)
      log_line("sctp INIT-ACK to " + client + " failed: " + std::strerror(errno));
  }
}

void write_pidfile(const std::string& path) {
  const std::string tmp = path + ".tmp";
  FILE* f = std::fopen(tmp.c_str(), "w");
  if (!f) throw_errno("failed to write pid file " + tmp, errno);
  std::fprintf(f, "%d\n", int(getpid()));
  std::fclose(f);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("failed to publish pid file " + path, errno);
}

}  // namespace

int serve(const ServeOptions& opts) {
  // Block the stop signals before any thread starts, so only sigwait() below sees them.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);
  signal(SIGPIPE, SIG_IGN);

  // Open and bind everything first: a port conflict fails the start, not a later probe.
  std::vector<std::function<void()>> loops;
  for (int family : {AF_INET, AF_INET6}) {
    auto add_tcp = [&](const std::vector<uint16_t>& ports, TcpKind kind) {
      for (uint16_t port : ports) {
        auto fd = std::make_shared<Fd>(bound_socket(family, SOCK_STREAM, port, "tcp"));
        loops.push_back([fd, kind, port, &opts] { accept_loop(std::move(*fd), kind, opts.name, port); });
      }
    };
    add_tcp(opts.tcp, TcpKind::kLine);
    add_tcp(opts.sink, TcpKind::kSink);
    add_tcp(opts.rr, TcpKind::kRr);
    for (uint16_t port : opts.udp) {
      auto fd = std::make_shared<Fd>(bound_socket(family, SOCK_DGRAM, port, "udp"));
      enable_pktinfo(fd->get(), family);
      loops.push_back([fd, port, &opts] { udp_loop(std::move(*fd), opts.name, port); });
    }
    if (!opts.sctp.empty()) {
      auto fd = std::make_shared<Fd>(
          open_socket(family, SOCK_RAW, IPPROTO_SCTP, family == AF_INET ? "raw IPv4 SCTP" : "raw IPv6 SCTP"));
      enable_pktinfo(fd->get(), family);
      std::set<uint16_t> ports(opts.sctp.begin(), opts.sctp.end());
      loops.push_back([fd, family, ports, &opts] { sctp_loop(std::move(*fd), family, opts.name, ports); });
    }
  }
  for (auto& loop : loops) std::thread(loop).detach();
  if (!opts.pidfile.empty()) write_pidfile(opts.pidfile);
  log_line("serving as \"" + opts.name + "\"");

  int sig = 0;
  sigwait(&stop, &sig);
  log_line(std::string("stopping on ") + strsignal(sig));
  if (!opts.pidfile.empty()) unlink(opts.pidfile.c_str());
  std::cout.flush();
  _exit(0);  // detached threads are blocked in accept/recv: leave without joining them
}

}  // namespace ferry::probe
