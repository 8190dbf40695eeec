// Netlink sockets bound to a namespace, request/ACK and dump plumbing with errno and extack.
#include <linux/netlink.h>
#include <netlink/errno.h>
#include <netlink/socket.h>
#include <sys/socket.h>

#include <cstring>

#include "net/nl_internal.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace ferry::net {

using detail::MsgPtr;

void Socket::Deleter::operator()(nl_sock* sk) const { nl_socket_free(sk); }

Socket Socket::open() {
  nl_sock* sk = nl_socket_alloc();
  if (!sk) throw Error("failed to allocate a netlink socket", ENOMEM);
  int rc = nl_connect(sk, NETLINK_ROUTE);
  if (rc < 0) {
    nl_socket_free(sk);
    int err = detail::nl_to_errno(rc);
    throw Error(std::string("failed to open a netlink socket: ") + std::strerror(err), err);
  }
  int fd = nl_socket_get_fd(sk);
  int one = 1;
  // Best effort: extended ACKs carry the kernel's reason; strict checking lets dumps be
  // filtered by the kernel (by ifindex) instead of shipping every object to us.
  setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, &one, sizeof one);
  setsockopt(fd, SOL_NETLINK, NETLINK_CAP_ACK, &one, sizeof one);
  setsockopt(fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, &one, sizeof one);
  return Socket(sk);
}

Socket Socket::open_in(const Netns& ns) {
  std::optional<Socket> sock;
  in_netns(ns, [&] { sock.emplace(open()); });
  return std::move(*sock);
}

int Socket::request(nl_msg* msg, std::string* extack) {
  return detail::query(*this, msg, [](nl_msg*) {}, {}, extack);
}

namespace detail {

namespace {

struct QueryState {
  const std::function<void(nl_msg*)>* on_msg = nullptr;
  int err = 0;
  bool done = false;
  std::string extack;
};

// The extended-ACK message that follows a NLMSG_ERROR payload, if any.
std::string read_extack(const nlmsgerr* e) {
  auto* hdr = reinterpret_cast<const nlmsghdr*>(reinterpret_cast<const char*>(e) - NLMSG_HDRLEN);
  if (!(hdr->nlmsg_flags & NLM_F_ACK_TLVS)) return {};
  size_t offset = sizeof(nlmsgerr);
  if (!(hdr->nlmsg_flags & NLM_F_CAPPED)) offset += e->msg.nlmsg_len - NLMSG_HDRLEN;
  offset = NLMSG_ALIGN(offset);
  size_t total = hdr->nlmsg_len - NLMSG_HDRLEN;
  if (offset >= total) return {};
  auto* attr = reinterpret_cast<nlattr*>(const_cast<char*>(reinterpret_cast<const char*>(e) + offset));
  int rem = static_cast<int>(total - offset);
  for (; nla_ok(attr, rem); attr = nla_next(attr, &rem)) {
    if (nla_type(attr) == NLMSGERR_ATTR_MSG && nla_len(attr) > 0) {
      std::string s(static_cast<const char*>(nla_data(attr)), static_cast<size_t>(nla_len(attr)));
      while (!s.empty() && s.back() == '\0') s.pop_back();
      return s;
    }
  }
  return {};
}

int on_error(sockaddr_nl*, nlmsgerr* e, void* arg) {
  auto* st = static_cast<QueryState*>(arg);
  st->err = -e->error;
  st->extack = read_extack(e);
  st->done = true;
  return NL_STOP;
}

int on_ack(nl_msg*, void* arg) {
  static_cast<QueryState*>(arg)->done = true;
  return NL_STOP;
}

int on_finish(nl_msg*, void* arg) {
  static_cast<QueryState*>(arg)->done = true;
  return NL_STOP;
}

int on_valid(nl_msg* msg, void* arg) {
  auto* st = static_cast<QueryState*>(arg);
  (*st->on_msg)(msg);
  return NL_OK;
}

struct CbDeleter {
  void operator()(nl_cb* cb) const { nl_cb_put(cb); }
};

int query_once(Socket& sock, nl_msg* msg, const std::function<void(nl_msg*)>& on_msg,
               std::string* extack, bool* interrupted) {
  *interrupted = false;
  nl_sock* sk = sock.get();
  nlmsghdr* hdr = nlmsg_hdr(msg);
  hdr->nlmsg_seq = NL_AUTO_SEQ;  // a fresh sequence number on every (re)send
  hdr->nlmsg_pid = NL_AUTO_PORT;
  int rc = nl_send_auto(sk, msg);
  if (rc < 0) return nl_to_errno(rc);
  std::unique_ptr<nl_cb, CbDeleter> cb(nl_cb_clone(nl_socket_get_cb(sk)));
  if (!cb) return ENOMEM;
  QueryState st;
  st.on_msg = &on_msg;
  nl_cb_err(cb.get(), NL_CB_CUSTOM, on_error, &st);
  nl_cb_set(cb.get(), NL_CB_ACK, NL_CB_CUSTOM, on_ack, &st);
  nl_cb_set(cb.get(), NL_CB_FINISH, NL_CB_CUSTOM, on_finish, &st);
  nl_cb_set(cb.get(), NL_CB_VALID, NL_CB_CUSTOM, on_valid, &st);
  while (!st.done) {
    rc = nl_recvmsgs(sk, cb.get());
    if (rc == -NLE_DUMP_INTR) {
      *interrupted = true;
      return 0;
    }
    if (rc < 0 && !st.done) return nl_to_errno(rc);
  }
  if (extack) *extack = st.extack;
  return st.err;
}

}  // namespace

void check_put(int rc) {
  if (rc < 0) throw Error("netlink message too large", EMSGSIZE);
}

int nl_to_errno(int nlerr) {
  switch (nlerr < 0 ? -nlerr : nlerr) {
    case NLE_SUCCESS: return 0;
    case NLE_INTR: return EINTR;
    case NLE_BAD_SOCK: return EBADF;
    case NLE_AGAIN: return EAGAIN;
    case NLE_NOMEM: return ENOMEM;
    case NLE_EXIST: return EEXIST;
    case NLE_INVAL: return EINVAL;
    case NLE_RANGE: return ERANGE;
    case NLE_MSGSIZE: return EMSGSIZE;
    case NLE_OPNOTSUPP: return EOPNOTSUPP;
    case NLE_AF_NOSUPPORT: return EAFNOSUPPORT;
    case NLE_OBJ_NOTFOUND: return ENOENT;
    case NLE_NOADDR: return EADDRNOTAVAIL;
    case NLE_BUSY: return EBUSY;
    case NLE_NOACCESS: return EACCES;
    case NLE_PERM: return EPERM;
    case NLE_NODEV: return ENODEV;
    case NLE_DUMP_INTR: return EINTR;
    default: return EIO;
  }
}

int query(Socket& sock, nl_msg* raw, const std::function<void(nl_msg*)>& on_msg,
          const std::function<void()>& restart, std::string* extack) {
  MsgPtr msg(raw);
  for (int attempt = 0;; ++attempt) {
    bool interrupted = false;
    int err = query_once(sock, msg.get(), on_msg, extack, &interrupted);
    if (!interrupted) return err;
    if (attempt == 4) return EINTR;
    if (restart) restart();
  }
}

void check(int err, const std::string& what, const std::string& extack) {
  if (err == 0) return;
  std::string text = what + ": " + std::strerror(err);
  if (!extack.empty()) text += " (" + extack + ")";
  throw Error(text, err);
}

std::string quote(std::string_view name) { return "\"" + std::string(name) + "\""; }

}  // namespace detail
}  // namespace ferry::net
