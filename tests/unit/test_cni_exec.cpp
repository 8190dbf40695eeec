// Running plugins: exec_plugin with shell scripts (exit codes, exact environment, stdin,
// large outputs on both pipes), find_plugin, and delegation with error propagation.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "cni/cni.h"

namespace cni = ferry::cni;
using cni::json;

namespace {

// A scratch directory removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/h1-cni-test-XXXXXX";
    path_ = ::mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  // Writes an executable /bin/sh script named `name`; returns its path.
  std::string script(const std::string& name, const std::string& body) const {
    std::string p = path_ + "/" + name;
    {
      std::ofstream out(p);
      out << "#!/bin/sh\n" << body;
    }
    ::chmod(p.c_str(), 0755);
    return p;
  }

 private:
  std::string path_;
};

const std::map<std::string, std::string> kBaseEnv = {{"PATH", "/usr/bin:/bin"}};

std::string read(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(CniExec, CapturesStdoutStderrAndExitCode) {
  TempDir d;
  std::string p = d.script("p", "echo out; echo err >&2; exit 3\n");
  cni::ExecResult r = cni::exec_plugin(p, kBaseEnv, "");
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.stdout_data, "out\n");
  EXPECT_EQ(r.stderr_data, "err\n");
}

TEST(CniExec, PassesExactlyTheGivenEnvironment) {
  TempDir d;
  ::setenv("H1_SHOULD_NOT_LEAK", "1", 1);
  std::string p = d.script("p", "env | sort\n");
  cni::ExecResult r = cni::exec_plugin(p, {{"CNI_COMMAND", "ADD"}, {"A", "x y"}}, "");
  ::unsetenv("H1_SHOULD_NOT_LEAK");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.stdout_data.find("CNI_COMMAND=ADD\n"), std::string::npos) << r.stdout_data;
  EXPECT_NE(r.stdout_data.find("A=x y\n"), std::string::npos);
  EXPECT_EQ(r.stdout_data.find("H1_SHOULD_NOT_LEAK"), std::string::npos);
}

TEST(CniExec, FeedsStdin) {
  TempDir d;
  std::string p = d.script("p", "cat\n");
  cni::ExecResult r = cni::exec_plugin(p, kBaseEnv, R"({"cniVersion":"1.0.0"})");
  EXPECT_EQ(r.stdout_data, R"({"cniVersion":"1.0.0"})");
}

TEST(CniExec, LargeInputAndOutputsOnBothPipesDoNotDeadlock) {
  TempDir d;
  // 1 MiB in, echoed to stdout, plus 256 KiB on stderr written before stdin is read.
  std::string p = d.script("p", "head -c 262144 /dev/zero | tr '\\0' e >&2; cat\n");
  std::string big(1 << 20, 'x');
  cni::ExecResult r = cni::exec_plugin(p, kBaseEnv, big);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_data.size(), big.size());
  EXPECT_EQ(r.stdout_data, big);
  EXPECT_EQ(r.stderr_data, std::string(262144, 'e'));
}

TEST(CniExec, ChildThatIgnoresStdinDoesNotKillUs) {
  TempDir d;
  std::string p = d.script("p", "echo done\n");
  cni::ExecResult r = cni::exec_plugin(p, kBaseEnv, std::string(4 << 20, 'x'));
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.stdout_data, "done\n");
}

TEST(CniExec, KilledChildReportsSignal) {
  TempDir d;
  std::string p = d.script("p", "kill -9 $$\n");
  EXPECT_EQ(cni::exec_plugin(p, kBaseEnv, "").exit_code, 128 + 9);
}

TEST(CniExec, MissingBinaryIsAnError) {
  try {
    cni::exec_plugin("/nonexistent/h1-plugin", kBaseEnv, "");
    FAIL();
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), cni::kIOFailure);
    EXPECT_NE(std::string(e.what()).find("/nonexistent/h1-plugin"), std::string::npos);
  }
}

TEST(CniFindPlugin, SearchesEachDirectoryInOrder) {
  TempDir a, b;
  b.script("ferry-x", "exit 0\n");
  EXPECT_EQ(cni::find_plugin("ferry-x", a.path() + "::" + b.path()), b.path() + "/ferry-x");
  a.script("ferry-x", "exit 0\n");
  EXPECT_EQ(cni::find_plugin("ferry-x", a.path() + ":" + b.path()), a.path() + "/ferry-x");
  std::filesystem::create_directory(b.path() + "/dir-not-plugin");
  EXPECT_THROW(cni::find_plugin("dir-not-plugin", b.path()), cni::Error);
}

TEST(CniFindPlugin, NotFoundNamesThePath) {
  try {
    cni::find_plugin("nope", "/h1/a:/h1/b");
    FAIL();
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), cni::kInvalidConfig);
    EXPECT_EQ(e.msg(), "failed to find plugin \"nope\" in path [/h1/a /h1/b]");
  }
  EXPECT_THROW(cni::find_plugin("../bin/sh", "/bin"), cni::Error);
  EXPECT_THROW(cni::find_plugin("", "/bin"), cni::Error);
}

