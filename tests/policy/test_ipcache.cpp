// The ipcache: its contents, and that ipBlock regions come out exact under longest-prefix match.
#include <gtest/gtest.h>

#include <random>

#include "tests/policy/fixture.h"

namespace ferry::policy::testing {
namespace {

std::vector<std::string> prefixes_of(const dataplane::PolicySet& set) {
  std::vector<std::string> out;
  for (const auto& e : set.ipcache) out.push_back(e.prefix.str());
  return out;
}

TEST(Ipcache, HoldsPodsNodesBlocksAndDefaultsInOrder) {
  PolicyWorld w;
  w.ns("x");
  w.pod("x/a", {"10.1.0.1", "fd00::1"}, {});
  w.pod("x/b", {"10.2.0.1"}, {}, {}, "node-1");
  model::Pod hostnet;
  hostnet.meta.name = "h";
  hostnet.meta.ns = "x";
  hostnet.host_network = true;
  hostnet.pod_ips = {*cni::IPAddr::parse("192.168.0.1")};
  model::Pod failed;
  failed.meta.name = "f";
  failed.meta.ns = "x";
  failed.phase = "Failed";
  failed.pod_ips = {*cni::IPAddr::parse("10.1.0.77")};
  w.cluster.upsert(hostnet);
  w.cluster.upsert(failed);
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p, namespace: x}
spec:
  podSelector: {}
  ingress: [{from: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}, {ipBlock: {cidr: "2001:db8::/32"}}]}]
  egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}}]}]
)");
  EXPECT_EQ(prefixes_of(w.compiled().set),
            (std::vector<std::string>{"0.0.0.0/0", "10.0.0.0/8", "10.0.0.1/32", "10.1.0.0/16", "10.1.0.1/32",
                                      "10.2.0.1/32", "192.168.0.1/32", "192.168.0.2/32", "::/0", "2001:db8::/32",
                                      "fd00::1/128"}));
  const auto& c = w.compiled();
  auto info = [&](const std::string& a) { return c.identities.at(lookup_identity(c.set, ip(a))); };
  EXPECT_EQ(info("10.1.0.77").kind, IdentityInfo::Kind::World);  // the failed pod's address
  EXPECT_EQ(info("10.1.0.77").ip_blocks, std::vector<std::string>{});
  EXPECT_EQ(info("10.2.0.1").kind, IdentityInfo::Kind::Pod);
  EXPECT_EQ(info("10.2.0.1").ip_blocks, std::vector<std::string>{"10.0.0.0/8 except 10.1.0.0/16"});
  EXPECT_EQ(info("10.3.3.3").ip_blocks, std::vector<std::string>{"10.0.0.0/8 except 10.1.0.0/16"});
  EXPECT_EQ(info("2001:db8::5").ip_blocks, std::vector<std::string>{"2001:db8::/32"});
  // Every identity named by the ipcache is in the result and the allocator.
  for (const auto& e : c.set.ipcache) {
    EXPECT_TRUE(c.identities.count(e.identity));
    EXPECT_TRUE(w.allocator.identities().count(e.identity));
  }
}

// Random block sets inside 10.0.0.0/22 (nested cidrs and excepts): for every address of the
// /22 and around it, the LPM identity's ip_blocks are exactly the blocks that contain it.
TEST(Ipcache, IpBlockRegionsAreExactUnderLongestPrefixMatch) {
  std::mt19937 rng(3);
  for (int round = 0; round < 60; ++round) {
    PolicyWorld w;
    w.ns("x");
    w.pod("x/a", {"10.0.1.7"}, {{"app", "a"}});
    std::vector<model::IPBlock> blocks;
    std::string peers;
    for (int b = 0; b < 1 + int(rng() % 4); ++b) {
      int len = 21 + int(rng() % 11);
      cni::IPAddr base = *cni::IPAddr::parse("10.0.0.0");
      base.bytes[2] = static_cast<uint8_t>(rng() % 4);
      base.bytes[3] = static_cast<uint8_t>(rng());
      model::IPBlock block;
      block.cidr = cni::IPNet{base, len}.network();
      std::string text = "{ipBlock: {cidr: " + block.cidr.str() + ", except: [";
      for (int e = 0; e < int(rng() % 3) && len < 32; ++e) {
        cni::IPAddr at = block.cidr.addr;
        at.bytes[3] = static_cast<uint8_t>(at.bytes[3] | (rng() & 0xff & ((1u << std::min(8, 32 - len)) - 1)));
        if (len < 24) at.bytes[2] = static_cast<uint8_t>(at.bytes[2] | (rng() & ((1u << (24 - len)) - 1)));
        cni::IPNet except = cni::IPNet{at, len + 1 + int(rng() % (32 - len))}.network();
        block.except.push_back(except);
        text += (e ? ", " : "") + except.str();
      }
      blocks.push_back(block);
      peers += (b ? ", " : "") + text + "]}}";
    }
    w.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p, namespace: x}\n"
            "spec: {podSelector: {}, ingress: [{from: [" + peers + "]}]}\n");
    const auto& c = w.compiled();
    for (uint32_t n = 0; n < 1024 + 64; ++n) {
      uint32_t v = (10u << 24) + n - 32;  // 9.255.255.224 .. 10.0.4.31
      cni::IPAddr a;
      a.family = AF_INET;
      for (int i = 0; i < 4; ++i) a.bytes[static_cast<size_t>(i)] = static_cast<uint8_t>(v >> (24 - 8 * i));
      std::vector<std::string> want;
      for (const auto& b : blocks) {
        bool in = b.cidr.contains(a);
        for (const auto& e : b.except) in = in && !e.contains(a);
        if (in) want.push_back(canonical_ip_block(b));
      }
      std::sort(want.begin(), want.end());
      want.erase(std::unique(want.begin(), want.end()), want.end());
      const auto& got = c.identities.at(lookup_identity(c.set, net::Ip{a.family, a.bytes}));
      ASSERT_EQ(got.ip_blocks, want) << "round " << round << " address " << a.str() << " blocks " << peers;
    }
  }
}

TEST(Ipcache, SameBlockInTwoPoliciesIsOneBlock) {
  PolicyWorld w;
  w.ns("x");
  w.pod("x/a", {"10.1.0.1"});
  w.apply(R"(
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p1, namespace: x}
spec: {podSelector: {}, ingress: [{from: [{ipBlock: {cidr: 8.8.0.0/16, except: [8.8.8.0/24, 8.8.4.0/24]}}]}]}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: p2, namespace: x}
spec: {podSelector: {}, egress: [{to: [{ipBlock: {cidr: 8.8.0.0/16, except: [8.8.4.0/24, 8.8.8.0/24]}}]}]}
)");
  const auto& c = w.compiled();
  EXPECT_EQ(c.identities.at(lookup_identity(c.set, ip("8.8.1.1"))).ip_blocks,
            std::vector<std::string>{"8.8.0.0/16 except 8.8.4.0/24,8.8.8.0/24"});
  EXPECT_EQ(lookup_identity(c.set, ip("8.8.8.8")), dataplane::kIdentityWorld);
}

}  // namespace
}  // namespace ferry::policy::testing
