// ferry-portmap rule rendering as golden text: chain names, per-container rules for IPv4
// and IPv6, hostIP, snat on/off, masqAll, conditions, mark bits, the restore scripts for
// ADD/DEL on empty and populated tables, CHECK findings and GC attribution.
#include <gtest/gtest.h>

#include "cni/cni.h"
#include "plugins/portmap/config.h"
#include "plugins/portmap/rules.h"

namespace ferry::portmap {
namespace {

const std::string kChain = "FERRY-DN-99b516689b429e48";  // fnv1a64("mynet" + "ctr1")
const std::string kComment = "-m comment --comment \"ferry: hostport net=mynet id=ctr1\"";

cni::PortMapping mapping(int host, int cont, std::string proto = "tcp", std::string host_ip = "") {
  return cni::PortMapping{host, cont, std::move(proto), std::move(host_ip)};
}

Config config(std::vector<cni::PortMapping> mappings) {
  Config c;
  c.network = "mynet";
  c.mappings = std::move(mappings);
  return c;
}

cni::IPNet net(const char* cidr) { return *cni::IPNet::parse(cidr); }

std::vector<std::string> specs(const std::vector<Rule>& rules) {
  std::vector<std::string> out;
  for (const auto& r : rules) out.push_back(r.chain + ": " + r.spec);
  return out;
}

TEST(PortmapRules, Fnv1a64KnownVectors) {
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
}

TEST(PortmapRules, ContainerChainNameIsStableAndFits) {
  EXPECT_EQ(container_chain("mynet", "ctr1"), kChain);
  EXPECT_NE(container_chain("mynet", "ctr2"), kChain);
  EXPECT_LE(kChain.size(), 28u);  // iptables' chain name limit
}

TEST(PortmapRules, CommentNamesNetworkAndContainerAndIsCut) {
  EXPECT_EQ(container_comment("mynet", "ctr1"), "ferry: hostport net=mynet id=ctr1");
  EXPECT_EQ(container_comment(std::string(300, 'n'), "ctr1").size(), 255u);
}

TEST(PortmapRules, V4Golden) {
  ContainerRules r = render_container_rules(config({mapping(8080, 80)}), "ctr1", net("10.1.0.5/24"));
  EXPECT_EQ(r.chain, kChain);
  EXPECT_FALSE(r.has_conditions);
  EXPECT_EQ(specs(r.entries),
            (std::vector<std::string>{"FERRY-HOSTPORT-DNAT: -p tcp " + kComment +
                                      " -m multiport --dports 8080 -j " + kChain}));
  EXPECT_EQ(specs(r.rules),
            (std::vector<std::string>{
                kChain + ": -s 10.1.0.0/24 -p tcp -m tcp --dport 8080 " + kComment + " -j FERRY-HOSTPORT-SETMARK",
                kChain + ": -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 " + kComment + " -j FERRY-HOSTPORT-SETMARK",
                kChain + ": -p tcp -m tcp --dport 8080 " + kComment + " -j DNAT --to-destination 10.1.0.5:80",
            }));
}

TEST(PortmapRules, V6Golden) {
  ContainerRules r = render_container_rules(config({mapping(8080, 80, "udp")}), "ctr1", net("fd00:1::5/64"));
  EXPECT_EQ(specs(r.entries),
            (std::vector<std::string>{"FERRY-HOSTPORT-DNAT: -p udp " + kComment +
                                      " -m multiport --dports 8080 -j " + kChain}));
  // No 127.0.0.1 rule in IPv6 (the reference has no ::1 mapping either).
  EXPECT_EQ(specs(r.rules),
            (std::vector<std::string>{
                kChain + ": -s fd00:1::/64 -p udp -m udp --dport 8080 " + kComment + " -j FERRY-HOSTPORT-SETMARK",
                kChain + ": -p udp -m udp --dport 8080 " + kComment + " -j DNAT --to-destination [fd00:1::5]:80",
            }));
}

TEST(PortmapRules, HostIpFiltersAndOtherFamilyIsSkipped) {
  Config c = config({mapping(8080, 80, "tcp", "192.168.1.1"), mapping(8081, 81, "tcp", "fd00::1"),
                     mapping(8082, 82, "tcp", "0.0.0.0"), mapping(8083, 83, "tcp", "::")});
  c.snat = false;
  ContainerRules v4 = render_container_rules(c, "ctr1", net("10.1.0.5/24"));
  // Entries keep every port (as the reference); the chain only this family's mappings.
  EXPECT_EQ(specs(v4.entries),
            (std::vector<std::string>{"FERRY-HOSTPORT-DNAT: -p tcp " + kComment +
                                      " -m multiport --dports 8080,8081,8082,8083 -j " + kChain}));
  EXPECT_EQ(specs(v4.rules),
            (std::vector<std::string>{
                kChain + ": -d 192.168.1.1/32 -p tcp -m tcp --dport 8080 " + kComment + " -j DNAT --to-destination 10.1.0.5:80",
                kChain + ": -p tcp -m tcp --dport 8082 " + kComment + " -j DNAT --to-destination 10.1.0.5:82",
            }));
  ContainerRules v6 = render_container_rules(c, "ctr1", net("fd00:1::5/64"));
  EXPECT_EQ(specs(v6.rules),
            (std::vector<std::string>{
                kChain + ": -d fd00::1/128 -p tcp -m tcp --dport 8081 " + kComment + " -j DNAT --to-destination [fd00:1::5]:81",
                kChain + ": -p tcp -m tcp --dport 8083 " + kComment + " -j DNAT --to-destination [fd00:1::5]:83",
            }));
}

TEST(PortmapRules, HostIpWithSnatPutsSourceBeforeDestination) {
  ContainerRules r = render_container_rules(config({mapping(8080, 80, "tcp", "192.168.1.1")}), "ctr1",
                                            net("10.1.0.5/24"));
  ASSERT_EQ(r.rules.size(), 3u);
  EXPECT_EQ(r.rules[0].spec, "-s 10.1.0.0/24 -d 192.168.1.1/32 -p tcp -m tcp --dport 8080 " + kComment +
                                 " -j FERRY-HOSTPORT-SETMARK");
}

TEST(PortmapRules, SnatOffHasOnlyDnatAndNoMasqueradeChains) {
  Config c = config({mapping(8080, 80)});
  c.snat = false;
  ContainerRules r = render_container_rules(c, "ctr1", net("10.1.0.5/24"));
  ASSERT_EQ(r.rules.size(), 1u);
  EXPECT_NE(r.rules[0].spec.find("-j DNAT"), std::string::npos);
  std::vector<SharedRule> shared = shared_rules(c);
  ASSERT_EQ(shared.size(), 2u);
  EXPECT_EQ(shared[0].rule.chain, "PREROUTING");
  EXPECT_EQ(shared[1].rule.chain, "OUTPUT");
  EXPECT_EQ(shared_chains(c), (std::vector<std::string>{"FERRY-HOSTPORT-DNAT"}));
}

TEST(PortmapRules, MasqAllMarksEverySourceAndDropsTheLocalhostRule) {
  Config c = config({mapping(8080, 80)});
  c.masq_all = true;
  ContainerRules r = render_container_rules(c, "ctr1", net("10.1.0.5/24"));
  EXPECT_EQ(specs(r.rules),
            (std::vector<std::string>{
                kChain + ": -p tcp -m tcp --dport 8080 " + kComment + " -j FERRY-HOSTPORT-SETMARK",
                kChain + ": -p tcp -m tcp --dport 8080 " + kComment + " -j DNAT --to-destination 10.1.0.5:80",
            }));
}

TEST(PortmapRules, ConditionsGoOnTheEntriesOfTheirFamily) {
  Config c = config({mapping(8080, 80)});
  c.conditions_v4 = {"-s", "10.0.0.0/8", "-m", "comment", "--comment", "my cond"};
  c.conditions_v6 = {"!", "-d", "fd00::1"};
  ContainerRules v4 = render_container_rules(c, "ctr1", net("10.1.0.5/24"));
  EXPECT_TRUE(v4.has_conditions);
  EXPECT_EQ(v4.entries.at(0).spec, "-p tcp " + kComment +
                                       " -m multiport --dports 8080 -s 10.0.0.0/8 -m comment --comment \"my cond\" -j " + kChain);
  ContainerRules v6 = render_container_rules(c, "ctr1", net("fd00:1::5/64"));
  EXPECT_EQ(v6.entries.at(0).spec, "-p tcp " + kComment + " -m multiport --dports 8080 ! -d fd00::1 -j " + kChain);
  // The chain's own rules never carry conditions.
  EXPECT_EQ(v4.rules.back().spec.find("10.0.0.0/8"), std::string::npos);
}

TEST(PortmapRules, EntriesGroupByProtocolAndSplitAt15Ports) {
  std::vector<cni::PortMapping> ms;
  for (int p = 1000; p < 1017; ++p) ms.push_back(mapping(p, 80));
  ms.push_back(mapping(53, 53, "udp"));
  ms.push_back(mapping(1000, 81, "tcp", "192.168.1.1"));  // same host port again: listed once
  ContainerRules r = render_container_rules(config(ms), "ctr1", net("10.1.0.5/24"));
  ASSERT_EQ(r.entries.size(), 3u);
  EXPECT_NE(r.entries[0].spec.find("-p tcp "), std::string::npos);
  EXPECT_NE(r.entries[0].spec.find(
                "--dports 1000,1001,1002,1003,1004,1005,1006,1007,1008,1009,1010,1011,1012,1013,1014 -j"),
            std::string::npos);
  EXPECT_NE(r.entries[1].spec.find("--dports 1015,1016 -j"), std::string::npos);
  EXPECT_NE(r.entries[2].spec.find("-p udp "), std::string::npos);
  EXPECT_NE(r.entries[2].spec.find("--dports 53 -j"), std::string::npos);
}

TEST(PortmapRules, SharedRulesGoldenWithMarkBits) {
  Config c = config({});
  std::vector<SharedRule> s = shared_rules(c);
  ASSERT_EQ(s.size(), 5u);
  const std::string to_dnat =
      "-m comment --comment \"ferry: hostport dnat\" -m addrtype --dst-type LOCAL -j FERRY-HOSTPORT-DNAT";
  EXPECT_EQ(s[0].rule, (Rule{"PREROUTING", to_dnat}));
  EXPECT_EQ(s[1].rule, (Rule{"OUTPUT", to_dnat}));
  EXPECT_EQ(s[2].rule, (Rule{"FERRY-HOSTPORT-SETMARK",
                             "-m comment --comment \"ferry: hostport masquerade mark\" -j MARK --set-xmark 0x2000/0x2000"}));
  EXPECT_EQ(s[3].rule, (Rule{"FERRY-HOSTPORT-MASQ",
                             "-m comment --comment \"ferry: hostport masquerade\" -m mark --mark 0x2000/0x2000 -j MASQUERADE"}));
  EXPECT_EQ(s[4].rule, (Rule{"POSTROUTING",
                             "-m comment --comment \"ferry: hostport masquerade marked traffic\" -j FERRY-HOSTPORT-MASQ"}));
  EXPECT_TRUE(s[4].prepend);
  EXPECT_FALSE(s[0].prepend);

  c.mark_masq_bit = 0;
  EXPECT_NE(shared_rules(c)[2].rule.spec.find("--set-xmark 0x1/0x1"), std::string::npos);
  c.mark_masq_bit = 31;
  EXPECT_NE(shared_rules(c)[3].rule.spec.find("--mark 0x80000000/0x80000000"), std::string::npos);
}

TEST(PortmapRules, ExternalSetMarkChainIsJumpedToAndNothingSharedIsMade) {
  Config c = config({mapping(8080, 80)});
  c.external_set_mark_chain = "KUBE-MARK-MASQ";
  ContainerRules r = render_container_rules(c, "ctr1", net("10.1.0.5/24"));
  EXPECT_NE(r.rules[0].spec.find("-j KUBE-MARK-MASQ"), std::string::npos);
  EXPECT_EQ(shared_rules(c).size(), 2u);
  EXPECT_EQ(shared_chains(c).size(), 1u);
}

const char* kSample = R"(# Generated by iptables-save v1.8.9 (nf_tables) on Mon Nov 23 11:29:47 2026
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:OTHER - [0:0]
-A POSTROUTING -s 10.1.0.0/24 -j OTHER
-A OTHER -j MASQUERADE
COMMIT
# Completed on Mon Nov 23 11:29:47 2026
)";

TEST(PortmapRules, ParseSave) {
  NatTable t = parse_save(kSample);
  EXPECT_EQ(t.chains, (std::set<std::string>{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "OTHER"}));
  EXPECT_EQ(t.chain_rules("POSTROUTING"), (std::vector<std::string>{"-s 10.1.0.0/24 -j OTHER"}));
  EXPECT_TRUE(t.has_rule({"OTHER", "-j MASQUERADE"}));
  EXPECT_FALSE(t.has_rule({"OTHER", "-j ACCEPT"}));
  EXPECT_TRUE(t.chain_rules("NOPE").empty());
}

// The table as it looks after render_add's script was applied (what iptables-save prints).
std::string applied(const Config& c, const ContainerRules& r) {
  std::string text = kSample;
  std::string extra = ":FERRY-HOSTPORT-DNAT - [0:0]\n:FERRY-HOSTPORT-MASQ - [0:0]\n:FERRY-HOSTPORT-SETMARK - [0:0]\n:" +
                      r.chain + " - [0:0]\n";
  for (const auto& s : shared_rules(c)) extra += "-A " + s.rule.chain + " " + s.rule.spec + "\n";
  for (const auto& e : r.entries) extra += "-A " + e.chain + " " + e.spec + "\n";
  for (const auto& x : r.rules) extra += "-A " + x.chain + " " + x.spec + "\n";
  return text.insert(text.find("COMMIT"), extra);
}

TEST(PortmapRules, RenderAddOnAnEmptyTableCreatesEverything) {
  Config c = config({mapping(8080, 80)});
  ContainerRules r = render_container_rules(c, "ctr1", net("10.1.0.5/24"));
  std::string got = render_add(parse_save(kSample), shared_rules(c), shared_chains(c), r);
  std::string want =
      "*nat\n"
      ":FERRY-HOSTPORT-DNAT - [0:0]\n"
      ":FERRY-HOSTPORT-SETMARK - [0:0]\n"
      ":FERRY-HOSTPORT-MASQ - [0:0]\n"
      ":" + kChain + " - [0:0]\n"
      "-A PREROUTING -m comment --comment \"ferry: hostport dnat\" -m addrtype --dst-type LOCAL -j FERRY-HOSTPORT-DNAT\n"
      "-A OUTPUT -m comment --comment \"ferry: hostport dnat\" -m addrtype --dst-type LOCAL -j FERRY-HOSTPORT-DNAT\n"
      "-A FERRY-HOSTPORT-SETMARK -m comment --comment \"ferry: hostport masquerade mark\" -j MARK --set-xmark 0x2000/0x2000\n"
      "-A FERRY-HOSTPORT-MASQ -m comment --comment \"ferry: hostport masquerade\" -m mark --mark 0x2000/0x2000 -j MASQUERADE\n"
      "-I POSTROUTING 1 -m comment --comment \"ferry: hostport masquerade marked traffic\" -j FERRY-HOSTPORT-MASQ\n"
      "-A " + kChain + " -s 10.1.0.0/24 -p tcp -m tcp --dport 8080 " + kComment + " -j FERRY-HOSTPORT-SETMARK\n"
      "-A " + kChain + " -s 127.0.0.1/32 -p tcp -m tcp --dport 8080 " + kComment + " -j FERRY-HOSTPORT-SETMARK\n"
      "-A " + kChain + " -p tcp -m tcp --dport 8080 " + kComment + " -j DNAT --to-destination 10.1.0.5:80\n"
      "-I FERRY-HOSTPORT-DNAT 1 -p tcp " + kComment + " -m multiport --dports 8080 -j " + kChain + "\n"
      "COMMIT\n";
  EXPECT_EQ(got, want);
}

TEST(PortmapRules, RenderAddWithExternalMarkChainMakesOnlyTheDnatChain) {
  Config c = config({mapping(8080, 80)});
  c.external_set_mark_chain = "KUBE-MARK-MASQ";
  ContainerRules r = render_container_rules(c, "ctr1", net("10.1.0.5/24"));
  std::string got = render_add(parse_save(kSample), shared_rules(c), shared_chains(c), r);
  EXPECT_NE(got.find(":FERRY-HOSTPORT-DNAT - [0:0]\n"), std::string::npos);
  EXPECT_EQ(got.find("SETMARK"), std::string::npos);
  EXPECT_EQ(got.find("FERRY-HOSTPORT-MASQ"), std::string::npos);
  EXPECT_EQ(got.find("POSTROUTING"), std::string::npos);
  EXPECT_NE(got.find("-s 10.1.0.0/24 -p tcp -m tcp --dport 8080 " + kComment + " -j KUBE-MARK-MASQ\n"),
            std::string::npos);
}

TEST(PortmapRules, RenderAddAgainReplacesOnlyThisContainer) {
  Config c = config({mapping(8080, 80), mapping(53, 53, "udp")});
  ContainerRules r = render_container_rules(c, "ctr1", net("10.1.0.5/24"));
  NatTable t = parse_save(applied(c, r));
  std::string got = render_add(t, shared_rules(c), shared_chains(c), r);
  // Shared chains and jumps exist: nothing shared is declared or added again; the old
  // entries are deleted and re-inserted (udp before... in rendered order), the chain flushed.
  EXPECT_EQ(got.find(":FERRY-HOSTPORT"), std::string::npos);
  EXPECT_EQ(got.find("-A PREROUTING"), std::string::npos);
  EXPECT_EQ(got.find("POSTROUTING"), std::string::npos);
  EXPECT_NE(got.find(":" + kChain + " - [0:0]\n"), std::string::npos);
  EXPECT_NE(got.find("-D FERRY-HOSTPORT-DNAT " + r.entries[0].spec + "\n"), std::string::npos);
  EXPECT_NE(got.find("-D FERRY-HOSTPORT-DNAT " + r.entries[1].spec + "\n"), std::string::npos);
  size_t first = got.find("-I FERRY-HOSTPORT-DNAT 1 " + r.entries[0].spec);
  size_t second = got.find("-I FERRY-HOSTPORT-DNAT 1 " + r.entries[1].spec);
  ASSERT_NE(first, std::string::npos);
  ASSERT_NE(second, std::string::npos);
  EXPECT_LT(second, first);  // inserted last-to-first, so they end up in rendered order

  // Another container's ADD on the same table leaves ctr1's entries alone.
  ContainerRules other = render_container_rules(c, "ctr2", net("10.1.0.6/24"));
  std::string got2 = render_add(t, shared_rules(c), shared_chains(c), other);
  EXPECT_EQ(got2.find("-D "), std::string::npos);
  EXPECT_EQ(got2.find(kChain), std::string::npos);
}

TEST(PortmapRules, RenderDel) {
  Config c = config({mapping(8080, 80)});
  ContainerRules r = render_container_rules(c, "ctr1", net("10.1.0.5/24"));
  NatTable t = parse_save(applied(c, r));
  auto got = render_del(t, {kChain});
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "*nat\n:" + kChain + " - [0:0]\n-D FERRY-HOSTPORT-DNAT " + r.entries[0].spec + "\n-X " +
                      kChain + "\nCOMMIT\n");
  EXPECT_FALSE(render_del(parse_save(kSample), {kChain}));  // already gone: nothing to run
  EXPECT_FALSE(render_del(t, {container_chain("mynet", "ctr2")}));
}

