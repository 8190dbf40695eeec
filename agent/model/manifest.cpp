// Manifest files: YAML (multi-document) or JSON text -> JSON documents -> objects, with Lists
// unpacked and every problem prefixed by the file name and the document's position.
//
// YAML scalars are resolved by the YAML 1.2 core schema (what Kubernetes users expect from
// `port: 80` vs `port: "80"`): only true/false are booleans; yes/no/on/off stay strings.
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <sstream>
#include <yaml-cpp/eventhandler.h>
#include <charconv>
#include <cmath>

#include "agent/model/fields.h"

namespace ferry::model {

using fields::json;

namespace {

constexpr int kMaxDepth = 100;  // far beyond any Kubernetes object; bounds recursion everywhere

struct DocumentError {
  std::string what;
};

struct FileError {
  std::string what;
};

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

// ---------------------------------------------------------------------------------------
// YAML -> JSON

std::optional<json> core_schema_int(const std::string& s) {
  std::string_view digits = s;
  bool negative = false;
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  int base = 10;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'o')) {
    if (s[0] == '-' || s[0] == '+') return std::nullopt;  // the core schema has no signed hex/octal
    base = digits[1] == 'x' ? 16 : 8;
    digits.remove_prefix(2);
  }
  if (digits.empty()) return std::nullopt;
  for (char c : digits) {
    bool ok = base == 16 ? std::isxdigit(static_cast<unsigned char>(c)) != 0
                         : (c >= '0' && c <= (base == 8 ? '7' : '9'));
    if (!ok) return std::nullopt;
  }
  uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (ec == std::errc() && end == digits.data() + digits.size()) {
    if (!negative) return json(magnitude);
    if (magnitude <= static_cast<uint64_t>(INT64_MAX) + 1) return json(static_cast<int64_t>(0 - magnitude));
  }
  return json(std::strtod(s.c_str(), nullptr));  // out of range: a (rejected later) float
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?, .inf, -.inf, .nan (core schema floats)
std::optional<json> core_schema_float(const std::string& s) {
  std::string_view v = s;
  bool negative = false;
  if (!v.empty() && (v[0] == '-' || v[0] == '+')) {
    negative = v[0] == '-';
    v.remove_prefix(1);
  }
  if (v == ".inf" || v == ".Inf" || v == ".INF") return json(negative ? -HUGE_VAL : HUGE_VAL);
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return json(NAN);
  auto digits = [&](std::size_t& i) {
    std::size_t start = i;
    while (i < v.size() && v[i] >= '0' && v[i] <= '9') ++i;
    return i - start;
  };
  std::size_t i = 0;
  std::size_t whole = digits(i);
  std::size_t fraction = 0;
  bool dot = i < v.size() && v[i] == '.';
  if (dot) {
    ++i;
    fraction = digits(i);
  }
  if (whole == 0 && fraction == 0) return std::nullopt;
  if (i < v.size() && (v[i] == 'e' || v[i] == 'E')) {
    ++i;
    if (i < v.size() && (v[i] == '-' || v[i] == '+')) ++i;
    if (digits(i) == 0) return std::nullopt;
  }
  if (i != v.size()) return std::nullopt;
  return json(std::strtod(s.c_str(), nullptr));
}

json plain_scalar(const std::string& s) {
  if (s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  if (auto i = core_schema_int(s)) return *i;
  if (auto f = core_schema_float(s)) return *f;
  return s;
}

json tagged_scalar(const std::string& tag, const std::string& s) {
  static const std::string yaml_tag = "tag:yaml.org,2002:";
  if (tag == yaml_tag + "int")
    if (auto i = core_schema_int(s)) return *i;
  if (tag == yaml_tag + "float") {
    if (auto i = core_schema_int(s)) return json(i->get<double>());
    if (auto f = core_schema_float(s)) return *f;
  }
  if (tag == yaml_tag + "bool" && (s == "true" || s == "false")) return s == "true";
  if (tag == yaml_tag + "null") return nullptr;
  if (tag == yaml_tag + "int" || tag == yaml_tag + "float" || tag == yaml_tag + "bool")
    throw DocumentError{"value " + fields::describe(s) + " does not match its tag !!" + tag.substr(yaml_tag.size())};
  return s;  // !!str, a custom tag, or quoted/block ("!"): a string
}

// The file's documents, in order: a null entry is an empty document or one that failed to
// convert (its error at the same index of `errors`).
struct Documents {
  std::vector<json> docs;
  std::vector<std::string> errors;  // "" = converted
};

std::string at(const YAML::Mark& m) {
  return m.is_null() ? std::string() : "line " + std::to_string(m.line + 1) + ", column " + std::to_string(m.column + 1) + ": ";
}

// Builds JSON straight from yaml-cpp's parser events (no YAML::Node graph): one pass, with
// the nesting depth bounded, duplicate keys rejected, and a budget on what aliases may expand
// to (a few lines of anchors can otherwise describe gigabytes).
class JsonBuilder : public YAML::EventHandler {
 public:
  explicit JsonBuilder(std::size_t text_size) : node_budget_(4 * text_size + 1024), byte_budget_(2 * text_size + 1024) {}

  // Where the last document started: yaml-cpp 0.7 can loop forever emitting empty documents
  // at one position after stray text ("{a: 1},x"); the caller stops when it does not advance.
  int document_start() const { return document_start_; }
  // The last document: its JSON (null if empty) or its error.
  json take_document() { return std::move(root_); }
  std::string take_error() { return std::move(error_); }

  void OnDocumentStart(const YAML::Mark& mark) override {
    document_start_ = mark.pos;
    stack_.clear();
    anchors_.clear();
    root_ = nullptr;
    error_.clear();
  }
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override { add(mark, nullptr, 1, 0, anchor); }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (!error_.empty()) return;
    auto it = anchors_.find(anchor);
    if (it == anchors_.end()) return fail(mark, "an alias refers to a node that is not complete yet");
    add(mark, it->second.value, it->second.nodes, it->second.bytes, 0);
  }

  void OnScalar(const YAML::Mark& mark, const std::string& tag, YAML::anchor_t anchor, const std::string& value) override {
    if (!error_.empty()) return;
    if (!fields::valid_utf8(value)) return fail(mark, "text is not valid UTF-8");
    json v;
    try {
      v = tag == "?" ? plain_scalar(value) : tagged_scalar(tag, value);
    } catch (const DocumentError& e) {
      return fail(mark, e.what);
    }
    add(mark, std::move(v), 1, value.size(), anchor);
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open(mark, json::array(), anchor);
  }
  void OnSequenceEnd() override { close(); }
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor, YAML::EmitterStyle::value) override {
    open(mark, json::object(), anchor);
  }
  void OnMapEnd() override { close(); }

