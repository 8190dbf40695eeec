// Private to net/: netlink message plumbing shared by link.cpp, address.cpp, route.cpp.
#pragma once

#include <netlink/attr.h>
#include <netlink/msg.h>
#include <netlink/netlink.h>

#include <functional>
#include <memory>
#include <string>

#include "net/net.h"

namespace ferry::net::detail {

struct MsgDeleter {
  void operator()(nl_msg* m) const { nlmsg_free(m); }
};
using MsgPtr = std::unique_ptr<nl_msg, MsgDeleter>;

// A new request: header `type`/`flags` followed by the family header `hdr`.
template <class Header>
MsgPtr new_msg(int type, int flags, const Header& hdr) {
  MsgPtr m(nlmsg_alloc_simple(type, flags));
  if (!m || nlmsg_append(m.get(), const_cast<Header*>(&hdr), sizeof hdr, NLMSG_ALIGNTO) < 0)
    throw Error("out of memory building a netlink message", ENOMEM);
  return m;
}

// nla_put* return negative libnl codes only when the message is full.
void check_put(int rc);

// libnl's NLE_* (either sign) to the closest errno.
int nl_to_errno(int nlerr);

// Sends `msg` and hands every reply message to `on_msg` until the kernel's ACK / DONE.
// Dumps interrupted by a concurrent change (NLM_F_DUMP_INTR) are retried from scratch up to
// five times, calling `restart` before each retry. Returns 0 or a positive errno.
int query(Socket& sock, nl_msg* msg, const std::function<void(nl_msg*)>& on_msg,
          const std::function<void()>& restart = {}, std::string* extack = nullptr);

// Throws Error("<what>: <strerror>[ (<extack>)]", err) when err != 0.
void check(int err, const std::string& what, const std::string& extack = {});

std::string quote(std::string_view name);  // "\"eth0\""

}  // namespace ferry::net::detail
