// tests/policy/oracle.h — "is this packet allowed?" answered straight from the NetworkPolicy
// objects: no identities, no ipcache, no prefixes, no entries. Deliberately simple (one loop
// over the policies per question) so that it can serve as the reference the compiled rules
// (policy::allows) and the loaded BPF lookup are compared with.
//
// The semantics it encodes (the same as policy/policy.h):
//  - a packet of a pod whose Pod object is unknown is allowed;
//  - a direction is isolated when a policy of the pod's namespace selects the pod and
//    isolates that direction (model::NetworkPolicy::isolates_ingress/egress); not isolated =
//    allowed;
//  - isolated ingress from this node's addresses (host_ips + the Node's InternalIPs) is allowed;
//  - otherwise allowed iff some rule of that direction of a selecting policy matches the peer
//    (no peers = any; ipBlock = in cidr and in no except, for every address; selectors =
//    the peer is a pod and matches) and the port (no ports = any protocol and port; numeric +
//    endPort range of the protocol; named = a container port of that name and protocol of the
//    destination pod: the endpoint's own pod on ingress, the peer pod on egress);
//  - "the peer is a pod" = the first pod in ClusterState order that is not hostNetwork, not
//    Succeeded/Failed and lists the address, unless the address is a node's address (this
//    node's host_ips or any Node's InternalIPs).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "agent/model/model.h"
#include "policy/policy.h"

namespace ferry::policy::testing {

// endpoint_pod: the pod of the local endpoint, nullptr when unknown.
bool oracle_allows(const model::ClusterState& cluster, const std::string& node, const std::vector<net::Ip>& host_ips,
                   const model::Pod* endpoint_pod, Direction dir, const net::Ip& peer, uint8_t proto,
                   uint16_t port);

}  // namespace ferry::policy::testing