TEST(PortmapRules, CheckFindsMissingAndUnexpectedRules) {
  Config c = config({mapping(8080, 80)});
  ContainerRules r = render_container_rules(c, "ctr1", net("10.1.0.5/24"));
  std::string full = applied(c, r);
  EXPECT_TRUE(check_rules(parse_save(full), shared_rules(c), r).empty());

  std::string dnat_line = "-A " + kChain + " " + r.rules[2].spec + "\n";
  std::string without = full;
  without.erase(without.find(dnat_line), dnat_line.size());
  auto findings = check_rules(parse_save(without), shared_rules(c), r);
  ASSERT_EQ(findings.size(), 1u);
  EXPECT_EQ(findings[0], "missing rule in " + kChain + ": " + r.rules[2].spec);

  std::string changed = full;
  changed.replace(changed.find("10.1.0.5:80"), 11, "10.1.0.9:80");
  findings = check_rules(parse_save(changed), shared_rules(c), r);
  ASSERT_EQ(findings.size(), 2u);
  EXPECT_NE(findings[1].find("unexpected rule"), std::string::npos);

  findings = check_rules(parse_save(kSample), shared_rules(c), r);
  EXPECT_NE(std::find(findings.begin(), findings.end(), "missing chain " + kChain), findings.end());
}

