// ferry-host-local end to end: the real binary, JSON on stdout, files on disk. Parallel ADDs,
// ADDs killed with SIGKILL at every moment, the reference host-local and ferry-host-local
// taking turns on one store, result shapes per spec version, the bounded lock, and ADD/DEL
// latency against the reference.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "tests/integration/support.h"

namespace ferry::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kFerry = "ferry-host-local";
std::string reference() { return reference_plugin_dir() + "/host-local"; }

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class HostLocalIpam : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_ROOT();
    char tmpl[] = "/tmp/h2-host-local.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    data_dir_ = tmpl;
  }
  void TearDown() override {
    if (!data_dir_.empty()) fs::remove_all(data_dir_);
  }

  json conf(const std::string& version = "1.1.0", json ranges = nullptr) const {
    if (ranges.is_null()) ranges = {{{{"subnet", "10.77.0.0/24"}}}, {{{"subnet", "fd00:77::/64"}}}};
    return {{"cniVersion", version},
            {"name", net_},
            {"type", "ferry-bridge"},
            {"ipam",
             {{"type", "host-local"},
              {"ranges", ranges},
              {"routes", {{{"dst", "0.0.0.0/0"}}, {{"dst", "::/0"}}}},
              {"dataDir", data_dir_}}}};
  }
  std::string store() const { return data_dir_ + "/" + net_; }

  // The names in the store, sorted.
  std::vector<std::string> files() const {
    std::vector<std::string> out;
    if (!fs::exists(store())) return out;
    for (auto& e : fs::directory_iterator(store())) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }
  // The store holds no reservation: only lock and last_reserved_ip.* remain.
  ::testing::AssertionResult store_empty() const {
    for (const std::string& f : files())
      if (f != "lock" && f.rfind("last_reserved_ip.", 0) != 0)
        return ::testing::AssertionFailure() << "left in " << store() << ": " << f << " = \""
                                             << read_file(store() + "/" + f) << "\"";
    return ::testing::AssertionSuccess();
  }

  PluginRun run(const std::string& binary, const std::string& verb, const std::string& id, const json& c,
                const std::string& cni_args = {}) const {
    PluginCall call;
    call.command = verb;
    call.container_id = id;
    call.netns = verb == "GC" || verb == "STATUS" ? "" : "/run/netns/h2-unused";
    call.ifname = verb == "GC" || verb == "STATUS" ? "" : "eth0";
    call.cni_args = cni_args;
    return run_plugin(binary, call, c);
  }
  // ADD that must succeed; returns the addresses ("ip/prefix") of the result.
  std::vector<std::string> add(const std::string& binary, const std::string& id, const json& c,
                               const std::string& cni_args = {}) const {
    PluginRun r = run(binary, "ADD", id, c, cni_args);
    EXPECT_EQ(r.exit_code, 0) << binary << " ADD " << id << ": " << r.out << r.err;
    std::vector<std::string> out;
    if (r.exit_code != 0) return out;
    json result = r.json_out();
    for (const json& ip : result["ips"]) out.push_back(ip["address"]);
    return out;
  }
  void del(const std::string& binary, const std::string& id, const json& c) const {
    PluginRun r = run(binary, "DEL", id, c);
    EXPECT_EQ(r.exit_code, 0) << binary << " DEL " << id << ": " << r.out << r.err;
    EXPECT_EQ(r.out, "");
  }

  std::string data_dir_;
  std::string net_ = "h2-hl";
};

// ---------------------------------------------------------------------------------------

