// ferry-bridge verbs: ADD (transactional), DEL (idempotent, works without the netns),
// STATUS and GC. CHECK lives in check.cpp.
//
// Host-side work uses one netlink socket opened in the host namespace; pod-side work runs
// inside in_netns() with a socket created there. The veth pair is created in one request
// from the host with the pod end placed straight into the pod namespace.
#include "bridge.h"

#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_addr.h>
#include <unistd.h>

#include <cstdio>
#include <functional>
#include <set>
#include <thread>

#include "endpoint.h"
#include "internal.h"
#include "masq.h"
#include "names.h"
#include "spoofcheck.h"

namespace ferry::bridge {

using cni::Error;
using detail::fail;
using detail::to_ip;
using detail::to_prefix;

namespace {

constexpr auto kOperUpTimeout = std::chrono::milliseconds(2500);
constexpr auto kDadTimeout = std::chrono::seconds(5);

// Undo steps run in reverse order unless the ADD got to commit().
class Rollback {
 public:
  Rollback() = default;
  Rollback(const Rollback&) = delete;
  Rollback& operator=(const Rollback&) = delete;
  ~Rollback() {
    for (auto it = steps_.rbegin(); it != steps_.rend(); ++it) {
      try {
        (*it)();
      } catch (const std::exception& e) {
        std::fprintf(stderr, "ferry-bridge: rollback step failed: %s\n", e.what());
      }
    }
  }
  void add(std::function<void()> undo) { steps_.push_back(std::move(undo)); }
  void commit() { steps_.clear(); }

 private:
  std::vector<std::function<void()>> steps_;
};

// IPAM ADD on its own thread, so the exec of the IPAM plugin overlaps the kernel's work on
// the bridge and the veth pair. Transactional like Rollback: unless commit() is called, an
// address it obtained is released (IPAM DEL) on destruction; an IPAM ADD that failed is not
// undone (a failing duplicate ADD must not release what the live attachment holds).
class IpamAdd {
 public:
  IpamAdd(const BridgeConf& c, const cni::CmdArgs& a) : c_(c), a_(a) {
    if (c_.layer3()) thread_ = std::thread([this] { run(); });
  }
  IpamAdd(const IpamAdd&) = delete;
  IpamAdd& operator=(const IpamAdd&) = delete;
  ~IpamAdd() {
    if (thread_.joinable()) thread_.join();
    if (!added_ || committed_) return;
    try {
      cni::delegate_del(c_.ipam_type, a_);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ferry-bridge: rollback of IPAM ADD failed: %s\n", e.what());
    }
  }
  // The IPAM result; rethrows the IPAM plugin's error.
  cni::Result take() {
    if (thread_.joinable()) thread_.join();
    if (error_) std::rethrow_exception(error_);
    return std::move(result_);
  }
  void commit() { committed_ = true; }