TEST(PortmapRules, CheckWithConditionsToleratesIptablesReordering) {
  Config c = config({mapping(8080, 80)});
  c.conditions_v4 = {"-s", "10.0.0.0/8"};
  ContainerRules r = render_container_rules(c, "ctr1", net("10.1.0.5/24"));
  std::string text = applied(c, r);
  // iptables-save prints -s first.
  text.replace(text.find("-A FERRY-HOSTPORT-DNAT -p tcp"), 29, "-A FERRY-HOSTPORT-DNAT -s 10.0.0.0/8 -p tcp");
  text.replace(text.find(" -s 10.0.0.0/8 -j"), 17, " -j");
  EXPECT_TRUE(check_rules(parse_save(text), shared_rules(c), r).empty());
}

TEST(PortmapRules, RuleOwner) {
  auto o = rule_owner("-p tcp " + kComment + " -j X");
  ASSERT_TRUE(o);
  EXPECT_EQ(o->network, "mynet");
  EXPECT_EQ(o->container_id, "ctr1");
  EXPECT_FALSE(rule_owner("-m comment --comment \"ferry: hostport dnat\" -j X"));
  EXPECT_FALSE(rule_owner("-j X"));
}

TEST(PortmapRules, OrphanChainsOfThisNetworkOnly) {
  Config c = config({mapping(8080, 80)});
  ContainerRules keep = render_container_rules(c, "keep", net("10.1.0.5/24"));
  ContainerRules gone = render_container_rules(c, "gone", net("10.1.0.6/24"));
  Config other = c;
  other.network = "othernet";
  ContainerRules foreign = render_container_rules(other, "gone", net("10.2.0.6/24"));
  std::string text = kSample;
  std::string extra;
  for (const ContainerRules* r : {&keep, &gone, &foreign}) {
    extra += ":" + r->chain + " - [0:0]\n";
    for (const auto& x : r->rules) extra += "-A " + x.chain + " " + x.spec + "\n";
  }
  // A chain whose comment does not hash to its name is not attributed to anyone.
  extra += ":FERRY-DN-0000000000000000 - [0:0]\n-A FERRY-DN-0000000000000000 " + kComment + " -j ACCEPT\n";
  text.insert(text.find("COMMIT"), extra);
  EXPECT_EQ(orphan_chains(parse_save(text), "mynet", {"keep"}), (std::vector<std::string>{gone.chain}));
  EXPECT_TRUE(orphan_chains(parse_save(text), "mynet", {"keep", "gone"}).empty());
}

}  // namespace
}  // namespace ferry::portmap
