// The apply-time scenario in the compiler alone: 1,000 policies over 1,000 pods in 100
// namespaces, every pod local (the worst case for one node). The time is printed, not asserted
// (the machine is shared); verdicts are spot-checked against the oracle.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

#include "tests/policy/fixture.h"

namespace ferry::policy::testing {
namespace {

TEST(Scale, ThousandPoliciesOverThousandPods) {
  PolicyWorld w;
  const std::vector<std::string> apps = {"web", "api", "db", "cache", "queue"};
  for (int n = 0; n < 100; ++n) w.ns("ns" + std::to_string(n), {{"team", "t" + std::to_string(n % 7)}});
  for (int i = 0; i < 1000; ++i) {
    std::string ip4 = "10." + std::to_string(1 + i / 250) + ".0." + std::to_string(1 + i % 250);
    w.pod("ns" + std::to_string(i % 100) + "/p" + std::to_string(i), {ip4},
          {{"app", apps[static_cast<size_t>(i % 5)]}, {"tier", i % 2 ? "front" : "back"}}, {"http:TCP:8080", "metrics:TCP:9090"});
  }
  std::string yaml;
  for (int i = 0; i < 1000; ++i) {
    std::string ns = "ns" + std::to_string(i % 100);
    const std::string& app = apps[static_cast<size_t>(i % 5)];
    const std::string& peer_app = apps[static_cast<size_t>((i / 5) % 5)];
    yaml += "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: pol" + std::to_string(i) +
            ", namespace: " + ns + "}\nspec:\n  podSelector: {matchLabels: {app: " + app + "}}\n"
            "  ingress:\n"
            "  - from: [{podSelector: {matchLabels: {app: " + peer_app + "}}}]\n"
            "    ports: [{port: http}, {port: " + std::to_string(1000 + i) + "}]\n"
            "  - from: [{namespaceSelector: {matchLabels: {team: t" + std::to_string(i % 7) + "}}, "
            "podSelector: {matchExpressions: [{key: tier, operator: In, values: [front]}]}}]\n"
            "    ports: [{port: 9000, endPort: 9100}]\n"
            "  - from: [{ipBlock: {cidr: 172." + std::to_string(16 + i % 16) + ".0.0/16, except: [172." +
            std::to_string(16 + i % 16) + ".1.0/24]}}]\n"
            "  egress:\n"
            "  - to: [{namespaceSelector: {matchLabels: {team: t" + std::to_string((i + 1) % 7) + "}}}]\n"
            "    ports: [{protocol: UDP, port: 53}, {port: metrics}]\n";
  }
  w.apply(yaml);
  ASSERT_EQ(w.cluster.network_policies().size(), 1000u);
  ASSERT_EQ(w.endpoints.size(), 1000u);

  auto start = std::chrono::steady_clock::now();
  const CompileResult& c = w.compiled();
  double first_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  size_t entries = 0;
  for (const auto& [id, ep] : c.set.endpoints) entries += ep.ingress.size() + ep.egress.size();
  // One change afterwards: one policy's port.
  w.apply("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: pol0, namespace: ns0}\n"
          "spec: {podSelector: {matchLabels: {app: web}}, ingress: [{ports: [{port: 4444}]}]}\n");
  start = std::chrono::steady_clock::now();
  const CompileResult& again = w.compiled();
  double change_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
  std::printf("compile: 1000 policies, 1000 local pods, 100 namespaces: %.1f ms (%zu identities, %zu ipcache "
              "entries, %zu policy entries); after one policy change: %.1f ms\n",
              first_ms, again.identities.size(), again.set.ipcache.size(), entries, change_ms);
  EXPECT_GT(entries, 1000u);

  for (int i = 0; i < 1000; i += 37) {
    std::string pod = "ns" + std::to_string(i % 100) + "/p" + std::to_string(i);
    for (const char* peer : {"10.1.0.5", "10.2.0.77", "172.20.0.1", "172.20.1.1", "8.8.8.8"})
      for (uint16_t port : {53, 80, 1000, 8080, 9050, 9090}) {
        w.ingress(pod, peer, IPPROTO_TCP, port);  // each compares compiled and oracle
        w.egress(pod, peer, IPPROTO_UDP, port);
        w.egress(pod, peer, IPPROTO_TCP, port);
      }
  }
}

}  // namespace
}  // namespace ferry::policy::testing