TEST_F(HostLocalIpam, AddCheckDelEndToEnd) {
  PluginRun r = run(kFerry, "ADD", "h2-c1", conf());
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  json want = json::parse(R"({
    "cniVersion": "1.1.0",
    "ips": [{"address": "10.77.0.2/24", "gateway": "10.77.0.1"},
            {"address": "fd00:77::2/64", "gateway": "fd00:77::1"}],
    "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]})");
  json got = r.json_out();
  got.erase("dns");  // empty dns may be printed as {} or omitted
  EXPECT_EQ(got, want);
  EXPECT_EQ(files(), (std::vector<std::string>{"10.77.0.2", "fd00:77::2", "last_reserved_ip.0",
                                               "last_reserved_ip.1", "lock"}));
  EXPECT_EQ(read_file(store() + "/10.77.0.2"), "h2-c1\r\neth0");
  EXPECT_EQ(read_file(store() + "/fd00:77::2"), "h2-c1\r\neth0");
  EXPECT_EQ(read_file(store() + "/last_reserved_ip.1"), "fd00:77::2");

  r = run(kFerry, "CHECK", "h2-c1", conf());
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_EQ(r.out, "");

  r = run(kFerry, "ADD", "h2-c1", conf());  // a second ADD without DEL
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.json_out()["code"], 101);
  EXPECT_EQ(r.json_out()["msg"],
            "failed to allocate for range 0: 10.77.0.2 has been allocated to h2-c1, duplicate allocation is not allowed");

  del(kFerry, "h2-c1", conf());
  EXPECT_TRUE(store_empty());
  del(kFerry, "h2-c1", conf());  // idempotent

  r = run(kFerry, "CHECK", "h2-c1", conf());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.json_out()["code"], 100);
  EXPECT_EQ(r.json_out()["msg"], "host-local: Failed to find address added by container h2-c1");

  // Round-robin continues after the released address.
  EXPECT_EQ(add(kFerry, "h2-c2", conf()), (std::vector<std::string>{"10.77.0.3/24", "fd00:77::3/64"}));
}

TEST_F(HostLocalIpam, DelWithoutNetnsOrRanges) {
  add(kFerry, "h2-c1", conf());
  json c = conf();
  c["ipam"].erase("ranges");  // e.g. ranges came from runtimeConfig.ipRanges at ADD
  PluginCall call;
  call.command = "DEL";
  call.container_id = "h2-c1";
  call.ifname = "eth0";  // CNI_NETNS empty
  PluginRun r = run_plugin(kFerry, call, c);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(store_empty());
}

TEST_F(HostLocalIpam, InvalidConfigIsCode7OnStdout) {
  json c = conf("1.1.0", {{{{"subnet", "10.77.0.5/24"}}}});
  PluginRun r = run(kFerry, "ADD", "h2-c1", c);
  EXPECT_EQ(r.exit_code, 1);
  json e = r.json_out();
  EXPECT_EQ(e["code"], 7);
  EXPECT_EQ(e["msg"], "invalid range set 0: network 10.77.0.5/24 has host bits set: for a /24 the network address is 10.77.0.0");
  EXPECT_EQ(e["details"], "write \"subnet\": \"10.77.0.0/24\"");
  EXPECT_FALSE(fs::exists(store()));
}

TEST_F(HostLocalIpam, RequestedIpFromCniArgs) {
  EXPECT_EQ(add(kFerry, "h2-c1", conf(), "IgnoreUnknown=1;K8S_POD_NAME=p;IP=10.77.0.50"),
            (std::vector<std::string>{"10.77.0.50/24", "fd00:77::2/64"}));
  PluginRun r = run(kFerry, "ADD", "h2-c2", conf(), "IP=10.77.0.50");
  EXPECT_EQ(r.json_out()["code"], 11);
  EXPECT_EQ(r.json_out()["msg"],
            "failed to allocate for range 0: requested IP address 10.77.0.50 is not available in range set "
            "10.77.0.1-10.77.0.254");
  EXPECT_EQ(files().size(), 5u);  // h2-c2 left nothing behind
}

