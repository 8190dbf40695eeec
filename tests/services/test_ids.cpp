// Stable ids: a change allocates only what is new; ids survive a save/load (agent restart).
#include "support.h"

namespace ferry::services::testing {
namespace {

using model::Service;

class ServiceIdsTest : public ServicesTest {
 protected:
  void SetUp() override {
    Service s = service("web", {"10.96.0.10"}, {port("", Protocol::TCP, 80, 8080, 30080)});
    s.type = Service::Type::NodePort;
    add(s);
    add(service("db", {"10.96.0.20"}, {port("", Protocol::TCP, 5432, 5432)}));
    add(slice("web-1", "web", {slice_port("", Protocol::TCP, 8080)}, {ep("10.1.0.5", "n1"), ep("10.1.1.5", "n2")}));
    add(slice("db-1", "db", {slice_port("", Protocol::TCP, 5432)}, {ep("10.1.0.9", "n1")}));
  }

  // key -> id of every frontend and backend of the last build.
  std::map<std::string, uint32_t> frontend_ids() const {
    std::map<std::string, uint32_t> out;
    for (const auto& [id, f] : result.set.frontends) out[frontend_key(f)] = id;
    return out;
  }
  std::map<std::string, uint32_t> backend_ids() const {
    std::map<std::string, uint32_t> out;
    for (const auto& [id, b] : result.set.backends) out[backend_key(b)] = id;
    return out;
  }
};

TEST_F(ServiceIdsTest, IdsAreNonZeroAndDistinct) {
  build();
  EXPECT_EQ(result.set.frontends.size(), 4u);
  EXPECT_EQ(result.set.backends.size(), 3u);
  EXPECT_FALSE(result.set.frontends.count(0));
  EXPECT_FALSE(result.set.backends.count(0));
}

TEST_F(ServiceIdsTest, RebuildingTheSameStateChangesNothing) {
  build();
  ServiceSet first = result.set;
  build();
  EXPECT_EQ(result.set, first);
}

TEST_F(ServiceIdsTest, ScalingUpAllocatesOnlyTheNewBackend) {
  build();
  auto fe_before = frontend_ids();
  auto be_before = backend_ids();
  add(slice("web-1", "web", {slice_port("", Protocol::TCP, 8080)},
            {ep("10.1.0.5", "n1"), ep("10.1.1.5", "n2"), ep("10.1.2.5", "n3")}));
  build();
  EXPECT_EQ(frontend_ids(), fe_before);
  auto be_after = backend_ids();
  ASSERT_EQ(be_after.size(), 4u);
  for (const auto& [key, id] : be_before) EXPECT_EQ(be_after[key], id) << key;
  uint32_t fresh = be_after["10.1.2.5:8080/TCP"];
  for (const auto& [key, id] : be_before) EXPECT_NE(fresh, id);
}

TEST_F(ServiceIdsTest, RemovingAServiceFreesItsIdsAndKeepsTheOthers) {
  build();
  auto fe_before = frontend_ids();
  auto be_before = backend_ids();
  cluster.erase(model::ObjectKey{model::Kind::Service, "default", "db"});
  build();
  auto fe_after = frontend_ids();
  EXPECT_EQ(fe_after.size(), 3u);
  for (const auto& [key, id] : fe_after) EXPECT_EQ(fe_before[key], id) << key;
  EXPECT_FALSE(ids.frontends.find("10.96.0.20:5432/TCP"));
  EXPECT_FALSE(ids.backends.find("10.1.0.9:5432/TCP"));
  EXPECT_EQ(ids.backends.ids().size(), 2u);
  EXPECT_EQ(backend_ids().size(), 2u);
  (void)be_before;
}

// Conntrack entries may still name a freed backend id: it is not handed to the next new
// backend at once.
TEST_F(ServiceIdsTest, AFreedIdIsNotReusedStraightAway) {
  build();
  uint32_t db_backend = backend_ids()["10.1.0.9:5432/TCP"];
  add(slice("db-1", "db", {slice_port("", Protocol::TCP, 5432)}, {ep("10.1.0.10", "n1")}));
  build();
  uint32_t replacement = backend_ids()["10.1.0.10:5432/TCP"];
  EXPECT_NE(replacement, db_backend);
  EXPECT_FALSE(result.set.backends.count(db_backend));
}

TEST_F(ServiceIdsTest, SaveAndLoadKeepEveryId) {
  build();
  ServiceSet before = result.set;
  nlohmann::json saved = nlohmann::json::parse(ids.save().dump());  // as written to disk
  ServiceIds restarted;
  restarted.load(saved);
  EXPECT_EQ(restarted.save(), ids.save());
  ids = restarted;
  build();
  EXPECT_EQ(result.set, before);
  // And the next allocation after a restart is the one it would have been without one.
  ServiceIds continued = ids;
  add(service("new", {"10.96.0.30"}, {port("", Protocol::TCP, 80, 80)}));
  build();
  uint32_t after_restart = frontend_ids()["10.96.0.30:80/TCP"];
  EXPECT_EQ(after_restart, continued.frontends.allocate("10.96.0.30:80/TCP"));
}

TEST(IdAllocator, AllocatesInOrderAndWrapsPastFreedNumbers) {
  IdAllocator a(1, 3);
  EXPECT_EQ(a.allocate("x"), 1u);
  EXPECT_EQ(a.allocate("y"), 2u);
  EXPECT_EQ(a.allocate("x"), 1u);  // existing
  a.retain_only({"y"});
  EXPECT_EQ(a.allocate("z"), 3u);  // not 1: freed just now
  EXPECT_EQ(a.allocate("w"), 1u);  // wrapped around
  EXPECT_THROW(a.allocate("v"), ServicesError);
  EXPECT_EQ(a.find("z"), 3u);
  EXPECT_FALSE(a.find("v"));
}

TEST(IdAllocator, LoadRejectsBadFilesAndKeepsItsContent) {
  IdAllocator a(1, 100);
  a.allocate("x");
  const nlohmann::json bad[] = {
      nlohmann::json::array(),
      {{"ids", {{"a", 0}}}},
      {{"ids", {{"a", 101}}}},
      {{"ids", {{"a", "1"}}}},
      {{"ids", {{"a", 5}, {"b", 5}}}},
      {{"ids", {{"a", 5}}}, {"next", 0}},
  };
  for (const auto& j : bad) {
    EXPECT_THROW(a.load(j), ServicesError) << j.dump();
    EXPECT_EQ(a.find("x"), 1u) << j.dump();
  }
  ServiceIds s;
  EXPECT_THROW(s.load({{"version", 2}, {"frontends", {{"ids", nlohmann::json::object()}}}, {"backends", {{"ids", nlohmann::json::object()}}}}),
               ServicesError);
  EXPECT_THROW(s.load({{"version", 1}, {"frontends", {{"ids", {{"a", 1}}}}}, {"backends", nlohmann::json::array()}}),
               ServicesError);
  EXPECT_FALSE(s.frontends.find("a"));  // nothing half-loaded
}

}  // namespace
}  // namespace ferry::services::testing
