// An ADD killed with SIGKILL at many moments (increasing delays over its whole run) leaves
// nothing that DEL, or GC alone, cannot clean: no host veth, no pod interface, no masquerade
// rule, no IPAM reservation, no endpoint record.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <thread>

#include "tests/integration/test_bridge_fixture.h"

extern char** environ;

namespace ferry::test {
namespace {

class BridgeKill : public BridgeFixture {
 protected:
  // Starts ferry-bridge ADD in its own process group, SIGKILLs only it after `delay`, then
  // waits for anything it started (the IPAM plugin, iptables-restore) to finish on its own,
  // as it would on a node where the runtime gave up on the plugin.
  void killed_add(const std::string& container_id, const TestNetns& ns, const json& c,
                  std::chrono::microseconds delay) {
    std::string bin = plugin_dir() + "/ferry-bridge";
    std::vector<std::string> env_s = {"CNI_COMMAND=ADD",
                                      "CNI_CONTAINERID=" + container_id,
                                      "CNI_NETNS=" + ns.path(),
                                      "CNI_IFNAME=eth0",
                                      "CNI_PATH=" + plugin_dir(),
                                      "PATH=/usr/sbin:/usr/bin:/sbin:/bin"};
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    int in[2];
    ASSERT_EQ(pipe2(in, O_CLOEXEC), 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attr, 0);
    char* argv[] = {bin.data(), nullptr};
    pid_t pid;
    ASSERT_EQ(posix_spawn(&pid, bin.c_str(), &fa, &attr, argv, envp.data()), 0);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in[0]);
    std::string data = c.dump();
    ASSERT_EQ(write(in[1], data.data(), data.size()), static_cast<ssize_t>(data.size()));
    close(in[1]);
    std::this_thread::sleep_for(delay);
    kill(pid, SIGKILL);
    int st;
    waitpid(pid, &st, 0);
    for (int i = 0; i < 500 && kill(-pid, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }

  // Something of the attachment exists (the kill landed after ADD started changing things).
  bool left_something(const TestNetns& ns) const {
    return !host_veths().empty() || !reservations().empty() || masq_rule_count() > 0 ||
           ns.exec_status("ip link show eth0 >/dev/null 2>&1") == 0;
  }

  void expect_clean(const TestNetns& ns, const std::string& when) {
    EXPECT_TRUE(host_veths().empty()) << when;
    EXPECT_NE(ns.exec_status("ip link show eth0 >/dev/null 2>&1"), 0) << when << ": pod interface left";
    EXPECT_EQ(masq_rule_count(), 0) << when;
    EXPECT_TRUE(reservations().empty()) << when;
    std::string files;
    for (const std::string& f : endpoint_files()) files += " " + f;
    EXPECT_TRUE(files.empty()) << when << ": endpoint files left:" << files;
  }

  // Delays from 0 to past a whole ADD, denser at the start.
  static std::vector<std::chrono::microseconds> delays() {
    std::vector<std::chrono::microseconds> d;
    for (int us = 0; us < 3000; us += 250) d.emplace_back(us);
    for (int us = 3000; us <= 40000; us += 1500) d.emplace_back(us);
    return d;
  }
};

TEST_F(BridgeKill, KilledAddThenDelLeavesNothing) {
  TestNetns& ns = pod("k");
  json c = conf({{"ipMasq", true}, {"ipam", ipam(true)}});
  int partial = 0, i = 0;
  for (auto delay : delays()) {
    std::string id = cid("d" + std::to_string(i++));
    killed_add(id, ns, c, delay);
    partial += left_something(ns);
    PluginRun del = call("DEL", id, ns.path(), c);
    EXPECT_EQ(del.exit_code, 0) << del.out;
    expect_clean(ns, "after SIGKILL at " + std::to_string(delay.count()) + "us and DEL");
    if (HasFailure()) break;
  }
  EXPECT_GT(partial, 3) << "the kills should land while ADD had changed something";
}

TEST_F(BridgeKill, KilledAddThenGcLeavesNothing) {
  TestNetns& ns = pod("k");
  json c = conf({{"ipMasq", true}, {"ipam", ipam(true)}}, "1.1.0");
  json gc = c;
  gc["cni.dev/valid-attachments"] = json::array();
  int partial = 0;
  for (auto delay : delays()) {
    killed_add(cid("g"), ns, c, delay);
    partial += left_something(ns);
    PluginRun r = call("GC", "", "", gc);
    EXPECT_EQ(r.exit_code, 0) << r.out;
    expect_clean(ns, "after SIGKILL at " + std::to_string(delay.count()) + "us and GC");
    if (HasFailure()) break;
  }
  EXPECT_GT(partial, 3);
}

}  // namespace
}  // namespace ferry::test
