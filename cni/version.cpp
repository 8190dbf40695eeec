// Spec version arithmetic: dotted numeric versions, compared component by component.
#include <charconv>

#include "cni/cni.h"

namespace ferry::cni {

namespace {

// "1.10.0" -> {1,10,0}. Anything that is not digits separated by single dots is garbage.
std::vector<uint64_t> split_version(std::string_view v) {
  std::vector<uint64_t> parts;
  if (v.empty()) throw Error(kDecodingFailure, "invalid version \"\"", "a version looks like 1.0.0");
  size_t pos = 0;
  while (true) {
    size_t dot = v.find('.', pos);
    std::string_view part = v.substr(pos, dot == std::string_view::npos ? v.npos : dot - pos);
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), n);
    if (part.empty() || part.size() > 9 || ec != std::errc() || end != part.data() + part.size())
      throw Error(kDecodingFailure, "invalid version \"" + std::string(v) + "\"",
                  "a version looks like 1.0.0");
    parts.push_back(n);
    if (dot == std::string_view::npos) break;
    pos = dot + 1;
  }
  return parts;
}

}  // namespace

int compare_versions(std::string_view a, std::string_view b) {
  std::vector<uint64_t> pa = split_version(a), pb = split_version(b);
  size_t n = std::max(pa.size(), pb.size());
  pa.resize(n, 0);
  pb.resize(n, 0);
  for (size_t i = 0; i < n; ++i)
    if (pa[i] != pb[i]) return pa[i] < pb[i] ? -1 : 1;
  return 0;
}

// Exact string match, as libcni does: "1.0" is not "1.0.0".
bool version_supported(std::string_view v) {
  for (auto s : kSupportedVersions)
    if (s == v) return true;
  return false;
}

namespace {
bool at_least(std::string_view v, std::string_view min) {
  try {
    return compare_versions(v, min) >= 0;
  } catch (const Error&) {
    return false;
  }
}
}  // namespace

bool version_has_check(std::string_view v) { return at_least(v, "0.4.0"); }
bool version_has_gc_status(std::string_view v) { return at_least(v, "1.1.0"); }

}  // namespace ferry::cni
