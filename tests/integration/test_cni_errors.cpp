// The dispatcher as a runtime sees it: the real plugin binaries (ferry-loopback,
// ferry-bridge, ferry-host-local) fed bad environments and bad configs. Every case must be
// rejected before any kernel or disk work with the spec's code and a message that names
// what to fix. (These never touch the kernel; FERRY_REQUIRE_ROOT keeps the binary uniform.)
#include <sys/stat.h>

#include "support.h"

namespace ferry::test {
namespace {

using cni::json;

struct Exec {
  int exit_code = -1;
  std::string out, err;
  json error() const { return json::parse(out); }
};

// Runs `plugin` from plugin_dir() with exactly `env` (plus PATH) and `stdin_data`.
Exec run(const std::string& plugin, std::map<std::string, std::string> env, const std::string& stdin_data) {
  env["PATH"] = "/usr/sbin:/usr/bin:/sbin:/bin";
  cni::ExecResult r = cni::exec_plugin(plugin_dir() + "/" + plugin, env, stdin_data);
  return {r.exit_code, r.stdout_data, r.stderr_data};
}

// A complete, valid environment for `cmd` (the netns does not exist: nothing may use it).
std::map<std::string, std::string> full_env(const std::string& cmd) {
  return {{"CNI_COMMAND", cmd},     {"CNI_CONTAINERID", "h1-ctr"},
          {"CNI_NETNS", "/run/netns/h1-never-created"}, {"CNI_IFNAME", "eth0"},
          {"CNI_PATH", plugin_dir()}};
}

// A config each plugin would accept, in `version`.
json good_conf(const std::string& plugin, const std::string& version) {
  json c = {{"cniVersion", version}, {"name", "h1-errnet"}, {"type", plugin}};
  if (plugin != "ferry-loopback")
    c["ipam"] = {{"type", "ferry-host-local"}, {"subnet", "10.250.0.0/24"}, {"dataDir", "/tmp/h1-never-used"}};
  if (plugin == "ferry-bridge") c["bridge"] = "h1br-never";
  return c;
}

// Asserts a spec error: exit 1, JSON on stdout with `code`, and `needle` in msg or details.
void expect_error(const Exec& r, int code, const std::string& needle, const std::string& what) {
  SCOPED_TRACE(what);
  EXPECT_EQ(r.exit_code, 1) << "stdout: " << r.out << "\nstderr: " << r.err;
  json e = json::parse(r.out, nullptr, false);
  ASSERT_TRUE(e.is_object()) << "stdout is not a JSON error: " << r.out;
  EXPECT_EQ(e.value("code", -1), code) << r.out;
  ASSERT_TRUE(e.contains("msg") && e["msg"].is_string()) << r.out;
  EXPECT_FALSE(e["msg"].get<std::string>().empty());
  std::string text = e["msg"].get<std::string>() + " | " + e.value("details", "");
  EXPECT_NE(text.find(needle), std::string::npos) << "wanted \"" << needle << "\" in: " << text;
}

class CniErrors : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_ROOT();
    struct stat st;
    ASSERT_EQ(::stat((plugin_dir() + "/" + plugin()).c_str(), &st), 0)
        << plugin() << " is not built in " << plugin_dir();
  }
  const std::string& plugin() const { return GetParam(); }
  Exec run_verb(std::map<std::string, std::string> env, const json& conf) const {
    return run(plugin(), std::move(env), conf.dump());
  }
  json conf(const std::string& version = "1.0.0") const { return good_conf(plugin(), version); }
};

TEST_P(CniErrors, NoCommandPrintsAboutAndVersionsOnStderr) {
  Exec r = run(plugin(), {}, "");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find(plugin().substr(6)), std::string::npos) << r.err;  // "bridge", "loopback", ...
  EXPECT_NE(r.err.find("CNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"), std::string::npos)
      << r.err;
}

TEST_P(CniErrors, VersionNeedsOnlyTheCommand) {
  Exec r = run(plugin(), {{"CNI_COMMAND", "VERSION"}}, R"({"cniVersion":"1.1.0"})");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"cniVersion":"1.1.0",
            "supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})"));
}

