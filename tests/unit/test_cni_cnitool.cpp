// ferry-cnitool as a runtime: a conflist of fake plugins (shell scripts that log their
// verb and stdin) shows the order of calls, what each plugin is handed (prevResult,
// runtimeConfig), the libcni-style result cache, GC of stale attachments and error output.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <filesystem>
#include <fstream>

#include "cni/cni.h"

namespace cni = ferry::cni;
using cni::json;
namespace fs = std::filesystem;

namespace {

// ferry-cnitool is built next to the test binary (build/bin).
std::string cnitool_path() {
  char buf[PATH_MAX] = {};
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
  return fs::path(std::string(buf, n > 0 ? static_cast<size_t>(n) : 0)).parent_path() / "ferry-cnitool";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// A fake plugin: logs "<name> <verb>" to $H1_LOG/order, its stdin to
// $H1_LOG/<name>-<verb>.json; on ADD prints `result`; exits with `fail_json` when set.
const char* kPluginTemplate = R"(#!/bin/sh
echo "NAME $CNI_COMMAND" >> "$H1_LOG/order"
cat > "$H1_LOG/NAME-$CNI_COMMAND-$CNI_CONTAINERID.json"
if [ -n "$H1_FAILING" ] && [ "$H1_FAILING" = "NAME" ]; then
  echo '{"cniVersion":"1.0.0","code":11,"msg":"NAME is busy","details":"try again"}'
  exit 1
fi
if [ "$CNI_COMMAND" = ADD ]; then
  echo 'RESULT'
fi
)";

class Cnitool : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(cnitool_path())) GTEST_SKIP() << "ferry-cnitool not built next to the tests";
    char tmpl[] = "/tmp/h1-cnitool-XXXXXX";
    root_ = ::mkdtemp(tmpl);
    for (const char* d : {"bin", "conf", "cache", "log"}) fs::create_directory(root_ / d);
    plugin("fake-a", R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/h1-fake"}],"ips":[{"interface":0,"address":"10.9.0.2/24"}]})");
    plugin("fake-b", R"({"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/h1-fake"}],"ips":[{"interface":0,"address":"10.9.0.2/24","gateway":"10.9.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]})");
  }
  void TearDown() override {
    if (!root_.empty()) fs::remove_all(root_);
  }

  void plugin(const std::string& name, const std::string& result) {
    std::string body = kPluginTemplate;
    for (size_t p; (p = body.find("NAME")) != std::string::npos;) body.replace(p, 4, name);
    body.replace(body.find("RESULT"), 6, result);
    fs::path p = root_ / "bin" / name;
    std::ofstream(p) << body;
    ::chmod(p.c_str(), 0755);
  }

  void conflist(const std::string& version, const std::string& plugins = "") {
    std::ofstream(root_ / "conf" / "10-h1net.conflist")
        << R"({"cniVersion":")" << version << R"(","name":"h1net","plugins":[)"
        << (plugins.empty() ? R"({"type":"fake-a"},{"type":"fake-b","capabilities":{"portMappings":true,"bandwidth":true}})"
                            : plugins)
        << "]}";
  }

  cni::ExecResult tool(const std::string& args, const std::string& fail = "") {
    std::map<std::string, std::string> env = {{"PATH", "/usr/bin:/bin"},
                                              {"CNI_PATH", (root_ / "bin").string()},
                                              {"H1_LOG", (root_ / "log").string()}};
    if (!fail.empty()) env["H1_FAILING"] = fail;
    std::string cmd = "exec " + cnitool_path() + " " + args + " --conf-dir " + (root_ / "conf").string() +
                      " --cache-dir " + (root_ / "cache").string();
    return cni::exec_plugin("/bin/sh", env, cmd);
  }

  std::string order() {
    std::string o = slurp(root_ / "log" / "order");
    fs::remove(root_ / "log" / "order");
    return o;
  }
  json logged(const std::string& name, const std::string& verb, const std::string& cid = "ctr1") {
    return json::parse(slurp(root_ / "log" / (name + "-" + verb + "-" + cid + ".json")));
  }
  fs::path cache(const std::string& cid = "ctr1") { return root_ / "cache" / ("h1net-" + cid + "-eth0"); }

  fs::path root_;
};

const char* kAdd = "add h1net /run/netns/h1-fake --container-id ctr1 --args 'IgnoreUnknown=1;K8S_POD_NAME=web' "
                   "--cap 'portMappings=[{\"hostPort\":8080,\"containerPort\":80,\"protocol\":\"tcp\"}]'";

}  // namespace

