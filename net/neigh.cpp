// Neighbour (ARP/NDP) entries and a device's own FDB entries (AF_BRIDGE, NTF_SELF): add or
// replace, delete, list.
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>

#include <cstring>

#include "net/nl_internal.h"

namespace ferry::net {

using detail::check;
using detail::check_put;
using detail::MsgPtr;
using detail::new_msg;

namespace {

MsgPtr neigh_msg(int type, int flags, int family, int index, uint16_t state, uint8_t ntf) {
  ndmsg ndm{};
  ndm.ndm_family = static_cast<uint8_t>(family);
  ndm.ndm_ifindex = index;
  ndm.ndm_state = state;
  ndm.ndm_flags = ntf;
  return new_msg(type, flags, ndm);
}

void put_ip(nl_msg* m, int attr, const Ip& ip) { check_put(nla_put(m, attr, ip.size(), ip.bytes.data())); }
void put_mac(nl_msg* m, int attr, const Mac& mac) { check_put(nla_put(m, attr, 6, mac.data())); }

std::optional<Ip> get_ip(nlattr* a) {
  if (!a) return std::nullopt;
  Ip ip;
  if (nla_len(a) == 4) ip.family = AF_INET;
  else if (nla_len(a) == 16) ip.family = AF_INET6;
  else return std::nullopt;
  std::memcpy(ip.bytes.data(), nla_data(a), static_cast<size_t>(nla_len(a)));
  return ip;
}

std::optional<Mac> get_mac(nlattr* a) {
  if (!a || nla_len(a) != 6) return std::nullopt;
  Mac mac;
  std::memcpy(mac.data(), nla_data(a), 6);
  return mac;
}

std::string where(int index) { return " on ifindex " + std::to_string(index); }

// Dumps RTM_NEWNEIGH of `family` (the kernel filters by ifindex when NDA_IFINDEX is given).
void dump(Socket& sock, int family, int index, const std::function<void(ndmsg*, nlattr**)>& each,
          const std::function<void()>& restart, const std::string& what) {
  MsgPtr msg = neigh_msg(RTM_GETNEIGH, NLM_F_DUMP, family, 0, 0, 0);
  if (index) check_put(nla_put_u32(msg.get(), NDA_IFINDEX, static_cast<uint32_t>(index)));
  auto on_msg = [&](nl_msg* m) {
    nlmsghdr* hdr = nlmsg_hdr(m);
    if (hdr->nlmsg_type != RTM_NEWNEIGH) return;
    auto* ndm = static_cast<ndmsg*>(nlmsg_data(hdr));
    nlattr* tb[NDA_MAX + 1] = {};
    if (nlmsg_parse(hdr, sizeof(ndmsg), tb, NDA_MAX, nullptr) < 0) return;
    if (index && ndm->ndm_ifindex != index) return;
    each(ndm, tb);
  };
  int err = detail::query(sock, msg.release(), on_msg, restart);
  check(err, "failed to list " + what);
}

}  // namespace

void set_neighbour(Socket& sock, int index, const Ip& ip, const Mac& mac) {
  MsgPtr msg = neigh_msg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, ip.family, index, NUD_PERMANENT, 0);
  put_ip(msg.get(), NDA_DST, ip);
  put_mac(msg.get(), NDA_LLADDR, mac);
  std::string extack;
  int err = sock.request(msg.release(), &extack);
  check(err, "failed to set neighbour " + ip.str() + " lladdr " + mac_str(mac) + where(index), extack);
}

bool delete_neighbour(Socket& sock, int index, const Ip& ip) {
  MsgPtr msg = neigh_msg(RTM_DELNEIGH, 0, ip.family, index, 0, 0);
  put_ip(msg.get(), NDA_DST, ip);
  std::string extack;
  int err = sock.request(msg.release(), &extack);
  if (err == ENOENT) return false;
  check(err, "failed to delete neighbour " + ip.str() + where(index), extack);
  return true;
}

std::vector<Neighbour> list_neighbours(Socket& sock, int family, int index) {
  std::vector<Neighbour> out;
  auto each = [&](ndmsg* ndm, nlattr** tb) {
    if (ndm->ndm_family != AF_INET && ndm->ndm_family != AF_INET6) return;
    if (family && ndm->ndm_family != family) return;
    auto ip = get_ip(tb[NDA_DST]);
    if (!ip) return;
    Neighbour n;
    n.index = ndm->ndm_ifindex;
    n.ip = *ip;
    n.mac = get_mac(tb[NDA_LLADDR]);
    n.state = ndm->ndm_state;
    n.flags = ndm->ndm_flags;
    out.push_back(n);
  };
  dump(sock, family, index, each, [&] { out.clear(); }, "neighbours");
  return out;
}

void set_fdb(Socket& sock, int index, const Mac& mac, const Ip& dst) {
  MsgPtr msg = neigh_msg(RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, AF_BRIDGE, index, NUD_PERMANENT, NTF_SELF);
  put_mac(msg.get(), NDA_LLADDR, mac);
  put_ip(msg.get(), NDA_DST, dst);
  std::string extack;
  int err = sock.request(msg.release(), &extack);
  check(err, "failed to set FDB entry " + mac_str(mac) + " dst " + dst.str() + where(index), extack);
}

bool delete_fdb(Socket& sock, int index, const Mac& mac, const std::optional<Ip>& dst) {
  MsgPtr msg = neigh_msg(RTM_DELNEIGH, 0, AF_BRIDGE, index, 0, NTF_SELF);
  put_mac(msg.get(), NDA_LLADDR, mac);
  if (dst) put_ip(msg.get(), NDA_DST, *dst);
  std::string extack;
  int err = sock.request(msg.release(), &extack);
  if (err == ENOENT) return false;
  check(err, "failed to delete FDB entry " + mac_str(mac) + where(index), extack);
  return true;
}

std::vector<FdbEntry> list_fdb(Socket& sock, int index) {
  std::vector<FdbEntry> out;
  auto each = [&](ndmsg* ndm, nlattr** tb) {
    if (ndm->ndm_family != AF_BRIDGE) return;
    auto mac = get_mac(tb[NDA_LLADDR]);
    if (!mac) return;
    FdbEntry e;
    e.index = ndm->ndm_ifindex;
    e.mac = *mac;
    e.dst = get_ip(tb[NDA_DST]);
    e.state = ndm->ndm_state;
    e.flags = ndm->ndm_flags;
    out.push_back(e);
  };
  dump(sock, AF_BRIDGE, index, each, [&] { out.clear(); }, "FDB entries");
  return out;
}

}  // namespace ferry::net
