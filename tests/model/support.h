// Helpers shared by the model tests.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <string_view>

#include "agent/model/model.h"

namespace ferry::model::testing {

inline cni::IPAddr ip(const char* s) {
  auto a = cni::IPAddr::parse(s);
  EXPECT_TRUE(a) << s;
  return a.value_or(cni::IPAddr{});
}

inline cni::IPNet net(const char* s) {
  auto n = cni::IPNet::parse(s);
  EXPECT_TRUE(n) << s;
  return n.value_or(cni::IPNet{});
}

// Decodes a file expected to hold exactly one good object of type T.
template <typename T>
T decode_one(std::string_view text, std::string_view file = "test.yaml") {
  ManifestDecode d = decode_manifest(file, text);
  EXPECT_TRUE(d.errors.empty()) << (d.errors.empty() ? "" : d.errors.front().message);
  EXPECT_EQ(d.objects.size(), 1u);
  if (d.objects.size() != 1 || !std::holds_alternative<T>(d.objects[0])) {
    ADD_FAILURE() << "no object of the expected kind";
    return T{};
  }
  return std::get<T>(d.objects[0]);
}

// The single error message a file decodes to (and that it yields no object).
inline std::string only_error(std::string_view text, std::string_view file = "test.yaml") {
  ManifestDecode d = decode_manifest(file, text);
  EXPECT_TRUE(d.objects.empty());
  EXPECT_EQ(d.errors.size(), 1u);
  return d.errors.empty() ? std::string() : d.errors.front().message;
}

}  // namespace ferry::model::testing
