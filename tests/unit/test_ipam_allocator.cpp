// The host-local allocator over an in-memory store: round-robin, wrap across ranges, gateway
// skipping, exhaustion, requested IPs, duplicates, all-or-nothing ADD, and the selection
// logic of DEL, CHECK, GC and STATUS.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "ipam/ipam.h"

namespace ferry::ipam {
namespace {

IPAddr ip(const char* s) { return *IPAddr::parse(s); }

// The Store contract in memory: what the disk store keeps in files.
class MemoryStore : public Store {
 public:
  std::map<IPAddr, std::string> files;  // ip -> owner
  std::map<size_t, IPAddr> last;
  std::set<IPAddr> fail_reserve;  // reserve() throws for these
  int reserve_calls = 0;

  std::vector<Reservation> list() override {
    std::vector<Reservation> out;
    for (auto& [a, owner] : files) out.push_back({a, owner});
    return out;
  }
  bool reserve(const IPAddr& a, const cni::Attachment& owner, size_t set) override {
    ++reserve_calls;
    if (fail_reserve.count(a)) throw cni::Error(cni::kIOFailure, "disk full");
    if (files.count(a)) return false;
    files[a] = owner_key(owner);
    last[set] = a;
    return true;
  }
  void release(const IPAddr& a) override { files.erase(a); }
  std::optional<IPAddr> last_reserved(size_t set) override {
    auto it = last.find(set);
    if (it == last.end()) return std::nullopt;
    return it->second;
  }
};

Config config_of(json sets, std::string_view cni_args = {}, json extra = {}) {
  json conf = {{"cniVersion", "1.0.0"}, {"name", "h2-alloc"}, {"ipam", {{"type", "host-local"}, {"ranges", sets}}}};
  if (extra.is_object()) conf.update(extra);
  return parse_config(conf, cni_args);
}

std::vector<std::string> strs(const std::vector<IPAddr>& v) {
  std::vector<std::string> out;
  for (auto& a : v) out.push_back(a.str());
  return out;
}

const cni::Attachment kA{"ctr-a", "eth0"};
const cni::Attachment kB{"ctr-b", "eth0"};

template <typename F>
cni::Error error_of(F f) {
  try {
    f();
  } catch (const cni::Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected a cni::Error";
  return cni::Error(0, "");
}

// ---------------------------------------------------------------------------------------
// The iterator

TEST(IpamCandidates, StartAtRangeStartSkippingGateway) {
  Config c = config_of({{{{"subnet", "10.1.0.0/29"}}}});
  EXPECT_EQ(strs(candidates(c.range_sets[0], std::nullopt, 100)),
            (std::vector<std::string>{"10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"}));
}

TEST(IpamCandidates, RoundRobinAfterLastAndWrap) {
  Config c = config_of({{{{"subnet", "10.1.0.0/29"}}}});
  EXPECT_EQ(strs(candidates(c.range_sets[0], ip("10.1.0.4"), 100)),
            (std::vector<std::string>{"10.1.0.5", "10.1.0.6", "10.1.0.2", "10.1.0.3", "10.1.0.4"}));
  // A last IP outside the set (the config changed) restarts at rangeStart.
  EXPECT_EQ(candidates(c.range_sets[0], ip("10.9.0.4"), 1)[0].str(), "10.1.0.2");
}

TEST(IpamCandidates, WrapsAcrossRangesOfASet) {
  Config c = config_of({{{{"subnet", "10.1.0.0/30"}}, {{"subnet", "10.2.0.0/24"}, {"rangeStart", "10.2.0.10"},
                                                        {"rangeEnd", "10.2.0.11"}, {"gateway", "10.2.0.11"}}}});
  EXPECT_EQ(strs(candidates(c.range_sets[0], ip("10.1.0.2"), 100)),
            (std::vector<std::string>{"10.2.0.10", "10.1.0.2"}));
}

TEST(IpamCandidates, GatewayInsideRangeIsSkipped) {
  Config c = config_of({{{{"subnet", "10.1.0.0/29"}, {"gateway", "10.1.0.4"}}}});
  EXPECT_EQ(strs(candidates(c.range_sets[0], std::nullopt, 100)),
            (std::vector<std::string>{"10.1.0.1", "10.1.0.2", "10.1.0.3", "10.1.0.5", "10.1.0.6"}));
}

TEST(IpamCandidates, OnlyTheGatewayMeansNoCandidate) {
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}, {"rangeStart", "10.1.0.1"}, {"rangeEnd", "10.1.0.1"}}}});
  EXPECT_TRUE(candidates(c.range_sets[0], std::nullopt, 100).empty());
  EXPECT_TRUE(candidates(c.range_sets[0], ip("10.1.0.1"), 100).empty());
}

