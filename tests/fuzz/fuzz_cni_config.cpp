// Fuzzes everything that decodes configuration or results: parse_net_conf, the result
// parser/renderer for every version, parse_network_list and build_plugin_config.
// cni::Error is the expected way to reject input; anything else (another exception, a
// crash, a sanitizer report) is a finding.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cni/cni.h"

namespace cni = ferry::cni;
using cni::json;

namespace {

void check_result_round_trip(const json& j) {
  cni::Result r;
  try {
    r = cni::result_from_json(j);
  } catch (const cni::Error&) {
    return;
  }
  for (auto v : cni::kSupportedVersions) {
    json once = cni::result_to_json(r, v);  // must not throw for a supported version
    cni::Result back = cni::result_from_json(once);
    json twice = cni::result_to_json(back, v);
    if (once != twice) __builtin_trap();  // rendering must be a fixed point
  }
}

void fuzz_net_conf(std::string_view text) {
  try {
    cni::NetConf c = cni::parse_net_conf(text);
    (void)c.runtime("portMappings");
    (void)cni::port_mappings(c);
    (void)cni::valid_attachments(c.raw);
    if (c.prev_result) check_result_round_trip(cni::result_to_json(*c.prev_result, c.cni_version));
  } catch (const cni::Error&) {
  }
}

void fuzz_network_list(std::string_view text) {
  cni::NetworkList list;
  try {
    list = cni::parse_network_list(text);
  } catch (const cni::Error&) {
    return;
  }
  json caps = json::parse(R"({"portMappings":[{"hostPort":8080,"containerPort":80}],"ips":["10.0.0.5/24"]})");
  cni::Result prev;
  prev.ips.push_back({0, *cni::IPNet::parse("10.1.0.5/16"), cni::IPAddr::parse("10.1.0.1")});
  for (size_t i = 0; i < list.plugins.size(); ++i) {
    try {
      json conf = cni::build_plugin_config(list, i, caps, prev);
      // What a runtime hands a plugin must be something a plugin can parse (or reject cleanly).
      (void)cni::parse_net_conf(conf.dump());
    } catch (const cni::Error&) {
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  fuzz_net_conf(text);
  fuzz_network_list(text);
  json j = json::parse(text, nullptr, false);
  if (!j.is_discarded()) {
    check_result_round_trip(j);
    if (j.is_object() && j.contains("prevResult")) check_result_round_trip(j["prevResult"]);
    try {
      (void)cni::dns_from_json(j.is_object() && j.contains("dns") ? j["dns"] : j);
    } catch (const cni::Error&) {
    }
  }
  (void)cni::parse_resolv_conf(text);
  return 0;
}