 private:
  void run() {
    try {
      result_ = cni::delegate_add(c_.ipam_type, a_);
      added_ = true;
    } catch (...) {
      error_ = std::current_exception();
    }
  }
  const BridgeConf& c_;
  const cni::CmdArgs& a_;
  std::thread thread_;
  cni::Result result_;
  std::exception_ptr error_;
  bool added_ = false;
  bool committed_ = false;
};

void ignore_errors(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const std::exception&) {
  }
}

std::string operstate_name(int st) {
  static const char* names[] = {"unknown", "notpresent", "down", "lowerlayerdown", "testing", "dormant", "up"};
  return st >= 0 && st <= 6 ? names[st] : std::to_string(st);
}


// ---------------------------------------------------------------------------------------
// Host side

net::Link setup_bridge(net::Socket& host, const BridgeConf& c) {
  net::BridgeSpec spec{c.bridge, c.mtu, c.vlan_filtering(), net::random_mac()};
  net::Link br = net::ensure_bridge(host, spec);
  if (c.promisc_mode && !br.promisc()) net::set_promisc(host, br.index, true);
  ignore_errors([&] { net::ensure_sysctl("net/ipv6/conf/" + c.bridge + "/accept_ra", "0"); });
  return br;
}

void configure_port_vlans(net::Socket& host, int port, int vlan, const std::vector<int>& trunk,
                          bool preserve_default) {
  if (vlan == 0 && trunk.empty()) return;
  if (!preserve_default)
    for (const net::BridgeVlan& v : net::bridge_vlans(host, port)) net::bridge_vlan_del(host, port, v.vid);
  if (vlan != 0) net::bridge_vlan_add(host, port, {static_cast<uint16_t>(vlan), true, true});
  for (int id : trunk) net::bridge_vlan_add(host, port, {static_cast<uint16_t>(id), false, false});
}

struct HostVeth {
  std::string name;
  int index = 0;
  net::Mac mac{};
};

// The pair in one request: host end (deterministic name, enslaved, up) here, pod end
// (CNI_IFNAME, down) created directly in the pod namespace.
HostVeth create_pair(net::Socket& host, const net::Netns& ns, const BridgeConf& c, const cni::CmdArgs& a,
                     int bridge_index, Rollback& rollback) {
  net::VethSpec spec;
  spec.name = host_veth_name(c.network, a.container_id, a.ifname);
  spec.peer_name = a.ifname;
  spec.peer_netns_fd = ns.fd();
  spec.mtu = c.mtu;
  spec.mac = net::random_mac();  // set explicitly: udev leaves it alone (no CHECK MAC drift)
  spec.peer_mac = c.mac;
  spec.master = bridge_index;
  spec.up = true;
  try {
    net::create_veth(host, spec);
  } catch (const net::Error& e) {
    if (e.err() != EEXIST) throw;
    net::Socket pod = net::Socket::open_in(ns);
    if (net::find_link(pod, a.ifname))
      throw Error(cni::kInvalidEnvironment,
                  "container veth name \"" + a.ifname + "\" already exists in " + a.netns,
                  "DEL the previous attachment first, or pick another CNI_IFNAME");
    // The host name is derived from this attachment: a leftover of an interrupted ADD.
    net::delete_link(host, spec.name);
    net::create_veth(host, spec);
  }
  rollback.add([&host, name = spec.name] { net::delete_link(host, name); });
  net::Link link = net::get_link(host, spec.name);
  net::set_alias(host, link.index, host_veth_alias(c.network, a.container_id, a.ifname));
  ignore_errors([&] { net::write_sysctl("net/ipv6/conf/" + spec.name + "/accept_ra", "0"); });
  if (c.hairpin_mode || c.port_isolation) {
    net::BridgePortFlags flags;
    if (c.hairpin_mode) flags.hairpin = true;
    if (c.port_isolation) flags.isolated = true;
    net::set_bridge_port(host, link.index, flags);
  }
  configure_port_vlans(host, link.index, c.vlan, c.vlan_trunk, c.preserve_default_vlan);
  return HostVeth{spec.name, link.index, *spec.mac};
}

// "<bridge>.<vlan>": where the gateway lives when the pod's port is an access VLAN port.
net::Link ensure_vlan_gateway(net::Socket& host, const net::Link& br, const BridgeConf& c) {
  const std::string name = vlan_gateway_name(c.bridge, c.vlan);
  if (auto link = net::find_link(host, name)) return *link;
  net::VethSpec spec;
  spec.name = vlan_gateway_peer_name(c.bridge, c.vlan);
  spec.peer_name = name;
  spec.mtu = static_cast<int>(br.mtu);
  spec.master = br.index;
  spec.up = true;
  try {
    net::create_veth(host, spec);
  } catch (const net::Error& e) {
    if (e.err() != EEXIST) throw;
    return net::get_link(host, name);  // a concurrent ADD made it
  }
  net::Link port = net::get_link(host, spec.name);
  configure_port_vlans(host, port.index, c.vlan, {}, c.preserve_default_vlan);
  net::Link gw = net::get_link(host, name);
  net::set_link_up(host, gw.index);
  return net::get_link(host, name);
}

// Puts `gw` on `link` as the reference's ensureAddr does (forceAddress semantics).
void ensure_gateway_address(net::Socket& host, const net::Link& link, const net::Prefix& gw, bool force) {
  for (const net::Address& a : net::list_addresses(host, gw.ip.family, link.index)) {
    if (a.prefix == gw) return;
    bool conflicts = gw.ip.family == AF_INET || a.prefix.contains(gw.ip) || gw.contains(a.prefix.ip);
    if (!conflicts) continue;
    if (!force)
      throw Error(cni::kInvalidConfig,
                  "\"" + link.name + "\" already has an IP address different from " + gw.str(),
                  "it has " + a.prefix.str() + "; set \"forceAddress\": true to replace it, or remove it");
    net::delete_address(host, link.index, a.prefix);
  }
  try {
    // No DAD for the gateway: it must answer the moment the first pod is up.
    net::add_address(host, link.index, gw, gw.ip.family == AF_INET6 ? IFA_F_NODAD : 0);
  } catch (const net::Error& e) {
    if (e.err() != EEXIST) throw;  // a concurrent ADD added it
  }
}

// ---------------------------------------------------------------------------------------
// IPAM result → gateways and routes (reference calcGateways)

struct Gateways {
  std::vector<net::Prefix> v4, v6;  // gateway address with the pod subnet's prefix length
};

Gateways calc_gateways(cni::Result& res, const BridgeConf& c) {
  Gateways gws;
  bool default_v4 = false, default_v6 = false;
  for (cni::IPConfig& ip : res.ips) {
    const bool v6 = ip.address.addr.is_v6();
    ip.interface = 2;  // every IP is on the container interface
    if (!ip.gateway && c.is_gateway) ip.gateway = ip.address.network().addr.next();
    bool& found = v6 ? default_v6 : default_v4;
    if (c.is_default_gateway && !found) {
      for (const cni::Route& r : res.routes)
        if (r.gw && r.dst.prefix == 0 && r.dst.addr.family == ip.address.addr.family) found = true;
      if (!found) {
        cni::Route def;
        def.dst = *cni::IPNet::parse(v6 ? "::/0" : "0.0.0.0/0");
        def.gw = ip.gateway;
        res.routes.push_back(def);
        found = true;
      }
    }
    if (c.is_gateway && ip.gateway) (v6 ? gws.v6 : gws.v4).push_back(net::Prefix{to_ip(*ip.gateway), ip.address.prefix});
  }
  return gws;
}

// ---------------------------------------------------------------------------------------
// Pod side

struct PodSide {
  int index = 0;
  net::Mac mac{};
};

void set_pod_sysctls(const BridgeConf& c, const std::string& ifname) {
  const std::string v6 = "net/ipv6/conf/" + ifname + "/";
  if (c.enable_dad) {
    ignore_errors([&] { net::write_sysctl(v6 + "enhanced_dad", "1"); });
    ignore_errors([&] { net::write_sysctl(v6 + "accept_dad", "1"); });
  } else {
    // No DAD: the addresses are usable at once, so ADD never waits for them to settle.
    ignore_errors([&] { net::write_sysctl(v6 + "accept_dad", "0"); });
  }
  ignore_errors([&] { net::write_sysctl("net/ipv4/conf/" + ifname + "/arp_notify", "1"); });
}

// Addresses, link up, routes: the reference's ConfigureIface.
void configure_pod_interface(net::Socket& pod, const net::Link& link, const cni::Result& res, const BridgeConf& c,
                             const cni::CmdArgs& a) {
  std::optional<net::Ip> gw4, gw6;
  bool any_v6 = false;
  for (const cni::IPConfig& ip : res.ips) {
    if (!ip.interface) continue;
    if (*ip.interface != 2) throw Error(cni::kInternal, "failed to add IP addr " + ip.address.str() + " to \"" + a.ifname + "\": invalid interface index");
    const bool v6 = ip.address.addr.is_v6();
    if (v6 && !any_v6) {
      any_v6 = true;
      net::ensure_sysctl("net/ipv6/conf/lo/disable_ipv6", "0");
      net::ensure_sysctl("net/ipv6/conf/" + a.ifname + "/disable_ipv6", "0");
      ignore_errors([&] { net::write_sysctl("net/ipv6/conf/" + a.ifname + "/keep_addr_on_down", "1"); });
    }
    net::add_address(pod, link.index, to_prefix(ip.address));
    if (ip.gateway) {
      if (v6 && !gw6) gw6 = to_ip(*ip.gateway);
      if (!v6 && !gw4) gw4 = to_ip(*ip.gateway);
    }
  }
  net::set_link_up(pod, link.index);
  if (gw6 && c.enable_dad) net::wait_addresses_settled(pod, link.index, kDadTimeout);

  std::vector<net::Route> added;
  for (const cni::Route& r : res.routes) {
    net::Route route;
    route.dst = to_prefix(r.dst).network();
    route.gw = r.gw ? std::optional<net::Ip>(to_ip(*r.gw)) : (r.dst.addr.is_v6() ? gw6 : gw4);
    route.oif = link.index;
    route.priority = r.priority;
    route.mtu = r.mtu;
    route.advmss = r.advmss;
    if (r.table) route.table = *r.table;
    if (r.scope) route.scope = *r.scope;
    bool duplicate = false;
    for (const net::Route& done : added)
      duplicate |= done.dst == route.dst && done.gw == route.gw && done.table == route.table &&
                   done.priority == route.priority;
    if (duplicate) continue;  // e.g. IPAM's {dst: default} plus isDefaultGateway's
    net::add_route(pod, route);
    added.push_back(route);
  }
}

// ---------------------------------------------------------------------------------------
// ipMasq

void masq_add(const BridgeConf& c, const MasqIdentity& id, const std::vector<net::Prefix>& ips) {
  if (detail::resolve_backend(c) == MasqBackend::kNftables) nft_masq_add(id, ips);
  else iptables_masq_add(id, ips);
}

void masq_del(const BridgeConf& c, const MasqIdentity& id, bool v4, bool v6) {
  if (detail::resolve_backend(c) == MasqBackend::kNftables) nft_masq_del(id);
  else iptables_masq_del(id, v4, v6);
}

EndpointRecord make_record(const BridgeConf& c, const cni::CmdArgs& a, const HostVeth& hv, const PodSide& pod,
                           const cni::Result& res) {
  EndpointRecord rec;
  rec.container_id = a.container_id;
  rec.ifname = a.ifname;
  rec.netns = a.netns;
  rec.network = c.network;
  rec.bridge = c.bridge;
  rec.host_veth = hv.name;
  rec.host_veth_index = hv.index;
  rec.container_mac = net::mac_str(pod.mac);
  rec.mtu = c.mtu;
  for (const cni::IPConfig& ip : res.ips) {
    rec.ips.push_back(ip.address.str());
    if (ip.gateway) rec.gateways.push_back(ip.gateway->str());
  }
  rec.pod_namespace = c.pod_namespace;
  rec.pod_name = c.pod_name;
  return rec;
}

}  // namespace

