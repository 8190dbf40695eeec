// port_range_prefixes: exact cover with the fewest aligned blocks.
#include <gtest/gtest.h>

#include <random>

#include "policy/policy.h"

namespace ferry::policy {
namespace {

std::vector<PortPrefix> P(std::initializer_list<PortPrefix> l) { return l; }

TEST(PortPrefixes, Examples) {
  EXPECT_EQ(port_range_prefixes(80, 81), P({{80, 15}}));
  EXPECT_EQ(port_range_prefixes(0, 65535), P({{0, 0}}));
  EXPECT_EQ(port_range_prefixes(80, 80), P({{80, 16}}));
  EXPECT_EQ(port_range_prefixes(65535, 65535), P({{65535, 16}}));
  EXPECT_EQ(port_range_prefixes(1, 65535).size(), 16u);
  EXPECT_EQ(port_range_prefixes(32768, 65535), P({{32768, 1}}));
  EXPECT_EQ(port_range_prefixes(79, 82), P({{79, 16}, {80, 15}, {82, 16}}));
  EXPECT_TRUE(port_range_prefixes(81, 80).empty());
}

// Checks that `prefixes` cover exactly [first, last], in order, each block aligned, and that
// no two neighbours could be one block (which with alignment makes the cover minimal).
void expect_exact(uint16_t first, uint16_t last) {
  auto prefixes = port_range_prefixes(first, last);
  uint32_t next = first;
  for (size_t i = 0; i < prefixes.size(); ++i) {
    const auto& p = prefixes[i];
    ASSERT_GE(p.len, 0);
    ASSERT_LE(p.len, 16);
    uint32_t size = 1u << (16 - p.len);
    ASSERT_EQ(p.port, next) << first << "-" << last << " block " << i;
    ASSERT_EQ(p.port % size, 0u) << "unaligned block " << p.port << "/" << p.len;
    next += size;
    if (i > 0) {
      const auto& q = prefixes[i - 1];
      bool mergeable = q.len == p.len && (q.port % (2u * size)) == 0;
      ASSERT_FALSE(mergeable) << first << "-" << last << ": " << q.port << "/" << q.len << " + " << p.port << "/" << p.len;
    }
  }
  ASSERT_EQ(next, uint32_t(last) + 1) << first << "-" << last;
}

TEST(PortPrefixes, EveryRangeNearTheEdgesAndAPowerOfTwo) {
  for (uint32_t a = 0; a < 300; ++a)
    for (uint32_t b = a; b < 300; ++b) expect_exact(static_cast<uint16_t>(a), static_cast<uint16_t>(b));
  for (uint32_t a = 65235; a <= 65535; ++a)
    for (uint32_t b = a; b <= 65535; ++b) expect_exact(static_cast<uint16_t>(a), static_cast<uint16_t>(b));
  for (uint32_t a = 32700; a < 32800; ++a)
    for (uint32_t b = a; b < 32900; ++b) expect_exact(static_cast<uint16_t>(a), static_cast<uint16_t>(b));
}

TEST(PortPrefixes, RandomRanges) {
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> port(0, 65535);
  for (int i = 0; i < 20000; ++i) {
    int a = port(rng), b = port(rng);
    expect_exact(static_cast<uint16_t>(std::min(a, b)), static_cast<uint16_t>(std::max(a, b)));
  }
}

// Membership through the prefixes equals membership in the range, for every port.
TEST(PortPrefixes, MembershipForEveryPort) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> port(0, 65535);
  for (int i = 0; i < 20; ++i) {
    int a = port(rng), b = port(rng);
    if (a > b) std::swap(a, b);
    auto prefixes = port_range_prefixes(static_cast<uint16_t>(a), static_cast<uint16_t>(b));
    for (int p = 0; p <= 65535; ++p) {
      bool in = false;
      for (const auto& pp : prefixes) {
        uint32_t mask = pp.len == 0 ? 0 : (0xffffu << (16 - pp.len)) & 0xffffu;
        in |= (uint32_t(p) & mask) == pp.port;
      }
      ASSERT_EQ(in, a <= p && p <= b) << a << "-" << b << " port " << p;
    }
  }
}

}  // namespace
}  // namespace ferry::policy
