// ferry-cnitool: a runtime-like driver for a conflist, as libcni does it. Loads a network
// by name from a config directory, runs its plugins (ADD in order feeding prevResult, DEL
// in reverse with the cached result, CHECK, GC, STATUS), and keeps libcni's result cache
// (/var/lib/cni/results/<net>-<cid>-<ifname>, "kind":"cniCacheV1").
//
//   ferry-cnitool add|check|del|gc|status <network-name> [<netns-path>]
//       [--ifname eth0] [--container-id ID] [--conf-dir DIR] [--cache-dir DIR]
//       [--args "K=V;..."] [--cap NAME=JSON ...] [--valid CID/IFNAME ...]
//
// stdout: the ADD result (list cniVersion) or, on failure, the failing plugin's JSON error.
// Exit 0 on success, 1 on any error.
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>

#include "cni/cni.h"

extern char** environ;

namespace {

using ferry::cni::Error;
using ferry::cni::json;
namespace cni = ferry::cni;

struct Options {
  std::string verb;
  std::string network;
  std::string netns;
  std::string ifname = "eth0";
  std::string container_id;
  std::string conf_dir;
  std::string cache_dir = "/var/lib/cni/results";
  std::string cni_args;
  std::vector<std::string> caps;
  std::vector<std::string> valid;
  std::string cni_path;
};

// A plugin failed: its own error JSON goes to stdout as it printed it.
struct PluginFailure {
  json error;
};

// Output never throws on invalid UTF-8 carried in from arguments or plugin output.
std::string dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(cni::kIOFailure, "failed to read " + path, std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::string> files_with_suffix(const std::string& dir, std::initializer_list<std::string_view> suffixes) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string_view name(e->d_name);
    if (name.empty() || name[0] == '.') continue;
    for (auto suf : suffixes)
      if (name.size() > suf.size() && name.substr(name.size() - suf.size()) == suf) out.push_back(dir + "/" + e->d_name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

struct LoadedNetwork {
  cni::NetworkList list;
  std::string bytes;  // the conflist as cached (a .conf is cached upconverted)
};

// libcni's order: *.conflist sorted, then the deprecated single-plugin *.conf / *.json.
LoadedNetwork load_network(const std::string& dir, const std::string& name) {
  std::string skipped;
  for (auto suffixes : {std::initializer_list<std::string_view>{".conflist"},
                        std::initializer_list<std::string_view>{".conf", ".json"}}) {
    for (const std::string& file : files_with_suffix(dir, suffixes)) {
      try {
        std::string bytes = read_file(file);
        cni::NetworkList list = cni::parse_network_list(bytes);
        if (list.name != name) continue;
        json raw = json::parse(bytes);
        if (!raw.contains("plugins")) raw = json{{"cniVersion", list.cni_version}, {"name", name}, {"plugins", list.plugins}};
        return {std::move(list), dump(raw)};
      } catch (const Error& e) {
        skipped += "; skipped " + file + ": " + e.what();
      }
    }
  }
  throw Error(cni::kInvalidConfig, "no network \"" + name + "\" in " + dir,
              "put a .conflist with \"name\":\"" + name + "\" there" + skipped);
}

std::string base64(std::string_view in) {
  static const char* t = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], t[v & 63]};
  }
  if (i + 1 == in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    out += {t[v >> 18], t[(v >> 12) & 63], '=', '='};
  } else if (i + 2 == in.size()) {
    uint32_t v = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8);
    out += {t[v >> 18], t[(v >> 12) & 63], t[(v >> 6) & 63], '='};
  }
  return out;
}

// cnitool's default container ID: derived from the netns path, stable across verbs.
std::string default_container_id(const std::string& netns) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : netns) h = (h ^ c) * 1099511628211ull;
  char buf[32];
  std::snprintf(buf, sizeof buf, "cnitool-%012llx", static_cast<unsigned long long>(h & 0xffffffffffffull));
  return buf;
}

class Runtime {
 public:
  Runtime(Options o, LoadedNetwork net) : o_(std::move(o)), net_(std::move(net)) {
    for (const std::string& c : o_.caps) {
      size_t eq = c.find('=');
      if (eq == std::string::npos || eq == 0)
        throw Error(cni::kInvalidConfig, "invalid --cap \"" + c + "\"", "use --cap NAME=JSON, e.g. portMappings='[...]'");
      json v = json::parse(c.substr(eq + 1), nullptr, false);
      if (v.is_discarded())
        throw Error(cni::kDecodingFailure, "invalid JSON in --cap " + c.substr(0, eq), c.substr(eq + 1));
      caps_[c.substr(0, eq)] = v;
    }
    if (caps_.is_null()) caps_ = json::object();
  }

