// Reconciler against a fake datapath: program/remove, zero writes when nothing changed,
// per-endpoint errors that neither block others nor get forgotten.
#include <gtest/gtest.h>

#include "fakes.h"

namespace ferry::agent::test {
namespace {

dataplane::Endpoint ep(uint32_t id, int ifindex, const std::string& ip) {
  dataplane::Endpoint e;
  e.endpoint_id = id;
  e.host_veth = "ferry" + std::to_string(1000000000 + id);
  e.host_ifindex = ifindex;
  e.ips = {*net::Ip::parse(ip)};
  e.pod_mac = {0x0a, 0x58, 0, 0, 0, static_cast<uint8_t>(id)};
  e.host_mac = FakeLinks::kBridgeMac;
  return e;
}

TEST(Reconcile, ProgramsMissingAndRemovesOrphans) {
  FakeKernel kernel;
  kernel.endpoints[9] = ep(9, 19, "10.0.0.9");  // orphan: no record any more
  FakeDataplane dp(kernel);
  Reconciler rec(dp);
  auto r = rec.reconcile_all({ep(1, 11, "10.0.0.1"), ep(2, 12, "10.0.0.2")});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.desired, 2u);
  EXPECT_EQ(r.programmed, 2u);
  EXPECT_EQ(r.removed, 1u);
  EXPECT_EQ(r.kernel_writes, 3u);
  ASSERT_EQ(kernel.endpoints.size(), 2u);
  EXPECT_EQ(kernel.endpoints[1], ep(1, 11, "10.0.0.1"));
  EXPECT_EQ(kernel.endpoints.count(9), 0u);
}

TEST(Reconcile, RestartWithIdenticalStateWritesNothing) {
  FakeKernel kernel;
  std::vector<dataplane::Endpoint> desired = {ep(1, 11, "10.0.0.1"), ep(2, 12, "10.0.0.2")};
  {
    FakeDataplane dp(kernel);
    Reconciler(dp).reconcile_all(desired);
  }
  FakeDataplane restarted(kernel);  // a new agent process: same kernel state, fresh counters
  auto r = Reconciler(restarted).reconcile_all(desired);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.programmed, 0u);
  EXPECT_EQ(r.removed, 0u);
  EXPECT_EQ(r.kernel_writes, 0u);
  EXPECT_EQ(restarted.stats().kernel_writes, 0u);
}

TEST(Reconcile, ChangedEndpointIsReprogrammed) {
  FakeKernel kernel;
  FakeDataplane dp(kernel);
  Reconciler rec(dp);
  rec.reconcile_all({ep(1, 11, "10.0.0.1")});
  auto changed = ep(1, 11, "10.0.0.77");
  auto r = rec.reconcile_all({changed});
  EXPECT_EQ(r.programmed, 1u);
  EXPECT_EQ(r.removed, 0u);
  EXPECT_EQ(kernel.endpoints[1], changed);
  // An incomplete installed endpoint (a program detached) is reprogrammed too.
  kernel.endpoints[1].complete = false;
  r = rec.reconcile_all({changed});
  EXPECT_EQ(r.programmed, 1u);
  EXPECT_TRUE(kernel.endpoints[1].complete);
}

TEST(Reconcile, ErrorOnOneEndpointDoesNotBlockOthersAndIsRetried) {
  FakeKernel kernel;
  kernel.fail_program = {2};
  FakeDataplane dp(kernel);
  Reconciler rec(dp);
  std::vector<dataplane::Endpoint> desired = {ep(1, 11, "10.0.0.1"), ep(2, 12, "10.0.0.2"), ep(3, 13, "10.0.0.3")};
  auto r = rec.reconcile_all(desired);
  EXPECT_FALSE(r.ok());
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("endpoint 2"), std::string::npos) << r.errors[0];
  EXPECT_NE(r.errors[0].find("program of endpoint 2 failed"), std::string::npos) << r.errors[0];
  EXPECT_EQ(r.programmed, 2u);
  EXPECT_EQ(kernel.endpoints.count(1), 1u);
  EXPECT_EQ(kernel.endpoints.count(3), 1u);
  EXPECT_EQ(kernel.endpoints.count(2), 0u);

  kernel.fail_program.clear();  // the cause went away: the next pass picks it up
  r = rec.reconcile_all(desired);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.programmed, 1u);
  EXPECT_EQ(kernel.endpoints.count(2), 1u);
}

TEST(Reconcile, FailedRemoveIsReportedAndRetried) {
  FakeKernel kernel;
  kernel.endpoints[5] = ep(5, 15, "10.0.0.5");
  kernel.fail_remove = {5};
  FakeDataplane dp(kernel);
  Reconciler rec(dp);
  auto r = rec.reconcile_all({ep(1, 11, "10.0.0.1")});
  EXPECT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.programmed, 1u);
  kernel.fail_remove.clear();
  r = rec.reconcile_all({ep(1, 11, "10.0.0.1")});
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.removed, 1u);
  EXPECT_EQ(kernel.endpoints.size(), 1u);
}

TEST(Reconcile, UnreadableInstalledStateIsAnError) {
  FakeKernel kernel;
  kernel.fail_installed = true;
  FakeDataplane dp(kernel);
  auto r = Reconciler(dp).reconcile_all({ep(1, 11, "10.0.0.1")});
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("cannot read installed endpoints"), std::string::npos);
  EXPECT_TRUE(kernel.endpoints.empty());
}

TEST(Reconcile, OneEndpointTouchesOnlyThatEndpoint) {
  FakeKernel kernel;
  kernel.endpoints[9] = ep(9, 19, "10.0.0.9");  // an orphan the single pass must leave alone
  FakeDataplane dp(kernel);
  Reconciler rec(dp);
  auto r = rec.reconcile_one(1, ep(1, 11, "10.0.0.1"));
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.programmed, 1u);
  EXPECT_EQ(r.removed, 0u);
  EXPECT_EQ(kernel.endpoints.size(), 2u);
  // Again with nothing changed: no write.
  r = rec.reconcile_one(1, ep(1, 11, "10.0.0.1"));
  EXPECT_EQ(r.kernel_writes, 0u);
  // Gone: removed.
  r = rec.reconcile_one(1, std::nullopt);
  EXPECT_EQ(r.removed, 1u);
  EXPECT_EQ(kernel.endpoints.count(1), 0u);
  EXPECT_EQ(kernel.endpoints.count(9), 1u);
}

TEST(Reconcile, InterfaceTakenOverByANewIdIsCleanedFirst) {
  FakeKernel kernel;
  kernel.endpoints[4] = ep(4, 11, "10.0.0.4");  // ids were lost: ifindex 11 carries old id 4
  FakeDataplane dp(kernel);
  auto r = Reconciler(dp).reconcile_one(1, ep(1, 11, "10.0.0.1"));
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.removed, 1u);
  EXPECT_EQ(r.programmed, 1u);
  ASSERT_EQ(kernel.endpoints.size(), 1u);
  EXPECT_EQ(kernel.endpoints.begin()->first, 1u);
}

TEST(Reconcile, IdMovedToAnotherInterface) {
  FakeKernel kernel;
  FakeDataplane dp(kernel);
  Reconciler rec(dp);
  rec.reconcile_all({ep(1, 11, "10.0.0.1")});
  auto moved = ep(1, 21, "10.0.0.1");
  auto r = rec.reconcile_all({moved});
  EXPECT_EQ(r.removed, 1u);
  EXPECT_EQ(r.programmed, 1u);
  EXPECT_EQ(kernel.endpoints[1], moved);
}

}  // namespace
}  // namespace ferry::agent::test
