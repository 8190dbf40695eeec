// Differential test: policy::allows(compile(...)) against the oracle (oracle.h) over thousands
// of random clusters, policies and packets. One shared allocator across all clusters, so that
// identity reuse after retain_only is exercised too.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdlib>

#include "tests/policy/oracle.h"
#include "tests/policy/random_cluster.h"

namespace ferry::policy::testing {
namespace {

constexpr uint64_t kClusters = 4000;
constexpr size_t kPacketsPerCluster = 250;

// FERRY_POLICY_SEED=<n> replays one cluster.
std::pair<uint64_t, uint64_t> seed_range() {
  if (const char* s = std::getenv("FERRY_POLICY_SEED")) {
    uint64_t seed = std::strtoull(s, nullptr, 10);
    return {seed, seed + 1};
  }
  return {1, 1 + kClusters};
}

TEST(PolicyDifferential, CompiledRulesAgreeWithTheOracle) {
  IdentityAllocator allocator;
  auto [first, last] = seed_range();
  size_t packets = 0, allowed = 0, isolated = 0, isolated_allowed = 0, disagreements = 0;
  for (uint64_t seed = first; seed < last && disagreements < 5; ++seed) {
    RandomCluster rc = random_cluster(seed);
    CompileResult compiled = compile(rc.input(), allocator);
    for (const Packet& p : random_packets(rc, seed, kPacketsPerCluster)) {
      bool want = oracle_allows(rc, p);
      bool got = allows(compiled.set, p.endpoint_id, p.dir, p.peer, p.proto, p.port);
      ++packets;
      allowed += want;
      if (auto ep = compiled.set.endpoints.find(p.endpoint_id);
          ep != compiled.set.endpoints.end() &&
          (p.dir == Direction::Ingress ? ep->second.ingress_isolated : ep->second.egress_isolated)) {
        ++isolated;
        isolated_allowed += want;
      }
      if (got != want) {
        ++disagreements;
        ADD_FAILURE() << "compiled " << (got ? "allows" : "denies") << ", oracle " << (want ? "allows" : "denies")
                      << "\n" << explain(rc, p, compiled) << "replay: FERRY_POLICY_SEED=" << seed << "\n"
                      << rc.describe();
        break;
      }
    }
  }
  std::printf("differential: %llu clusters, %zu packets, %zu allowed by the oracle; %zu on isolated "
              "directions, %zu of those allowed\n",
              static_cast<unsigned long long>(last - first), packets, allowed, isolated, isolated_allowed);
  // The generator must produce both verdicts on isolated directions in quantity, or the
  // comparison proves little.
  if (last - first > 1) {
    EXPECT_GT(isolated, packets / 4);
    EXPECT_GT(isolated_allowed, isolated / 10);
    EXPECT_LT(isolated_allowed, isolated - isolated / 10);
  }
}

// Without enforcement everything is allowed whatever the policies say.
TEST(PolicyDifferential, EnforceOffAllowsEverything) {
  IdentityAllocator allocator;
  for (uint64_t seed = 1; seed < 200; ++seed) {
    RandomCluster rc = random_cluster(seed);
    CompileResult compiled = compile(rc.input(/*enforce=*/false), allocator);
    for (const Packet& p : random_packets(rc, seed, 50))
      ASSERT_TRUE(allows(compiled.set, p.endpoint_id, p.dir, p.peer, p.proto, p.port)) << p.str();
  }
}

// Compiling the same input twice with the same allocator gives the same set (determinism),
// and a fresh allocator loaded from the first one's save() gives it too (restart).
TEST(PolicyDifferential, DeterministicAndStableAcrossRestart) {
  for (uint64_t seed = 1; seed < 300; ++seed) {
    RandomCluster rc = random_cluster(seed);
    IdentityAllocator a;
    CompileResult first = compile(rc.input(), a);
    CompileResult again = compile(rc.input(), a);
    ASSERT_EQ(first.set, again.set) << "seed " << seed;
    IdentityAllocator restarted;
    restarted.load(a.save());
    CompileResult after_restart = compile(rc.input(), restarted);
    ASSERT_EQ(first.set, after_restart.set) << "seed " << seed;
    ASSERT_EQ(first.identities, after_restart.identities) << "seed " << seed;
  }
}

// Big random clusters: fewer of them, same comparison (many identities, nested blocks).
TEST(PolicyDifferential, LargeClustersAgreeWithTheOracle) {
  IdentityAllocator allocator;
  RandomClusterOptions big{.max_namespaces = 6, .max_nodes = 4, .max_pods = 60, .max_policies = 25};
  for (uint64_t seed = 100000; seed < 100150; ++seed) {
    RandomCluster rc = random_cluster(seed, big);
    CompileResult compiled = compile(rc.input(), allocator);
    for (const Packet& p : random_packets(rc, seed, 400)) {
      bool want = oracle_allows(rc, p);
      bool got = allows(compiled.set, p.endpoint_id, p.dir, p.peer, p.proto, p.port);
      ASSERT_EQ(got, want) << explain(rc, p, compiled) << "(large cluster, seed " << seed << ")";
    }
  }
}

}  // namespace
}  // namespace ferry::policy::testing
