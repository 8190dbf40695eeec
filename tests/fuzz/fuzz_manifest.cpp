// Fuzzes manifest decoding: arbitrary bytes as a YAML and as a JSON manifest file, each object
// re-checked through decode_object, and the result fed to ClusterState. Decoding must never
// throw or crash; a decoded object must survive ClusterState unchanged.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "agent/model/model.h"

namespace model = ferry::model;

namespace {

void check(const model::ManifestDecode& d) {
  // A syntax error makes the whole file an error: no objects, exactly one message.
  if (d.syntax_error && (!d.objects.empty() || d.errors.size() != 1)) __builtin_trap();
  for (const auto& e : d.errors)
    if (e.message.empty()) __builtin_trap();

  model::ClusterState state;
  bool changed = state.replace_all(d.objects);
  if (changed != !d.objects.empty()) __builtin_trap();
  if (state.replace_all(d.objects)) __builtin_trap();  // the same snapshot again is no change
  for (const auto& o : d.objects) {
    const model::Object* stored = state.find(model::key_of(o));
    if (!stored) __builtin_trap();
    (void)state.pods_on_node("n1");
    (void)state.counts();
  }
  for (const auto* np : state.network_policies())
    for (const auto& rule : np->ingress)
      for (const auto& peer : rule.peers)
        if (peer.pod_selector) (void)peer.pod_selector->matches({{"app", "web"}});
  uint64_t rev = state.revision();
  for (const auto& o : d.objects) state.erase(model::key_of(o));
  if (state.size() != 0 || (!d.objects.empty() && state.revision() == rev)) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  check(model::decode_manifest("fuzz.yaml", text));
  check(model::decode_manifest("fuzz.json", text));
  // The API path: one JSON object, with and without a kind hint.
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (!j.is_discarded()) {
    (void)model::decode_object(j);
    (void)model::decode_object(j, model::Kind::Pod);
  }
  return 0;
}