TEST_P(CniErrors, UnknownCommand) {
  expect_error(run_verb(full_env("ATTACH"), conf()), 4, "unknown CNI_COMMAND: ATTACH", "ATTACH");
}

TEST_P(CniErrors, MissingVariablesAreNamedPerVerb) {
  struct Case {
    std::string cmd;
    std::vector<std::string> drop;
    std::string version;
    std::string listed;
  } cases[] = {
      {"ADD", {"CNI_NETNS", "CNI_IFNAME", "CNI_PATH"}, "1.0.0", "required env variables [CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"},
      {"ADD", {"CNI_PATH"}, "1.0.0", "required env variables [CNI_PATH] missing"},
      {"ADD", {"CNI_NETNS"}, "1.0.0", "required env variables [CNI_NETNS] missing"},
      {"CHECK", {"CNI_NETNS", "CNI_PATH"}, "1.0.0", "required env variables [CNI_NETNS,CNI_PATH] missing"},
      {"DEL", {"CNI_IFNAME", "CNI_NETNS"}, "1.0.0", "required env variables [CNI_IFNAME] missing"},
      {"DEL", {"CNI_PATH"}, "1.0.0", "required env variables [CNI_PATH] missing"},
      {"GC", {"CNI_PATH", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"}, "1.1.0", "required env variables [CNI_PATH] missing"},
      {"STATUS", {"CNI_PATH", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"}, "1.1.0", "required env variables [CNI_PATH] missing"},
  };
  for (const Case& c : cases) {
    auto env = full_env(c.cmd);
    for (const std::string& v : c.drop) env.erase(v);
    Exec r = run_verb(env, conf(c.version));
    expect_error(r, cni::kInvalidEnvironment, c.listed, c.cmd);
    // The details say what the verb needs, so the fix is obvious.
    EXPECT_NE(r.out.find("CNI_COMMAND=" + c.cmd + " needs"), std::string::npos) << r.out;
  }
}

TEST_P(CniErrors, EmptyVariablesCountAsMissing) {
  auto env = full_env("ADD");
  env["CNI_PATH"] = "";
  expect_error(run_verb(env, conf()), 4, "[CNI_PATH]", "empty CNI_PATH");
}

TEST_P(CniErrors, MissingContainerIdIsUnknownContainer) {
  for (const char* cmd : {"ADD", "DEL", "CHECK"}) {
    auto env = full_env(cmd);
    env.erase("CNI_CONTAINERID");
    expect_error(run_verb(env, conf()), cni::kUnknownContainer, "missing containerID", cmd);
  }
}

TEST_P(CniErrors, InvalidContainerId) {
  for (const char* id : {"-leading-dash", "has/slash", "has space", "semi;colon"}) {
    auto env = full_env("ADD");
    env["CNI_CONTAINERID"] = id;
    Exec r = run_verb(env, conf());
    expect_error(r, cni::kInvalidEnvironment, "invalid characters in containerID", id);
    EXPECT_NE(r.out.find("^[a-zA-Z0-9][a-zA-Z0-9_.\\\\-]*$"), std::string::npos) << r.out;  // the rule
  }
}

TEST_P(CniErrors, InvalidInterfaceName) {
  for (const char* ifname : {"0123456789abcdef", "eth/0", "eth:0", "eth 0", ".", ".."}) {
    for (const char* cmd : {"ADD", "DEL"}) {
      auto env = full_env(cmd);
      env["CNI_IFNAME"] = ifname;
      Exec r = run_verb(env, conf());
      expect_error(r, cni::kInvalidEnvironment, "CNI_IFNAME must be 1 to 15 characters", std::string(cmd) + " " + ifname);
      EXPECT_NE(r.out.find(std::string("\"") + ifname), std::string::npos) << r.out;  // names the bad value
    }
  }
}

TEST_P(CniErrors, MalformedJson) {
  for (const char* bad : {"", "{", "not json", "[1,2]", "\"a string\""}) {
    Exec r = run(plugin(), full_env("ADD"), bad);
    expect_error(r, cni::kDecodingFailure, "JSON", std::string("stdin: ") + bad);
  }
}

TEST_P(CniErrors, WrongTypesNameTheField) {
  json c = conf();
  c["name"] = 5;
  expect_error(run_verb(full_env("ADD"), c), cni::kDecodingFailure, "\"name\"", "name: 5");
  c = conf();
  c["cniVersion"] = 1.0;
  expect_error(run_verb(full_env("ADD"), c), cni::kDecodingFailure, "\"cniVersion\"", "cniVersion: 1.0");
  c = conf();
  c["capabilities"] = {{"portMappings", "yes"}};
  expect_error(run_verb(full_env("ADD"), c), cni::kDecodingFailure, "capabilities.portMappings", "capabilities");
  c = conf();
  c["prevResult"] = {{"ips", {{{"address", "10.0.0.300/24"}}}}};
  expect_error(run_verb(full_env("DEL"), c), cni::kDecodingFailure, "ips[0].address", "prevResult");
}

TEST_P(CniErrors, PluginFieldWrongType) {
  json c = conf();
  std::string field;
  if (plugin() == "ferry-bridge") {
    c["mtu"] = "1500";
    field = "mtu";
  } else if (plugin() == "ferry-host-local") {
    c["ipam"]["subnet"] = 24;
    field = "subnet";
  } else {
    GTEST_SKIP() << "loopback has no plugin-specific fields";
  }
  Exec r = run_verb(full_env("ADD"), c);
  expect_error(r, cni::kDecodingFailure, field, field + " wrong type");
}

TEST_P(CniErrors, MissingOrInvalidName) {
  json c = conf();
  c.erase("name");
  expect_error(run_verb(full_env("ADD"), c), cni::kInvalidConfig, "missing network name", "no name");
  c["name"] = "bad/name";
  expect_error(run_verb(full_env("DEL"), c), cni::kInvalidConfig, "invalid characters found in network name",
               "bad name");
}

TEST_P(CniErrors, MissingOrUnknownVersion) {
  json c = conf();
  c.erase("cniVersion");
  Exec r = run_verb(full_env("ADD"), c);
  expect_error(r, cni::kIncompatibleVersion, "config is \"0.1.0\"", "no cniVersion");
  EXPECT_NE(r.out.find("0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0"), std::string::npos) << r.out;
  for (const char* v : {"0.2.0", "1.2.0", "2.0.0", "latest"}) {
    c["cniVersion"] = v;
    expect_error(run_verb(full_env("ADD"), c), cni::kIncompatibleVersion,
                 std::string("config is \"") + v + "\"", v);
  }
}

TEST_P(CniErrors, CheckNeeds040) {
  for (const char* v : {"0.3.0", "0.3.1"}) {
    Exec r = run_verb(full_env("CHECK"), conf(v));
    expect_error(r, cni::kIncompatibleVersion, "config version does not allow CHECK", v);
    EXPECT_EQ(r.error()["cniVersion"], v);  // errors are stamped with the request's version
  }
}

TEST_P(CniErrors, GcAndStatusNeed110) {
  for (const char* cmd : {"GC", "STATUS"}) {
    Exec r = run_verb({{"CNI_COMMAND", cmd}, {"CNI_PATH", plugin_dir()}}, conf("1.0.0"));
    expect_error(r, cni::kIncompatibleVersion, std::string("config version does not allow ") + cmd, cmd);
    EXPECT_NE(r.out.find("needs 1.1.0 or newer"), std::string::npos) << r.out;
  }
}

INSTANTIATE_TEST_SUITE_P(Plugins, CniErrors,
                         ::testing::Values("ferry-loopback", "ferry-bridge", "ferry-host-local"),
                         [](const auto& info) {
                           std::string n = info.param.substr(6);
                           n.erase(std::remove(n.begin(), n.end(), '-'), n.end());
                           return n;
                         });

}  // namespace
}  // namespace ferry::test
