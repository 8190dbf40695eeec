// plugins/bridge/spoofcheck.h — macspoofchk: drop frames entering the bridge from a pod's
// host veth whose source MAC is not the pod's. Same nftables layout as the reference
// (table bridge nat, base chain PREROUTING, chains cni-br-iface-<cid>-<ifname>[-mac], comment
// macspoofchk-<cid>-<ifname>), so either implementation cleans up after the other.
#pragma once

#include <set>
#include <string>
#include <string_view>

#include "net/net.h"

namespace ferry::bridge {

struct SpoofCheck {
  std::string container_id;
  std::string ifname;
  std::string host_veth;
  std::string mac;  // the container's MAC, "aa:bb:..."

  std::string iface_chain() const { return "cni-br-iface-" + container_id + "-" + ifname; }
  std::string mac_chain() const { return iface_chain() + "-mac"; }
  std::string comment() const { return "macspoofchk-" + container_id + "-" + ifname; }
};

std::string render_spoofcheck_add(const SpoofCheck& sc);  // nft script (pure)

void spoofcheck_add(const SpoofCheck& sc);  // one `nft -f -`; throws net::Error
// Removes the rules and chains of (container_id, ifname); missing ones are fine.
void spoofcheck_del(std::string_view container_id, std::string_view ifname);
bool spoofcheck_present(std::string_view container_id, std::string_view ifname);
// Removes spoof-check rules whose host veth no longer exists and whose attachment is not in
// `valid_veths` (host veth names of the valid attachments).
void spoofcheck_gc(const std::set<std::string>& valid_veths);

}  // namespace ferry::bridge
