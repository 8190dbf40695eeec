// Unit tests of NetworkPolicy in the iptables layout: identity ipsets (longest-prefix semantics
// through nomatch), ipset save parsing and restore diffs, policy chain text. No root, no kernel.
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <random>
#include <set>

#include "agent/iptables/iptables.h"

namespace ferry::iptables {
namespace {

using dataplane::Direction;
using dataplane::EndpointPolicy;
using dataplane::Identity;
using dataplane::IpcacheEntry;
using dataplane::PolicyEntry;
using dataplane::PolicySet;

constexpr Identity kWorld = dataplane::kIdentityWorld;
constexpr Identity kBlock = 300, kPodX = 257, kPodY = 258;
constexpr Identity kFirst = dataplane::kFirstAllocatedIdentity;

net::Prefix prefix(const char* s) { return *net::Prefix::parse(s); }
net::Ip ip(const std::string& s) { return *net::Ip::parse(s); }

// An ipBlock 10.0.0.0/8 except 10.1.0.0/16, pod X inside the except, pod Y inside the block.
PolicySet block_set() {
  PolicySet set;
  set.ipcache = {{prefix("0.0.0.0/0"), kWorld},      {prefix("10.0.0.0/8"), kBlock},
                 {prefix("10.1.0.0/16"), kWorld},    {prefix("10.1.2.3/32"), kPodX},
                 {prefix("10.2.0.5/32"), kPodY},     {prefix("::/0"), kWorld},
                 {prefix("fd00::1/128"), kPodX}};
  EndpointPolicy pol;
  pol.ingress_isolated = true;
  pol.ingress = {{kWorld, IPPROTO_TCP, 80, 80}, {kPodX, 0, 0, 65535}, {kBlock, IPPROTO_UDP, 53, 53}};
  set.endpoints[1] = pol;
  return set;
}

// What hash:net answers: the most specific member containing the address decides.
bool set_matches(const IdentitySet& set, const net::Ip& addr) {
  int best = -1;
  bool nomatch = false;
  for (const auto& [text, flag] : set.members) {
    net::Prefix p = prefix(text.c_str());
    if (p.ip.family == addr.family && p.contains(addr) && p.len > best) {
      best = p.len;
      nomatch = flag;
    }
  }
  return best >= 0 && !nomatch;
}

Identity ipcache_lookup(const PolicySet& set, const net::Ip& addr) {
  int best = -1;
  Identity id = 0;
  for (const IpcacheEntry& e : set.ipcache)
    if (e.prefix.ip.family == addr.family && e.prefix.contains(addr) && e.prefix.len > best) {
      best = e.prefix.len;
      id = e.identity;
    }
  return id;
}

TEST(IptablesPolicyNames, SetAndChainNames) {
  EXPECT_EQ(identity_set_name(257, Family::kV4), "ferry-id-257-4");
  EXPECT_EQ(identity_set_name(257, Family::kV6), "ferry-id-257-6");
  EXPECT_LE(identity_set_name(4294967295u, Family::kV6).size(), 31u);  // IPSET_MAXNAMELEN - 1
  EXPECT_EQ(policy_chain(Direction::Ingress, "ferry0a1b2c3d4e"), "FERRY-PI-8d04e5e1b4");
  EXPECT_EQ(policy_chain(Direction::Egress, "ferry0a1b2c3d4e"), "FERRY-PE-8d04e5e1b4");
  EXPECT_TRUE(is_our_chain("FERRY-PI-8d04e5e1b4"));
  EXPECT_TRUE(is_our_chain("FERRY-PE-8d04e5e1b4"));
}

TEST(IptablesPolicySets, OwnPrefixesPlusNomatchForOtherIdentitiesInside) {
  const IdentitySets sets = identity_sets(block_set());
  IdentitySets want;
  want["ferry-id-300-4"] = {Family::kV4, {{"10.0.0.0/8", false}, {"10.1.0.0/16", true}, {"10.2.0.5/32", true}}};
  want["ferry-id-3-4"] = {Family::kV4,
                          {{"0.0.0.0/1", false}, {"128.0.0.0/1", false}, {"10.0.0.0/8", true},
                           {"10.1.0.0/16", false}, {"10.1.2.3/32", true}}};
  want["ferry-id-3-6"] = {Family::kV6, {{"::/1", false}, {"8000::/1", false}, {"fd00::1/128", true}}};
  want["ferry-id-257-4"] = {Family::kV4, {{"10.1.2.3/32", false}}};
  want["ferry-id-257-6"] = {Family::kV6, {{"fd00::1/128", false}}};
  EXPECT_EQ(sets, want);  // pod Y (258) is named by no entry: no set
}

TEST(IptablesPolicySets, NoSetsWithoutEnforcementOrPeers) {
  PolicySet set = block_set();
  set.enforce = false;
  EXPECT_TRUE(identity_sets(set).empty());
  set = block_set();
  set.endpoints[1].ingress = {{dataplane::kIdentityAny, IPPROTO_TCP, 80, 80}};
  EXPECT_TRUE(identity_sets(set).empty());
  set = block_set();
  set.endpoints[1].ingress_isolated = false;  // entries of a non-isolated direction mean nothing
  EXPECT_TRUE(identity_sets(set).empty());
}

TEST(IptablesPolicySets, AHalfOfEverythingThatIsAnotherIdentitysPrefixIsNotShadowed) {
  PolicySet set;
  set.ipcache = {{prefix("0.0.0.0/0"), kWorld}, {prefix("0.0.0.0/1"), kBlock}};
  set.endpoints[1].egress_isolated = true;
  set.endpoints[1].egress = {{kWorld, 0, 0, 65535}, {kBlock, 0, 0, 65535}};
  const IdentitySets sets = identity_sets(set);
  EXPECT_EQ(sets.at("ferry-id-3-4").members, (std::map<std::string, bool>{{"0.0.0.0/1", true}, {"128.0.0.0/1", false}}));
  EXPECT_EQ(sets.at("ferry-id-300-4").members, (std::map<std::string, bool>{{"0.0.0.0/1", false}}));
}

// The defining property, on random nested ipcaches: an address is in identity X's set exactly
// when the ipcache's longest-prefix match gives X.
TEST(IptablesPolicySets, MembershipEqualsLongestPrefixMatchOnRandomIpcaches) {
  std::mt19937 rng(5);
  auto rnd = [&](uint32_t n) { return static_cast<uint32_t>(rng() % n); };
  for (int round = 0; round < 200; ++round) {
    PolicySet set;
    set.ipcache.push_back({prefix("0.0.0.0/0"), kWorld});
    std::set<std::string> seen;
    for (int i = 0; i < 12; ++i) {
      // Small address space (10.0.0.0/28) so that prefixes nest often.
      const int len = 28 + static_cast<int>(rnd(5));
      net::Prefix p = prefix(("10.0.0." + std::to_string(rnd(16)) + "/" + std::to_string(len)).c_str()).network();
      if (!seen.insert(p.str()).second) continue;
      set.ipcache.push_back({p, static_cast<Identity>(kFirst + rnd(4))});
    }
    EndpointPolicy pol;
    pol.egress_isolated = true;
    for (Identity id : {kWorld, kFirst, kFirst + 1, kFirst + 2, kFirst + 3}) pol.egress.push_back({id, 0, 0, 65535});
    set.endpoints[1] = pol;
    const IdentitySets sets = identity_sets(set);
    for (int a = 0; a < 20; ++a) {
      const net::Ip addr = ip("10.0.0." + std::to_string(a));
      const Identity truth = ipcache_lookup(set, addr);
      for (Identity id : {kWorld, kFirst, kFirst + 1, kFirst + 2, kFirst + 3}) {
        auto it = sets.find(identity_set_name(id, Family::kV4));
        const bool member = it != sets.end() && set_matches(it->second, addr);
        ASSERT_EQ(member, truth == id) << "round " << round << " address " << addr.str() << " identity " << id;
      }
    }
  }
}

TEST(IptablesPolicySets, ParsesIpsetSaveAndDiffsMembers) {
  // As `ipset save` prints it: host entries without /32, other users' sets mixed in.
  const IdentitySets have = parse_ipset_save(
      "create ferry-pods-v4 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1\n"
      "add ferry-pods-v4 10.244.0.0/16\n"
      "create ferry-id-300-4 hash:net family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x2\n"
      "add ferry-id-300-4 10.0.0.0/8\n"
      "add ferry-id-300-4 10.2.0.5 nomatch\n"
      "add ferry-id-300-4 10.1.0.0/16 nomatch\n"
      "create ferry-id-257-6 hash:net family inet6 hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x3\n"
      "add ferry-id-257-6 fd00::1\n"
      "create ferry-id-9-4 hash:net family inet hashsize 1024 maxelem 1048576 bucketsize 12 initval 0x4\n");
  IdentitySets want;
  want["ferry-id-300-4"] = {Family::kV4, {{"10.0.0.0/8", false}, {"10.1.0.0/16", true}, {"10.2.0.5/32", true}}};
  want["ferry-id-257-6"] = {Family::kV6, {{"fd00::1/128", false}}};
  want["ferry-id-9-4"] = {Family::kV4, {}};
  EXPECT_EQ(have, want);
  EXPECT_EQ(render_set_update(want, have), "");

  IdentitySets next = want;
  next.erase("ferry-id-9-4");
  next["ferry-id-300-4"].members["10.1.0.0/16"] = false;  // flag flip: del + add
  next["ferry-id-300-4"].members.erase("10.2.0.5/32");
  next["ferry-id-300-4"].members["10.3.0.0/16"] = true;
  next["ferry-id-258-6"] = {Family::kV6, {{"fd00::2/128", false}}};
  EXPECT_EQ(render_set_update(next, have),
            "create ferry-id-258-6 hash:net family inet6 maxelem 1048576\n"
            "add ferry-id-258-6 fd00::2/128\n"
            "del ferry-id-300-4 10.1.0.0/16\n"
            "del ferry-id-300-4 10.2.0.5/32\n"
            "add ferry-id-300-4 10.1.0.0/16\n"
            "add ferry-id-300-4 10.3.0.0/16 nomatch\n");
  EXPECT_EQ(render_set_destroy(next, have), "destroy ferry-id-9-4\n");
  EXPECT_EQ(render_set_destroy(want, have), "");
}

TEST(IptablesPolicyChains, ExactRulesOfAnIsolatedDirection) {
  EndpointPolicy pol;
  pol.ingress_isolated = true;
  pol.ingress = {{dataplane::kIdentityAny, IPPROTO_UDP, 53, 53},
                 {kPodX, 0, 0, 65535},
                 {kPodX, IPPROTO_TCP, 8000, 8010},
                 {kPodY, IPPROTO_TCP, 80, 80},  // pod Y has no set: can never match, left out
                 {kBlock, IPPROTO_SCTP, 0, 65535}};
  IdentitySets sets;
  sets["ferry-id-257-4"] = {Family::kV4, {{"10.1.2.3/32", false}}};
  sets["ferry-id-300-4"] = {Family::kV4, {{"10.0.0.0/8", false}}};
  EXPECT_EQ(policy_chain_rules(Family::kV4, Direction::Ingress, &pol, sets),
            (std::vector<std::string>{
                "-m conntrack --ctdir REPLY -m comment --comment \"ferry: policy reply\" -j RETURN",
                "-p udp -m udp --dport 53 -m comment --comment \"ferry: allow any udp 53\" -j RETURN",
                "-m set --match-set ferry-id-257-4 src -m comment --comment \"ferry: allow 257\" -j RETURN",
                "-p tcp -m set --match-set ferry-id-257-4 src -m tcp --dport 8000:8010 -m comment --comment "
                "\"ferry: allow 257 tcp 8000:8010\" -j RETURN",
                "-p sctp -m set --match-set ferry-id-300-4 src -m comment --comment \"ferry: allow 300 sctp\" -j RETURN",
                "-m comment --comment \"ferry: policy-deny ingress\" -j DROP",
            }));
  // Egress is not isolated: empty chain. IPv6: no set for these peers, but neighbour discovery.
  EXPECT_TRUE(policy_chain_rules(Family::kV4, Direction::Egress, &pol, sets).empty());
  EXPECT_TRUE(policy_chain_rules(Family::kV4, Direction::Ingress, nullptr, sets).empty());
  const auto v6 = policy_chain_rules(Family::kV6, Direction::Ingress, &pol, sets);
  ASSERT_EQ(v6.size(), 8u);  // reply, 5 x NDP, any udp 53, deny
  EXPECT_EQ(v6[1], "-p ipv6-icmp -m icmp6 --icmpv6-type 133 -m comment --comment \"ferry: neighbour discovery\" -j RETURN");
  EXPECT_EQ(v6[6], "-p udp -m udp --dport 53 -m comment --comment \"ferry: allow any udp 53\" -j RETURN");
  // Egress matches the destination.
  pol.egress_isolated = true;
  pol.egress = {{kPodX, IPPROTO_TCP, 443, 443}};
  EXPECT_EQ(policy_chain_rules(Family::kV4, Direction::Egress, &pol, sets)[1],
            "-p tcp -m set --match-set ferry-id-257-4 dst -m tcp --dport 443 -m comment --comment "
            "\"ferry: allow 257 tcp 443\" -j RETURN");
  pol.egress = {{kPodX, 1 /* ICMP */, 0, 65535}};
  EXPECT_THROW(policy_chain_rules(Family::kV4, Direction::Egress, &pol, sets), dataplane::DataplaneError);
}

dataplane::Endpoint endpoint(uint32_t id, std::string veth, const char* v4) {
  dataplane::Endpoint ep;
  ep.endpoint_id = id;
  ep.host_veth = std::move(veth);
  ep.host_ifindex = static_cast<int>(id) + 10;
  ep.ips = {ip(v4)};
  ep.pod_mac = *net::parse_mac("02:00:00:00:00:01");
  ep.host_mac = *net::parse_mac("02:aa:bb:cc:dd:ee");
  return ep;
}

FilterTable node_with(const std::vector<dataplane::Endpoint>& eps) {
  FilterTable t = parse_save("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n");
  apply_restore(t, render_start(t));
  for (const auto& ep : eps) apply_restore(t, render_program(Family::kV4, ep, t));
  return t;
}

TEST(IptablesPolicyChains, RewritesOnlyTheChainsThatDiffer) {
  const auto a = endpoint(1, "ferryaaaaaaaaaa", "10.2.0.5"), b = endpoint(2, "ferrybbbbbbbbbb", "10.1.2.3");
  FilterTable t = node_with({a, b});
  const auto veths = endpoint_veths(t);
  EXPECT_EQ(veths, (std::map<uint32_t, std::string>{{1, a.host_veth}, {2, b.host_veth}}));

  PolicySet set = block_set();  // endpoint 1 ingress-isolated; endpoint 2 absent (not isolated)
  const IdentitySets sets = identity_sets(set);
  // Freshly programmed endpoints have empty policy chains: only endpoint 1's ingress changes.
  const std::string first = render_policy(Family::kV4, set, veths, sets, t);
  EXPECT_NE(first.find(":" + policy_chain(Direction::Ingress, a.host_veth) + " - [0:0]\n"), std::string::npos) << first;
  EXPECT_EQ(first.find(policy_chain(Direction::Egress, a.host_veth)), std::string::npos) << first;
  EXPECT_EQ(first.find(chain_suffix(b.host_veth)), std::string::npos) << first;
  apply_restore(t, first);
  EXPECT_EQ(render_policy(Family::kV4, set, veths, sets, t), "");  // idempotent

  // Reprogramming the endpoint keeps its policy chain (program_endpoint never flushes it).
  apply_restore(t, render_program(Family::kV4, a, t));
  EXPECT_EQ(render_policy(Family::kV4, set, veths, sets, t), "");
  EXPECT_EQ(endpoints_from_tables(t, nullptr).size(), 2u);

  // A change of endpoint 2's policy rewrites endpoint 2's chain alone.
  set.endpoints[2].egress_isolated = true;
  const std::string second = render_policy(Family::kV4, set, veths, sets, t);
  EXPECT_EQ(second,
            "*filter\n:" + policy_chain(Direction::Egress, b.host_veth) + " - [0:0]\n-A " +
                policy_chain(Direction::Egress, b.host_veth) +
                " -m conntrack --ctdir REPLY -m comment --comment \"ferry: policy reply\" -j RETURN\n-A " +
                policy_chain(Direction::Egress, b.host_veth) +
                " -m comment --comment \"ferry: policy-deny egress\" -j DROP\nCOMMIT\n");
  apply_restore(t, second);

  // enforce false empties every policy chain.
  set.enforce = false;
  const std::string off = render_policy(Family::kV4, set, veths, {}, t);
  apply_restore(t, off);
  for (const std::string& c : t.chains) {
    if (is_policy_chain(c)) {
      EXPECT_TRUE(t.rules_of(c).empty()) << c;
    }
  }
  EXPECT_EQ(render_policy(Family::kV4, set, veths, {}, t), "");

  // Removing an endpoint removes its policy chains; cleanup removes all.
  apply_restore(t, render_remove(a, t));
  EXPECT_FALSE(t.has_chain(policy_chain(Direction::Ingress, a.host_veth)));
  EXPECT_TRUE(t.has_chain(policy_chain(Direction::Ingress, b.host_veth)));
  apply_restore(t, render_cleanup(t));
  for (const std::string& c : t.chains) EXPECT_FALSE(is_our_chain(c)) << c;
}

TEST(IptablesPolicyChains, PolicyChainsAreGarbageCollectedWhenOrphaned) {
  FilterTable t = node_with({});
  apply_restore(t, "*filter\n:FERRY-PI-ffffffffff - [0:0]\nCOMMIT\n");
  EXPECT_EQ(render_orphan_gc(t), "*filter\n:FERRY-PI-ffffffffff - [0:0]\n-X FERRY-PI-ffffffffff\nCOMMIT\n");
}

TEST(IptablesPolicyStats, SumsOnlyThePolicyDenyRules) {
  const auto a = endpoint(1, "ferryaaaaaaaaaa", "10.2.0.5");
  FilterTable t = node_with({a});
  PolicySet set = block_set();
  set.endpoints[1].egress_isolated = true;
  apply_restore(t, render_policy(Family::kV4, set, endpoint_veths(t), identity_sets(set), t));
  for (Rule& r : t.rules) {
    r.packets = 10;
    r.bytes = 100;
  }
  dataplane::Counter c = drop_policy_counter(t);
  EXPECT_EQ(c.name, "drop_policy");
  EXPECT_TRUE(c.drop);
  EXPECT_EQ(c.packets, 20u);  // the ingress and the egress deny rule
  EXPECT_EQ(c.bytes, 200u);
}

}  // namespace
}  // namespace ferry::iptables