// =======================================================================================
// ADD

cni::Result cmd_add(const cni::CmdArgs& a) {
  const BridgeConf c = parse_conf(a.conf, a.args);
  std::optional<IpamAdd> ipam;  // outlives `rollback`: the address is released after the links
  try {
    net::Netns ns;
    try {
      ns = net::Netns::open(a.netns);
    } catch (const net::Error& e) {
      throw Error(cni::kInvalidEnvironment, e.what(), "CNI_NETNS must name the pod's network namespace");
    }
    // An interface of that name already in the pod is an error before anything is touched
    // (a repeated ADD of a live attachment must not reach IPAM).
    net::Socket pod_sock = net::Socket::open_in(ns);
    if (net::find_link(pod_sock, a.ifname))
      throw Error(cni::kInvalidEnvironment, "container veth name \"" + a.ifname + "\" already exists in " + a.netns,
                  "DEL the previous attachment first, or pick another CNI_IFNAME");
    if (c.layer3()) ipam.emplace(c, a);  // runs while the bridge and the veth pair are made

    net::Socket host = net::Socket::open();
    Rollback rollback;  // after `host`: unwinding runs it while the socket still exists
    net::Link br;
    try {
      br = setup_bridge(host, c);
    } catch (const net::Error& e) {
      throw Error(cni::kInternal, e.what(),
                  e.err() == EOPNOTSUPP && c.vlan_filtering()
                      ? "vlan/vlanTrunk need a kernel with bridge VLAN filtering (CONFIG_BRIDGE_VLAN_FILTERING)"
                      : "");
    }

    HostVeth hv;
    try {
      hv = create_pair(host, ns, c, a, br.index, rollback);
    } catch (const std::exception& e) {
      fail(e, "failed to set up veth \"" + a.ifname + "\" in " + a.netns);
    }

    PodSide pod;
    net::Link pod_link;
    try {
      pod_link = net::get_link(pod_sock, a.ifname);
      pod.index = pod_link.index;
      pod.mac = *pod_link.mac;
    } catch (const std::exception& e) {
      fail(e, "failed to find \"" + a.ifname + "\" in " + a.netns);
    }
    if (c.macspoofchk) {
      try {
        spoofcheck_add(SpoofCheck{a.container_id, a.ifname, hv.name, net::mac_str(pod.mac)});
      } catch (const std::exception& e) {
        fail(e, "failed to set up MAC spoof checking");
      }
      rollback.add([cid = a.container_id, ifname = a.ifname] { spoofcheck_del(cid, ifname); });
    }

    cni::Result res;
    res.cni_version = c.cni_version;
    Gateways gws;
    std::optional<net::Link> vlan_gw;
    if (c.layer3()) {
      res = ipam->take();
      res.cni_version = c.cni_version;
      if (res.ips.empty()) throw Error(cni::kInternal, "IPAM plugin returned missing IP config");
      gws = calc_gateways(res, c);
    }

    try {
      net::in_netns(ns, [&] {
        set_pod_sysctls(c, a.ifname);
        if (c.layer3()) configure_pod_interface(pod_sock, pod_link, res, c, a);
        else if (!c.disable_container_interface) net::set_link_up(pod_sock, pod.index);
      });
    } catch (const cni::Error&) {
      throw;
    } catch (const std::exception& e) {
      fail(e, "failed to configure \"" + a.ifname + "\" in " + a.netns);
    }

    if (c.layer3() && c.is_gateway) {
      try {
        net::Link gw_link = br;
        if (c.vlan != 0) gw_link = *(vlan_gw = ensure_vlan_gateway(host, br, c));
        for (const auto* list : {&gws.v4, &gws.v6})
          for (const net::Prefix& gw : *list) ensure_gateway_address(host, gw_link, gw, c.force_address);
        if ((!gws.v4.empty() || !gws.v6.empty()) && !detail::mac_pinned(gw_link.name)) {
          // Pin the MAC it has now that our port joined (a port-less bridge has 00:00:..),
          // so it stops following ports as they come and go.
          auto now = net::find_link(host, gw_link.index);
          if (now && now->mac && *now->mac != net::Mac{}) net::set_mac(host, gw_link.index, *now->mac);
        }
        if (!gws.v4.empty()) net::ensure_sysctl("net/ipv4/ip_forward", "1");
        if (!gws.v6.empty()) net::ensure_sysctl("net/ipv6/conf/all/forwarding", "1");
      } catch (const cni::Error&) {
        throw;
      } catch (const std::exception& e) {
        fail(e, "failed to set up the gateway on \"" + c.bridge + "\"");
      }
    }

    if (c.layer3() && c.ip_masq) {
      std::vector<net::Prefix> ips;
      for (const cni::IPConfig& ip : res.ips) ips.push_back(to_prefix(ip.address));
      MasqIdentity id{c.network, a.container_id};
      rollback.add([&c, id] { masq_del(c, id, true, true); });
      try {
        masq_add(c, id, ips);
      } catch (const std::exception& e) {
        fail(e, "failed to set up IP masquerade");
      }
    }

    if (!c.disable_container_interface) {
      int st = net::wait_oper_up(host, hv.index, kOperUpTimeout);
      if (st != IF_OPER_UP) throw Error(cni::kInternal, "bridge port in error state: " + operstate_name(st),
                                        "host veth \"" + hv.name + "\" did not come up");
    }

    // The bridge's MAC may have changed when our port joined (unless it is pinned).
    if (auto now = net::find_link(host, br.index)) br = *now;
    res.interfaces = {
        cni::Interface{c.bridge, br.mac ? net::mac_str(*br.mac) : "", "", {}, {}, {}},
        cni::Interface{hv.name, net::mac_str(hv.mac), "", {}, {}, {}},
        cni::Interface{a.ifname, net::mac_str(pod.mac), a.netns, {}, {}, {}},
    };
    if (vlan_gw)
      res.interfaces.push_back(cni::Interface{vlan_gw->name, vlan_gw->mac ? net::mac_str(*vlan_gw->mac) : "", "", {}, {}, {}});
    if (!c.dns.empty()) res.dns = c.dns;

    EndpointRecord rec = make_record(c, a, hv, pod, res);
    const std::string record_name = endpoint_file_name(a.container_id, a.ifname);
    rollback.add([&c, &a, record_name] {
      if (remove_endpoint(c.endpoint_dir, a.container_id, a.ifname, c.network)) notify_agent(c.agent_socket, record_name);
    });
    write_endpoint(c.endpoint_dir, rec);
    if (c.agent_required)
      confirm_with_agent(c.agent_socket, record_name, std::chrono::milliseconds(c.agent_timeout_ms));
    else
      notify_agent(c.agent_socket, record_name);
    rollback.commit();
    if (ipam) ipam->commit();
    return res;
  } catch (const cni::Error&) {
    throw;
  } catch (const std::exception& e) {
    fail(e, "failed to add \"" + a.ifname + "\" to bridge \"" + c.bridge + "\"");
  }
}