  int add() {
    std::optional<cni::Result> prev;
    json last;
    for (size_t i = 0; i < list().plugins.size(); ++i) {
      cni::ExecResult r = exec("ADD", i, build(i, caps_, prev), env("ADD"));
      last = parse_result(i, r);
      prev = cni::result_from_json(last);
      if (prev->cni_version.empty()) prev->cni_version = list().cni_version;
    }
    json out = prev ? cni::result_to_json(*prev, list().cni_version) : json::object();
    write_cache(out);
    std::cout << dump(out) << std::endl;
    return 0;
  }

  int del() {
    std::optional<cni::Result> prev = cached_result();
    json caps = caps_or_cached();
    auto& plugins = list().plugins;
    for (size_t i = plugins.size(); i-- > 0;) exec("DEL", i, build(i, caps, prev), env("DEL"));
    ::unlink(cache_path(o_.container_id, o_.ifname).c_str());
    return 0;
  }

  int check() {
    if (!cni::version_has_check(list().cni_version))
      throw Error(cni::kIncompatibleVersion,
                  "configuration version \"" + list().cni_version + "\" does not support the CHECK command",
                  "use cniVersion 0.4.0 or newer");
    if (list().disable_check) return 0;
    std::optional<cni::Result> prev = cached_result();
    json caps = caps_or_cached();
    for (size_t i = 0; i < list().plugins.size(); ++i) exec("CHECK", i, build(i, caps, prev), env("CHECK"));
    return 0;
  }

  int status() {
    if (!cni::version_has_gc_status(list().cni_version))
      throw Error(cni::kIncompatibleVersion,
                  "configuration version \"" + list().cni_version + "\" does not support the STATUS command",
                  "use cniVersion 1.1.0 or newer");
    for (size_t i = 0; i < list().plugins.size(); ++i)
      exec("STATUS", i, build(i, json::object(), std::nullopt), env("STATUS"));
    return 0;
  }

  // libcni's GCNetworkList: DEL every cached attachment of this network that is not valid,
  // then (1.1.0+) GC on every plugin. Continues on errors and reports the first.
  int gc() {
    if (list().disable_gc) return 0;
    std::vector<cni::Attachment> valid;
    for (const std::string& v : o_.valid) {
      size_t slash = v.find('/');
      if (slash == std::string::npos)
        throw Error(cni::kInvalidConfig, "invalid --valid \"" + v + "\"", "use --valid CONTAINERID/IFNAME");
      valid.push_back({v.substr(0, slash), v.substr(slash + 1)});
    }
    std::optional<PluginFailure> first;
    auto keep_going = [&](auto&& fn) {
      try {
        fn();
      } catch (const PluginFailure& f) {
        if (!first) first = f;
        std::cerr << dump(f.error) << "\n";
      } catch (const Error& e) {
        if (!first) first = PluginFailure{e.to_json(list().cni_version)};
        std::cerr << e.what() << "\n";
      }
    };
    for (const std::string& file : files_with_suffix(o_.cache_dir, {""})) {
      keep_going([&] { collect_stale(file, valid); });
    }
    if (cni::version_has_gc_status(list().cni_version)) {
      json att = json::array();
      for (const auto& a : valid) att.push_back({{"containerID", a.container_id}, {"ifname", a.ifname}});
      for (size_t i = 0; i < list().plugins.size(); ++i) {
        keep_going([&] {
          json conf = build(i, json::object(), std::nullopt);
          conf["cni.dev/valid-attachments"] = att;
          conf["cni.dev/attachments"] = att;
          exec("GC", i, conf, env("GC"));
        });
      }
    }
    if (first) throw *first;
    return 0;
  }

 private:
  const cni::NetworkList& list() const { return net_.list; }

  json build(size_t i, const json& caps, const std::optional<cni::Result>& prev) const {
    return cni::build_plugin_config(list(), i, caps, prev);
  }

  std::map<std::string, std::string> env(const std::string& verb) const {
    return env_for(verb, o_.container_id, o_.netns, o_.ifname, o_.cni_args);
  }