TEST_F(HostLocalIpam, GcReleasesStaleReservations) {
  add(kFerry, "h2-keep", conf());
  add(kFerry, "h2-gone", conf());
  json c = conf();
  c["cni.dev/valid-attachments"] = {{{"containerID", "h2-keep"}, {"ifname", "eth0"}}};
  PluginRun r = run(kFerry, "GC", "", c);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(files(), (std::vector<std::string>{"10.77.0.2", "fd00:77::2", "last_reserved_ip.0",
                                               "last_reserved_ip.1", "lock"}));
  c["cni.dev/valid-attachments"] = json::array();
  r = run(kFerry, "GC", "", c);
  ASSERT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(store_empty());
}

TEST_F(HostLocalIpam, StatusIs50WhenEveryRangeSetIsFull) {
  json c = conf("1.1.0", {{{{"subnet", "10.77.0.0/30"}}}});
  EXPECT_EQ(run(kFerry, "STATUS", "", c).exit_code, 0);
  add(kFerry, "h2-c1", c);
  PluginRun r = run(kFerry, "STATUS", "", c);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.json_out()["code"], 50);
  r = run(kFerry, "ADD", "h2-c2", c);
  EXPECT_EQ(r.json_out()["code"], 11);
  EXPECT_EQ(r.json_out()["msg"], "failed to allocate for range 0: no IP addresses available in range set: 10.77.0.1-10.77.0.2");
  del(kFerry, "h2-c1", c);
  EXPECT_EQ(run(kFerry, "STATUS", "", c).exit_code, 0);
}

TEST_F(HostLocalIpam, ResultShapePerSpecVersion) {
  int n = 0;
  for (const char* v : {"0.3.1", "0.4.0", "1.0.0", "1.1.0"}) {
    SCOPED_TRACE(v);
    json c = conf(v);
    c["ipam"]["resolvConf"] = data_dir_ + "/resolv.conf";
    std::ofstream(data_dir_ + "/resolv.conf") << "nameserver 10.77.0.53\nsearch h2.example\n";
    std::string id = "h2-v" + std::to_string(n++);
    PluginRun r = run(kFerry, "ADD", id, c);
    ASSERT_EQ(r.exit_code, 0) << r.out;
    json j = r.json_out();
    EXPECT_EQ(j["cniVersion"], v);
    ASSERT_EQ(j["ips"].size(), 2u);
    bool old = std::string(v) < "1.0.0";
    EXPECT_EQ(j["ips"][0].contains("version"), old);
    if (old) {
      EXPECT_EQ(j["ips"][0]["version"], "4");
      EXPECT_EQ(j["ips"][1]["version"], "6");
    }
    EXPECT_FALSE(j["ips"][0].contains("interface"));
    EXPECT_EQ(j["ips"][0]["gateway"], "10.77.0.1");
    EXPECT_EQ(j["routes"], json::parse(R"([{"dst":"0.0.0.0/0"},{"dst":"::/0"}])"));
    EXPECT_EQ(j["dns"], json::parse(R"({"nameservers":["10.77.0.53"],"search":["h2.example"]})"));
    if (std::string(v) >= "0.4.0") {
      EXPECT_EQ(run(kFerry, "CHECK", id, c).exit_code, 0);
    }
    del(kFerry, id, c);
  }
  EXPECT_TRUE(store_empty());
}

// ---------------------------------------------------------------------------------------

TEST_F(HostLocalIpam, HundredParallelAddsGetDistinctAddresses) {
  constexpr int kN = 100;
  std::vector<std::vector<std::string>> got(kN);
  std::vector<std::thread> threads;
  for (int i = 0; i < kN; ++i)
    threads.emplace_back([&, i] { got[i] = add(kFerry, "h2-par" + std::to_string(i), conf()); });
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (auto& ips : got) {
    ASSERT_EQ(ips.size(), 2u);
    all.insert(ips.begin(), ips.end());
  }
  EXPECT_EQ(all.size(), 2u * kN);
  EXPECT_EQ(files().size(), 2u * kN + 3);
  for (int i = 0; i < kN; ++i)  // each file names its owner
    EXPECT_EQ(read_file(store() + "/" + got[i][0].substr(0, got[i][0].find('/'))),
              "h2-par" + std::to_string(i) + "\r\neth0");

  threads.clear();
  for (int i = 0; i < kN; ++i) threads.emplace_back([&, i] { del(kFerry, "h2-par" + std::to_string(i), conf()); });
  for (auto& t : threads) t.join();
  EXPECT_TRUE(store_empty());
  EXPECT_EQ(files(), (std::vector<std::string>{"last_reserved_ip.0", "last_reserved_ip.1", "lock"}));
}

