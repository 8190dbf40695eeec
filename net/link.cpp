// Links: lookup, bridge, veth pair, up/master/MAC/promisc/alias, bridge port flags and
// VLANs, oper-state wait.
#include <linux/if.h>
#include <linux/if_bridge.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <netlink/errno.h>
#include <netlink/route/link.h>
#include <netlink/socket.h>
#include <poll.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "net/nl_internal.h"

namespace ferry::net {

using detail::check;
using detail::check_put;
using detail::MsgPtr;
using detail::new_msg;
using detail::quote;

bool Link::up() const { return flags & IFF_UP; }
bool Link::oper_up() const { return operstate == IF_OPER_UP; }
bool Link::promisc() const { return flags & IFF_PROMISC; }

namespace {

Link to_link(rtnl_link* l) {
  Link link;
  link.index = rtnl_link_get_ifindex(l);
  if (const char* n = rtnl_link_get_name(l)) link.name = n;
  if (const char* k = rtnl_link_get_type(l)) link.kind = k;
  if (nl_addr* a = rtnl_link_get_addr(l); a && nl_addr_get_len(a) == 6) {
    Mac mac;
    std::memcpy(mac.data(), nl_addr_get_binary_addr(a), 6);
    link.mac = mac;
  }
  link.mtu = rtnl_link_get_mtu(l);
  link.flags = rtnl_link_get_flags(l);
  link.operstate = rtnl_link_get_operstate(l);
  link.master = rtnl_link_get_master(l);
  link.peer_index = rtnl_link_get_link(l);
  if (const char* alias = rtnl_link_get_ifalias(l)) link.alias = alias;
  return link;
}

// Parses RTM_NEWLINK messages of the AF_UNSPEC family into Links.
void collect_links(nl_msg* msg, std::vector<Link>* out) {
  if (nlmsg_hdr(msg)->nlmsg_type != RTM_NEWLINK) return;
  nl_msg_parse(
      msg,
      [](nl_object* obj, void* arg) {
        static_cast<std::vector<Link>*>(arg)->push_back(to_link(reinterpret_cast<rtnl_link*>(obj)));
      },
      out);
}

std::optional<Link> get_link_msg(Socket& sock, MsgPtr msg, const std::string& what) {
  check_put(nla_put_u32(msg.get(), IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS));
  std::vector<Link> links;
  std::string extack;
  int err = detail::query(sock, msg.release(), [&](nl_msg* m) { collect_links(m, &links); }, {}, &extack);
  if (err == ENODEV) return std::nullopt;
  check(err, "failed to look up link " + what, extack);
  if (links.empty()) return std::nullopt;
  return links.front();
}

MsgPtr setlink_msg(int index, unsigned flags = 0, unsigned change = 0) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  ifi.ifi_flags = flags;
  ifi.ifi_change = change;
  return new_msg(RTM_SETLINK, 0, ifi);
}

void put_mac(nl_msg* msg, int attr, const Mac& mac) {
  check_put(nla_put(msg, attr, static_cast<int>(mac.size()), mac.data()));
}

std::string link_text(Socket& sock, int index) {
  if (auto l = find_link(sock, index)) return quote(l->name);
  return "ifindex " + std::to_string(index);
}

void setlink(Socket& sock, MsgPtr msg, int index, const std::string& what) {
  std::string extack;
  int err = sock.request(msg.release(), &extack);
  if (err) check(err, "failed to " + what + " " + link_text(sock, index), extack);
}

}  // namespace

std::optional<Link> find_link(Socket& sock, std::string_view name) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  MsgPtr msg = new_msg(RTM_GETLINK, 0, ifi);
  check_put(nla_put_string(msg.get(), IFLA_IFNAME, std::string(name).c_str()));
  return get_link_msg(sock, std::move(msg), quote(name));
}

std::optional<Link> find_link(Socket& sock, int index) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  return get_link_msg(sock, new_msg(RTM_GETLINK, 0, ifi), "ifindex " + std::to_string(index));
}

Link get_link(Socket& sock, std::string_view name) {
  auto link = find_link(sock, name);
  if (!link) throw Error("link " + quote(name) + " not found", ENODEV);
  return *link;
}

std::vector<Link> list_links(Socket& sock) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  MsgPtr msg = new_msg(RTM_GETLINK, NLM_F_DUMP, ifi);
  check_put(nla_put_u32(msg.get(), IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS));
  std::vector<Link> links;
  int err = detail::query(sock, msg.release(), [&](nl_msg* m) { collect_links(m, &links); },
                          [&] { links.clear(); });
  check(err, "failed to list links");
  return links;
}

