// tests/policy/random_cluster.h — seeded random clusters, NetworkPolicies and packets for the
// differential tests (library ferry_policy_testlib, with the oracle in oracle.h).
//
// A RandomCluster is a model::ClusterState (namespaces with random labels, a namespace without
// a Namespace object now and then, nodes with v4/v6 InternalIPs, pods with random labels, v4
// and/or v6 IPs, named container ports, hostNetwork and finished pods) plus random policies
// that use every feature: matchLabels, all four matchExpressions operators, namespaceSelector,
// both selectors in one peer, ipBlock with except (cidrs that cover pod IPs, node IPs and world
// addresses, nested blocks), numeric / named / endPort / protocol ports, policyTypes present
// and absent, ingress and egress, empty selectors and empty rules. The same seed always gives
// the same cluster and packets.
//
// Usage (the differential test):
//   auto rc = random_cluster(seed);
//   auto compiled = policy::compile(rc.input(), allocator);
//   for (const auto& p : random_packets(rc, seed, 200))
//     EXPECT_EQ(policy::allows(compiled.set, p.endpoint_id, p.dir, p.peer, p.proto, p.port),
//               oracle_allows(rc, p)) << rc.explain(p, compiled);
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "agent/model/model.h"
#include "policy/policy.h"

namespace ferry::policy::testing {

struct RandomClusterOptions {
  int max_namespaces = 3;  // namespaces with an object (one more, object-less, now and then)
  int max_nodes = 3;       // node-0 is the local node
  int max_pods = 10;
  int max_policies = 6;
};

struct RandomCluster {
  uint64_t seed = 0;
  model::ClusterState cluster;
  std::string node;                      // the local node: "node-0"
  std::vector<net::Ip> host_ips;         // its extra addresses (bridge gateways)
  // Every pod on `node` that owns its IPs (ids 1..n; some with empty pod names, to be found by
  // IP) and one endpoint whose Pod object does not exist.
  std::vector<LocalEndpoint> endpoints;
  std::map<uint32_t, std::string> endpoint_pod;  // endpoint_id -> "ns/name" (absent: unknown)

  CompileInput input(bool enforce = true) const;
  const model::Pod* pod_of(uint32_t endpoint_id) const;  // nullptr: unknown
  std::string describe() const;  // every object, one line each
};

RandomCluster random_cluster(uint64_t seed, const RandomClusterOptions& options = {});

struct Packet {
  uint32_t endpoint_id = 0;
  Direction dir = Direction::Ingress;
  net::Ip peer;
  uint8_t proto = 0;  // TCP, UDP, SCTP, now and then ICMP
  uint16_t port = 0;  // destination port
  std::string str() const;  // "ep 2 ingress peer 10.1.0.3 tcp/80"
};

// Peers: pod IPs (hostNetwork and finished pods too), node and host addresses, ipBlock edges
// (first/last address of every cidr and except and their outside neighbours), addresses inside
// ipBlocks and random world addresses, v4 and v6; ports: those the policies and pods name,
// their neighbours, 0, 65535 and random ones.
std::vector<Packet> random_packets(const RandomCluster& rc, uint64_t seed, size_t count);

// The oracle for one packet of a random cluster.
bool oracle_allows(const RandomCluster& rc, const Packet& p);

// A minimal account of a disagreement: the seed, the packet, the endpoint's pod, the policies
// selecting it, the peer's identity and the compiled entries of that direction.
std::string explain(const RandomCluster& rc, const Packet& p, const CompileResult& compiled);

// One-line renderings used in the descriptions.
std::string selector_str(const model::LabelSelector& s);
std::string policy_str(const model::NetworkPolicy& p);

}  // namespace ferry::policy::testing
