// CHECK (reference §2.8): prevResult required; IPAM CHECK first; then the bridge, the pod
// interface, its host veth peer and master, the addresses and routes of prevResult, and the
// masquerade / spoof-check rules. The host veth's MAC alone is not checked (udev may rewrite
// it after ADD on hosts where ferry did not set it).
#include <fcntl.h>
#include <unistd.h>

#include "bridge.h"
#include "internal.h"
#include "masq.h"
#include "spoofcheck.h"

namespace ferry::bridge {

using cni::Error;
using detail::to_ip;
using detail::to_prefix;

namespace {

[[noreturn]] void drift(const std::string& msg, const std::string& details = {}) {
  throw Error(cni::kInternal, msg, details);
}


bool same_mac(const std::string& recorded, const std::optional<net::Mac>& actual) {
  auto want = net::parse_mac(recorded);
  return !want || (actual && *want == *actual);
}

}  // namespace

void cmd_check(const cni::CmdArgs& a) {
  const BridgeConf c = parse_conf(a.conf, a.args);
  if (!a.conf.prev_result)
    throw Error(cni::kInvalidConfig, "Required prevResult missing", "CHECK needs the result of the ADD");
  if (c.layer3()) cni::delegate_check(c.ipam_type, a);
  const cni::Result& prev = *a.conf.prev_result;

  int br_at = -1, pod_at = -1;
  for (size_t i = 0; i < prev.interfaces.size(); ++i) {
    const cni::Interface& itf = prev.interfaces[i];
    if (itf.name == c.bridge && itf.sandbox.empty()) br_at = static_cast<int>(i);
    if (itf.name == a.ifname && itf.sandbox == a.netns) pod_at = static_cast<int>(i);
  }
  if (br_at < 0) drift("bridge \"" + c.bridge + "\" is missing from prevResult");
  if (pod_at < 0) drift("interface \"" + a.ifname + "\" in " + a.netns + " is missing from prevResult");

  try {
    net::Socket host = net::Socket::open();
    auto br = net::find_link(host, c.bridge);
    if (!br) drift("bridge \"" + c.bridge + "\" does not exist");
    if (br->kind != "bridge") drift("\"" + c.bridge + "\" is not a bridge (kind \"" + br->kind + "\")");
    if (detail::mac_pinned(c.bridge) && !same_mac(prev.interfaces[static_cast<size_t>(br_at)].mac, br->mac))
      drift("bridge \"" + c.bridge + "\" MAC doesn't match: " + prev.interfaces[static_cast<size_t>(br_at)].mac +
            " expected, found " + (br->mac ? net::mac_str(*br->mac) : "none"));
    if (c.promisc_mode && !br->promisc()) drift("bridge \"" + c.bridge + "\" is not in promiscuous mode");

    net::Netns ns;
    try {
      ns = net::Netns::open(a.netns);
    } catch (const net::Error& e) {
      throw Error(cni::kInvalidEnvironment, e.what());
    }
    net::Socket pod = net::Socket::open_in(ns);
    auto link = net::find_link(pod, a.ifname);
    if (!link) drift("interface \"" + a.ifname + "\" not found in " + a.netns);
    if (link->kind != "veth") drift("interface \"" + a.ifname + "\" is a " + link->kind + ", not a veth");
    if (!same_mac(prev.interfaces[static_cast<size_t>(pod_at)].mac, link->mac))
      drift("interface \"" + a.ifname + "\" MAC doesn't match: " + prev.interfaces[static_cast<size_t>(pod_at)].mac +
            " expected, found " + (link->mac ? net::mac_str(*link->mac) : "none"));

    // Host veth: an interface of prevResult on the host whose peer is the pod interface.
    bool found_peer = false;
    for (size_t i = 0; i < prev.interfaces.size() && !found_peer; ++i) {
      const cni::Interface& itf = prev.interfaces[i];
      if (!itf.sandbox.empty() || static_cast<int>(i) == br_at) continue;
      auto hv = net::find_link(host, itf.name);
      if (!hv || hv->kind != "veth" || hv->index != link->peer_index) continue;
      found_peer = true;
      if (hv->master != br->index)
        drift("host veth \"" + itf.name + "\" is not attached to bridge \"" + c.bridge + "\"");
    }
    if (!found_peer) drift("no host veth in prevResult is the peer of \"" + a.ifname + "\"");

    std::vector<net::Address> addrs = net::list_addresses(pod, 0, link->index);
    std::vector<net::Route> routes = net::list_routes(pod, 0, 0);
    for (const cni::IPConfig& ip : prev.ips) {
      if (!ip.interface || *ip.interface != pod_at) continue;
      net::Prefix want = to_prefix(ip.address);
      bool have = false;
      for (const net::Address& ad : addrs) have |= ad.prefix == want;
      if (!have) drift("address " + want.str() + " is missing from \"" + a.ifname + "\"");
      if (want.len == want.ip.size() * 8) continue;
      bool subnet_route = false;
      for (const net::Route& r : routes) subnet_route |= r.dst == want.network() && r.oif == link->index;
      if (!subnet_route) drift("route to " + want.network().str() + " via \"" + a.ifname + "\" is missing");
    }
    for (const cni::Route& r : prev.routes) {
      net::Prefix dst = to_prefix(r.dst).network();
      bool have = false;
      for (const net::Route& k : routes) {
        if (k.dst != dst) continue;
        if (r.gw && (!k.gw || !(*k.gw == to_ip(*r.gw)))) continue;
        if (r.table && k.table != *r.table) continue;
        have = true;
      }
      if (!have) drift("route " + r.dst.str() + (r.gw ? " via " + r.gw->str() : "") + " is missing in " + a.netns);
    }

    if (c.layer3() && c.ip_masq) {
      MasqIdentity id{c.network, a.container_id};
      bool v4 = false, v6 = false;
      for (const cni::IPConfig& ip : prev.ips) (ip.address.addr.is_v6() ? v6 : v4) = true;
      bool ok = true;
      if (detail::resolve_backend(c) == MasqBackend::kNftables) ok = nft_masq_present(id);
      else ok = (!v4 || iptables_masq_present(id, Family::kV4)) && (!v6 || iptables_masq_present(id, Family::kV6));
      if (!ok) drift("IP masquerade rules of container " + a.container_id + " are missing");
    }
    if (c.macspoofchk && !spoofcheck_present(a.container_id, a.ifname))
      drift("MAC spoof checking rules of \"" + a.ifname + "\" are missing");
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    detail::fail(e, "CHECK of \"" + a.ifname + "\" failed");
  }
}

}  // namespace ferry::bridge
