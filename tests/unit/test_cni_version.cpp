// Spec version comparison and the per-verb version gates.
#include <gtest/gtest.h>

#include "cni/cni.h"

namespace cni = ferry::cni;

TEST(CniVersion, ComparesNumericallyNotLexically) {
  EXPECT_LT(cni::compare_versions("0.4.0", "1.0.0"), 0);
  EXPECT_GT(cni::compare_versions("1.10.0", "1.9.0"), 0);
  EXPECT_EQ(cni::compare_versions("1.1.0", "1.1.0"), 0);
  EXPECT_EQ(cni::compare_versions("1.1", "1.1.0"), 0);
  EXPECT_LT(cni::compare_versions("0.3.0", "0.3.1"), 0);
}

TEST(CniVersion, GarbageIsADecodingFailure) {
  for (const char* bad : {"", "1..0", "a.b.c", "1.0.0-rc1", ".1", "1.", "-1.0"}) {
    try {
      cni::compare_versions(bad, "1.0.0");
      ADD_FAILURE() << "accepted " << bad;
    } catch (const cni::Error& e) {
      EXPECT_EQ(e.code(), cni::kDecodingFailure) << bad;
    }
  }
}

TEST(CniVersion, SupportedIsAnExactMatch) {
  for (auto v : cni::kSupportedVersions) EXPECT_TRUE(cni::version_supported(v));
  EXPECT_FALSE(cni::version_supported("0.1.0"));
  EXPECT_FALSE(cni::version_supported("0.2.0"));
  EXPECT_FALSE(cni::version_supported("1.0"));
  EXPECT_FALSE(cni::version_supported("2.0.0"));
  EXPECT_FALSE(cni::version_supported(""));
}

TEST(CniVersion, VerbGates) {
  EXPECT_FALSE(cni::version_has_check("0.3.1"));
  EXPECT_TRUE(cni::version_has_check("0.4.0"));
  EXPECT_TRUE(cni::version_has_check("1.1.0"));
  EXPECT_FALSE(cni::version_has_check("garbage"));
  EXPECT_FALSE(cni::version_has_gc_status("1.0.0"));
  EXPECT_TRUE(cni::version_has_gc_status("1.1.0"));
}