// =======================================================================================
// DEL: every step runs even when an earlier one failed; the first error is reported.

namespace {

// Deletes the pair: by the host end's deterministic name (works without the netns), else the
// pod end by CNI_IFNAME inside the netns (an attachment a reference ADD made).
void delete_pair(const BridgeConf& c, const cni::CmdArgs& a) {
  net::Socket host = net::Socket::open();
  // Returns once the pair is unlisted; the kernel's 10-30 ms RCU barrier finishes detached.
  if (net::delete_link_detached(host, host_veth_name(c.network, a.container_id, a.ifname))) return;
  if (a.netns.empty()) return;
  net::Netns::OpenStatus status;
  net::Netns ns = net::Netns::try_open(a.netns, &status);
  if (status != net::Netns::OpenStatus::kOk) return;  // gone, or a stale file: nothing left inside
  net::in_netns(ns, [&] {
    net::Socket pod = net::Socket::open();
    net::delete_link(pod, a.ifname);
  });
}

void masq_teardown(const BridgeConf& c, const cni::CmdArgs& a, const std::optional<EndpointRecord>& rec) {
  MasqIdentity id{c.network, a.container_id};
  if (detail::resolve_backend(c) == MasqBackend::kNftables) return nft_masq_del(id);
  if (rec) {  // ADD completed: its record says exactly which rules it made
    std::vector<net::Prefix> ips;
    for (const std::string& ip : rec->ips)
      if (auto p = net::Prefix::parse(ip)) ips.push_back(*p);
    if (!ips.empty()) return iptables_masq_del_known(id, ips);
  }
  // Families from prevResult; both when nothing says.
  bool v4 = true, v6 = true;
  if (a.conf.prev_result && !a.conf.prev_result->ips.empty()) {
    v4 = v6 = false;
    for (const auto& ip : a.conf.prev_result->ips) (ip.address.addr.is_v6() ? v6 : v4) = true;
  }
  iptables_masq_del(id, v4, v6);
}

}  // namespace

