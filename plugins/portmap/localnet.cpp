#include "plugins/portmap/localnet.h"

#include <net/if.h>
#include <netlink/addr.h>
#include <netlink/netlink.h>
#include <netlink/route/nexthop.h>
#include <netlink/route/route.h>
#include <sys/socket.h>

#include <memory>

#include "net/net.h"

namespace ferry::portmap {

std::string host_interface_towards(const cni::IPAddr& addr) {
  std::unique_ptr<nl_sock, void (*)(nl_sock*)> sk(nl_socket_alloc(), nl_socket_free);
  int err = sk ? nl_connect(sk.get(), NETLINK_ROUTE) : -NLE_NOMEM;
  if (err < 0)
    throw cni::Error(cni::kIOFailure, "failed to open a netlink socket", nl_geterror(err));
  std::unique_ptr<nl_addr, void (*)(nl_addr*)> dst(
      nl_addr_build(addr.is_v4() ? AF_INET : AF_INET6, addr.bytes.data(), addr.is_v4() ? 4 : 16),
      nl_addr_put);
  rtnl_route* route = nullptr;
  err = rtnl_route_lookup(sk.get(), dst.get(), &route);
  if (err < 0) return "";  // no route (ENETUNREACH): nothing to enable, as the reference
  std::unique_ptr<rtnl_route, void (*)(rtnl_route*)> owned(route, rtnl_route_put);
  rtnl_nexthop* nh = rtnl_route_nexthop_n(route, 0);
  char name[IF_NAMESIZE] = {};
  if (!nh || !if_indextoname(static_cast<unsigned>(rtnl_route_nh_get_ifindex(nh)), name)) return "";
  return name;
}

std::string enable_route_localnet(const cni::IPAddr& container_v4) {
  std::string ifname = host_interface_towards(container_v4);
  if (ifname.empty() || ifname == "lo") return "";
  try {
    net::ensure_sysctl("net/ipv4/conf/" + ifname + "/route_localnet", "1");
  } catch (const net::Error& e) {
    throw cni::Error(cni::kIOFailure, "unable to enable route_localnet on " + ifname, e.what());
  }
  return ifname;
}

}  // namespace ferry::portmap
