// Typed field access with field paths, and the Kubernetes syntax checks for names and labels.
#include "agent/model/fields.h"

#include <cctype>

namespace ferry::model::fields {

namespace {

constexpr std::size_t kMaxShownChars = 60;  // longer strings are shortened in messages

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

std::string quote_for_message(std::string_view s) {
  bool shortened = s.size() > kMaxShownChars;
  json j = std::string(s.substr(0, kMaxShownChars));
  // replace: a message must never throw on invalid UTF-8 (YAML strings are checked later).
  std::string out = j.dump(-1, ' ', false, json::error_handler_t::replace);
  if (shortened) out.insert(out.size() - 1, "...");
  return out;
}

[[noreturn]] void fail_type(const std::string& path, std::string_view expected, const json& v) {
  fail(path, std::string(expected) + ", got " + describe(v));
}

}  // namespace

void fail(std::string path, std::string what) { throw FieldError{std::move(path), std::move(what)}; }

std::string describe(const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return quote_for_message(v.get_ref<const std::string&>());
    case json::value_t::object:
      return "an object";
    case json::value_t::array:
      return "an array";
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float:
      return v.dump();
    default:
      return "a value";
  }
}

std::string child(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

std::string item(const std::string& path, std::size_t index) {
  return path + "[" + std::to_string(index) + "]";
}

std::string entry(const std::string& path, std::string_view key) { return path + "[" + quote_for_message(key) + "]"; }

const json* find(const json& obj, std::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

const json& as_object(const json& v, const std::string& path) {
  if (!v.is_object()) fail_type(path, "expected an object", v);
  return v;
}

std::vector<const json*> array_field(const json& obj, const std::string& path, std::string_view key) {
  std::vector<const json*> out;
  const json* v = find(obj, key);
  if (!v) return out;
  if (!v->is_array()) fail_type(child(path, key), "expected a list", *v);
  out.reserve(v->size());
  for (const json& e : *v) out.push_back(&e);
  return out;
}

std::string string_field(const json& obj, const std::string& path, std::string_view key) {
  const json* v = find(obj, key);
  if (!v) return {};
  if (!v->is_string()) fail_type(child(path, key), "expected a string", *v);
  return v->get<std::string>();
}

std::string required_string(const json& obj, const std::string& path, std::string_view key) {
  std::string s = string_field(obj, path, key);
  if (s.empty()) fail(child(path, key), "required");
  return s;
}

std::optional<bool> optional_bool(const json& obj, const std::string& path, std::string_view key) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) fail_type(child(path, key), "expected true or false", *v);
  return v->get<bool>();
}

bool bool_field(const json& obj, const std::string& path, std::string_view key, bool fallback) {
  return optional_bool(obj, path, key).value_or(fallback);
}

int integer(const json& v, const std::string& path, int64_t lo, int64_t hi) {
  std::string expected = "expected an integer " + std::to_string(lo) + "-" + std::to_string(hi);
  if (v.is_number_unsigned()) {
    uint64_t n = v.get<uint64_t>();
    if (n > static_cast<uint64_t>(hi) || (lo > 0 && n < static_cast<uint64_t>(lo))) fail_type(path, expected, v);
    return static_cast<int>(n);
  }
  if (!v.is_number_integer()) fail_type(path, expected, v);
  int64_t n = v.get<int64_t>();
  if (n < lo || n > hi) fail_type(path, expected, v);
  return static_cast<int>(n);
}

std::optional<int> optional_int(const json& obj, const std::string& path, std::string_view key,
                                int64_t lo, int64_t hi) {
  const json* v = find(obj, key);
  if (!v) return std::nullopt;
  return integer(*v, child(path, key), lo, hi);
}

std::string one_of(const json& obj, const std::string& path, std::string_view key,
                   std::initializer_list<std::string_view> choices, std::string_view fallback) {
  const json* v = find(obj, key);
  if (!v) return std::string(fallback);
  std::string expected = "expected one of ";
  bool first = true;
  for (auto c : choices) {
    expected += (first ? "" : ", ") + std::string(c);
    first = false;
  }
  if (!v->is_string()) fail_type(child(path, key), expected, *v);
  const auto& s = v->get_ref<const std::string&>();
  for (auto c : choices)
    if (s == c) return s;
  fail_type(child(path, key), expected, *v);
}

std::map<std::string, std::string> string_map(const json& obj, const std::string& path,
                                              std::string_view key) {
  std::map<std::string, std::string> out;
  const json* v = find(obj, key);
  if (!v) return out;
  std::string here = child(path, key);
  as_object(*v, here);
  for (const auto& [k, val] : v->items()) {
    if (val.is_null()) {  // as the API server decodes it: an empty string
      out.emplace(k, "");
      continue;
    }
    if (!val.is_string()) fail_type(entry(here, k), "expected a string", val);
    out.emplace(k, val.get<std::string>());
  }
  return out;
}