TEST_F(Cnitool, AddRunsPluginsInOrderFeedingPrevResultAndCaches) {
  conflist("0.4.0");
  cni::ExecResult r = tool(kAdd);
  ASSERT_EQ(r.exit_code, 0) << r.stdout_data << r.stderr_data;
  EXPECT_EQ(order(), "fake-a ADD\nfake-b ADD\n");

  // Printed: the last plugin's result in the list version.
  json out = json::parse(r.stdout_data);
  EXPECT_EQ(out, json::parse(R"({"cniVersion":"0.4.0","interfaces":[{"name":"eth0","sandbox":"/run/netns/h1-fake"}],
      "ips":[{"version":"4","interface":0,"address":"10.9.0.2/24","gateway":"10.9.0.1"}],
      "routes":[{"dst":"0.0.0.0/0"}],"dns":{}})"));

  json a = logged("fake-a", "ADD"), b = logged("fake-b", "ADD");
  EXPECT_EQ(a, json::parse(R"({"type":"fake-a","name":"h1net","cniVersion":"0.4.0"})"));
  EXPECT_EQ(b["name"], "h1net");
  EXPECT_EQ(b["runtimeConfig"], json::parse(R"({"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]})"));
  EXPECT_EQ(b["prevResult"]["ips"][0], json::parse(R"({"version":"4","interface":0,"address":"10.9.0.2/24"})"));

  ASSERT_TRUE(fs::exists(cache()));
  EXPECT_EQ(fs::status(cache()).permissions() & fs::perms::all, fs::perms::owner_read | fs::perms::owner_write);
  json c = json::parse(slurp(cache()));
  EXPECT_EQ(c["kind"], "cniCacheV1");
  EXPECT_EQ(c["containerId"], "ctr1");
  EXPECT_EQ(c["ifName"], "eth0");
  EXPECT_EQ(c["networkName"], "h1net");
  EXPECT_EQ(c["netns"], "/run/netns/h1-fake");
  EXPECT_EQ(c["cniArgs"], json::parse(R"([["IgnoreUnknown","1"],["K8S_POD_NAME","web"]])"));
  EXPECT_EQ(c["capabilityArgs"]["portMappings"][0]["hostPort"], 8080);
  EXPECT_EQ(c["result"], out);
  EXPECT_FALSE(c["config"].get<std::string>().empty());
}

