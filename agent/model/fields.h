// agent/model/fields.h — private to agent/model: reading typed fields out of Kubernetes JSON
// with a field path for every error, and the Kubernetes name/label syntax checks.
//
// The helpers throw FieldError (path + what was wrong); decode_object catches it and turns it
// into a DecodeProblem, so nothing thrown here leaves the module.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/model/model.h"

namespace ferry::model::fields {

using json = nlohmann::json;

struct FieldError {
  std::string path;  // "spec.containers[0].ports[0].containerPort"; "" = the object itself
  std::string what;  // "expected an integer 1-65535, got \"eighty\""
};

[[noreturn]] void fail(std::string path, std::string what);

// How a value appears after "got": strings quoted (and shortened), numbers and booleans as
// written, containers as "an object" / "an array". Never recurses, never throws.
std::string describe(const json& v);

std::string child(const std::string& path, std::string_view key);  // "spec" + "ports" -> "spec.ports"
std::string item(const std::string& path, std::size_t index);      // "spec.ports" + 0 -> "spec.ports[0]"
std::string entry(const std::string& path, std::string_view key);  // map entry: metadata.labels["app"]

// A field of an object, or nullptr when absent or null (Kubernetes treats both as unset).
const json* find(const json& obj, std::string_view key);

// `v` (at `path`) must be an object; returns it.
const json& as_object(const json& v, const std::string& path);
// Elements of an array field; empty when absent.
std::vector<const json*> array_field(const json& obj, const std::string& path, std::string_view key);

std::string string_field(const json& obj, const std::string& path, std::string_view key);  // "" when absent
std::string required_string(const json& obj, const std::string& path, std::string_view key);
std::optional<bool> optional_bool(const json& obj, const std::string& path, std::string_view key);
bool bool_field(const json& obj, const std::string& path, std::string_view key, bool fallback);

// An integer in [lo, hi]; floats ("80.0") and strings ("80") are rejected as the API does.
int integer(const json& v, const std::string& path, int64_t lo, int64_t hi);
std::optional<int> optional_int(const json& obj, const std::string& path, std::string_view key,
                                int64_t lo, int64_t hi);

// A string that must be one of `choices`; `fallback` when absent.
std::string one_of(const json& obj, const std::string& path, std::string_view key,
                   std::initializer_list<std::string_view> choices, std::string_view fallback);

// A map of strings (annotations); check_labels additionally checks label key/value syntax.
std::map<std::string, std::string> string_map(const json& obj, const std::string& path,
                                              std::string_view key);
Labels labels_field(const json& obj, const std::string& path, std::string_view key);

Protocol protocol_field(const json& obj, const std::string& path, std::string_view key = "protocol");
cni::IPAddr ip_value(const json& v, const std::string& path);
cni::IPNet cidr_value(const json& v, const std::string& path);  // network form
// A port: integer 1-65535 or an IANA service name ("http").
IntOrString port_value(const json& v, const std::string& path);

// Kubernetes syntax rules (apimachinery validation); an empty result means valid.
std::string check_dns_subdomain(std::string_view s);  // object names, node names
std::string check_dns_label(std::string_view s);      // namespace names
std::string check_label_key(std::string_view s);
std::string check_label_value(std::string_view s);
std::string check_port_name(std::string_view s);      // IANA_SVC_NAME
bool valid_utf8(std::string_view s);

// decode_object's result in parts, so manifest messages can put the object's label in their
// own prefix: "pods.yaml: document 2 (Pod x/a): <detail>".
struct Outcome {
  std::optional<Object> object;
  std::string label;   // "Pod x/a", "Pod" (no name), "" (no kind)
  std::string detail;  // "<path>: <what>" or "<what>"; empty when decoded or skipped
  std::string note;    // set when the kind is skipped
  std::optional<ObjectKey> key;
};
Outcome decode_outcome(const json& j, std::optional<Kind> kind_hint);

}  // namespace ferry::model::fields