  std::map<std::string, std::string> env_for(const std::string& verb, const std::string& cid, const std::string& netns,
                                             const std::string& ifname, const std::string& args) const {
    std::map<std::string, std::string> e;
    for (char** p = environ; p && *p; ++p) {
      std::string_view kv(*p);
      size_t eq = kv.find('=');
      if (eq != kv.npos) e.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
    }
    const bool per_container = verb == "ADD" || verb == "DEL" || verb == "CHECK";
    e["CNI_COMMAND"] = verb;
    e["CNI_CONTAINERID"] = per_container ? cid : "";
    e["CNI_NETNS"] = per_container ? netns : "";
    e["CNI_IFNAME"] = per_container ? ifname : "";
    e["CNI_ARGS"] = per_container ? args : "";
    e["CNI_PATH"] = o_.cni_path;
    return e;
  }

  cni::ExecResult exec(const std::string& verb, size_t i, const json& conf,
                       const std::map<std::string, std::string>& env) const {
    std::string type = list().plugins[i].value("type", "");
    std::string binary = cni::find_plugin(type, o_.cni_path);
    cni::ExecResult r = cni::exec_plugin(binary, env, dump(conf));
    std::cerr << r.stderr_data;
    if (r.exit_code != 0) {
      json err = json::parse(r.stdout_data, nullptr, false);
      if (!err.is_object() || !err.contains("code")) {
        std::string text = r.stderr_data.empty() ? r.stdout_data : r.stderr_data;
        err = Error(cni::kInternal, "netplugin failed with exit code " + std::to_string(r.exit_code), text)
                  .to_json(list().cni_version);
      }
      std::string lower = verb;
      std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
      std::cerr << "plugin type=\"" << type << "\" name=\"" << list().name << "\" failed (" << lower
                << "): " << dump(err.value("msg", json(""))) << "\n";
      throw PluginFailure{err};
    }
    return r;
  }

  json parse_result(size_t i, const cni::ExecResult& r) const {
    json j = json::parse(r.stdout_data, nullptr, false);
    if (!j.is_object())
      throw Error(cni::kDecodingFailure,
                  "plugin \"" + list().plugins[i].value("type", "") + "\" printed no JSON result", r.stdout_data);
    if (!j.contains("cniVersion")) j["cniVersion"] = list().cni_version;
    return j;
  }

  std::string cache_path(const std::string& cid, const std::string& ifname) const {
    return o_.cache_dir + "/" + list().name + "-" + cid + "-" + ifname;
  }

