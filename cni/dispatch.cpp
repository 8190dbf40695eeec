// plugin_main: the verb dispatcher every ferry plugin's main() calls. It mirrors libcni's
// skel: environment checks per verb, config checks, version gates, then the handler; any
// failure is printed as the spec's JSON error on stdout with exit code 1.
//
// Order of checks (first failure wins):
//   1. CNI_COMMAND unset             -> about text on stderr, exit 0
//   2. unknown CNI_COMMAND           -> 4
//   3. ADD/CHECK/DEL: CNI_CONTAINERID empty -> 3 ("missing containerID"; unlike skel,
//      which folds it into the missing-variables error, the spec code for "no container")
//   4. set but invalid CNI_CONTAINERID / CNI_IFNAME -> 4
//   5. other required variables missing -> 4 "required env variables [A,B] missing"
//   6. VERSION: print versions (stdin is not read)
//   7. stdin not JSON / wrong field types -> 6; name missing or invalid -> 7;
//      cniVersion unsupported (missing = 0.1.0) -> 1; CHECK < 0.4.0, GC/STATUS < 1.1.0 -> 1
//   8. handler: cni::Error as is, any other exception -> 999 with its what()
#include <errno.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "cni/cni.h"

namespace ferry::cni {

namespace {

std::string env_or_empty(const char* name) {
  const char* v = std::getenv(name);
  return v ? v : "";
}

std::string versions_joined(std::string_view sep) {
  std::string s;
  for (auto v : kSupportedVersions) s += (s.empty() ? "" : std::string(sep)) + std::string(v);
  return s;
}

void write_stdout(const json& j) {
  // Invalid UTF-8 (say, in an echoed CNI_CONTAINERID) is replaced, never a throw here.
  std::string text = j.dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  std::fwrite(text.data(), 1, text.size(), stdout);
  std::fflush(stdout);
}

// The cniVersion to stamp on an error: the request's when it is one we speak.
std::string error_version(const std::string& stdin_data) {
  json j = json::parse(stdin_data, nullptr, false);
  if (j.is_object() && j.contains("cniVersion") && j["cniVersion"].is_string()) {
    std::string v = j["cniVersion"].get<std::string>();
    if (version_supported(v)) return v;
  }
  return std::string(kCurrentVersion);
}

// Which variables each verb needs (skel's table; CNI_PATH required for ADD/DEL/CHECK too).
std::vector<const char*> required_vars(const std::string& cmd) {
  if (cmd == "ADD" || cmd == "CHECK") return {"CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"};
  if (cmd == "DEL") return {"CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"};
  if (cmd == "GC" || cmd == "STATUS") return {"CNI_PATH"};
  return {};
}

std::string join(const std::vector<const char*>& names, std::string_view sep) {
  std::string s;
  for (const char* n : names) s += (s.empty() ? "" : std::string(sep)) + n;
  return s;
}

void check_environment(const CmdArgs& a) {
  static const std::vector<std::string> known = {"ADD", "DEL", "CHECK", "GC", "STATUS", "VERSION"};
  if (std::find(known.begin(), known.end(), a.command) == known.end())
    throw Error(kInvalidEnvironment, "unknown CNI_COMMAND: " + a.command,
                "CNI_COMMAND must be one of ADD, DEL, CHECK, GC, STATUS, VERSION");

  const bool per_container = a.command == "ADD" || a.command == "CHECK" || a.command == "DEL";
  if (per_container) {
    if (a.container_id.empty())
      throw Error(kUnknownContainer, "missing containerID", "set CNI_CONTAINERID to the container's ID");
    if (!valid_container_id(a.container_id))
      throw Error(kInvalidEnvironment, "invalid characters in containerID",
                  "CNI_CONTAINERID \"" + a.container_id + "\" must match ^[a-zA-Z0-9][a-zA-Z0-9_.\\-]*$");
    if (!a.ifname.empty() && !valid_interface_name(a.ifname))
      throw Error(kInvalidEnvironment, "invalid interface name \"" + a.ifname + "\"",
                  "CNI_IFNAME must be 1 to 15 characters, not \".\" or \"..\", without '/', ':' or whitespace");
  }

  std::vector<const char*> missing;
  for (const char* var : required_vars(a.command))
    if (env_or_empty(var).empty()) missing.push_back(var);
  if (!missing.empty())
    throw Error(kInvalidEnvironment, "required env variables [" + join(missing, ",") + "] missing",
                "CNI_COMMAND=" + a.command + " needs " + join(required_vars(a.command), ", "));
}

void check_version_gate(const CmdArgs& a) {
  const std::string& v = a.conf.cni_version;
  if (a.command == "CHECK" && !version_has_check(v))
    throw Error(kIncompatibleVersion, "config version does not allow CHECK",
                "cniVersion is \"" + v + "\"; CHECK needs 0.4.0 or newer");
  if ((a.command == "GC" || a.command == "STATUS") && !version_has_gc_status(v))
    throw Error(kIncompatibleVersion, "config version does not allow " + a.command,
                "cniVersion is \"" + v + "\"; " + a.command + " needs 1.1.0 or newer");
}

std::string read_stdin() {
  std::string data;
  char buf[65536];
  while (true) {
    ssize_t n = ::read(0, buf, sizeof buf);
    if (n > 0) {
      data.append(buf, static_cast<size_t>(n));
    } else if (n == 0) {
      return data;
    } else if (errno != EINTR) {
      throw Error(kIOFailure, "error reading from stdin", std::strerror(errno));
    }
  }
}

int run(const Plugin& plugin, CmdArgs& a) {
  check_environment(a);

  if (a.command == "VERSION") {
    json versions = json::array();
    for (auto v : kSupportedVersions) versions.push_back(std::string(v));
    write_stdout({{"cniVersion", std::string(kCurrentVersion)}, {"supportedVersions", versions}});
    return 0;
  }

  a.stdin_data = read_stdin();
  a.conf = parse_net_conf(a.stdin_data);
  check_version_gate(a);

  if (a.command == "ADD") {
    if (!plugin.add) return 0;
    Result r = plugin.add(a);
    write_stdout(result_to_json(r, a.conf.cni_version));
  } else if (a.command == "DEL") {
    if (plugin.del) plugin.del(a);
  } else if (a.command == "CHECK") {
    if (plugin.check) plugin.check(a);
  } else if (a.command == "GC") {
    if (plugin.gc) plugin.gc(a);
  } else if (a.command == "STATUS") {
    if (plugin.status) plugin.status(a);
  }
  return 0;
}

}  // namespace

int plugin_main(const Plugin& plugin) {
  CmdArgs a;
  a.command = env_or_empty("CNI_COMMAND");
  if (a.command.empty()) {
    std::fprintf(stderr, "%s\nCNI protocol versions supported: %s\n", plugin.about.c_str(),
                 versions_joined(", ").c_str());
    return 0;
  }
  a.container_id = env_or_empty("CNI_CONTAINERID");
  a.netns = env_or_empty("CNI_NETNS");
  a.ifname = env_or_empty("CNI_IFNAME");
  a.args = env_or_empty("CNI_ARGS");
  a.path = env_or_empty("CNI_PATH");

  try {
    return run(plugin, a);
  } catch (const Error& e) {
    write_stdout(e.to_json(error_version(a.stdin_data)));
  } catch (const std::exception& e) {
    write_stdout(Error(kInternal, e.what()).to_json(error_version(a.stdin_data)));
  } catch (...) {
    write_stdout(Error(kInternal, "unknown exception").to_json(error_version(a.stdin_data)));
  }
  return 1;
}

}  // namespace ferry::cni