Link ensure_bridge(Socket& sock, const BridgeSpec& spec, bool* created) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    if (auto link = find_link(sock, spec.name)) {
      if (link->kind != "bridge")
        throw Error(quote(spec.name) + " already exists but is not a bridge", EEXIST);
      if (!link->up()) {
        set_link_up(sock, link->index);
        link->flags |= IFF_UP;
      }
      if (created) *created = false;
      return *link;
    }
    ifinfomsg ifi{};
    ifi.ifi_family = AF_UNSPEC;
    ifi.ifi_flags = IFF_UP;
    ifi.ifi_change = IFF_UP;
    MsgPtr msg = new_msg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, ifi);
    check_put(nla_put_string(msg.get(), IFLA_IFNAME, spec.name.c_str()));
    if (spec.mtu > 0) check_put(nla_put_u32(msg.get(), IFLA_MTU, static_cast<uint32_t>(spec.mtu)));
    if (spec.mac) put_mac(msg.get(), IFLA_ADDRESS, *spec.mac);
    nlattr* info = nla_nest_start(msg.get(), IFLA_LINKINFO);
    check_put(nla_put_string(msg.get(), IFLA_INFO_KIND, "bridge"));
    if (spec.vlan_filtering) {
      nlattr* data = nla_nest_start(msg.get(), IFLA_INFO_DATA);
      check_put(nla_put_u8(msg.get(), IFLA_BR_VLAN_FILTERING, 1));
      nla_nest_end(msg.get(), data);
    }
    nla_nest_end(msg.get(), info);
    std::string extack;
    int err = sock.request(msg.release(), &extack);
    if (err == EEXIST) continue;  // a concurrent ADD created it first: use theirs
    check(err, "failed to create bridge " + quote(spec.name), extack);
    if (created) *created = true;
    return get_link(sock, spec.name);
  }
  throw Error("bridge " + quote(spec.name) + " keeps appearing and disappearing", EAGAIN);
}

void create_veth(Socket& sock, const VethSpec& spec) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  if (spec.up) {
    ifi.ifi_flags = IFF_UP;
    ifi.ifi_change = IFF_UP;
  }
  MsgPtr msg = new_msg(RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL, ifi);
  nl_msg* m = msg.get();
  check_put(nla_put_string(m, IFLA_IFNAME, spec.name.c_str()));
  if (spec.mtu > 0) check_put(nla_put_u32(m, IFLA_MTU, static_cast<uint32_t>(spec.mtu)));
  if (spec.mac) put_mac(m, IFLA_ADDRESS, *spec.mac);
  if (spec.master > 0) check_put(nla_put_u32(m, IFLA_MASTER, static_cast<uint32_t>(spec.master)));
  nlattr* info = nla_nest_start(m, IFLA_LINKINFO);
  check_put(nla_put_string(m, IFLA_INFO_KIND, "veth"));
  nlattr* data = nla_nest_start(m, IFLA_INFO_DATA);
  nlattr* peer = nla_nest_start(m, VETH_INFO_PEER);
  // The peer's attributes follow its own ifinfomsg, inside the nest.
  void* peer_ifi = nlmsg_reserve(m, sizeof(ifinfomsg), NLMSG_ALIGNTO);
  if (!peer_ifi) throw Error("netlink message too large", EMSGSIZE);
  std::memset(peer_ifi, 0, sizeof(ifinfomsg));
  check_put(nla_put_string(m, IFLA_IFNAME, spec.peer_name.c_str()));
  if (spec.mtu > 0) check_put(nla_put_u32(m, IFLA_MTU, static_cast<uint32_t>(spec.mtu)));
  if (spec.peer_mac) put_mac(m, IFLA_ADDRESS, *spec.peer_mac);
  if (spec.peer_netns_fd >= 0) check_put(nla_put_u32(m, IFLA_NET_NS_FD, static_cast<uint32_t>(spec.peer_netns_fd)));
  nla_nest_end(m, peer);
  nla_nest_end(m, data);
  nla_nest_end(m, info);
  std::string extack;
  int err = sock.request(msg.release(), &extack);
  check(err, "failed to create veth pair " + quote(spec.name) + " <-> " + quote(spec.peer_name), extack);
}

bool delete_link(Socket& sock, std::string_view name) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  MsgPtr msg = new_msg(RTM_DELLINK, 0, ifi);
  check_put(nla_put_string(msg.get(), IFLA_IFNAME, std::string(name).c_str()));
  std::string extack;
  int err = sock.request(msg.release(), &extack);
  if (err == ENODEV) return false;
  check(err, "failed to delete link " + quote(name), extack);
  return true;
}

bool delete_link(Socket& sock, int index) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  std::string extack;
  int err = sock.request(new_msg(RTM_DELLINK, 0, ifi).release(), &extack);
  if (err == ENODEV) return false;
  check(err, "failed to delete link ifindex " + std::to_string(index), extack);
  return true;
}