// Starts an ADD with its config already in the stdin pipe; returns the pid.
pid_t spawn_add(const std::string& binary, const std::string& id, const std::string& stdin_data) {
  int in[2];
  EXPECT_EQ(pipe(in), 0);
  EXPECT_EQ(write(in[1], stdin_data.data(), stdin_data.size()), static_cast<ssize_t>(stdin_data.size()));
  close(in[1]);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in[0], 0);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  std::vector<std::string> env = {"CNI_COMMAND=ADD", "CNI_CONTAINERID=" + id, "CNI_NETNS=/run/netns/h2-unused",
                                  "CNI_IFNAME=eth0", "CNI_PATH=" + plugin_dir()};
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  char* argv[] = {const_cast<char*>(binary.c_str()), nullptr};
  pid_t pid = -1;
  EXPECT_EQ(posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv, envp.data()), 0);
  posix_spawn_file_actions_destroy(&actions);
  close(in[0]);
  return pid;
}

TEST_F(HostLocalIpam, AddKilledAtAnyMomentLeavesNothingDelOrGcCannotClean) {
  const std::string binary = plugin_dir() + "/" + kFerry;
  const std::string stdin_data = conf().dump();
  // How long an ADD takes here (the median of a few).
  std::vector<double> us;
  for (int i = 0; i < 9; ++i) {
    auto t0 = Clock::now();
    pid_t pid = spawn_add(binary, "h2-time", stdin_data);
    int st = 0;
    waitpid(pid, &st, 0);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    del(kFerry, "h2-time", conf());
  }
  std::sort(us.begin(), us.end());
  const double add_us = us[us.size() / 2];

  constexpr int kSteps = 200;
  int killed = 0, finished = 0, killed_holding = 0;
  // The kill points span the measured ADD time; when the machine speeds up after the timing
  // runs most ADDs outrun their kill, so another pass uses half the span, until enough landed.
  for (double span = 1.2; span > 0.1 && killed <= kSteps / 5; span /= 2)
  for (int i = 0; i <= kSteps; ++i) {
    std::string id = "h2-kill" + std::to_string(i);
    auto delay = std::chrono::microseconds(static_cast<long>(add_us * span * i / kSteps));
    pid_t pid = spawn_add(binary, id, stdin_data);
    auto until = Clock::now() + delay;
    while (Clock::now() < until) {
    }  // busy-wait: sleeps are far coarser than an ADD
    kill(pid, SIGKILL);
    int st = 0;
    waitpid(pid, &st, 0);
    (WIFSIGNALED(st) ? killed : finished)++;
    if (WIFSIGNALED(st) && !store_empty()) ++killed_holding;  // killed after reserving
    // Every reservation file left is complete: it names its owner.
    for (const std::string& f : files())
      if (f != "lock" && f.rfind("last_reserved_ip.", 0) != 0) {
        EXPECT_EQ(read_file(store() + "/" + f), id + "\r\neth0") << f << " after a kill at " << delay.count() << " us";
      }
    if (i % 2 == 0) {
      del(kFerry, id, conf());
    } else {
      json c = conf();
      c["cni.dev/valid-attachments"] = json::array();
      EXPECT_EQ(run(kFerry, "GC", "", c).exit_code, 0);
    }
    ASSERT_TRUE(store_empty()) << "after a kill at " << delay.count() << " us (" << (i % 2 ? "GC" : "DEL") << ")";
  }
  std::printf("[ h2 ] ADD takes %.0f us; %d runs killed (%d of them holding a reservation), %d finished\n",
              add_us, killed, killed_holding, finished);
  // A run in which few were killed mid-way would not have tested anything.
  EXPECT_GT(killed, kSteps / 5);
  // Every last_reserved_ip left behind still parses (a torn write would only cost round-robin).
  for (const char* f : {"last_reserved_ip.0", "last_reserved_ip.1"}) {
    std::string s = read_file(store() + "/" + f);
    if (!s.empty()) {
      EXPECT_TRUE(cni::IPAddr::parse(s)) << f << " = " << s;
    }
  }
  // And the store is still usable.
  EXPECT_EQ(add(kFerry, "h2-after", conf()).size(), 2u);
}