TEST(IpamCandidates, Ipv6) {
  Config c = config_of({{{{"subnet", "fd00::/64"}}}});
  EXPECT_EQ(strs(candidates(c.range_sets[0], std::nullopt, 2)), (std::vector<std::string>{"fd00::2", "fd00::3"}));
  EXPECT_EQ(strs(candidates(c.range_sets[0], ip("fd00::ffff:ffff:ffff:fffe"), 3)),
            (std::vector<std::string>{"fd00::ffff:ffff:ffff:ffff", "fd00::2", "fd00::3"}));
}

// ---------------------------------------------------------------------------------------
// allocate

TEST(IpamAllocate, OneAddressPerRangeSetWithGateway) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}}}, {{{"subnet", "fd00::/64"}}}});
  auto ips = allocate(c, s, kA);
  ASSERT_EQ(ips.size(), 2u);
  EXPECT_EQ(ips[0].address.str(), "10.1.0.2/24");
  EXPECT_EQ(ips[0].gateway->str(), "10.1.0.1");
  EXPECT_FALSE(ips[0].interface);
  EXPECT_EQ(ips[1].address.str(), "fd00::2/64");
  EXPECT_EQ(ips[1].gateway->str(), "fd00::1");
  EXPECT_EQ(s.files[ip("10.1.0.2")], "ctr-a\r\neth0");
  EXPECT_EQ(s.last[0], ip("10.1.0.2"));
  EXPECT_EQ(s.last[1], ip("fd00::2"));
}

TEST(IpamAllocate, RoundRobinDoesNotReuseAFreedAddressAtOnce) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/29"}}}});
  EXPECT_EQ(allocate(c, s, kA)[0].address.addr.str(), "10.1.0.2");
  release(s, kA);
  EXPECT_EQ(allocate(c, s, kB)[0].address.addr.str(), "10.1.0.3");
}

TEST(IpamAllocate, SkipsTakenAndWraps) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/29"}}}});
  s.files[ip("10.1.0.6")] = "x\r\neth0";
  s.files[ip("10.1.0.2")] = "y\r\neth0";
  s.last[0] = ip("10.1.0.5");
  EXPECT_EQ(allocate(c, s, kA)[0].address.addr.str(), "10.1.0.3");
  EXPECT_EQ(s.last[0], ip("10.1.0.3"));
}

TEST(IpamAllocate, ExhaustionNamesTheRangeSet) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/30"}}, {{"subnet", "10.2.0.0/30"}}}});
  allocate(c, s, {"c1", "eth0"});
  allocate(c, s, {"c2", "eth0"});
  cni::Error e = error_of([&] { allocate(c, s, {"c3", "eth0"}); });
  EXPECT_EQ(e.code(), cni::kTryAgainLater);
  EXPECT_EQ(e.msg(),
            "failed to allocate for range 0: no IP addresses available in range set: 10.1.0.1-10.1.0.2,10.2.0.1-10.2.0.2");
  EXPECT_EQ(s.files.size(), 2u);
}

TEST(IpamAllocate, PartialFailureReleasesEarlierSets) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}}}, {{{"subnet", "10.2.0.0/30"}}}});
  s.files[ip("10.2.0.2")] = "other\r\neth0";
  cni::Error e = error_of([&] { allocate(c, s, kA); });
  EXPECT_EQ(e.msg(), "failed to allocate for range 1: no IP addresses available in range set: 10.2.0.1-10.2.0.2");
  EXPECT_EQ(s.files.size(), 1u);  // 10.1.0.2 was given back
  EXPECT_EQ(s.files.count(ip("10.1.0.2")), 0u);
}

TEST(IpamAllocate, StoreErrorReleasesEarlierSets) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}}}, {{{"subnet", "10.2.0.0/24"}}}});
  s.fail_reserve.insert(ip("10.2.0.2"));
  cni::Error e = error_of([&] { allocate(c, s, kA); });
  EXPECT_EQ(e.code(), cni::kIOFailure);
  EXPECT_EQ(e.msg(), "failed to allocate for range 1: disk full");
  EXPECT_TRUE(s.files.empty());
}

