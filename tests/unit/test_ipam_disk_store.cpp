// The disk store's files, byte for byte and mode for mode, in a temporary directory; the
// bounded lock; and the verbs (cmd_*) over a real directory.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <algorithm>
#include <filesystem>
#include <map>
#include <fstream>
#include <sstream>
#include <thread>

#include "ipam/ipam.h"

namespace ferry::ipam {
namespace {

namespace fs = std::filesystem;

IPAddr ip(const char* s) { return *IPAddr::parse(s); }

std::string strs_of(const std::vector<IPAddr>& v) {
  std::string out;
  for (auto& a : v) out += (out.empty() ? "" : ",") + ip_file_name(a);
  return out;
}

class IpamDiskStore : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/h2-ipam-unit.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/networks/h2-net";
    old_umask_ = umask(022);
  }
  void TearDown() override {
    umask(old_umask_);
    fs::remove_all(root_);
  }

  static std::string read(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  static void write(const std::string& path, const std::string& data) {
    std::ofstream(path, std::ios::binary) << data;
  }
  static unsigned mode(const std::string& path) {
    struct stat st {};
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
    return st.st_mode & 07777;
  }
  std::vector<std::string> names() const {
    std::vector<std::string> out;
    for (auto& e : fs::directory_iterator(dir_)) out.push_back(e.path().filename());
    std::sort(out.begin(), out.end());
    return out;
  }

  cni::CmdArgs cmd(const std::string& verb, const std::string& id, json ipam, const std::string& ifname = "eth0") {
    cni::CmdArgs a;
    a.command = verb;
    a.container_id = id;
    a.ifname = ifname;
    a.netns = "/run/netns/h2-none";
    ipam["dataDir"] = root_ + "/networks";
    a.conf.raw = {{"cniVersion", "1.1.0"}, {"name", "h2-net"}, {"type", "ferry-bridge"}, {"ipam", ipam}};
    a.conf.cni_version = "1.1.0";
    a.conf.name = "h2-net";
    a.stdin_data = a.conf.raw.dump();
    return a;
  }

  std::string root_, dir_;
  mode_t old_umask_ = 0;
};

TEST_F(IpamDiskStore, CreatesDirectoryAndLockFile) {
  DiskStore s(dir_);
  EXPECT_EQ(mode(dir_), 0755u);
  EXPECT_EQ(mode(dir_ + "/lock"), 0750u);
  EXPECT_EQ(read(dir_ + "/lock"), "");
  EXPECT_EQ(names(), std::vector<std::string>{"lock"});
}

TEST_F(IpamDiskStore, ReservationFileIsByteExact) {
  DiskStore s(dir_);
  ASSERT_TRUE(s.reserve(ip("10.1.0.2"), {"ctr1", "eth0"}, 0));
  EXPECT_EQ(read(dir_ + "/10.1.0.2"), "ctr1\r\neth0");  // Appendix A of the reference notes
  EXPECT_EQ(mode(dir_ + "/10.1.0.2"), 0600u);
  EXPECT_EQ(read(dir_ + "/last_reserved_ip.0"), "10.1.0.2");
  EXPECT_EQ(mode(dir_ + "/last_reserved_ip.0"), 0600u);

  ASSERT_TRUE(s.reserve(ip("2001:db8:1::2"), {"  ctr1 ", "net1"}, 3));
  EXPECT_EQ(read(dir_ + "/2001:db8:1::2"), "ctr1\r\nnet1");  // container ID trimmed
  EXPECT_EQ(read(dir_ + "/last_reserved_ip.3"), "2001:db8:1::2");
  EXPECT_EQ(names(), (std::vector<std::string>{"10.1.0.2", "2001:db8:1::2", "last_reserved_ip.0",
                                               "last_reserved_ip.3", "lock"}));
}

TEST_F(IpamDiskStore, LastReservedIsOverwritten) {
  DiskStore s(dir_);
  ASSERT_TRUE(s.reserve(ip("10.1.0.200"), {"a", "eth0"}, 0));
  ASSERT_TRUE(s.reserve(ip("10.1.0.3"), {"b", "eth0"}, 0));
  EXPECT_EQ(read(dir_ + "/last_reserved_ip.0"), "10.1.0.3");
  EXPECT_EQ(s.last_reserved(0), ip("10.1.0.3"));
  EXPECT_FALSE(s.last_reserved(1));
  write(dir_ + "/last_reserved_ip.1", "garbage");
  EXPECT_FALSE(s.last_reserved(1));
}

TEST_F(IpamDiskStore, ReserveOfATakenAddressFailsAndKeepsTheOwner) {
  DiskStore s(dir_);
  ASSERT_TRUE(s.reserve(ip("10.1.0.2"), {"a", "eth0"}, 0));
  EXPECT_FALSE(s.reserve(ip("10.1.0.2"), {"b", "eth0"}, 0));
  EXPECT_EQ(read(dir_ + "/10.1.0.2"), "a\r\neth0");
  EXPECT_EQ(read(dir_ + "/last_reserved_ip.0"), "10.1.0.2");
}

TEST_F(IpamDiskStore, ListReadsReservationsOnly) {
  DiskStore s(dir_);
  write(dir_ + "/10.1.0.5", "ref-ctr\r\neth0");  // as the reference writes it
  write(dir_ + "/10.1.0.6", "legacy-ctr\n");     // pre-ifname format, with a newline
  write(dir_ + "/fd00::7", "v6\r\neth1");
  write(dir_ + "/last_reserved_ip.0", "10.1.0.6");
  write(dir_ + "/notes.txt", "ref-ctr\r\neth0");
  fs::create_directory(dir_ + "/10.1.0.9");
  auto list = s.list();
  std::map<std::string, std::string> got;
  for (auto& r : list) got[ip_file_name(r.ip)] = r.owner;
  EXPECT_EQ(got, (std::map<std::string, std::string>{
                     {"10.1.0.5", "ref-ctr\r\neth0"}, {"10.1.0.6", "legacy-ctr"}, {"fd00::7", "v6\r\neth1"}}));
}

TEST_F(IpamDiskStore, ReleaseRemovesTheFileAndToleratesAbsence) {
  DiskStore s(dir_);
  ASSERT_TRUE(s.reserve(ip("10.1.0.2"), {"a", "eth0"}, 0));
  s.release(ip("10.1.0.2"));
  EXPECT_FALSE(fs::exists(dir_ + "/10.1.0.2"));
  EXPECT_NO_THROW(s.release(ip("10.1.0.2")));
  EXPECT_TRUE(fs::exists(dir_ + "/last_reserved_ip.0"));  // DEL leaves the round-robin position
}

TEST_F(IpamDiskStore, ReleaseFindsANonCanonicalFileName) {
  DiskStore s(dir_);
  write(dir_ + "/fd00:0:0::5", "odd\r\neth0");
  EXPECT_EQ(strs_of(release(s, {"odd", "eth0"})), "fd00::5");
  EXPECT_FALSE(fs::exists(dir_ + "/fd00:0:0::5"));
}

TEST_F(IpamDiskStore, LockTimesOutWithCode11NamingTheLockFile) {
  DiskStore s(dir_);
  int holder = open((dir_ + "/lock").c_str(), O_RDONLY);  // another open file description
  ASSERT_EQ(flock(holder, LOCK_EX), 0);
  auto t0 = std::chrono::steady_clock::now();
  try {
    s.lock(std::chrono::milliseconds(300));
    ADD_FAILURE() << "lock() did not time out";
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), cni::kTryAgainLater);
    EXPECT_EQ(e.msg(), "timed out after 300 ms waiting for the lock " + dir_ + "/lock");
  }
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, std::chrono::milliseconds(290));
  EXPECT_LT(waited, std::chrono::milliseconds(2000));
  close(holder);
  EXPECT_NO_THROW(s.lock(std::chrono::milliseconds(300)));
}

