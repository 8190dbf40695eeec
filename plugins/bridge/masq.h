// plugins/bridge/masq.h — ipMasq: per-container masquerade of traffic leaving the pod subnet.
//
// iptables backend (the default, as in the reference): table nat, per container and family
// one chain FERRY-MASQ-<hash> holding "-d <subnet> ACCEPT" and "! -d <multicast> MASQUERADE",
// and "POSTROUTING -s <ip> -j <chain>", every rule commented `ferry: name: "<net>" id: "<cid>"`.
// One iptables-restore per family on ADD. DEL and GC find the rules by that identity (chain
// name, comment) in one iptables-save, so they need no live IP and no namespace.
//
// nftables backend: table inet ferry_masquerade, base chain postrouting (srcnat) skipping
// multicast and jumping to masq_checks, which holds one rule per container IP:
// `ip saddr <ip> ip daddr != <subnet> masquerade comment "ferry: net=<net> id=<cid>"`.
//
// The render_* functions are pure (unit-tested); the others exec the tools and throw
// net::Error with the tool's stderr.
#pragma once

#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "net/net.h"

namespace ferry::bridge {

struct MasqIdentity {
  std::string network;
  std::string container_id;
};

// iptables-restore input for one family: `ips` are the container's addresses with their
// prefix (all of the same family).
std::string render_masq_add(const MasqIdentity& id, const std::vector<net::Prefix>& ips);
// iptables-restore input removing the container's jumps and chain, given the output of
// `iptables-save -t nat`; also removes what a reference bridge ADD made for the same
// container (comment `name: "<net>" id: "<cid>"`, chain CNI-...). "" when nothing is there.
std::string render_masq_del(const MasqIdentity& id, std::string_view save_nat);
// iptables-restore input removing exactly what render_masq_add made for `ips` (one family):
// DEL's fast path when ADD's endpoint record says which IPs the container had. It fails as a
// whole (and DEL falls back to render_masq_del) when a rule is not there.
std::string render_masq_del_known(const MasqIdentity& id, const std::vector<net::Prefix>& ips);
// iptables-restore input removing every FERRY-MASQ chain of `network` whose container ID is
// not in `valid_ids`. "" when nothing is stale.
std::string render_masq_gc(std::string_view network, const std::set<std::string>& valid_ids,
                           std::string_view save_nat);
// True when the container's chain and a POSTROUTING jump to it exist in `save_nat`.
bool masq_present(const MasqIdentity& id, std::string_view save_nat);

// The nft script adding the container's rules (table and base chain created if missing).
std::string render_nft_masq_add(const MasqIdentity& id, const std::vector<net::Prefix>& ips);
std::string nft_masq_comment(const MasqIdentity& id);

enum class Family { kV4, kV6 };

// --- kernel side ------------------------------------------------------------------------
bool iptables_available();
bool nft_available();

void iptables_masq_add(const MasqIdentity& id, const std::vector<net::Prefix>& ips);  // all families
void iptables_masq_del(const MasqIdentity& id, bool v4, bool v6);
// One restore per family with the known IPs; falls back to iptables_masq_del when it fails.
void iptables_masq_del_known(const MasqIdentity& id, const std::vector<net::Prefix>& ips);
void iptables_masq_gc(std::string_view network, const std::set<std::string>& valid_ids);
bool iptables_masq_present(const MasqIdentity& id, Family family);

void nft_masq_add(const MasqIdentity& id, const std::vector<net::Prefix>& ips);
void nft_masq_del(const MasqIdentity& id);
void nft_masq_gc(std::string_view network, const std::set<std::string>& valid_ids);
bool nft_masq_present(const MasqIdentity& id);

}  // namespace ferry::bridge
