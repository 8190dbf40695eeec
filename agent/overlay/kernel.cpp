// KernelOverlay: the VXLAN device, its addresses, and per remote node the route, neighbour and
// FDB entry; each step reads what the kernel holds and writes only the difference.
#include <linux/neighbour.h>
#include <linux/rtnetlink.h>

#include <algorithm>
#include <map>
#include <set>

#include <spdlog/spdlog.h>

#include "agent/overlay/internal.h"
#include "agent/overlay/overlay.h"

namespace ferry::overlay {

namespace {

net::Prefix host_prefix(const net::Ip& ip) { return {ip, ip.family == AF_INET6 ? 128 : 32}; }

std::string route_key(const net::Prefix& dst, const std::optional<net::Ip>& gw, int oif) {
  return dst.network().str() + " via " + (gw ? gw->str() : "-") + " oif " + std::to_string(oif);
}

// The link that holds `ip` as one of its addresses.
std::optional<net::Link> link_holding(net::Socket& sock, const net::Ip& ip) {
  for (const net::Address& a : net::list_addresses(sock, ip.family, 0))
    if (a.prefix.ip == ip) return net::find_link(sock, a.index);
  return std::nullopt;
}

}  // namespace

KernelOverlay::KernelOverlay() : sock_(std::make_unique<net::Socket>(net::Socket::open())) {}
KernelOverlay::~KernelOverlay() = default;

ApplyResult KernelOverlay::apply(const OverlayPlan& plan) {
  if (!plan.ready())
    throw OverlayError("overlay: node " + plan.self_node + " has no underlay address yet (" +
                       (plan.skipped.empty() ? std::string("no Node object") : plan.skipped.front()) + ")");
  ApplyResult r;
  const uint64_t before = writes_;
  try {
    int index = ensure_device(plan, &r);
    sync_addresses(plan, index);
    sync_remotes(plan, index);
    if (plan.config.masquerade) sync_masquerade(plan);
    else writes_ += remove_masquerade();

    auto link = net::find_link(*sock_, index);
    view_ = {};
    view_.device = plan.config.device;
    view_.ifindex = index;
    if (link && link->mac) view_.local_vtep_mac = *link->mac;
    for (const RemoteNode& remote : plan.remotes)
      for (const net::Prefix& cidr : remote.pod_cidrs) view_.routes.push_back({cidr, remote.underlay_ip, remote.vtep_mac});
    std::sort(view_.routes.begin(), view_.routes.end(),
              [](const dataplane::OverlayRoute& a, const dataplane::OverlayRoute& b) {
                return prefix_less(a.pod_cidr, b.pod_cidr);
              });
    r.mtu = link ? static_cast<int>(link->mtu) : 0;
  } catch (const net::Error& e) {
    throw OverlayError(std::string("overlay: ") + e.what());
  }
  r.kernel_writes = writes_ - before;
  r.remote_nodes = plan.remotes.size();
  return r;
}

int KernelOverlay::ensure_device(const OverlayPlan& plan, ApplyResult* r) {
  const OverlayConfig& c = plan.config;
  const net::Ip& local = *plan.local_underlay_ip;
  std::optional<net::Link> underlay;
  if (!c.underlay_interface.empty()) {
    underlay = net::find_link(*sock_, c.underlay_interface);
    if (!underlay) throw OverlayError("overlay: underlay interface \"" + c.underlay_interface + "\" does not exist");
  } else {
    underlay = link_holding(*sock_, local);
    if (!underlay)
      throw OverlayError("overlay: no interface holds this node's InternalIP " + local.str() +
                         " (set --underlay-interface)");
  }
  const int overhead = local.family == AF_INET6 ? kVxlanOverhead + 20 : kVxlanOverhead;
  const int mtu = c.mtu > 0 ? c.mtu : static_cast<int>(underlay->mtu) - overhead;
  const net::Mac mac = vtep_mac(local);

  std::optional<net::Vxlan> have;
  try {
    have = net::find_vxlan(*sock_, c.device);
  } catch (const net::Error& e) {
    if (e.err() != EEXIST) throw;
    spdlog::warn("overlay: {}; replacing it", e.what());
    net::delete_link(*sock_, c.device);
    ++writes_;
  }
  if (have) {
    const bool same = have->vni == c.vni && have->port == c.port && have->local == local &&
                      have->underlay_index == underlay->index && !have->learning;
    if (same) {
      const int index = have->link.index;
      if (static_cast<int>(have->link.mtu) != mtu) {
        net::set_mtu(*sock_, index, mtu);
        ++writes_;
      }
      if (have->link.mac != mac) {
        net::set_mac(*sock_, index, mac);
        ++writes_;
      }
      if (!have->link.up()) {
        net::set_link_up(*sock_, index);
        ++writes_;
      }
      return index;
    }
    spdlog::info("overlay: {} has other VXLAN settings (VNI {}, port {}, underlay ifindex {}); recreating it", c.device,
                 have->vni, have->port, have->underlay_index);
    net::delete_link(*sock_, c.device);
    ++writes_;
  }
  net::VxlanSpec spec;
  spec.name = c.device;
  spec.vni = c.vni;
  spec.port = c.port;
  spec.local = local;
  spec.underlay_index = underlay->index;
  spec.learning = false;
  spec.mtu = mtu;
  spec.mac = mac;
  net::create_vxlan(*sock_, spec);
  ++writes_;
  r->device_created = true;
  spdlog::info("overlay: created {} (VNI {}, port {}, local {}, dev {}, MTU {}, MAC {})", c.device, c.vni, c.port,
               local.str(), underlay->name, mtu, net::mac_str(mac));
  return net::get_link(*sock_, c.device).index;
}

void KernelOverlay::sync_addresses(const OverlayPlan& plan, int index) {
  std::vector<net::Prefix> want;
  for (const net::Prefix& cidr : plan.local_pod_cidrs) want.push_back(host_prefix(cidr.network().ip));
  std::vector<net::Prefix> have;
  for (const net::Address& a : net::list_addresses(*sock_, 0, index))
    if (a.scope == RT_SCOPE_UNIVERSE) have.push_back(a.prefix);  // not the IPv6 link-local one
  for (const net::Prefix& p : have)
    if (std::find(want.begin(), want.end(), p) == want.end()) {
      net::delete_address(*sock_, index, p);
      ++writes_;
    }
  for (const net::Prefix& p : want)
    if (std::find(have.begin(), have.end(), p) == have.end()) {
      net::add_address(*sock_, index, p, p.ip.family == AF_INET6 ? IFA_F_NODAD : 0);
      ++writes_;
    }
}

void KernelOverlay::sync_remotes(const OverlayPlan& plan, int index) {
  // Desired state, keyed the way the kernel lists it.
  std::map<std::string, net::Route> want_routes;
  std::map<std::string, std::pair<net::Ip, net::Mac>> want_neigh;  // by VTEP address
  std::map<net::Mac, net::Ip> want_fdb;
  for (const RemoteNode& remote : plan.remotes) {
    want_fdb[remote.vtep_mac] = remote.underlay_ip;
    for (const net::Prefix& cidr : remote.pod_cidrs) {
      net::Route route;
      route.dst = cidr.network();
      route.gw = cidr.network().ip;
      route.oif = index;
      route.protocol = kRouteProtocol;
      route.flags = RTNH_F_ONLINK;
      want_routes[route_key(route.dst, route.gw, index)] = route;
      want_neigh[route.gw->str()] = {*route.gw, remote.vtep_mac};
    }
  }

  // Routes that are ours (by protocol) but not wanted go first: traffic must not reach a
  // neighbour/FDB entry that is about to vanish.
  std::set<std::string> have_routes;
  for (const net::Route& route : net::list_routes(*sock_, 0, RT_TABLE_MAIN)) {
    if (route.protocol != kRouteProtocol) continue;
    std::string key = route_key(route.dst, route.gw, route.oif);
    if (want_routes.count(key) && !have_routes.count(key)) {
      have_routes.insert(key);
      continue;
    }
    net::delete_route(*sock_, route);
    ++writes_;
  }

  std::set<std::string> have_neigh;
  for (const net::Neighbour& n : net::list_neighbours(*sock_, 0, index)) {
    if (!(n.state & NUD_PERMANENT)) continue;
    auto it = want_neigh.find(n.ip.str());
    if (it != want_neigh.end() && n.mac == it->second.second) {
      have_neigh.insert(it->first);
      continue;
    }
    if (it == want_neigh.end()) {
      net::delete_neighbour(*sock_, index, n.ip);
      ++writes_;
    }  // a wrong MAC is replaced below
  }

  std::set<net::Mac> have_fdb;
  for (const net::FdbEntry& e : net::list_fdb(*sock_, index)) {
    if (!(e.state & NUD_PERMANENT)) continue;
    auto it = want_fdb.find(e.mac);
    if (it != want_fdb.end() && e.dst == it->second && !have_fdb.count(e.mac)) {
      have_fdb.insert(e.mac);
      continue;
    }
    net::delete_fdb(*sock_, index, e.mac, e.dst);
    ++writes_;
  }

  for (const auto& [mac, ip] : want_fdb)
    if (!have_fdb.count(mac)) {
      net::set_fdb(*sock_, index, mac, ip);
      ++writes_;
    }
  for (const auto& [key, entry] : want_neigh)
    if (!have_neigh.count(key)) {
      net::set_neighbour(*sock_, index, entry.first, entry.second);
      ++writes_;
    }
  for (const auto& [key, route] : want_routes)
    if (!have_routes.count(key)) {
      net::add_route(*sock_, route);
      ++writes_;
    }
}

uint64_t KernelOverlay::cleanup() {
  const uint64_t before = writes_;
  try {
    writes_ += remove_masquerade();
    if (net::find_link(*sock_, std::string(kDevice))) {
      net::delete_link(*sock_, std::string(kDevice));
      ++writes_;
    }
    // Routes go with the device; any of ours left elsewhere (a device renamed by hand) too.
    for (const net::Route& route : net::list_routes(*sock_, 0, RT_TABLE_MAIN))
      if (route.protocol == kRouteProtocol) {
        net::delete_route(*sock_, route);
        ++writes_;
      }
  } catch (const net::Error& e) {
    throw OverlayError(std::string("overlay cleanup: ") + e.what());
  }
  view_ = {};
  return writes_ - before;
}

}  // namespace ferry::overlay