 private:
  struct Frame {
    json value;  // array or object under construction
    std::string path;
    std::optional<std::string> key;  // maps: the key whose value comes next
    std::size_t nodes = 1;
    std::size_t bytes = 0;
    YAML::anchor_t anchor = 0;
  };
  struct Anchored {
    json value;
    std::size_t nodes;
    std::size_t bytes;
  };

  void fail(const YAML::Mark& mark, const std::string& what) {
    if (error_.empty()) error_ = at(mark) + what;
  }

  // The field path of the next value.
  std::string position() const {
    if (stack_.empty()) return {};
    const Frame& top = stack_.back();
    if (top.value.is_array()) return fields::item(top.path, top.value.size());
    return top.key ? fields::child(top.path, *top.key) : top.path;
  }
  static std::string in(const std::string& path) { return path.empty() ? "" : " in " + path; }

  void open(const YAML::Mark& mark, json container, YAML::anchor_t anchor) {
    if (!error_.empty()) return;
    if (stack_.size() >= static_cast<std::size_t>(kMaxDepth))
      return fail(mark, "nested deeper than " + std::to_string(kMaxDepth) + " levels");
    if (!stack_.empty() && stack_.back().value.is_object() && !stack_.back().key)
      return fail(mark, "a mapping key must be a plain value, not a list or mapping" + in(stack_.back().path));
    if (!spend(mark, 1, 0)) return;
    stack_.push_back(Frame{std::move(container), position(), std::nullopt, 1, 0, anchor});
  }