// ---------------------------------------------------------------------------------------
// Interop with the reference host-local (cniVersion 1.0.0: the reference does not speak 1.1.0)

TEST_F(HostLocalIpam, ReferenceAndFerryTakeTurnsOnOneStore) {
  json c = conf("1.0.0", {{{{"subnet", "10.77.0.0/27"}}}, {{{"subnet", "fd00:77::/120"}}}});
  std::set<std::string> seen;
  std::vector<std::pair<std::string, std::string>> added;  // id, binary that added it
  std::string last_v4;
  for (int i = 0; i < 24; ++i) {
    const std::string& binary = (i / 3) % 2 == 0 ? reference() : kFerry;  // runs of three
    std::string id = "h2-io" + std::to_string(i);
    auto ips = add(binary, id, c);
    ASSERT_EQ(ips.size(), 2u);
    for (auto& a : ips) EXPECT_TRUE(seen.insert(a).second) << a << " handed out twice (" << binary << ")";
    // One round-robin for both: each ADD takes the address after the previous one.
    EXPECT_EQ(ips[0], "10.77.0." + std::to_string(i + 2) + "/27") << binary;
    EXPECT_EQ(read_file(store() + "/" + ips[0].substr(0, ips[0].find('/'))), id + "\r\neth0");
    added.emplace_back(id, binary);
  }
  // Each one's CHECK finds the other's reservation.
  for (auto& [id, binary] : added) {
    const std::string& other = binary == kFerry ? reference() : kFerry;
    EXPECT_EQ(run(other, "CHECK", id, c).exit_code, 0) << other << " CHECK " << id;
  }
  // Release half with the other binary, then allocate again with both: no duplicates with
  // what is still held.
  for (size_t i = 0; i < added.size(); i += 2) {
    const std::string& other = added[i].second == kFerry ? reference() : kFerry;
    del(other, added[i].first, c);
    EXPECT_FALSE(fs::exists(store() + "/10.77.0." + std::to_string(i + 2))) << other << " DEL " << added[i].first;
  }
  std::set<std::string> held;
  for (size_t i = 1; i < added.size(); i += 2) held.insert("10.77.0." + std::to_string(i + 2) + "/27");
  for (int i = 0; i < 12; ++i) {
    const std::string& binary = i % 2 ? reference() : kFerry;
    std::string id = "h2-io-again" + std::to_string(i);
    auto ips = add(binary, id, c);
    ASSERT_EQ(ips.size(), 2u);
    EXPECT_FALSE(held.count(ips[0])) << ips[0] << " is still held (" << binary << ")";
    EXPECT_TRUE(held.insert(ips[0]).second);
    added.emplace_back(id, binary);
  }
  for (size_t i = 1; i < added.size(); ++i) {
    if (i < 24 && i % 2 == 0) continue;  // already released
    const std::string& other = added[i].second == kFerry ? reference() : kFerry;
    del(other, added[i].first, c);
  }
  EXPECT_TRUE(store_empty());
}