TEST_F(Cnitool, CheckAndDelUseTheCachedResult) {
  conflist("1.0.0");
  ASSERT_EQ(tool(kAdd).exit_code, 0);
  order();
  json cached = json::parse(slurp(cache()))["result"];

  cni::ExecResult r = tool("check h1net /run/netns/h1-fake --container-id ctr1");
  EXPECT_EQ(r.exit_code, 0) << r.stdout_data << r.stderr_data;
  EXPECT_EQ(r.stdout_data, "");
  EXPECT_EQ(order(), "fake-a CHECK\nfake-b CHECK\n");
  EXPECT_EQ(logged("fake-a", "CHECK")["prevResult"], cached);

  r = tool("del h1net /run/netns/h1-fake --container-id ctr1");
  EXPECT_EQ(r.exit_code, 0) << r.stdout_data << r.stderr_data;
  EXPECT_EQ(order(), "fake-b DEL\nfake-a DEL\n");  // reverse order
  EXPECT_EQ(logged("fake-a", "DEL")["prevResult"], cached);
  EXPECT_EQ(logged("fake-b", "DEL")["prevResult"], cached);
  // As libcni does, the capability args cached at ADD are resent (portmap's DEL needs them).
  EXPECT_EQ(logged("fake-b", "DEL")["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
  EXPECT_EQ(logged("fake-b", "CHECK")["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
  EXPECT_FALSE(fs::exists(cache()));

  // A second DEL without a cache still runs every plugin, without prevResult.
  r = tool("del h1net /run/netns/h1-fake --container-id ctr1");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(logged("fake-a", "DEL").contains("prevResult"));
}

TEST_F(Cnitool, CheckIsRefusedBefore040AndSkippedWhenDisabled) {
  conflist("0.3.1");
  cni::ExecResult r = tool("check h1net /run/netns/h1-fake --container-id ctr1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(json::parse(r.stdout_data)["code"], cni::kIncompatibleVersion);

  std::ofstream(root_ / "conf" / "10-h1net.conflist")
      << R"({"cniVersion":"1.0.0","name":"h1net","disableCheck":"true","plugins":[{"type":"fake-a"}]})";
  r = tool("check h1net /run/netns/h1-fake --container-id ctr1");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_FALSE(fs::exists(root_ / "log" / "order"));
}

TEST_F(Cnitool, PluginErrorIsPrintedAndNothingIsCached) {
  conflist("1.0.0");
  cni::ExecResult r = tool(kAdd, "fake-b");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(json::parse(r.stdout_data),
            json::parse(R"({"cniVersion":"1.0.0","code":11,"msg":"fake-b is busy","details":"try again"})"));
  EXPECT_NE(r.stderr_data.find("plugin type=\"fake-b\" name=\"h1net\" failed (add)"), std::string::npos)
      << r.stderr_data;
  EXPECT_FALSE(fs::exists(cache()));

  // DEL stops at the first failure, as libcni does.
  r = tool("del h1net /run/netns/h1-fake --container-id ctr1", "fake-b");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(order(), "fake-a ADD\nfake-b ADD\nfake-b DEL\n");
}

TEST_F(Cnitool, MissingPluginAndMissingNetwork) {
  conflist("1.0.0", R"({"type":"fake-a"},{"type":"not-installed"})");
  cni::ExecResult r = tool(kAdd);
  EXPECT_EQ(r.exit_code, 1);
  json e = json::parse(r.stdout_data);
  EXPECT_EQ(e["code"], cni::kInvalidConfig);
  EXPECT_EQ(e["msg"], "failed to find plugin \"not-installed\" in path [" + (root_ / "bin").string() + "]");

  r = tool("add other-net /run/netns/h1-fake");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(json::parse(r.stdout_data)["msg"].get<std::string>().find("no network \"other-net\""), std::string::npos);
}

TEST_F(Cnitool, LoadsASingleConfWhenNoConflistMatches) {
  std::ofstream(root_ / "conf" / "20-old.conf") << R"({"cniVersion":"0.3.1","name":"h1net","type":"fake-a"})";
  cni::ExecResult r = tool(kAdd);
  ASSERT_EQ(r.exit_code, 0) << r.stdout_data;
  EXPECT_EQ(json::parse(r.stdout_data)["cniVersion"], "0.3.1");
  EXPECT_EQ(order(), "fake-a ADD\n");
}

TEST_F(Cnitool, GcDeletesStaleAttachmentsThenGcsEachPlugin) {
  conflist("1.1.0");
  ASSERT_EQ(tool(kAdd).exit_code, 0);
  ASSERT_EQ(tool("add h1net /run/netns/h1-other --container-id ctr2").exit_code, 0);
  order();

  cni::ExecResult r = tool("gc h1net --valid ctr1/eth0");
  EXPECT_EQ(r.exit_code, 0) << r.stdout_data << r.stderr_data;
  EXPECT_EQ(order(), "fake-b DEL\nfake-a DEL\nfake-a GC\nfake-b GC\n");
  EXPECT_TRUE(fs::exists(cache("ctr1")));
  EXPECT_FALSE(fs::exists(cache("ctr2")));
  json gc = logged("fake-a", "GC", "");
  EXPECT_EQ(gc["cni.dev/valid-attachments"], json::parse(R"([{"containerID":"ctr1","ifname":"eth0"}])"));
  EXPECT_EQ(gc["cni.dev/attachments"], gc["cni.dev/valid-attachments"]);
  EXPECT_FALSE(gc.contains("runtimeConfig"));
  // The stale DEL used what was cached for ctr2.
  EXPECT_EQ(logged("fake-a", "DEL", "ctr2")["prevResult"]["cniVersion"], "1.1.0");
}

TEST_F(Cnitool, CapOptionTakesOneValueAndLeavesPositionalsAlone) {
  conflist("1.0.0");
  cni::ExecResult r = tool("add --cap 'portMappings=[]' h1net /run/netns/h1-fake --container-id ctr1");
  EXPECT_EQ(r.exit_code, 0) << r.stdout_data << r.stderr_data;
  EXPECT_EQ(logged("fake-b", "ADD")["name"], "h1net");
}

TEST_F(Cnitool, StatusNeeds110) {
  conflist("1.0.0");
  EXPECT_EQ(tool("status h1net").exit_code, 1);
  conflist("1.1.0");
  cni::ExecResult r = tool("status h1net");
  EXPECT_EQ(r.exit_code, 0) << r.stdout_data;
  EXPECT_EQ(order(), "fake-a STATUS\nfake-b STATUS\n");
}