void cmd_del(const cni::CmdArgs& a) {
  const BridgeConf c = parse_conf(a.conf, a.args);
  std::optional<Error> first_error;
  auto step = [&first_error](const std::string& what, const std::function<void()>& fn) {
    try {
      fn();
    } catch (const Error& e) {
      if (!first_error) first_error = e;
    } catch (const std::exception& e) {
      if (!first_error) first_error = Error(cni::kInternal, what + ": " + e.what());
    }
  };

  std::optional<EndpointRecord> rec = read_endpoint(c.endpoint_dir, a.container_id, a.ifname);
  step("failed to delete the veth of \"" + a.ifname + "\"", [&] { delete_pair(c, a); });
  if (c.layer3()) step("IPAM DEL failed", [&] { cni::delegate_del(c.ipam_type, a); });
  if (c.macspoofchk) {
    try {
      spoofcheck_del(a.container_id, a.ifname);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ferry-bridge: %s\n", e.what());  // as the reference: logged only
    }
  }
  if (c.layer3() && c.ip_masq) step("failed to remove IP masquerade", [&] { masq_teardown(c, a, rec); });
  if (remove_endpoint(c.endpoint_dir, a.container_id, a.ifname, c.network))
    notify_agent(c.agent_socket, endpoint_file_name(a.container_id, a.ifname));
  if (first_error) throw *first_error;
}