TEST_F(HostLocalIpam, FerryReleasesLegacyAndReferenceWrittenFiles) {
  json c = conf("1.0.0");
  fs::create_directories(store());
  std::ofstream(store() + "/10.77.0.9") << "h2-legacy";  // written before ifname was recorded
  EXPECT_EQ(run(kFerry, "CHECK", "h2-legacy", c).exit_code, 0);
  // A reservation of an older, legacy-format host-local is also a duplicate for ADD.
  EXPECT_EQ(run(kFerry, "ADD", "h2-legacy", c).json_out()["code"], 101);
  del(kFerry, "h2-legacy", c);
  EXPECT_TRUE(store_empty());
}

// ---------------------------------------------------------------------------------------

TEST_F(HostLocalIpam, LockHeldTooLongIsCode11NotAHang) {
  add(kFerry, "h2-first", conf());  // creates the store and its lock file
  int holder = open((store() + "/lock").c_str(), O_RDONLY);
  ASSERT_GE(holder, 0);
  ASSERT_EQ(flock(holder, LOCK_EX), 0);
  auto t0 = Clock::now();
  PluginRun r = run(kFerry, "ADD", "h2-second", conf());
  auto waited = Clock::now() - t0;
  close(holder);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.json_out()["code"], 11);
  EXPECT_EQ(r.json_out()["msg"], "timed out after 10 s waiting for the lock " + store() + "/lock");
  EXPECT_GE(waited, std::chrono::seconds(9));
  EXPECT_LT(waited, std::chrono::seconds(20));
  EXPECT_EQ(files().size(), 5u);  // nothing reserved for h2-second
}

// ADD and DEL latency, ferry vs the reference: 100 allocations on one network each (so the
// last ADDs and first DELs scan a store of 100 reservations), the two interleaved call by
// call so that load from elsewhere on the machine hits both alike.
TEST_F(HostLocalIpam, LatencyAgainstReference) {
  constexpr int kN = 100;
  struct Side {
    std::string binary, tag;
    json conf;
    std::vector<double> add_ms, del_ms;
  };
  std::vector<Side> sides = {{reference(), "reference", conf("1.0.0"), {}, {}},
                             {plugin_dir() + "/" + kFerry, "ferry", conf("1.0.0"), {}, {}}};
  for (Side& s : sides) s.conf["name"] = net_ + "-" + s.tag;
  auto timed = [&](Side& s, const std::string& verb, int i, std::vector<double>& out) {
    auto t0 = Clock::now();
    PluginRun r = run(s.binary, verb, "h2-lat" + std::to_string(i), s.conf);
    out.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
    EXPECT_EQ(r.exit_code, 0) << s.tag << " " << verb << ": " << r.out;
  };
  for (int i = 0; i < kN; ++i)
    for (Side& s : sides) timed(s, "ADD", i, s.add_ms);
  for (int i = 0; i < kN; ++i)
    for (Side& s : sides) timed(s, "DEL", i, s.del_ms);
  for (Side& s : sides) {
    std::sort(s.add_ms.begin(), s.add_ms.end());
    std::sort(s.del_ms.begin(), s.del_ms.end());
    std::printf("[ h2 ] %-10s ADD p50 %.2f ms p99 %.2f ms | DEL p50 %.2f ms p99 %.2f ms (%d allocations)\n",
                s.tag.c_str(), s.add_ms[kN / 2], s.add_ms[kN * 99 / 100], s.del_ms[kN / 2], s.del_ms[kN * 99 / 100],
                kN);
  }
  const Side& ref = sides[0];
  const Side& ours = sides[1];
  std::printf("[ h2 ] ferry/reference median: ADD %.2f, DEL %.2f\n", ours.add_ms[kN / 2] / ref.add_ms[kN / 2],
              ours.del_ms[kN / 2] / ref.del_ms[kN / 2]);
  EXPECT_LT(ours.add_ms[kN / 2], ref.add_ms[kN / 2]);
  EXPECT_LT(ours.del_ms[kN / 2], ref.del_ms[kN / 2]);
}

}  // namespace
}  // namespace ferry::test
