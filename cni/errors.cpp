// The spec's error object: a code, a short message and the details that say what to fix.
#include "cni/cni.h"

namespace ferry::cni {

namespace {
std::string describe(const std::string& msg, const std::string& details) {
  return details.empty() ? msg : msg + ": " + details;
}
}  // namespace

Error::Error(int code, std::string msg, std::string details)
    : std::runtime_error(describe(msg, details)),
      code_(code),
      msg_(std::move(msg)),
      details_(std::move(details)) {}

// An empty `cni_version` leaves "cniVersion" out (libcni ignores it when reading errors).
json Error::to_json(std::string_view cni_version) const {
  json j = json::object();
  if (!cni_version.empty()) j["cniVersion"] = std::string(cni_version);
  j["code"] = code_;
  j["msg"] = msg_;
  if (!details_.empty()) j["details"] = details_;
  return j;
}

}  // namespace ferry::cni
