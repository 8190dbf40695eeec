// The eBPF backend's overlay programming against a real kernel: a VXLAN device "fyebvx0" in the
// node netns of TwoPodNode; program_overlay() writes ferry_cfg_v3, diffs ferry_tun_v1 (kernel
// writes counted exactly), attaches ferry_from_overlay to the device's tc ingress, survives a
// restart without a write, swaps the program in place on upgrade, and goes away on an empty
// overlay and on cleanup_all(). Also `ferryctl tunnels`.
#include <bpf/bpf.h>
#include <net/if.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <optional>

#include "ferry/abi.h"
#include "support.h"

namespace ferry::ebpftest {
namespace {

using dataplane::Dataplane;
using dataplane::Overlay;
using dataplane::OverlayRoute;
using json = nlohmann::json;

constexpr const char* kDevice = "fyebvx0";

net::Prefix cidr(const std::string& text) { return *net::Prefix::parse(text); }
net::Ip ip(const std::string& text) { return *net::Ip::parse(text); }
net::Mac vtep(uint8_t last) { return {0x0e, 0xfe, 172, 18, 0, last}; }

OverlayRoute route(const std::string& pod_cidr, const std::string& node_ip, uint8_t last) {
  return {cidr(pod_cidr), ip(node_ip), vtep(last)};
}

class EbpfOverlay : public ::testing::Test {
 protected:
  void SetUp() override {
    FERRY_REQUIRE_EBPF();
    node_ = std::make_unique<TwoPodNode>();
    node_->node().exec(std::string("ip link add ") + kDevice + " type vxlan id 7 dstport 4789 nolearning");
    node_->node().exec(std::string("ip link set ") + kDevice + " up");
    node_->in_node([&] { ifindex_ = static_cast<int>(::if_nametoindex(kDevice)); });
    ASSERT_GT(ifindex_, 0);
  }
  void TearDown() override { node_.reset(); }  // the node netns takes the device along

  template <typename F>
  auto in_node(F fn) {
    return node_->run_in_node(fn);
  }
  std::unique_ptr<Dataplane> started(const ebpf::EbpfConfig& config) { return node_->started_backend(config); }

  // Three remote nodes, node 2 dual-stack; sorted by pod CIDR as Overlay says.
  Overlay desired() const {
    Overlay o;
    o.device = kDevice;
    o.ifindex = ifindex_;
    o.local_vtep_mac = vtep(1);
    o.routes = {route("10.244.2.0/24", "172.18.0.2", 2), route("10.244.3.0/24", "172.18.0.3", 3),
                route("fd00:10:244:2::/64", "172.18.0.2", 2)};
    return o;
  }

  void program(Dataplane& dp, const Overlay& o) {
    in_node([&] { dp.program_overlay(o); });
  }
  uint64_t writes(Dataplane& dp) { return dp.stats().kernel_writes; }
  Overlay installed() {
    return in_node([&] { return ebpf::PinnedMaps::open(node_->bpffs_root()).overlay(); });
  }
  uint32_t overlay_filter() {
    return in_node([&] { return ebpf::tc_filters(ifindex_).ingress; });
  }
  uint32_t pinned_prog_id(const std::string& pin) {
    int fd = bpf_obj_get((node_->bpffs_root() + "/" + pin).c_str());
    if (fd < 0) return 0;
    bpf_prog_info info{};
    uint32_t len = sizeof(info);
    uint32_t id = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
    ::close(fd);
    return id;
  }

