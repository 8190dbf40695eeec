// VXLAN devices over libnl's rtnl_link_vxlan API: create, read back, MTU.
#include <linux/if.h>
#include <linux/rtnetlink.h>
#include <netlink/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/vxlan.h>

#include <cstring>

#include "net/nl_internal.h"

namespace ferry::net {

using detail::check;
using detail::check_put;
using detail::MsgPtr;
using detail::new_msg;
using detail::quote;

namespace {

struct LinkDeleter {
  void operator()(rtnl_link* l) const { rtnl_link_put(l); }
};
using LinkPtr = std::unique_ptr<rtnl_link, LinkDeleter>;

struct AddrDeleter {
  void operator()(nl_addr* a) const { nl_addr_put(a); }
};
using AddrPtr = std::unique_ptr<nl_addr, AddrDeleter>;

AddrPtr to_nl_addr(const void* bytes, int size, int family) {
  AddrPtr a(nl_addr_build(family, bytes, static_cast<size_t>(size)));
  if (!a) throw Error("out of memory building a netlink address", ENOMEM);
  return a;
}

// libnl setters fail only for a link that is not (yet) of type vxlan or out of memory.
void check_set(int rc, const char* what) {
  if (rc < 0) throw Error(std::string("failed to set VXLAN ") + what + ": " + std::to_string(rc), EINVAL);
}

}  // namespace

void create_vxlan(Socket& sock, const VxlanSpec& spec) {
  LinkPtr link(rtnl_link_alloc());
  if (!link) throw Error("out of memory", ENOMEM);
  rtnl_link_set_name(link.get(), spec.name.c_str());
  check_set(rtnl_link_set_type(link.get(), "vxlan"), "type");
  if (spec.mtu > 0) rtnl_link_set_mtu(link.get(), static_cast<unsigned>(spec.mtu));
  if (spec.mac) rtnl_link_set_addr(link.get(), to_nl_addr(spec.mac->data(), 6, AF_LLC).get());
  if (spec.up) rtnl_link_set_flags(link.get(), IFF_UP);
  check_set(rtnl_link_vxlan_set_id(link.get(), spec.vni), "VNI");
  check_set(rtnl_link_vxlan_set_port(link.get(), spec.port), "port");
  check_set(rtnl_link_vxlan_set_learning(link.get(), spec.learning ? 1 : 0), "learning");
  if (spec.local)
    check_set(rtnl_link_vxlan_set_local(link.get(), to_nl_addr(spec.local->bytes.data(), spec.local->size(),
                                                                 spec.local->family).get()),
              "local address");
  if (spec.underlay_index > 0)
    check_set(rtnl_link_vxlan_set_link(link.get(), static_cast<uint32_t>(spec.underlay_index)), "underlay device");

  nl_msg* raw = nullptr;
  int rc = rtnl_link_build_add_request(link.get(), NLM_F_CREATE | NLM_F_EXCL, &raw);
  if (rc < 0) check(detail::nl_to_errno(rc), "failed to build the request creating VXLAN device " + quote(spec.name));
  std::string extack;
  int err = sock.request(raw, &extack);
  check(err, "failed to create VXLAN device " + quote(spec.name) + " (VNI " + std::to_string(spec.vni) + ", port " +
                 std::to_string(spec.port) + ")",
        extack);
}

std::optional<Vxlan> find_vxlan(Socket& sock, std::string_view name) {
  auto base = find_link(sock, name);
  if (!base) return std::nullopt;
  if (base->kind != "vxlan") throw Error(quote(name) + " already exists but is not a VXLAN device", EEXIST);

  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = base->index;
  MsgPtr msg = new_msg(RTM_GETLINK, 0, ifi);
  check_put(nla_put_u32(msg.get(), IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS));
  Vxlan out;
  out.link = *base;
  bool seen = false;
  auto on_msg = [&](nl_msg* m) {
    if (nlmsg_hdr(m)->nlmsg_type != RTM_NEWLINK) return;
    struct Ctx {
      Vxlan* out;
      bool* seen;
    } ctx{&out, &seen};
    nl_msg_parse(
        m,
        [](nl_object* obj, void* arg) {
          auto* c = static_cast<Ctx*>(arg);
          auto* l = reinterpret_cast<rtnl_link*>(obj);
          if (!rtnl_link_is_vxlan(l)) return;
          *c->seen = true;
          uint32_t u = 0;
          if (rtnl_link_vxlan_get_id(l, &u) == 0) c->out->vni = u;
          if (rtnl_link_vxlan_get_port(l, &u) == 0) c->out->port = static_cast<uint16_t>(u);
          if (rtnl_link_vxlan_get_link(l, &u) == 0) c->out->underlay_index = static_cast<int>(u);
          c->out->learning = rtnl_link_vxlan_get_learning(l) > 0;
          nl_addr* a = nullptr;
          if (rtnl_link_vxlan_get_local(l, &a) == 0 && a) {
            AddrPtr owned(a);
            Ip ip;
            ip.family = nl_addr_get_family(a);
            unsigned len = nl_addr_get_len(a);
            if ((ip.family == AF_INET && len == 4) || (ip.family == AF_INET6 && len == 16)) {
              std::memcpy(ip.bytes.data(), nl_addr_get_binary_addr(a), len);
              c->out->local = ip;
            }
          }
        },
        &ctx);
  };
  std::string extack;
  int err = detail::query(sock, msg.release(), on_msg, {}, &extack);
  if (err == ENODEV) return std::nullopt;
  check(err, "failed to read VXLAN device " + quote(name), extack);
  if (!seen) throw Error("failed to read the VXLAN attributes of " + quote(name), EINVAL);
  return out;
}

void set_mtu(Socket& sock, int index, int mtu) {
  ifinfomsg ifi{};
  ifi.ifi_family = AF_UNSPEC;
  ifi.ifi_index = index;
  MsgPtr msg = new_msg(RTM_SETLINK, 0, ifi);
  check_put(nla_put_u32(msg.get(), IFLA_MTU, static_cast<uint32_t>(mtu)));
  std::string extack;
  int err = sock.request(msg.release(), &extack);
  check(err, "failed to set MTU " + std::to_string(mtu) + " on ifindex " + std::to_string(index), extack);
}

}  // namespace ferry::net
