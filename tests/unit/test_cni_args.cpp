// CNI_ARGS parsing: pairs, standard and plugin keys, IgnoreUnknown.
#include <gtest/gtest.h>

#include "cni/cni.h"

namespace cni = ferry::cni;

TEST(CniArgs, ParsesPairsCaseSensitively) {
  auto a = cni::parse_cni_args("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;IP=10.0.0.5", {"IP"});
  ASSERT_EQ(a.pairs.size(), 3u);
  EXPECT_EQ(a.get("K8S_POD_NAMESPACE"), "ns");
  EXPECT_EQ(a.get("IP"), "10.0.0.5");
  EXPECT_EQ(a.get("ip"), std::nullopt);
  EXPECT_EQ(a.get("missing"), std::nullopt);
}

TEST(CniArgs, EmptyTextAndEmptyValues) {
  EXPECT_TRUE(cni::parse_cni_args("").pairs.empty());
  auto a = cni::parse_cni_args("K8S_POD_NAME=;K8S_POD_UID=u;");
  EXPECT_EQ(a.get("K8S_POD_NAME"), "");
  EXPECT_EQ(a.get("K8S_POD_UID"), "u");
}

TEST(CniArgs, LastDuplicateWins) {
  EXPECT_EQ(cni::parse_cni_args("K8S_POD_NAME=a;K8S_POD_NAME=b").get("K8S_POD_NAME"), "b");
}

TEST(CniArgs, UnknownKeysAreAnErrorNamingThem) {
  try {
    cni::parse_cni_args("K8S_POD_NAME=p;MAC=aa:bb;ip=1.2.3.4", {"IP"});
    FAIL() << "accepted unknown keys";
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), cni::kInvalidEnvironment);
    EXPECT_EQ(e.msg(), R"(ARGS: unknown args ["MAC=aa:bb" "ip=1.2.3.4"])");
    EXPECT_NE(e.details().find("IgnoreUnknown=1"), std::string::npos);
    EXPECT_NE(e.details().find("IP"), std::string::npos);
  }
}

TEST(CniArgs, IgnoreUnknownInAnyCase) {
  for (const char* v : {"1", "true", "True", "TRUE"}) {
    auto a = cni::parse_cni_args(std::string("IgnoreUnknown=") + v + ";FOO=bar");
    EXPECT_EQ(a.get("FOO"), "bar") << v;
  }
  EXPECT_THROW(cni::parse_cni_args("IgnoreUnknown=0;FOO=bar"), cni::Error);
  EXPECT_THROW(cni::parse_cni_args("IgnoreUnknown=false;FOO=bar"), cni::Error);
  // The key itself is case-sensitive, as in libcni.
  EXPECT_THROW(cni::parse_cni_args("ignoreunknown=1;FOO=bar"), cni::Error);
  try {
    cni::parse_cni_args("IgnoreUnknown=yes");
    FAIL();
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), cni::kInvalidEnvironment);
    EXPECT_NE(e.msg().find("IgnoreUnknown"), std::string::npos);
  }
}

TEST(CniArgs, BadPairsAreInvalidEnvironment) {
  for (const char* bad : {"K8S_POD_NAME", "A=b=c", "IgnoreUnknown=1;novalue", "=x=y"}) {
    try {
      cni::parse_cni_args(bad);
      ADD_FAILURE() << "accepted " << bad;
    } catch (const cni::Error& e) {
      EXPECT_EQ(e.code(), cni::kInvalidEnvironment) << bad;
      EXPECT_NE(e.msg().find("ARGS: invalid pair"), std::string::npos) << e.msg();
    }
  }
}