  std::unique_ptr<TwoPodNode> node_;
  int ifindex_ = 0;
};

TEST_F(EbpfOverlay, ProgramsConfigTunnelsAndTheDeliveryProgram) {
  auto dp = started(node_->config());
  uint64_t before = writes(*dp);

  program(*dp, desired());

  EXPECT_EQ(installed(), desired()) << "cfg + tunnel map read back as the desired overlay";
  uint32_t prog = pinned_prog_id("prog_from_overlay_" + ebpf::embedded_program_hash());
  ASSERT_NE(prog, 0u) << "from-overlay pinned under the build hash";
  EXPECT_EQ(overlay_filter(), prog) << "attached to the device's tc ingress";
  // clsact + attach + cfg + 3 tunnel entries.
  EXPECT_EQ(writes(*dp) - before, 6u);
  EXPECT_EQ(dp->stats().maps.at(FERRY_MAP_TUNNELS).entries, 3u);
}

TEST_F(EbpfOverlay, SameOverlayAgainAndAfterARestartWritesNothing) {
  {
    auto first = started(node_->config());
    program(*first, desired());
    uint64_t after_first = writes(*first);
    program(*first, desired());
    EXPECT_EQ(writes(*first), after_first) << "idempotent";
  }
  auto restarted = started(node_->config());
  program(*restarted, desired());
  EXPECT_EQ(writes(*restarted), 0u) << "a restart with the same overlay touches nothing";
  EXPECT_EQ(installed(), desired());
}

TEST_F(EbpfOverlay, OnlyTheDifferencesAreWritten) {
  auto dp = started(node_->config());
  program(*dp, desired());
  uint64_t before = writes(*dp);

  Overlay changed = desired();
  changed.routes = {route("10.244.2.0/24", "172.18.0.2", 2),   // unchanged
                    route("10.244.3.0/24", "172.18.0.33", 33),  // node 3 re-addressed
                    route("10.244.4.0/24", "172.18.0.4", 4)};   // node 4 added; node 2's v6 gone
  program(*dp, changed);

  EXPECT_EQ(writes(*dp) - before, 3u) << "one update, one insert, one delete";
  EXPECT_EQ(installed(), changed);
  EXPECT_NE(overlay_filter(), 0u);
}

TEST_F(EbpfOverlay, EmptyDeviceDetachesAndClears) {
  auto dp = started(node_->config());
  program(*dp, desired());
  ASSERT_NE(overlay_filter(), 0u);

  program(*dp, Overlay{});

  EXPECT_EQ(overlay_filter(), 0u);
  Overlay have = installed();
  EXPECT_EQ(have, Overlay{}) << "config off, no tunnels";
  uint64_t after = writes(*dp);
  program(*dp, Overlay{});
  EXPECT_EQ(writes(*dp), after) << "nothing left to remove";
}

TEST_F(EbpfOverlay, DeviceFoundByNameAndWrongDeviceRefused) {
  auto dp = started(node_->config());
  Overlay by_name = desired();
  by_name.ifindex = 0;
  program(*dp, by_name);
  EXPECT_EQ(installed(), desired()) << "ifindex resolved from the name";

  Overlay missing = desired();
  missing.device = "fyebnone";
  missing.ifindex = 0;
  EXPECT_THROW(program(*dp, missing), ebpf::EbpfError);
  Overlay mismatch = desired();
  mismatch.device = "fyebva";  // ifindex_ is the VXLAN device, not this veth
  EXPECT_THROW(program(*dp, mismatch), ebpf::EbpfError);
  Overlay bad = desired();
  bad.routes.push_back({net::Prefix{}, ip("172.18.0.9"), vtep(9)});
  EXPECT_THROW(program(*dp, bad), ebpf::EbpfError);
}

TEST_F(EbpfOverlay, UpgradeSwapsTheOverlayProgramInPlace) {
  std::string old_hash = ebpf::embedded_program_hash();
  {
    auto first = started(node_->config());
    program(*first, desired());
  }
  uint32_t old_prog = pinned_prog_id("prog_from_overlay_" + old_hash);
  ASSERT_EQ(overlay_filter(), old_prog);

  ebpf::EbpfConfig upgraded = node_->config();
  upgraded.program_hash_override = "fyebupgrade";
  auto second = started(upgraded);  // start() alone: the overlay device is known from ferry_cfg_v3

  uint32_t new_prog = pinned_prog_id("prog_from_overlay_fyebupgrade");
  ASSERT_NE(new_prog, 0u);
  EXPECT_NE(new_prog, old_prog);
  EXPECT_EQ(overlay_filter(), new_prog);
  EXPECT_EQ(pinned_prog_id("prog_from_overlay_" + old_hash), 0u) << "old program unpinned";
  uint64_t after_start = writes(*second);
  program(*second, desired());
  EXPECT_EQ(writes(*second), after_start) << "maps survived the upgrade: nothing to write";
}

// A node running a build before policy has its overlay settings in ferry_cfg_v1 (16 bytes):
// the new build's start moves them into ferry_cfg_v3 and unpins the old map, so the direct path
// stays on across the upgrade and the next program_overlay writes nothing.
TEST_F(EbpfOverlay, ConfigOfTheLayoutBeforePolicyIsMigratedAndUnpinned) {
  const std::string v1 = node_->bpffs_root() + "/" + FERRY_MAP_CONFIG_V1;
  const std::string v2 = node_->bpffs_root() + "/" + FERRY_MAP_CONFIG;
  {
    auto first = started(node_->config());
    program(*first, desired());
  }
  const Overlay before = installed();
  // The old build's pins: ferry_cfg_v1 with the overlay part, no ferry_cfg_v3.
  struct {
    uint32_t ifindex;
    uint8_t vtep_mac[6];
    uint16_t pad;
    uint32_t flags;
  } old_cfg{static_cast<uint32_t>(ifindex_), {0x0e, 0xfe, 172, 18, 0, 1}, 0, FERRY_CFG_F_OVERLAY};
  static_assert(sizeof(old_cfg) == 16);
  int fd = bpf_map_create(BPF_MAP_TYPE_ARRAY, "ferry_cfg_v1", 4, sizeof(old_cfg), 1, nullptr);
  ASSERT_GE(fd, 0);
  uint32_t zero = 0;
  ASSERT_EQ(bpf_map_update_elem(fd, &zero, &old_cfg, BPF_ANY), 0);
  ASSERT_EQ(bpf_obj_pin(fd, v1.c_str()), 0);
  ::close(fd);
  ASSERT_EQ(::unlink(v2.c_str()), 0);

  auto second = started(node_->config());
  EXPECT_NE(::access(v1.c_str(), F_OK), 0) << FERRY_MAP_CONFIG_V1 << " is still pinned";
  EXPECT_EQ(installed(), before) << "the overlay settings moved to " << FERRY_MAP_CONFIG;
  const uint64_t w = writes(*second);
  program(*second, desired());
  EXPECT_EQ(writes(*second), w);
}

TEST_F(EbpfOverlay, CleanupAllDetachesFromTheDeviceAndUnpinsTheOverlayMaps) {
  auto dp = started(node_->config());
  program(*dp, desired());
  ASSERT_NE(overlay_filter(), 0u);

  in_node([&] { dp->cleanup_all(); });

  EXPECT_EQ(overlay_filter(), 0u);
  for (const char* pin : {FERRY_MAP_TUNNELS, FERRY_MAP_CONFIG})
    EXPECT_NE(::access((node_->bpffs_root() + "/" + pin).c_str(), F_OK), 0) << pin << " still pinned";
}

TEST_F(EbpfOverlay, FerryctlTunnelsShowsTheMap) {
  auto dp = started(node_->config());
  program(*dp, desired());
  auto ferryctl = [&](const std::string& args) {
    return sh_status("nsenter --net=" + node_->node().path() + " " + FERRY_BIN_DIR + "/ferryctl --bpffs-root " +
                     node_->bpffs_root() + " " + args + " 2>&1");
  };

  ShellResult r = ferryctl("-o json tunnels");
  ASSERT_EQ(r.status, 0) << r.out;
  json j = json::parse(r.out);
  EXPECT_EQ(j["enabled"], true);
  EXPECT_EQ(j["device"], kDevice);
  EXPECT_EQ(j["ifindex"], ifindex_);
  EXPECT_EQ(j["local_vtep_mac"], "0e:fe:ac:12:00:01");
  EXPECT_EQ(j["from_overlay_prog_id"], overlay_filter());
  ASSERT_EQ(j["tunnels"].size(), 3u);
  EXPECT_EQ(j["tunnels"][0]["pod_cidr"], "10.244.2.0/24");
  EXPECT_EQ(j["tunnels"][0]["node_ip"], "172.18.0.2");
  EXPECT_EQ(j["tunnels"][0]["vtep_mac"], "0e:fe:ac:12:00:02");
  EXPECT_EQ(j["tunnels"][2]["pod_cidr"], "fd00:10:244:2::/64");

  ShellResult table = ferryctl("tunnels");
  ASSERT_EQ(table.status, 0) << table.out;
  EXPECT_NE(table.out.find("10.244.3.0/24"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find("0e:fe:ac:12:00:03"), std::string::npos) << table.out;
  EXPECT_NE(table.out.find(kDevice), std::string::npos) << table.out;

  ShellResult status = ferryctl("-o json status --agent http://127.0.0.1:1");
  json st = json::parse(status.out);
  for (const json& pin : st["pins"]) {
    if (pin["name"].get<std::string>().rfind("prog_from_overlay_", 0) == 0) {
      EXPECT_EQ(pin["attachments"], 1) << "status counts the overlay device's filter";
    }
  }
  EXPECT_EQ(st["maps"][FERRY_MAP_TUNNELS]["entries"], 3);

  ShellResult counters = ferryctl("-o json counters");
  ASSERT_EQ(counters.status, 0) << counters.out;
  json c = json::parse(counters.out);
  for (const char* name : {"redirect_tunnel", "from_overlay"}) {
    bool found = std::any_of(c.begin(), c.end(), [&](const json& e) { return e["name"] == name; });
    EXPECT_TRUE(found) << name << " missing from counters";
  }
}

}  // namespace
}  // namespace ferry::ebpftest
