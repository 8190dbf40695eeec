// plugin_main seen from a runtime: each case runs the dispatcher in a forked child with an
// exact environment and stdin, and checks exit code, stdout JSON and stderr.
#include <csignal>
#include <cerrno>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>

#include "cni/cni.h"

namespace cni = ferry::cni;
using cni::json;

namespace {

struct DispatchRun {
  int exit_code = -1;
  std::string out, err;
  json error() const { return json::parse(out); }
};

std::string drain(int fd) {
  std::string s;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return s;
}

DispatchRun dispatch(const cni::Plugin& plugin, const std::map<std::string, std::string>& env, const std::string& in) {
  int pin[2], pout[2], perr[2];
  if (::pipe(pin) || ::pipe(pout) || ::pipe(perr)) throw std::runtime_error("pipe");
  std::fflush(stdout);
  std::fflush(stderr);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::clearenv();
    for (const auto& [k, v] : env) ::setenv(k.c_str(), v.c_str(), 1);
    ::dup2(pin[0], 0);
    ::dup2(pout[1], 1);
    ::dup2(perr[1], 2);
    for (int fd : {pin[0], pin[1], pout[0], pout[1], perr[0], perr[1]}) ::close(fd);
    int rc = cni::plugin_main(plugin);
    std::fflush(nullptr);
    ::_exit(rc);
  }
  ::close(pin[0]);
  ::close(pout[1]);
  ::close(perr[1]);
  // A verb that never reads stdin (VERSION) may exit before this write: EPIPE, not SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);
  ssize_t written = ::write(pin[1], in.data(), in.size());
  if (written != static_cast<ssize_t>(in.size()) && !(written < 0 && errno == EPIPE)) ADD_FAILURE() << "short write";
  ::close(pin[1]);
  DispatchRun r;
  r.out = drain(pout[0]);  // small outputs: reading one pipe after the other is safe
  r.err = drain(perr[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::map<std::string, std::string> env_for(const std::string& cmd) {
  return {{"CNI_COMMAND", cmd}, {"CNI_CONTAINERID", "ctr1"}, {"CNI_NETNS", "/run/netns/h1-x"},
          {"CNI_IFNAME", "eth0"}, {"CNI_PATH", "/opt/cni/bin"}};
}

std::string conf(const std::string& version) {
  return R"({"cniVersion":")" + version + R"(","name":"h1net","type":"ferry-test"})";
}

cni::Result sample_result() {
  cni::Result r;
  r.interfaces.push_back({"eth0", "aa:bb:cc:dd:ee:ff", "/run/netns/h1-x", 1500, "", ""});
  r.ips.push_back({0, *cni::IPNet::parse("10.1.0.5/16"), cni::IPAddr::parse("10.1.0.1")});
  return r;
}

cni::Plugin test_plugin() {
  cni::Plugin p;
  p.about = "ferry-test v0";
  p.add = [](const cni::CmdArgs&) { return sample_result(); };
  p.del = [](const cni::CmdArgs& a) {
    if (a.netns.empty()) std::fputs("del without netns\n", stderr);
  };
  return p;
}

void expect_code(const DispatchRun& r, int code, const std::string& needle) {
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  ASSERT_FALSE(r.out.empty()) << r.err;
  json e = r.error();
  EXPECT_EQ(e["code"], code) << r.out;
  EXPECT_NE(r.out.find(needle), std::string::npos) << "wanted \"" << needle << "\" in " << r.out;
}

}  // namespace

TEST(CniDispatch, NoCommandPrintsAboutOnStderr) {
  DispatchRun r = dispatch(test_plugin(), {}, "");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "ferry-test v0\nCNI protocol versions supported: 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n");
}

TEST(CniDispatch, VersionNeedsOnlyTheCommand) {
  DispatchRun r = dispatch(test_plugin(), {{"CNI_COMMAND", "VERSION"}}, R"({"cniVersion":"1.0.0"})");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"cniVersion":"1.1.0",
            "supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})"));
}

TEST(CniDispatch, UnknownCommand) {
  expect_code(dispatch(test_plugin(), env_for("ATTACH"), conf("1.0.0")), 4, "unknown CNI_COMMAND: ATTACH");
}

