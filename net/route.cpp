// Routes: add, delete, list (kernel-filtered by table under strict checking).
#include <linux/rtnetlink.h>

#include <cstring>

#include "net/nl_internal.h"

namespace ferry::net {

using detail::check;
using detail::check_put;
using detail::MsgPtr;
using detail::new_msg;

namespace {

MsgPtr route_msg(int type, int flags, const Route& r) {
  rtmsg rtm{};
  rtm.rtm_family = static_cast<uint8_t>(r.dst.ip.family);
  rtm.rtm_dst_len = static_cast<uint8_t>(r.dst.len);
  rtm.rtm_table = r.table < 256 ? static_cast<uint8_t>(r.table) : static_cast<uint8_t>(RT_TABLE_UNSPEC);
  rtm.rtm_protocol = static_cast<uint8_t>(r.protocol ? r.protocol : RTPROT_BOOT);
  rtm.rtm_scope = static_cast<uint8_t>(r.scope);
  rtm.rtm_type = static_cast<uint8_t>(r.type);
  rtm.rtm_flags = r.flags;
  MsgPtr msg = new_msg(type, flags, rtm);
  nl_msg* m = msg.get();
  int size = r.dst.ip.size();
  if (r.dst.len > 0) check_put(nla_put(m, RTA_DST, size, r.dst.network().ip.bytes.data()));
  if (r.gw) check_put(nla_put(m, RTA_GATEWAY, r.gw->size(), r.gw->bytes.data()));
  if (r.oif) check_put(nla_put_u32(m, RTA_OIF, static_cast<uint32_t>(r.oif)));
  if (r.priority) check_put(nla_put_u32(m, RTA_PRIORITY, static_cast<uint32_t>(r.priority)));
  if (r.table >= 256) check_put(nla_put_u32(m, RTA_TABLE, static_cast<uint32_t>(r.table)));
  if (r.mtu || r.advmss) {
    nlattr* metrics = nla_nest_start(m, RTA_METRICS);
    if (r.mtu) check_put(nla_put_u32(m, RTAX_MTU, static_cast<uint32_t>(r.mtu)));
    if (r.advmss) check_put(nla_put_u32(m, RTAX_ADVMSS, static_cast<uint32_t>(r.advmss)));
    nla_nest_end(m, metrics);
  }
  return msg;
}

std::string describe(const Route& r) {
  std::string s = r.dst.str();
  if (r.gw) s += " via " + r.gw->str();
  if (r.oif) s += " dev ifindex " + std::to_string(r.oif);
  if (r.flags & RTNH_F_ONLINK) s += " onlink";
  if (r.table != RT_TABLE_MAIN) s += " table " + std::to_string(r.table);
  return s;
}

std::optional<Route> parse_route(nl_msg* m) {
  nlmsghdr* hdr = nlmsg_hdr(m);
  if (hdr->nlmsg_type != RTM_NEWROUTE) return std::nullopt;
  auto* rtm = static_cast<rtmsg*>(nlmsg_data(hdr));
  nlattr* tb[RTA_MAX + 1] = {};
  if (nlmsg_parse(hdr, sizeof(rtmsg), tb, RTA_MAX, nullptr) < 0) return std::nullopt;
  Route r;
  r.dst.ip.family = rtm->rtm_family;
  r.dst.len = rtm->rtm_dst_len;
  int size = r.dst.ip.size();
  if (tb[RTA_DST] && nla_len(tb[RTA_DST]) == size)
    std::memcpy(r.dst.ip.bytes.data(), nla_data(tb[RTA_DST]), static_cast<size_t>(size));
  if (tb[RTA_GATEWAY] && nla_len(tb[RTA_GATEWAY]) == size) {
    Ip gw;
    gw.family = rtm->rtm_family;
    std::memcpy(gw.bytes.data(), nla_data(tb[RTA_GATEWAY]), static_cast<size_t>(size));
    r.gw = gw;
  }
  if (tb[RTA_OIF]) r.oif = static_cast<int>(nla_get_u32(tb[RTA_OIF]));
  if (tb[RTA_MULTIPATH] && !r.oif) {
    // First hop of a multipath route: enough to say where it goes.
    auto* nh = static_cast<rtnexthop*>(nla_data(tb[RTA_MULTIPATH]));
    if (nla_len(tb[RTA_MULTIPATH]) >= static_cast<int>(sizeof(rtnexthop))) r.oif = nh->rtnh_ifindex;
  }
  r.table = tb[RTA_TABLE] ? static_cast<int>(nla_get_u32(tb[RTA_TABLE])) : rtm->rtm_table;
  r.scope = rtm->rtm_scope;
  r.protocol = rtm->rtm_protocol;
  r.type = rtm->rtm_type;
  r.flags = rtm->rtm_flags;
  if (tb[RTA_PRIORITY]) r.priority = static_cast<int>(nla_get_u32(tb[RTA_PRIORITY]));
  if (tb[RTA_METRICS]) {
    nlattr* a;
    int rem;
    nla_for_each_nested(a, tb[RTA_METRICS], rem) {
      if (nla_type(a) == RTAX_MTU) r.mtu = static_cast<int>(nla_get_u32(a));
      if (nla_type(a) == RTAX_ADVMSS) r.advmss = static_cast<int>(nla_get_u32(a));
    }
  }
  return r;
}

}  // namespace

void add_route(Socket& sock, const Route& route) {
  std::string extack;
  int err = sock.request(route_msg(RTM_NEWROUTE, NLM_F_CREATE, route).release(), &extack);
  check(err, "failed to add route " + describe(route), extack);
}

void delete_route(Socket& sock, const Route& route) {
  std::string extack;
  int err = sock.request(route_msg(RTM_DELROUTE, 0, route).release(), &extack);
  check(err, "failed to delete route " + describe(route), extack);
}

std::vector<Route> list_routes(Socket& sock, int family, int table) {
  rtmsg rtm{};
  rtm.rtm_family = static_cast<uint8_t>(family);
  rtm.rtm_table = table > 0 && table < 256 ? static_cast<uint8_t>(table) : static_cast<uint8_t>(RT_TABLE_UNSPEC);
  MsgPtr msg = new_msg(RTM_GETROUTE, NLM_F_DUMP, rtm);
  if (table >= 256) check_put(nla_put_u32(msg.get(), RTA_TABLE, static_cast<uint32_t>(table)));
  std::vector<Route> out;
  auto on_msg = [&](nl_msg* m) {
    auto r = parse_route(m);
    if (!r) return;
    if (family && r->dst.ip.family != family) return;
    if (table && r->table != table) return;
    out.push_back(*r);
  };
  int err = detail::query(sock, msg.release(), on_msg, [&] { out.clear(); });
  check(err, "failed to list routes");
  return out;
}

}  // namespace ferry::net