  void close() {
    if (!error_.empty() || stack_.empty()) return;
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    YAML::Mark none = YAML::Mark::null_mark();
    if (f.value.is_object() && f.key) return fail(none, "a key without a value" + in(f.path));
    attach(none, std::move(f.value), f.nodes, f.bytes, f.anchor);
  }

  // A complete scalar/alias (its nodes and bytes are already counted in the caller for aliases).
  void add(const YAML::Mark& mark, json v, std::size_t nodes, std::size_t bytes, YAML::anchor_t anchor) {
    if (!error_.empty()) return;
    if (!spend(mark, nodes, bytes)) return;
    attach(mark, std::move(v), nodes, bytes, anchor);
  }

  void attach(const YAML::Mark& mark, json v, std::size_t nodes, std::size_t bytes, YAML::anchor_t anchor) {
    if (anchor != 0) anchors_[anchor] = Anchored{v, nodes, bytes};
    if (stack_.empty()) {
      root_ = std::move(v);
      return;
    }
    Frame& top = stack_.back();
    top.nodes += nodes;
    top.bytes += bytes;
    if (top.value.is_array()) {
      top.value.push_back(std::move(v));
    } else if (!top.key) {
      if (v.is_null()) top.key = "null";
      else if (v.is_string()) top.key = v.get<std::string>();
      else if (v.is_primitive()) top.key = v.dump();  // `80: x` has the key "80", as in Kubernetes
      else return fail(mark, "a mapping key must be a plain value, not a list or mapping" + in(top.path));
      if (top.value.contains(*top.key)) fail(mark, "duplicate key " + fields::describe(*top.key) + in(top.path));
    } else {
      top.value[*top.key] = std::move(v);
      top.key.reset();
    }
  }

  bool spend(const YAML::Mark& mark, std::size_t nodes, std::size_t bytes) {
    if (nodes > node_budget_ || bytes > byte_budget_) {
      fail(mark, "too large after expanding aliases");
      return false;
    }
    node_budget_ -= nodes;
    byte_budget_ -= bytes;
    return true;
  }

  std::size_t node_budget_;
  std::size_t byte_budget_;
  int document_start_ = -1;
  std::vector<Frame> stack_;
  std::map<YAML::anchor_t, Anchored> anchors_;
  json root_;
  std::string error_;
};

Documents parse_yaml(std::string_view text) {
  Documents out;
  std::istringstream in{std::string(text)};
  JsonBuilder builder(text.size());
  int previous_start = -1;
  try {
    YAML::Parser parser(in);
    while (parser.HandleNextDocument(builder)) {
      if (builder.document_start() == previous_start) {
        YAML::Mark m = YAML::Mark::null_mark();
        std::string_view before = text.substr(0, std::min<std::size_t>(static_cast<std::size_t>(previous_start), text.size()));
        m.line = static_cast<int>(std::count(before.begin(), before.end(), '\n'));
        m.column = static_cast<int>(before.size() - (before.rfind('\n') == before.npos ? 0 : before.rfind('\n') + 1));
        throw FileError{at(m) + "YAML syntax error: unexpected text after the end of a document"};
      }
      previous_start = builder.document_start();
      out.docs.push_back(builder.take_document());
      out.errors.push_back(builder.take_error());
      if (!out.errors.back().empty()) out.docs.back() = nullptr;
    }
  } catch (const YAML::Exception& e) {
    // e.msg without yaml-cpp's own prefix; lines and columns 1-based as editors show them.
    throw FileError{at(e.mark) + "YAML syntax error: " + e.msg};
  }
  return out;
}

Documents parse_json(std::string_view text) {
  struct TooDeep {};
  json::parser_callback_t limit_depth = [](int depth, json::parse_event_t, json&) {
    if (depth > kMaxDepth) throw TooDeep{};
    return true;
  };
  Documents out;
  if (text.find_first_not_of(" \t\r\n") == text.npos) return out;  // an empty file: no documents
  try {
    out.docs.push_back(json::parse(text, limit_depth));
    out.errors.emplace_back();
  } catch (const json::parse_error& e) {
    // nlohmann's message: "[json.exception.parse_error.101] parse error at line 1, column 5: ..."
    std::string what = e.what();
    auto at = what.find("parse error");
    throw FileError{"JSON " + (at == what.npos ? what : what.substr(at))};
  } catch (const TooDeep&) {
    throw FileError{"JSON nested deeper than " + std::to_string(kMaxDepth) + " levels"};
  }
  return out;
}