TEST(CniDispatch, AddPrintsTheResultInTheRequestVersion) {
  DispatchRun r = dispatch(test_plugin(), env_for("ADD"), conf("0.4.0"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(json::parse(r.out), json::parse(R"({"cniVersion":"0.4.0",
      "interfaces":[{"name":"eth0","mac":"aa:bb:cc:dd:ee:ff","sandbox":"/run/netns/h1-x"}],
      "ips":[{"version":"4","interface":0,"address":"10.1.0.5/16","gateway":"10.1.0.1"}],"dns":{}})"));
  r = dispatch(test_plugin(), env_for("ADD"), conf("1.1.0"));
  EXPECT_EQ(json::parse(r.out)["interfaces"][0]["mtu"], 1500);
}

TEST(CniDispatch, EmptyContainerIdIsUnknownContainer) {
  for (const char* cmd : {"ADD", "DEL", "CHECK"}) {
    auto env = env_for(cmd);
    env.erase("CNI_CONTAINERID");
    expect_code(dispatch(test_plugin(), env, conf("1.0.0")), 3, "missing containerID");
  }
}

TEST(CniDispatch, InvalidContainerIdAndIfname) {
  auto env = env_for("ADD");
  env["CNI_CONTAINERID"] = "-bad/id";
  expect_code(dispatch(test_plugin(), env, conf("1.0.0")), 4, "invalid characters in containerID");
  env = env_for("DEL");
  env["CNI_IFNAME"] = "0123456789abcdef";
  expect_code(dispatch(test_plugin(), env, conf("1.0.0")), 4, "CNI_IFNAME must be 1 to 15 characters");
}

TEST(CniDispatch, MissingVariablesAreListed) {
  auto env = env_for("ADD");
  env.erase("CNI_NETNS");
  env.erase("CNI_PATH");
  DispatchRun r = dispatch(test_plugin(), env, conf("1.0.0"));
  expect_code(r, 4, "required env variables [CNI_NETNS,CNI_PATH] missing");
  EXPECT_EQ(r.error()["cniVersion"], "1.1.0");  // stdin not read yet: the current version

  env = env_for("CHECK");
  env.erase("CNI_IFNAME");
  expect_code(dispatch(test_plugin(), env, conf("1.0.0")), 4, "[CNI_IFNAME]");
  env = env_for("GC");
  env.erase("CNI_PATH");
  expect_code(dispatch(test_plugin(), {{"CNI_COMMAND", "GC"}}, conf("1.1.0")), 4, "[CNI_PATH]");
  expect_code(dispatch(test_plugin(), {{"CNI_COMMAND", "STATUS"}}, conf("1.1.0")), 4, "[CNI_PATH]");
}

TEST(CniDispatch, DelWithoutNetnsRunsTheHandler) {
  auto env = env_for("DEL");
  env.erase("CNI_NETNS");
  DispatchRun r = dispatch(test_plugin(), env, conf("1.0.0"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, "del without netns\n");
}

TEST(CniDispatch, GcAndStatusNeedOnlyThePath) {
  cni::Plugin p = test_plugin();
  p.gc = [](const cni::CmdArgs& a) {
    std::fprintf(stderr, "gc %zu\n", cni::valid_attachments(a.conf.raw).size());
  };
  DispatchRun r = dispatch(p, {{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/opt/cni/bin"}},
                   R"({"cniVersion":"1.1.0","name":"n","cni.dev/valid-attachments":[{"containerID":"c","ifname":"e"}]})");
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.err, "gc 1\n");
  r = dispatch(p, {{"CNI_COMMAND", "STATUS"}, {"CNI_PATH", "/opt/cni/bin"}}, conf("1.1.0"));
  EXPECT_EQ(r.exit_code, 0) << r.out;  // null handler succeeds
}

TEST(CniDispatch, ConfigErrors) {
  expect_code(dispatch(test_plugin(), env_for("ADD"), "{not json"), 6, "not valid JSON");
  expect_code(dispatch(test_plugin(), env_for("ADD"), R"({"cniVersion":"1.0.0"})"), 7, "missing network name");
  expect_code(dispatch(test_plugin(), env_for("DEL"), R"({"name":"n"})"), 1, "config is \\\"0.1.0\\\"");
  DispatchRun r = dispatch(test_plugin(), env_for("ADD"), conf("2.0.0"));
  expect_code(r, 1, "plugin supports [0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0]");
}

TEST(CniDispatch, VerbVersionGates) {
  expect_code(dispatch(test_plugin(), env_for("CHECK"), conf("0.3.1")), 1, "config version does not allow CHECK");
  EXPECT_EQ(dispatch(test_plugin(), env_for("CHECK"), conf("0.4.0")).exit_code, 0);
  expect_code(dispatch(test_plugin(), {{"CNI_COMMAND", "GC"}, {"CNI_PATH", "/x"}}, conf("1.0.0")), 1,
              "config version does not allow GC");
  expect_code(dispatch(test_plugin(), {{"CNI_COMMAND", "STATUS"}, {"CNI_PATH", "/x"}}, conf("1.0.0")), 1,
              "STATUS needs 1.1.0 or newer");
}

TEST(CniDispatch, HandlerErrorsKeepTheirCodeOthersBecome999) {
  cni::Plugin p = test_plugin();
  p.add = [](const cni::CmdArgs&) -> cni::Result { throw cni::Error(cni::kTryAgainLater, "busy", "retry"); };
  p.del = [](const cni::CmdArgs&) { throw std::runtime_error("netlink exploded"); };
  p.check = [](const cni::CmdArgs&) { throw 42; };
  DispatchRun r = dispatch(p, env_for("ADD"), conf("0.4.0"));
  expect_code(r, 11, "busy");
  EXPECT_EQ(r.error(), json::parse(R"({"cniVersion":"0.4.0","code":11,"msg":"busy","details":"retry"})"));
  expect_code(dispatch(p, env_for("DEL"), conf("1.0.0")), 999, "netlink exploded");
  expect_code(dispatch(p, env_for("CHECK"), conf("1.0.0")), 999, "unknown exception");
}
