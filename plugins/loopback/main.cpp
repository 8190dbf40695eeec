// ferry-loopback: brings `lo` up in the pod's namespace (reference `loopback`, §4). CNI_IFNAME
// is ignored: this plugin only ever touches `lo`.
#include <sys/socket.h>

#include <string>

#include "cni/cni.h"
#include "net/net.h"

namespace ferry::loopback {

using cni::Error;

namespace {

bool is_loopback(const net::Ip& ip) {
  if (ip.family == AF_INET) return ip.bytes[0] == 127;
  net::Ip one = *net::Ip::parse("::1");
  return ip == one;
}

[[noreturn]] void kernel_error(const std::exception& e, const std::string& what) {
  if (auto* ce = dynamic_cast<const Error*>(&e)) throw *ce;
  throw Error(cni::kInternal, what + ": " + e.what());
}

net::Netns open_netns(const std::string& path) {
  try {
    return net::Netns::open(path);
  } catch (const net::Error& e) {
    throw Error(cni::kInvalidEnvironment, e.what(), "CNI_NETNS must name the pod's network namespace");
  }
}

cni::Result cmd_add(const cni::CmdArgs& a) {
  net::Netns ns = open_netns(a.netns);
  std::optional<net::Prefix> v4, v6;
  try {
    net::in_netns(ns, [&] {
      net::Socket sock = net::Socket::open();
      net::Link lo = net::get_link(sock, "lo");
      if (!lo.up()) net::set_link_up(sock, lo.index);
      for (const net::Address& addr : net::list_addresses(sock, 0, lo.index)) {
        if (!is_loopback(addr.prefix.ip))
          throw Error(cni::kInternal, "loopback interface found with non-loopback address \"" + addr.prefix.ip.str() + "\"");
        auto& first = addr.prefix.ip.family == AF_INET ? v4 : v6;
        if (!first) first = addr.prefix;
      }
    });
  } catch (const std::exception& e) {
    kernel_error(e, "failed to set up \"lo\" in " + a.netns);
  }
  if (a.conf.prev_result) return *a.conf.prev_result;  // chained: pass it through unchanged

  cni::Result r;
  r.cni_version = a.conf.cni_version;
  r.interfaces.push_back(cni::Interface{"lo", "00:00:00:00:00:00", a.netns, {}, {}, {}});
  for (const auto& p : {v4, v6}) {
    if (!p) continue;
    cni::IPConfig ip;
    ip.interface = 0;
    ip.address = *cni::IPNet::parse(p->str());
    r.ips.push_back(ip);
  }
  return r;
}

void cmd_del(const cni::CmdArgs& a) {
  if (a.netns.empty()) return;
  net::Netns::OpenStatus status;
  net::Netns ns = net::Netns::try_open(a.netns, &status);
  if (status != net::Netns::OpenStatus::kOk) return;  // gone (or a stale file): nothing to undo
  try {
    net::in_netns(ns, [&] {
      net::Socket sock = net::Socket::open();
      if (auto lo = net::find_link(sock, "lo"); lo && lo->up()) net::set_link_up(sock, lo->index, false);
    });
  } catch (const std::exception& e) {
    kernel_error(e, "failed to set \"lo\" down in " + a.netns);
  }
}

void cmd_check(const cni::CmdArgs& a) {
  net::Netns ns = open_netns(a.netns);
  bool up = false;
  try {
    net::in_netns(ns, [&] {
      net::Socket sock = net::Socket::open();
      up = net::get_link(sock, "lo").up();
    });
  } catch (const std::exception& e) {
    kernel_error(e, "failed to read \"lo\" in " + a.netns);
  }
  if (!up) throw Error(cni::kInternal, "loopback interface is down", "in " + a.netns);
}

}  // namespace

}  // namespace ferry::loopback

int main() {
  ferry::cni::Plugin p;
  p.about = std::string("ferry-loopback v") + FERRY_VERSION;
  p.add = ferry::loopback::cmd_add;
  p.del = ferry::loopback::cmd_del;
  p.check = ferry::loopback::cmd_check;
  return ferry::cni::plugin_main(p);
}