bool is_list(const json& doc) {
  const json* kind = fields::find(doc, "kind");
  return kind && kind->is_string() && ends_with(kind->get_ref<const std::string&>(), "List");
}

std::string prefix(std::string_view file, std::size_t doc, std::optional<std::size_t> list_item, const std::string& label) {
  std::string p = std::string(file) + ": document " + std::to_string(doc + 1);
  if (list_item) p += ", items[" + std::to_string(*list_item) + "]";
  if (!label.empty()) p += " (" + label + ")";
  return p + ": ";
}

void decode_into(ManifestDecode& out, std::string_view file, std::size_t doc, std::optional<std::size_t> list_item,
                 const json& j, std::optional<Kind> hint) {
  fields::Outcome o = fields::decode_outcome(j, hint);
  if (o.object) out.objects.push_back(std::move(*o.object));
  else if (!o.note.empty()) out.notes.push_back(prefix(file, doc, list_item, "") + o.note);
  else out.errors.push_back(DecodeProblem{prefix(file, doc, list_item, o.label) + o.detail, std::move(o.key)});
}

void decode_document(ManifestDecode& out, std::string_view file, std::size_t doc, const json& j) {
  if (!is_list(j)) {
    decode_into(out, file, doc, std::nullopt, j, std::nullopt);
    return;
  }
  const std::string& list_kind = j["kind"].get_ref<const std::string&>();
  const json* items = fields::find(j, "items");
  if (items && !items->is_array()) {
    out.errors.push_back(DecodeProblem{prefix(file, doc, std::nullopt, list_kind) + "items: expected a list, got " +
                                       fields::describe(*items), std::nullopt});
    return;
  }
  if (!items) return;
  // A typed list (PodList from the API) names its items' kind; a plain List does not.
  std::optional<Kind> hint;
  if (list_kind != "List") hint = kind_from_name(std::string_view(list_kind).substr(0, list_kind.size() - 4));
  std::string item_kind = list_kind.substr(0, list_kind.size() - 4);
  for (std::size_t i = 0; i < items->size(); ++i) {
    const json& it = (*items)[i];
    if (is_list(it)) {
      out.errors.push_back(DecodeProblem{prefix(file, doc, i, "") + "a List inside a List is not supported", std::nullopt});
      continue;
    }
    if (list_kind != "List" && !hint && it.is_object() && !fields::find(it, "kind")) {
      std::string name;
      if (const json* m = fields::find(it, "metadata"); m && m->is_object())
        if (const json* n = fields::find(*m, "name"); n && n->is_string()) name = " " + n->get<std::string>();
      out.notes.push_back(prefix(file, doc, i, "") + "skipped " + item_kind + name + ": kind not used by ferry");
      continue;
    }
    decode_into(out, file, doc, i, it, hint);
  }
}

}  // namespace

ManifestDecode decode_manifest(std::string_view file_name, std::string_view text) {
  ManifestDecode out;
  try {
    Documents parsed = ends_with(file_name, ".json") ? parse_json(text) : parse_yaml(text);
    for (std::size_t i = 0; i < parsed.docs.size(); ++i) {
      if (!parsed.errors[i].empty()) {
        out.errors.push_back(DecodeProblem{prefix(file_name, i, std::nullopt, "") + parsed.errors[i], std::nullopt});
        continue;
      }
      if (parsed.docs[i].is_null()) continue;  // an empty document (a stray `---`)
      decode_document(out, file_name, i, parsed.docs[i]);
    }
  } catch (const FileError& e) {
    out = ManifestDecode{};
    out.syntax_error = true;
    out.errors.push_back(DecodeProblem{std::string(file_name) + ": " + e.what, std::nullopt});
  } catch (const std::exception& e) {  // out of memory, a yaml-cpp surprise: the file is unusable
    out = ManifestDecode{};
    out.syntax_error = true;
    out.errors.push_back(DecodeProblem{std::string(file_name) + ": cannot decode: " + e.what(), std::nullopt});
  }
  return out;
}

}  // namespace ferry::model