namespace {
cni::CmdArgs delegate_args(const std::string& path, const std::string& stdin_data) {
  cni::CmdArgs a;
  a.command = "ADD";
  a.container_id = "ctr1";
  a.netns = "/run/netns/h1-x";
  a.ifname = "eth0";
  a.args = "IgnoreUnknown=1";
  a.path = path;
  a.stdin_data = stdin_data;
  a.conf = cni::parse_net_conf(stdin_data);
  return a;
}
const char* kConf = R"({"cniVersion":"1.0.0","name":"h1net","type":"ferry-bridge","ipam":{"type":"fake-ipam"}})";
}  // namespace

TEST(CniDelegate, AddPassesStdinAndEnvironmentAndParsesTheResult) {
  TempDir d;
  ::setenv("H1_INHERITED", "yes", 1);
  d.script("fake-ipam",
           "cat > " + d.path() + "/stdin\n"
           "env > " + d.path() + "/env\n"
           R"(echo '{"cniVersion":"1.0.0","ips":[{"address":"10.1.0.2/24","gateway":"10.1.0.1"}],"routes":[{"dst":"0.0.0.0/0"}]}')"
           "\n");
  cni::Result r = cni::delegate_add("fake-ipam", delegate_args(d.path(), kConf));
  ::unsetenv("H1_INHERITED");
  ASSERT_EQ(r.ips.size(), 1u);
  EXPECT_EQ(r.ips[0].address.str(), "10.1.0.2/24");
  EXPECT_EQ(r.routes[0].dst.str(), "0.0.0.0/0");
  EXPECT_EQ(read(d.path() + "/stdin"), kConf);
  std::string env = read(d.path() + "/env");
  for (const char* want : {"CNI_COMMAND=ADD\n", "CNI_CONTAINERID=ctr1\n", "CNI_NETNS=/run/netns/h1-x\n",
                           "CNI_IFNAME=eth0\n", "CNI_ARGS=IgnoreUnknown=1\n", "H1_INHERITED=yes\n"})
    EXPECT_NE(env.find(want), std::string::npos) << want << " not in\n" << env;
  EXPECT_NE(env.find("CNI_PATH=" + d.path() + "\n"), std::string::npos);
}

TEST(CniDelegate, EachVerbSetsCniCommand) {
  TempDir d;
  d.script("fake-ipam", "echo \"$CNI_COMMAND\" >> " + d.path() + "/verbs\n");
  auto a = delegate_args(d.path(), kConf);
  cni::delegate_del("fake-ipam", a);
  cni::delegate_check("fake-ipam", a);
  cni::delegate_gc("fake-ipam", a);
  cni::delegate_status("fake-ipam", a);
  EXPECT_EQ(read(d.path() + "/verbs"), "DEL\nCHECK\nGC\nSTATUS\n");
}

TEST(CniDelegate, JsonErrorIsRethrownWithTheDelegatesCode) {
  TempDir d;
  d.script("fake-ipam",
           R"(echo '{"cniVersion":"1.0.0","code":11,"msg":"store is locked","details":"retry later"}'; exit 1)"
           "\n");
  try {
    cni::delegate_add("fake-ipam", delegate_args(d.path(), kConf));
    FAIL();
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), 11);
    EXPECT_EQ(e.msg(), "store is locked");
    EXPECT_EQ(e.details(), "retry later");
  }
}

TEST(CniDelegate, NonJsonFailureFallsBackToStderrAsInternal) {
  TempDir d;
  d.script("fake-ipam", "echo 'panic: boom' >&2; exit 2\n");
  try {
    cni::delegate_del("fake-ipam", delegate_args(d.path(), kConf));
    FAIL();
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), cni::kInternal);
    EXPECT_NE(e.msg().find("fake-ipam"), std::string::npos);
    EXPECT_NE(e.msg().find("exit code 2"), std::string::npos);
    EXPECT_EQ(e.details(), "panic: boom");
  }
}

TEST(CniDelegate, GarbageResultIsADecodingFailure) {
  TempDir d;
  d.script("fake-ipam", "echo 'not json'\n");
  try {
    cni::delegate_add("fake-ipam", delegate_args(d.path(), kConf));
    FAIL();
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), cni::kDecodingFailure);
    EXPECT_NE(e.details().find("not json"), std::string::npos);
  }
}

TEST(CniDelegate, MissingDelegateIsInvalidConfig) {
  TempDir d;
  try {
    cni::delegate_add("fake-ipam", delegate_args(d.path(), kConf));
    FAIL();
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), cni::kInvalidConfig);
    EXPECT_EQ(e.msg(), "failed to find plugin \"fake-ipam\" in path [" + d.path() + "]");
  }
}