// =======================================================================================
// STATUS / GC

void cmd_status(const cni::CmdArgs& a) {
  const BridgeConf c = parse_conf(a.conf, a.args);
  if (c.layer3()) cni::delegate_status(c.ipam_type, a);
}

void cmd_gc(const cni::CmdArgs& a) {
  const BridgeConf c = parse_conf(a.conf, "");
  std::vector<cni::Attachment> list = cni::valid_attachments(a.conf.raw);
  std::set<cni::Attachment> valid(list.begin(), list.end());
  std::set<std::string> valid_ids, valid_veths;
  for (const auto& at : list) {
    valid_ids.insert(at.container_id);
    valid_veths.insert(host_veth_name(c.network, at.container_id, at.ifname));
  }
  std::vector<std::string> errors;
  auto step = [&](const std::function<void()>& fn) {
    try {
      fn();
    } catch (const std::exception& e) {
      errors.push_back(e.what());
    }
  };

  if (c.layer3()) step([&] { cni::delegate_gc(c.ipam_type, a); });
  if (c.ip_masq) {
    step([&] {
      if (detail::resolve_backend(c) == MasqBackend::kNftables) nft_masq_gc(c.network, valid_ids);
      else iptables_masq_gc(c.network, valid_ids);
    });
  }
  if (c.macspoofchk) step([&] { spoofcheck_gc(valid_veths); });
  // Host veths of this network (recognised by their alias) whose attachment is gone, e.g.
  // after an ADD that was killed and never followed by DEL.
  step([&] {
    net::Socket host = net::Socket::open();
    auto br = net::find_link(host, c.bridge);
    for (const net::Link& l : net::list_links(host)) {
      if (l.kind != "veth") continue;
      VethAlias alias;
      if (parse_host_veth_alias(l.alias, &alias)) {
        if (alias.network != c.network || valid.count(cni::Attachment{alias.container_id, alias.ifname})) continue;
      } else {
        // Killed between creating the pair and labelling it: ferry's name, on this bridge.
        bool ferry_name = l.name.size() == 15 && l.name.starts_with("ferry") &&
                          l.name.find_first_not_of("0123456789abcdef", 5) == std::string::npos;
        if (!ferry_name || !br || l.master != br->index || !l.alias.empty() || valid_veths.count(l.name)) continue;
      }
      net::delete_link(host, l.index);
    }
  });
  step([&] { gc_endpoints(c.endpoint_dir, c.network, valid); });
  if (!errors.empty()) {
    std::string details;
    for (const std::string& e : errors) details += (details.empty() ? "" : "; ") + e;
    throw Error(cni::kInternal, "garbage collection of network \"" + c.network + "\" was incomplete", details);
  }
}

cni::Plugin plugin() {
  cni::Plugin p;
  p.about = std::string("ferry-bridge v") + FERRY_VERSION;
  p.add = cmd_add;
  p.del = cmd_del;
  p.check = cmd_check;
  p.status = cmd_status;
  p.gc = cmd_gc;
  return p;
}

}  // namespace ferry::bridge