  void write_cache(const json& result) const {
    ::mkdir(o_.cache_dir.c_str(), 0700);  // the parent must exist (/var/lib/cni)
    json args = json::array();  // libcni caches CNI_ARGS as [[key, value], ...]
    std::istringstream pairs(o_.cni_args);
    for (std::string pair; std::getline(pairs, pair, ';');) {
      size_t eq = pair.find('=');
      if (eq != std::string::npos) args.push_back({pair.substr(0, eq), pair.substr(eq + 1)});
    }
    json cache = {{"kind", "cniCacheV1"},
                  {"containerId", o_.container_id},
                  {"config", base64(net_.bytes)},
                  {"ifName", o_.ifname},
                  {"networkName", list().name},
                  {"netns", o_.netns},
                  {"cniArgs", args},
                  {"capabilityArgs", caps_},
                  {"result", result}};
    std::string path = cache_path(o_.container_id, o_.ifname);
    std::string tmp = path + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      out << dump(cache);
      if (!out) throw Error(cni::kIOFailure, "failed to write result cache " + tmp, std::strerror(errno));
    }
    ::chmod(tmp.c_str(), 0600);
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      throw Error(cni::kIOFailure, "failed to write result cache " + path, std::strerror(errno));
  }

  // The cached ADD result as prevResult (0.4.0+); missing or garbled => none, as libcni.
  std::optional<cni::Result> cached_result() const {
    if (!cni::version_has_check(list().cni_version)) return std::nullopt;
    try {
      json cache = json::parse(read_file(cache_path(o_.container_id, o_.ifname)));
      cni::Result r = cni::result_from_json(cache.at("result"));
      if (r.cni_version.empty()) r.cni_version = list().cni_version;
      return r;
    } catch (const std::exception&) {
      return std::nullopt;
    }
  }

  // libcni resends the capability args cached at ADD on CHECK and DEL (portmap's DEL is a
  // no-op without its portMappings); --cap on the command line overrides the cache.
  json caps_or_cached() const {
    if (!caps_.empty()) return caps_;
    try {
      json cache = json::parse(read_file(cache_path(o_.container_id, o_.ifname)));
      if (cache.contains("capabilityArgs") && cache["capabilityArgs"].is_object()) return cache["capabilityArgs"];
    } catch (const std::exception&) {
    }
    return json::object();
  }

  void collect_stale(const std::string& file, const std::vector<cni::Attachment>& valid) const {
    struct stat st;
    if (::stat(file.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return;
    json cache = json::parse(read_file(file), nullptr, false);
    if (!cache.is_object() || cache.value("kind", "") != "cniCacheV1" || cache.value("networkName", "") != list().name)
      return;
    cni::Attachment a{cache.value("containerId", ""), cache.value("ifName", "")};
    if (std::find(valid.begin(), valid.end(), a) != valid.end()) return;
    std::optional<cni::Result> prev;
    if (cni::version_has_check(list().cni_version) && cache.contains("result")) {
      try {
        prev = cni::result_from_json(cache["result"]);
      } catch (const Error&) {
      }
    }
    std::string args;
    if (cache.contains("cniArgs") && cache["cniArgs"].is_array())
      for (const json& kv : cache["cniArgs"])
        if (kv.is_array() && kv.size() == 2 && kv[0].is_string() && kv[1].is_string())
          args += (args.empty() ? "" : ";") + kv[0].get<std::string>() + "=" + kv[1].get<std::string>();
    json caps = cache.contains("capabilityArgs") && cache["capabilityArgs"].is_object() ? cache["capabilityArgs"] : json::object();
    auto e = env_for("DEL", a.container_id, cache.value("netns", ""), a.ifname, args);
    for (size_t i = list().plugins.size(); i-- > 0;) exec("DEL", i, build(i, caps, prev), e);
    ::unlink(file.c_str());
  }

  Options o_;
  LoadedNetwork net_;
  json caps_ = json::object();
};

int run(Options o) {
  if (o.conf_dir.empty()) {
    const char* d = std::getenv("NETCONFPATH");
    o.conf_dir = d && *d ? d : "/etc/cni/net.d";
  }
  const char* path = std::getenv("CNI_PATH");
  o.cni_path = path && *path ? path : "/opt/cni/bin";
  if (o.container_id.empty()) o.container_id = default_container_id(o.netns);
  if ((o.verb == "add" || o.verb == "check") && o.netns.empty())
    throw Error(cni::kInvalidEnvironment, o.verb + " needs a netns path", "ferry-cnitool " + o.verb + " <network> <netns-path>");

  Runtime rt(o, load_network(o.conf_dir, o.network));
  if (o.verb == "add") return rt.add();
  if (o.verb == "del") return rt.del();
  if (o.verb == "check") return rt.check();
  if (o.verb == "gc") return rt.gc();
  return rt.status();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"ferry-cnitool: run a CNI network's plugins the way a runtime does"};
  app.add_option("verb", o.verb, "add, check, del, gc or status")
      ->required()
      ->check(CLI::IsMember({"add", "check", "del", "gc", "status"}));
  app.add_option("network", o.network, "the network's name (\"name\" in the conflist)")->required();
  app.add_option("netns", o.netns, "path of the container's network namespace");
  app.add_option("--ifname", o.ifname, "interface name in the container")->capture_default_str();
  app.add_option("--container-id", o.container_id, "container ID (default: derived from the netns path)");
  app.add_option("--conf-dir", o.conf_dir, "config directory (default $NETCONFPATH or /etc/cni/net.d)");
  app.add_option("--cache-dir", o.cache_dir, "result cache directory")->capture_default_str();
  app.add_option("--args", o.cni_args, "CNI_ARGS, e.g. \"IgnoreUnknown=1;IP=10.1.0.9\"");
  app.add_option("--cap", o.caps, "capability argument NAME=JSON (repeatable)")->allow_extra_args(false);
  app.add_option("--valid", o.valid, "gc: an attachment still in use, CONTAINERID/IFNAME (repeatable)")
      ->allow_extra_args(false);
  CLI11_PARSE(app, argc, argv);

  try {
    return run(std::move(o));
  } catch (const PluginFailure& f) {
    std::cout << dump(f.error) << std::endl;
  } catch (const Error& e) {
    std::cout << dump(e.to_json(std::string(cni::kCurrentVersion))) << std::endl;
  } catch (const std::exception& e) {
    std::cout << dump(Error(cni::kInternal, e.what()).to_json(std::string(cni::kCurrentVersion))) << std::endl;
  }
  return 1;
}