TEST_F(IpamDiskStore, LockIsTakenAsSoonAsTheHolderLetsGo) {
  DiskStore s(dir_);
  int holder = open((dir_ + "/lock").c_str(), O_RDONLY);
  ASSERT_EQ(flock(holder, LOCK_EX), 0);
  std::thread release([holder] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    flock(holder, LOCK_UN);
  });
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_NO_THROW(s.lock(std::chrono::seconds(10)));
  auto waited = std::chrono::steady_clock::now() - t0;
  release.join();
  close(holder);
  EXPECT_LT(waited, std::chrono::milliseconds(1000));
  // We hold it now: a third party cannot take it.
  int other = open((dir_ + "/lock").c_str(), O_RDONLY);
  EXPECT_NE(flock(other, LOCK_EX | LOCK_NB), 0);
  s.unlock();
  EXPECT_EQ(flock(other, LOCK_EX | LOCK_NB), 0);
  close(other);
}

// ---------------------------------------------------------------------------------------
// The verbs over a real directory

json v4_ipam() { return {{"type", "host-local"}, {"ranges", {{{{"subnet", "10.1.0.0/24"}}}}}}; }

TEST_F(IpamDiskStore, AddCheckDelRoundTrip) {
  cni::Result r = cmd_add(cmd("ADD", "c1", v4_ipam()));
  ASSERT_EQ(r.ips.size(), 1u);
  EXPECT_EQ(r.ips[0].address.str(), "10.1.0.2/24");
  EXPECT_EQ(r.cni_version, "1.1.0");
  EXPECT_EQ(read(dir_ + "/10.1.0.2"), "c1\r\neth0");
  EXPECT_NO_THROW(cmd_check(cmd("CHECK", "c1", v4_ipam())));
  cmd_del(cmd("DEL", "c1", v4_ipam()));
  EXPECT_EQ(names(), (std::vector<std::string>{"last_reserved_ip.0", "lock"}));
  EXPECT_NO_THROW(cmd_del(cmd("DEL", "c1", v4_ipam())));  // again: still success
  try {
    cmd_check(cmd("CHECK", "c1", v4_ipam()));
    ADD_FAILURE();
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), kErrReservationNotFound);
    EXPECT_EQ(e.msg(), "host-local: Failed to find address added by container c1");
  }
}

