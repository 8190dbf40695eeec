// net/ value types used by ferry-bridge: IP / prefix / MAC parsing and formatting.
#include <gtest/gtest.h>

#include "net/net.h"

namespace ferry::net {
namespace {

TEST(BridgeNetTypes, PrefixParseAndNetwork) {
  auto p = Prefix::parse("10.1.2.3/24");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->ip.family, AF_INET);
  EXPECT_EQ(p->len, 24);
  EXPECT_EQ(p->str(), "10.1.2.3/24");
  EXPECT_EQ(p->network().str(), "10.1.2.0/24");
  EXPECT_TRUE(p->contains(*Ip::parse("10.1.2.200")));
  EXPECT_FALSE(p->contains(*Ip::parse("10.1.3.1")));
  EXPECT_FALSE(p->contains(*Ip::parse("fd00::1")));
  EXPECT_EQ(Prefix::parse("fd00:1:2::7/61")->network().str(), "fd00:1:2::/61");
  EXPECT_EQ(Prefix::parse("fd00:1:2::7/29")->network().str(), "fd00::/29");
  EXPECT_EQ(Prefix::parse("fd00:1:ff00::7/39")->network().str(), "fd00:1:fe00::/39");
  EXPECT_EQ(Prefix::parse("0.0.0.0/0")->network().str(), "0.0.0.0/0");
  EXPECT_EQ(Prefix::parse("10.1.2.3/32")->network().str(), "10.1.2.3/32");
}

TEST(BridgeNetTypes, PrefixRejectsGarbage) {
  EXPECT_FALSE(Prefix::parse("10.1.2.3"));
  EXPECT_FALSE(Prefix::parse("10.1.2.3/33"));
  EXPECT_FALSE(Prefix::parse("fd00::/129"));
  EXPECT_FALSE(Prefix::parse("10.1.2.3/-1"));
  EXPECT_FALSE(Prefix::parse("10.1.2.3/2x"));
  EXPECT_FALSE(Prefix::parse("nonsense/8"));
}

TEST(BridgeNetTypes, IpCanonicalText) {
  EXPECT_EQ(Ip::parse("fd00:0:0::0010")->str(), "fd00::10");
  EXPECT_FALSE(Ip::parse("10.1.2"));
  EXPECT_EQ(*Ip::parse("10.0.0.1"), *Ip::parse("10.0.0.1"));
}

TEST(BridgeNetTypes, Mac) {
  auto m = parse_mac("C2:11:22:33:44:5f");
  ASSERT_TRUE(m);
  EXPECT_EQ(mac_str(*m), "c2:11:22:33:44:5f");
  EXPECT_EQ(mac_str(*parse_mac("c2-11-22-33-44-55")), "c2:11:22:33:44:55");
  EXPECT_FALSE(parse_mac("c2:11:22:33:44"));
  EXPECT_FALSE(parse_mac("c2:11:22:33:44:5g"));
  EXPECT_FALSE(parse_mac("c2:11:22:33:44:55:66"));
  Mac r = random_mac();
  EXPECT_EQ(r[0] & 0x01, 0) << "unicast";
  EXPECT_EQ(r[0] & 0x02, 0x02) << "locally administered";
  EXPECT_NE(random_mac(), r);
}

}  // namespace
}  // namespace ferry::net
