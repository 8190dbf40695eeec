// Addresses: add, delete, list (kernel-filtered by ifindex), wait for IPv6 DAD to finish.
#include <linux/if_addr.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <netlink/errno.h>
#include <netlink/socket.h>
#include <poll.h>

#include <cstring>

#include "net/nl_internal.h"

namespace ferry::net {

using detail::check;
using detail::check_put;
using detail::MsgPtr;
using detail::new_msg;

namespace {

MsgPtr addr_msg(int type, int flags, int index, const Prefix& prefix, unsigned ifa_flags) {
  ifaddrmsg ifa{};
  ifa.ifa_family = static_cast<uint8_t>(prefix.ip.family);
  ifa.ifa_prefixlen = static_cast<uint8_t>(prefix.len);
  ifa.ifa_flags = static_cast<uint8_t>(ifa_flags & 0xff);
  ifa.ifa_index = static_cast<uint32_t>(index);
  MsgPtr msg = new_msg(type, flags, ifa);
  int size = prefix.ip.size();
  check_put(nla_put(msg.get(), IFA_LOCAL, size, prefix.ip.bytes.data()));
  check_put(nla_put(msg.get(), IFA_ADDRESS, size, prefix.ip.bytes.data()));
  if (ifa_flags > 0xff) check_put(nla_put_u32(msg.get(), IFA_FLAGS, ifa_flags));
  return msg;
}

// Parses one RTM_NEWADDR message.
std::optional<Address> parse_address(nl_msg* m) {
  nlmsghdr* hdr = nlmsg_hdr(m);
  if (hdr->nlmsg_type != RTM_NEWADDR) return std::nullopt;
  auto* ifa = static_cast<ifaddrmsg*>(nlmsg_data(hdr));
  nlattr* tb[IFA_MAX + 1] = {};
  if (nlmsg_parse(hdr, sizeof(ifaddrmsg), tb, IFA_MAX, nullptr) < 0) return std::nullopt;
  nlattr* a = tb[IFA_LOCAL] ? tb[IFA_LOCAL] : tb[IFA_ADDRESS];
  if (!a) return std::nullopt;
  Address addr;
  addr.index = static_cast<int>(ifa->ifa_index);
  addr.prefix.ip.family = ifa->ifa_family;
  addr.prefix.len = ifa->ifa_prefixlen;
  int size = addr.prefix.ip.size();
  if (nla_len(a) != size) return std::nullopt;
  std::memcpy(addr.prefix.ip.bytes.data(), nla_data(a), static_cast<size_t>(size));
  addr.flags = tb[IFA_FLAGS] ? nla_get_u32(tb[IFA_FLAGS]) : ifa->ifa_flags;
  addr.scope = ifa->ifa_scope;
  return addr;
}

std::string on_link(int index) { return "ifindex " + std::to_string(index); }

}  // namespace

void add_address(Socket& sock, int index, const Prefix& prefix, unsigned flags) {
  MsgPtr msg = addr_msg(RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, index, prefix, flags);
  if (prefix.ip.family == AF_INET && prefix.len < 31) {
    // Broadcast = all host bits set, as `ip addr add ... brd +` and the reference do.
    Ip brd = prefix.ip;
    for (int i = 0; i < 4; ++i) {
      int keep = prefix.len - i * 8;
      if (keep < 8) brd.bytes[static_cast<size_t>(i)] |= static_cast<uint8_t>(keep <= 0 ? 0xff : (0xff >> keep));
    }
    check_put(nla_put(msg.get(), IFA_BROADCAST, 4, brd.bytes.data()));
  }
  std::string extack;
  int err = sock.request(msg.release(), &extack);
  check(err, "failed to add address " + prefix.str() + " to " + on_link(index), extack);
}

void delete_address(Socket& sock, int index, const Prefix& prefix) {
  std::string extack;
  int err = sock.request(addr_msg(RTM_DELADDR, 0, index, prefix, 0).release(), &extack);
  check(err, "failed to delete address " + prefix.str() + " from " + on_link(index), extack);
}

std::vector<Address> list_addresses(Socket& sock, int family, int index) {
  ifaddrmsg ifa{};
  ifa.ifa_family = static_cast<uint8_t>(family);
  ifa.ifa_index = static_cast<uint32_t>(index);  // filtered by the kernel under strict checking
  std::vector<Address> out;
  auto on_msg = [&](nl_msg* m) {
    auto a = parse_address(m);
    if (!a) return;
    if (index && a->index != index) return;
    if (family && a->prefix.ip.family != family) return;
    out.push_back(*a);
  };
  int err = detail::query(sock, new_msg(RTM_GETADDR, NLM_F_DUMP, ifa).release(), on_msg,
                          [&] { out.clear(); });
  check(err, "failed to list addresses");
  return out;
}

namespace {

// true = settled; throws on DADFAILED.
bool settled(Socket& sock, int index) {
  for (const Address& a : list_addresses(sock, AF_INET6, index)) {
    if (a.flags & IFA_F_DADFAILED)
      throw Error("address " + a.prefix.ip.str() + " on " + on_link(index) +
                      " failed duplicate address detection",
                  EADDRINUSE);
    if (a.flags & IFA_F_TENTATIVE) return false;
  }
  return true;
}

struct SockDeleter {
  void operator()(nl_sock* sk) const { nl_socket_free(sk); }
};

}  // namespace

void wait_addresses_settled(Socket& sock, int index, std::chrono::milliseconds timeout) {
  if (settled(sock, index)) return;
  std::unique_ptr<nl_sock, SockDeleter> mon(nl_socket_alloc());
  if (!mon) throw Error("failed to allocate a netlink socket", ENOMEM);
  nl_socket_disable_seq_check(mon.get());
  int rc = nl_connect(mon.get(), NETLINK_ROUTE);
  if (rc >= 0) rc = nl_socket_add_membership(mon.get(), RTNLGRP_IPV6_IFADDR);
  if (rc >= 0) rc = nl_socket_set_nonblocking(mon.get());
  if (rc < 0) check(detail::nl_to_errno(rc), "failed to subscribe to address notifications");
  nl_socket_modify_cb(mon.get(), NL_CB_VALID, NL_CB_CUSTOM, [](nl_msg*, void*) -> int { return NL_OK; }, nullptr);

  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!settled(sock, index)) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      auto link = find_link(sock, index);
      if (link && link->oper_up())
        throw Error(on_link(index) + " still has tentative addresses after " +
                        std::to_string(timeout.count()) + " ms",
                    ETIMEDOUT);
      return;
    }
    pollfd pfd{nl_socket_get_fd(mon.get()), POLLIN, 0};
    int n = poll(&pfd, 1, static_cast<int>(left.count()) + 1);
    if (n > 0) nl_recvmsgs_default(mon.get());  // drain; settled() looks at the state itself
  }
}

}  // namespace ferry::net