TEST_F(IpamDiskStore, DelWithoutStoreCreatesNothing) {
  EXPECT_NO_THROW(cmd_del(cmd("DEL", "c1", v4_ipam())));
  EXPECT_FALSE(fs::exists(dir_));
}

TEST_F(IpamDiskStore, DelReleasesEvenWhenRangesNoLongerLoad) {
  cmd_add(cmd("ADD", "c1", v4_ipam()));
  json no_ranges = {{"type", "host-local"}};
  EXPECT_NO_THROW(cmd_del(cmd("DEL", "c1", no_ranges)));
  EXPECT_FALSE(fs::exists(dir_ + "/10.1.0.2"));
}

TEST_F(IpamDiskStore, ResolvConfBecomesDns) {
  write(root_ + "/resolv.conf", "# comment\nnameserver 10.0.0.53\n\ndomain example.org\nsearch a.example b.example\noptions ndots:2\n");
  json ipam = v4_ipam();
  ipam["resolvConf"] = root_ + "/resolv.conf";
  cni::Result r = cmd_add(cmd("ADD", "c1", ipam));
  EXPECT_EQ(r.dns.nameservers, std::vector<std::string>{"10.0.0.53"});
  EXPECT_EQ(r.dns.domain, "example.org");
  EXPECT_EQ(r.dns.search, (std::vector<std::string>{"a.example", "b.example"}));
  ipam["resolvConf"] = root_ + "/missing";
  try {
    cmd_add(cmd("ADD", "c2", ipam));
    ADD_FAILURE();
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), cni::kIOFailure);
    EXPECT_NE(e.msg().find("failed to read resolvConf " + root_ + "/missing"), std::string::npos);
  }
}

TEST_F(IpamDiskStore, GcReleasesOnlyStaleReservations) {
  cmd_add(cmd("ADD", "keep", v4_ipam()));
  cmd_add(cmd("ADD", "gone", v4_ipam()));
  write(dir_ + "/10.1.0.100", "legacy-keep");
  write(dir_ + "/10.1.0.101", "legacy-gone");
  cni::CmdArgs gc = cmd("GC", "", v4_ipam());
  gc.conf.raw["cni.dev/valid-attachments"] = {{{"containerID", "keep"}, {"ifname", "eth0"}},
                                              {{"containerID", "legacy-keep"}, {"ifname", "eth9"}}};
  cmd_gc(gc);
  EXPECT_EQ(names(), (std::vector<std::string>{"10.1.0.100", "10.1.0.2", "last_reserved_ip.0", "lock"}));
  gc.conf.raw["cni.dev/valid-attachments"] = json::array();
  cmd_gc(gc);
  EXPECT_EQ(names(), (std::vector<std::string>{"last_reserved_ip.0", "lock"}));
}

TEST_F(IpamDiskStore, StatusReports50WhenExhausted) {
  json ipam = {{"type", "host-local"}, {"ranges", {{{{"subnet", "10.1.0.0/30"}}}}}};
  EXPECT_NO_THROW(cmd_status(cmd("STATUS", "", ipam)));
  cmd_add(cmd("ADD", "c1", ipam));
  try {
    cmd_status(cmd("STATUS", "", ipam));
    ADD_FAILURE();
  } catch (const cni::Error& e) {
    EXPECT_EQ(e.code(), cni::kPluginNotAvailable);
    EXPECT_NE(e.msg().find("10.1.0.1-10.1.0.2"), std::string::npos) << e.msg();
  }
  cmd_del(cmd("DEL", "c1", ipam));
  EXPECT_NO_THROW(cmd_status(cmd("STATUS", "", ipam)));
}

}  // namespace
}  // namespace ferry::ipam