void set_link_up(Socket& sock, int index, bool up) {
  setlink(sock, setlink_msg(index, up ? IFF_UP : 0, IFF_UP), index, up ? "set up" : "set down");
}

void set_master(Socket& sock, int index, int master) {
  MsgPtr msg = setlink_msg(index);
  check_put(nla_put_u32(msg.get(), IFLA_MASTER, static_cast<uint32_t>(master)));
  setlink(sock, std::move(msg), index, "set the master of");
}

void set_mac(Socket& sock, int index, const Mac& mac) {
  MsgPtr msg = setlink_msg(index);
  put_mac(msg.get(), IFLA_ADDRESS, mac);
  setlink(sock, std::move(msg), index, "set MAC " + mac_str(mac) + " on");
}

void set_promisc(Socket& sock, int index, bool on) {
  setlink(sock, setlink_msg(index, on ? IFF_PROMISC : 0, IFF_PROMISC), index,
          on ? "enable promiscuous mode on" : "disable promiscuous mode on");
}

void set_alias(Socket& sock, int index, std::string_view alias) {
  MsgPtr msg = setlink_msg(index);
  check_put(nla_put_string(msg.get(), IFLA_IFALIAS, std::string(alias).c_str()));
  setlink(sock, std::move(msg), index, "set the alias of");
}

void set_bridge_port(Socket& sock, int index, const BridgePortFlags& flags) {
  if (!flags.hairpin && !flags.isolated) return;
  ifinfomsg ifi{};
  ifi.ifi_family = AF_BRIDGE;
  ifi.ifi_index = index;
  MsgPtr msg = new_msg(RTM_SETLINK, 0, ifi);
  nlattr* proto = nla_nest_start(msg.get(), IFLA_PROTINFO | NLA_F_NESTED);
  if (flags.hairpin) check_put(nla_put_u8(msg.get(), IFLA_BRPORT_MODE, *flags.hairpin ? 1 : 0));
  if (flags.isolated) check_put(nla_put_u8(msg.get(), IFLA_BRPORT_ISOLATED, *flags.isolated ? 1 : 0));
  nla_nest_end(msg.get(), proto);
  setlink(sock, std::move(msg), index, "set bridge port flags (hairpin/isolated) on");
}

namespace {

MsgPtr vlan_msg(int type, int port_index, const BridgeVlan& vlan) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_BRIDGE;
  ifi.ifi_index = port_index;
  MsgPtr msg = new_msg(type, 0, ifi);
  nlattr* spec = nla_nest_start(msg.get(), IFLA_AF_SPEC);
  bridge_vlan_info info{};
  info.vid = vlan.vid;
  if (vlan.pvid) info.flags |= BRIDGE_VLAN_INFO_PVID;
  if (vlan.untagged) info.flags |= BRIDGE_VLAN_INFO_UNTAGGED;
  check_put(nla_put(msg.get(), IFLA_BRIDGE_VLAN_INFO, sizeof info, &info));
  nla_nest_end(msg.get(), spec);
  return msg;
}

}  // namespace

void bridge_vlan_add(Socket& sock, int port_index, const BridgeVlan& vlan) {
  setlink(sock, vlan_msg(RTM_SETLINK, port_index, vlan), port_index,
          "add VLAN " + std::to_string(vlan.vid) + " to bridge port");
}

void bridge_vlan_del(Socket& sock, int port_index, uint16_t vid) {
  BridgeVlan vlan;
  vlan.vid = vid;
  setlink(sock, vlan_msg(RTM_DELLINK, port_index, vlan), port_index,
          "delete VLAN " + std::to_string(vid) + " from bridge port");
}

std::vector<BridgeVlan> bridge_vlans(Socket& sock, int port_index) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_BRIDGE;
  MsgPtr msg = new_msg(RTM_GETLINK, NLM_F_DUMP, ifi);
  check_put(nla_put_u32(msg.get(), IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN));
  std::vector<BridgeVlan> vlans;
  auto on_msg = [&](nl_msg* m) {
    nlmsghdr* hdr = nlmsg_hdr(m);
    if (hdr->nlmsg_type != RTM_NEWLINK) return;
    auto* info = static_cast<ifinfomsg*>(nlmsg_data(hdr));
    if (info->ifi_index != port_index) return;
    nlattr* spec = nlmsg_find_attr(hdr, sizeof(ifinfomsg), IFLA_AF_SPEC);
    if (!spec) return;
    nlattr* a;
    int rem;
    nla_for_each_nested(a, spec, rem) {
      if (nla_type(a) != IFLA_BRIDGE_VLAN_INFO || nla_len(a) < static_cast<int>(sizeof(bridge_vlan_info)))
        continue;
      auto* v = static_cast<bridge_vlan_info*>(nla_data(a));
      vlans.push_back({v->vid, (v->flags & BRIDGE_VLAN_INFO_PVID) != 0,
                       (v->flags & BRIDGE_VLAN_INFO_UNTAGGED) != 0});
    }
  };
  int err = detail::query(sock, msg.release(), on_msg, [&] { vlans.clear(); });
  check(err, "failed to list VLANs of bridge port ifindex " + std::to_string(port_index));
  return vlans;
}