TEST(IpamAllocate, DuplicateAttachmentRefused) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}}}});
  allocate(c, s, kA);
  cni::Error e = error_of([&] { allocate(c, s, kA); });
  EXPECT_EQ(e.code(), kErrDuplicateAllocation);
  EXPECT_EQ(e.msg(), "failed to allocate for range 0: 10.1.0.2 has been allocated to ctr-a, duplicate allocation is not allowed");
  // Same container, other interface: fine.
  EXPECT_EQ(allocate(c, s, {"ctr-a", "eth1"})[0].address.addr.str(), "10.1.0.3");
  // A legacy reservation (container ID only) counts as a duplicate too, as in the reference.
  s.files[ip("10.1.0.50")] = "ctr-l";
  EXPECT_EQ(error_of([&] { allocate(c, s, {"ctr-l", "eth0"}); }).code(), kErrDuplicateAllocation);
  EXPECT_EQ(s.files.size(), 3u);
}

TEST(IpamAllocate, DuplicateOnlyCountsInsideTheRangeSet) {
  MemoryStore s;
  s.files[ip("10.9.0.5")] = "ctr-a\r\neth0";  // from an older config
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}}}});
  EXPECT_NO_THROW(allocate(c, s, kA));
}

TEST(IpamAllocate, RequestedIpUsedForItsSet) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}}}, {{{"subnet", "fd00::/64"}}}}, "IP=10.1.0.77");
  auto ips = allocate(c, s, kA);
  EXPECT_EQ(ips[0].address.str(), "10.1.0.77/24");
  EXPECT_EQ(ips[1].address.str(), "fd00::2/64");
  EXPECT_EQ(s.last[0], ip("10.1.0.77"));
}

TEST(IpamAllocate, RequestedIpPrefixIgnored) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}}}}, {}, {{"args", {{"cni", {{"ips", {"10.1.0.9/8"}}}}}}});
  EXPECT_EQ(allocate(c, s, kA)[0].address.str(), "10.1.0.9/24");
}

TEST(IpamAllocate, RequestedIpTaken) {
  MemoryStore s;
  s.files[ip("10.1.0.77")] = "other\r\neth0";
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}}}}, "IP=10.1.0.77");
  cni::Error e = error_of([&] { allocate(c, s, kA); });
  EXPECT_EQ(e.code(), cni::kTryAgainLater);
  EXPECT_EQ(e.msg(), "failed to allocate for range 0: requested IP address 10.1.0.77 is not available in range set 10.1.0.1-10.1.0.254");
}

TEST(IpamAllocate, RequestedGatewayRefused) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}}}}, "IP=10.1.0.1");
  cni::Error e = error_of([&] { allocate(c, s, kA); });
  EXPECT_EQ(e.code(), cni::kInvalidConfig);
  EXPECT_EQ(e.msg(), "failed to allocate for range 0: requested ip 10.1.0.1 is subnet's gateway");
  EXPECT_TRUE(s.files.empty());
}

TEST(IpamAllocate, RequestedIpOutsideEverySetFailsAndReleases) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}, {"rangeEnd", "10.1.0.100"}}}}, "IP=10.1.0.200");
  cni::Error e = error_of([&] { allocate(c, s, kA); });
  EXPECT_EQ(e.code(), cni::kInvalidConfig);
  EXPECT_EQ(e.msg(), "failed to allocate all requested IPs: 10.1.0.200");
  EXPECT_TRUE(s.files.empty());
}

TEST(IpamAllocate, TwoRequestedIpsInOneSetFail) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}}}}, {}, {{"runtimeConfig", {{"ips", {"10.1.0.5", "10.1.0.6"}}}}});
  cni::Error e = error_of([&] { allocate(c, s, kA); });
  EXPECT_EQ(e.msg(), "failed to allocate all requested IPs: 10.1.0.6");
  EXPECT_TRUE(s.files.empty());
}

// ---------------------------------------------------------------------------------------
// DEL, CHECK, GC, STATUS

TEST(IpamRelease, ExactOwnerOnly) {
  MemoryStore s;
  s.files[ip("10.1.0.2")] = "ctr-a\r\neth0";
  s.files[ip("fd00::2")] = "ctr-a\r\neth0";
  s.files[ip("10.1.0.3")] = "ctr-a\r\neth1";
  s.files[ip("10.1.0.4")] = "ctr-a";  // legacy: not touched while exact matches exist
  EXPECT_EQ(strs(release(s, kA)), (std::vector<std::string>{"10.1.0.2", "fd00::2"}));
  EXPECT_EQ(s.files.size(), 2u);
  EXPECT_EQ(strs(release(s, kA)), (std::vector<std::string>{"10.1.0.4"}));  // now the legacy file matches
  EXPECT_EQ(s.files.size(), 1u);
  EXPECT_TRUE(release(s, kA).empty());  // nothing left: success
}