Labels labels_field(const json& obj, const std::string& path, std::string_view key) {
  Labels labels = string_map(obj, path, key);
  std::string here = child(path, key);
  for (const auto& [k, v] : labels) {
    if (auto bad = check_label_key(k); !bad.empty()) fail(entry(here, k), "invalid label key " + quote_for_message(k) + ": " + bad);
    if (auto bad = check_label_value(v); !bad.empty())
      fail(entry(here, k), "invalid label value " + quote_for_message(v) + ": " + bad);
  }
  return labels;
}

Protocol protocol_field(const json& obj, const std::string& path, std::string_view key) {
  std::string p = one_of(obj, path, key, {"TCP", "UDP", "SCTP"}, "TCP");
  return p == "UDP" ? Protocol::UDP : p == "SCTP" ? Protocol::SCTP : Protocol::TCP;
}

cni::IPAddr ip_value(const json& v, const std::string& path) {
  if (v.is_string())
    if (auto a = cni::IPAddr::parse(v.get_ref<const std::string&>())) return *a;
  fail_type(path, "expected an IP address", v);
}

cni::IPNet cidr_value(const json& v, const std::string& path) {
  if (v.is_string())
    if (auto n = cni::IPNet::parse(v.get_ref<const std::string&>())) return n->network();
  fail_type(path, "expected a CIDR like 10.0.0.0/16", v);
}

IntOrString port_value(const json& v, const std::string& path) {
  if (v.is_string()) {
    const auto& name = v.get_ref<const std::string&>();
    if (auto bad = check_port_name(name); !bad.empty()) fail(path, "invalid port name " + quote_for_message(name) + ": " + bad);
    return name;
  }
  if (v.is_number_integer() || v.is_number_unsigned()) return integer(v, path, 1, 65535);
  fail_type(path, "expected a port number 1-65535 or a port name", v);
}

// ---------------------------------------------------------------------------------------
// Syntax rules, as k8s.io/apimachinery/pkg/util/validation has them.

std::string check_dns_label(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.size() > 63) return "must be no more than 63 characters";
  for (char c : s)
    if (!is_lower_alnum(c) && c != '-') return "must consist of lower case alphanumeric characters or '-'";
  if (s.front() == '-' || s.back() == '-') return "must start and end with an alphanumeric character";
  return {};
}

std::string check_dns_subdomain(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.size() > 253) return "must be no more than 253 characters";
  std::size_t start = 0;
  while (true) {
    std::size_t dot = s.find('.', start);
    std::string_view part = s.substr(start, dot == s.npos ? s.npos : dot - start);
    if (part.empty() || !check_dns_label(part).empty())
      return "must consist of lower case alphanumeric characters, '-' or '.', and must start and "
             "end with an alphanumeric character";
    if (dot == s.npos) return {};
    start = dot + 1;
  }
}

namespace {
// The "name" part of a label key and a label value: alphanumerics, '-', '_', '.', starting and
// ending alphanumeric, at most 63 characters.
std::string check_qualified_part(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.size() > 63) return "must be no more than 63 characters";
  for (char c : s)
    if (!is_alnum(c) && c != '-' && c != '_' && c != '.')
      return "must consist of alphanumeric characters, '-', '_' or '.'";
  if (!is_alnum(s.front()) || !is_alnum(s.back())) return "must start and end with an alphanumeric character";
  return {};
}
}  // namespace

std::string check_label_key(std::string_view s) {
  std::size_t slash = s.find('/');
  if (slash != s.npos) {
    std::string_view prefix = s.substr(0, slash);
    if (auto bad = check_dns_subdomain(prefix); !bad.empty()) return "prefix " + bad;
    s = s.substr(slash + 1);
  }
  return check_qualified_part(s);
}

std::string check_label_value(std::string_view s) { return s.empty() ? std::string() : check_qualified_part(s); }

std::string check_port_name(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.size() > 15) return "must be no more than 15 characters";
  bool letter = false;
  for (char c : s) {
    if (!is_lower_alnum(c) && c != '-') return "must contain only lower case alphanumeric characters or '-'";
    letter |= (c >= 'a' && c <= 'z');
  }
  if (!letter) return "must contain at least one letter";
  if (s.front() == '-' || s.back() == '-') return "must not start or end with '-'";
  if (s.find("--") != s.npos) return "must not contain '--'";
  return {};
}

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    static constexpr uint32_t kMin[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

}  // namespace ferry::model::fields