namespace {

struct SockDeleter {
  void operator()(nl_sock* sk) const { nl_socket_free(sk); }
};

struct OperWatch {
  int index;
  int operstate = -1;
};

}  // namespace

namespace {

std::unique_ptr<nl_sock, SockDeleter> subscribe_links() {
  std::unique_ptr<nl_sock, SockDeleter> mon(nl_socket_alloc());
  if (!mon) throw Error("failed to allocate a netlink socket", ENOMEM);
  nl_socket_disable_seq_check(mon.get());
  int rc = nl_connect(mon.get(), NETLINK_ROUTE);
  if (rc >= 0) rc = nl_socket_add_membership(mon.get(), RTNLGRP_LINK);
  if (rc >= 0) rc = nl_socket_set_nonblocking(mon.get());
  if (rc < 0) check(detail::nl_to_errno(rc), "failed to subscribe to link notifications");
  return mon;
}

struct DelWatch {
  int index;
  bool gone = false;
};

}  // namespace

bool delete_link_detached(Socket& sock, std::string_view name, std::chrono::milliseconds timeout) {
  auto link = find_link(sock, name);
  if (!link) return false;
  auto mon = subscribe_links();  // before the deletion starts: its notification cannot be missed

  pid_t child = fork();
  if (child == 0) {
    // Child: start a grandchild that does the deletion, and exit at once so the caller can
    // reap us; the grandchild is nobody's to wait for and holds none of the caller's pipes.
    if (fork() == 0) {
      int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
      if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
      }
      closefrom(3);
      try {
        Socket own = Socket::open();
        delete_link(own, link->index);
      } catch (...) {
      }
      _exit(0);
    }
    _exit(0);
  }
  if (child < 0) {
    delete_link(sock, link->index);
    return true;
  }
  int status;
  while (waitpid(child, &status, 0) < 0 && errno == EINTR) {
  }

  DelWatch watch{link->index};
  nl_socket_modify_cb(
      mon.get(), NL_CB_VALID, NL_CB_CUSTOM,
      [](nl_msg* m, void* arg) -> int {
        nlmsghdr* hdr = nlmsg_hdr(m);
        auto* w = static_cast<DelWatch*>(arg);
        if (hdr->nlmsg_type == RTM_DELLINK && static_cast<ifinfomsg*>(nlmsg_data(hdr))->ifi_index == w->index)
          w->gone = true;
        return NL_OK;
      },
      &watch);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!watch.gone) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{nl_socket_get_fd(mon.get()), POLLIN, 0};
    int n = poll(&pfd, 1, static_cast<int>(left.count()) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    int rc = nl_recvmsgs_default(mon.get());
    if (rc < 0 && rc != -NLE_AGAIN && !find_link(sock, link->index)) watch.gone = true;  // overrun: look
  }
  if (!watch.gone) delete_link(sock, link->index);  // no word from the child: do it here
  return true;
}

int wait_oper_up(Socket& sock, int index, std::chrono::milliseconds timeout) {
  auto link = find_link(sock, index);
  if (!link) throw Error("link ifindex " + std::to_string(index) + " disappeared", ENODEV);
  if (link->oper_up()) return link->operstate;

  // Subscribe first, then look again: a change after the second look is a message.
  auto mon = subscribe_links();

  link = find_link(sock, index);
  if (!link) throw Error("link ifindex " + std::to_string(index) + " disappeared", ENODEV);
  if (link->oper_up()) return link->operstate;

  OperWatch watch{index, link->operstate};
  nl_socket_modify_cb(
      mon.get(), NL_CB_VALID, NL_CB_CUSTOM,
      [](nl_msg* m, void* arg) -> int {
        std::vector<Link> links;
        collect_links(m, &links);
        auto* w = static_cast<OperWatch*>(arg);
        for (const Link& l : links)
          if (l.index == w->index) w->operstate = l.operstate;
        return NL_OK;
      },
      &watch);
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (watch.operstate != IF_OPER_UP) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{nl_socket_get_fd(mon.get()), POLLIN, 0};
    int n = poll(&pfd, 1, static_cast<int>(left.count()) + 1);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    int rc = nl_recvmsgs_default(mon.get());
    if (rc < 0 && rc != -NLE_AGAIN) {
      // Overrun (ENOBUFS) loses events: look at the link directly instead.
      if (auto l = find_link(sock, index)) watch.operstate = l->operstate;
    }
  }
  return watch.operstate;
}

}  // namespace ferry::net
