// IPAddr / IPNet parsing, printing and arithmetic.
#include <gtest/gtest.h>

#include "cni/cni.h"

namespace cni = ferry::cni;

namespace {
cni::IPAddr ip(const char* s) {
  auto a = cni::IPAddr::parse(s);
  EXPECT_TRUE(a) << s;
  return a.value_or(cni::IPAddr{});
}
cni::IPNet net(const char* s) {
  auto n = cni::IPNet::parse(s);
  EXPECT_TRUE(n) << s;
  return n.value_or(cni::IPNet{});
}
}  // namespace

TEST(CniIP, ParsesAndPrintsCanonically) {
  EXPECT_EQ(ip("10.0.0.1").str(), "10.0.0.1");
  EXPECT_TRUE(ip("10.0.0.1").is_v4());
  EXPECT_EQ(ip("FD00:0:0::1").str(), "fd00::1");
  EXPECT_TRUE(ip("fd00::1").is_v6());
  EXPECT_EQ(ip("::ffff:1.2.3.4").str(), "::ffff:1.2.3.4");
  EXPECT_EQ(ip("::").str(), "::");
}

TEST(CniIP, RejectsMalformed) {
  for (const char* bad : {"", "10.0.0", "10.0.0.256", " 10.0.0.1", "10.0.0.1 ", "fd00::1::2", "fd00::1%eth0",
                          "10.0.0.1/24", "abc", "1.2.3.4.5"})
    EXPECT_FALSE(cni::IPAddr::parse(bad)) << bad;
  EXPECT_FALSE(cni::IPAddr::parse(std::string_view("10.0.0.1\0x", 10)));
}

TEST(CniIP, NextAndPrevCarryAndWrap) {
  EXPECT_EQ(ip("10.0.0.255").next().str(), "10.0.1.0");
  EXPECT_EQ(ip("10.0.1.0").prev().str(), "10.0.0.255");
  EXPECT_EQ(ip("255.255.255.255").next().str(), "0.0.0.0");
  EXPECT_EQ(ip("0.0.0.0").prev().str(), "255.255.255.255");
  EXPECT_EQ(ip("fd00::ffff").next().str(), "fd00::1:0");
  EXPECT_EQ(ip("fd00::1:0").prev().str(), "fd00::ffff");
  EXPECT_EQ(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").next().str(), "::");
}

TEST(CniIP, OrderingFollowsAddressValue) {
  EXPECT_LT(ip("10.0.0.2"), ip("10.0.0.10"));
  EXPECT_LT(ip("10.0.0.255"), ip("10.0.1.0"));
}

TEST(CniIPNet, ParsesKeepingHostBits) {
  cni::IPNet n = net("10.1.0.5/16");
  EXPECT_EQ(n.str(), "10.1.0.5/16");
  EXPECT_EQ(n.prefix, 16);
  EXPECT_EQ(n.network().str(), "10.1.0.0/16");
  EXPECT_EQ(n.broadcast().str(), "10.1.255.255");
  EXPECT_EQ(net("fd00:10:88::5/64").network().str(), "fd00:10:88::/64");
  EXPECT_EQ(net("fd00:10:88::5/64").broadcast().str(), "fd00:10:88:0:ffff:ffff:ffff:ffff");
  EXPECT_EQ(net("10.1.2.3/0").network().str(), "0.0.0.0/0");
  EXPECT_EQ(net("10.1.2.3/32").broadcast().str(), "10.1.2.3");
  EXPECT_EQ(net("10.1.2.3/27").network().str(), "10.1.2.0/27");
  EXPECT_EQ(net("10.1.2.3/27").broadcast().str(), "10.1.2.31");
}

TEST(CniIPNet, RejectsMalformed) {
  for (const char* bad : {"10.0.0.0", "10.0.0.0/", "10.0.0.0/33", "fd00::/129", "10.0.0.0/-1", "10.0.0.0/1a",
                          "/24", "10.0.0.0/ 24", "10.0.0.0/0024"})
    EXPECT_FALSE(cni::IPNet::parse(bad)) << bad;
}

TEST(CniIPNet, ContainsAndOverlaps) {
  EXPECT_TRUE(net("10.1.0.0/16").contains(ip("10.1.255.1")));
  EXPECT_FALSE(net("10.1.0.0/16").contains(ip("10.2.0.1")));
  EXPECT_FALSE(net("10.1.0.0/16").contains(ip("fd00::1")));
  EXPECT_TRUE(net("0.0.0.0/0").contains(ip("1.2.3.4")));
  EXPECT_TRUE(net("10.1.0.0/16").overlaps(net("10.1.5.0/24")));
  EXPECT_TRUE(net("10.1.5.0/24").overlaps(net("10.1.0.0/16")));
  EXPECT_FALSE(net("10.1.0.0/24").overlaps(net("10.1.1.0/24")));
  EXPECT_FALSE(net("10.1.0.0/16").overlaps(net("fd00::/8")));
  EXPECT_TRUE(net("fd00::/8").overlaps(net("fd00:1::/64")));
}