TEST(IpamCheck, ExactOrLegacy) {
  std::vector<Reservation> r = {{ip("10.1.0.2"), "ctr-a\r\neth0"}, {ip("10.1.0.3"), "ctr-l"}};
  EXPECT_TRUE(has_reservation(r, kA));
  EXPECT_FALSE(has_reservation(r, {"ctr-a", "eth1"}));
  EXPECT_TRUE(has_reservation(r, {"ctr-l", "net9"}));
  EXPECT_FALSE(has_reservation(r, kB));
}

TEST(IpamGc, SelectsReservationsOfNoValidAttachment) {
  std::vector<Reservation> r = {{ip("10.1.0.2"), "ctr-a\r\neth0"},
                                {ip("10.1.0.3"), "ctr-a\r\neth1"},
                                {ip("10.1.0.4"), "ctr-b\r\neth0"},
                                {ip("10.1.0.5"), "ctr-a"},   // legacy, ID still valid
                                {ip("10.1.0.6"), "ctr-z"},   // legacy, gone
                                {ip("10.1.0.7"), ""}};       // an empty file
  std::vector<cni::Attachment> valid = {kA, {"ctr-q", "eth0"}};
  std::vector<IPAddr> picked;
  for (auto& x : gc_selection(r, valid)) picked.push_back(x.ip);
  EXPECT_EQ(strs(picked), (std::vector<std::string>{"10.1.0.3", "10.1.0.4", "10.1.0.6", "10.1.0.7"}));
  EXPECT_EQ(gc_selection(r, {}).size(), r.size());  // empty list: everything goes
}

TEST(IpamStatus, ExhaustedOnlyWhenEverySetIsFull) {
  Config c = config_of({{{{"subnet", "10.1.0.0/30"}}}, {{{"subnet", "10.2.0.0/30"}}}});
  std::vector<Reservation> r = {{ip("10.1.0.2"), "a\r\neth0"}};
  EXPECT_FALSE(all_exhausted(c, r));
  r.push_back({ip("10.2.0.2"), "b\r\neth0"});
  EXPECT_TRUE(all_exhausted(c, r));
  r.push_back({ip("10.2.0.1"), "x\r\neth0"});  // a reserved gateway does not count twice
  EXPECT_TRUE(all_exhausted(c, r));
  Config one = config_of({{{{"subnet", "10.1.0.0/30"}}}, {{{"subnet", "10.3.0.0/30"}}}});
  EXPECT_FALSE(all_exhausted(one, r));
  Config v6 = config_of({{{{"subnet", "fd00::/64"}}}});
  EXPECT_FALSE(all_exhausted(v6, r));
  Config whole = config_of({{{{"subnet", "::/0"}, {"rangeStart", "::"}, {"rangeEnd", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"}}}});
  EXPECT_FALSE(all_exhausted(whole, r));
}

TEST(IpamStatus, ExhaustionAgreesWithTheAllocator) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/29"}, {"gateway", "10.1.0.3"}}}});
  int n = 0;
  while (!all_exhausted(c, s.list())) {
    allocate(c, s, {"c" + std::to_string(n++), "eth0"});
    ASSERT_LT(n, 10);
  }
  EXPECT_EQ(n, 5);  // .1 .2 .4 .5 .6: six usable addresses minus the gateway
  EXPECT_THROW(allocate(c, s, {"late", "eth0"}), cni::Error);
}

TEST(IpamAllocate, ManyAllocationsAreDistinct) {
  MemoryStore s;
  Config c = config_of({{{{"subnet", "10.1.0.0/24"}}}, {{{"subnet", "fd00::/120"}}}});
  std::set<IPAddr> seen;
  for (int i = 0; i < 253; ++i) {
    auto ips = allocate(c, s, {"c" + std::to_string(i), "eth0"});
    for (auto& x : ips) EXPECT_TRUE(seen.insert(x.address.addr).second) << x.address.str();
  }
  EXPECT_EQ(seen.size(), 2u * 253);
  EXPECT_THROW(allocate(c, s, {"one-too-many", "eth0"}), cni::Error);
}

}  // namespace
}  // namespace ferry::ipam
