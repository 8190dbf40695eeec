// The spec's error object as printed on stdout.
#include <gtest/gtest.h>

#include "cni/cni.h"

namespace cni = ferry::cni;
using cni::json;

TEST(CniError, JsonCarriesCodeMsgDetails) {
  cni::Error e(cni::kInvalidConfig, "Invalid Configuration", "Network 192.168.0.0/31 too small to allocate from.");
  EXPECT_EQ(e.to_json("1.1.0"), json::parse(R"({"cniVersion":"1.1.0","code":7,"msg":"Invalid Configuration",
      "details":"Network 192.168.0.0/31 too small to allocate from."})"));
  EXPECT_EQ(e.code(), 7);
  EXPECT_EQ(e.msg(), "Invalid Configuration");
  EXPECT_STREQ(e.what(), "Invalid Configuration: Network 192.168.0.0/31 too small to allocate from.");
}

TEST(CniError, EmptyDetailsAndVersionAreOmitted) {
  cni::Error e(cni::kTryAgainLater, "busy");
  EXPECT_EQ(e.to_json("0.4.0"), json::parse(R"({"cniVersion":"0.4.0","code":11,"msg":"busy"})"));
  EXPECT_EQ(e.to_json(""), json::parse(R"({"code":11,"msg":"busy"})"));
  EXPECT_STREQ(e.what(), "busy");
}
