#!/usr/bin/env bash
# The ferry demo: build, then bring up a 3-node cluster made of network namespaces (an
# underlay bridge, three nodes each running ferry-agent with a VXLAN overlay between them, two
# pods per node wired by ferry-bridge), and print who reaches whom over TCP, UDP, SCTP and
# ICMP, and how a ClusterIP Service spreads connections — first with the eBPF datapath, then with
# the same cluster switched to iptables.
# Everything is torn down at the end, also when a step fails. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${FERRY_BUILD_DIR:-build}
cluster_name=${FERRY_CLUSTER:-fydemo}
harness=(./netns-harness/cluster.sh --cluster "$cluster_name")

echo "== build ($build)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target ferry-bridge ferry-host-local ferry-cnitool ferry-probe >/dev/null
agent=1
if ! cmake --build "$build" -j "$(nproc)" --target ferry-agent >/dev/null 2>&1 || [[ ! -x $build/bin/ferry-agent ]]; then
  agent=0
  echo "note: ferry-agent could not be built; the demo runs the pods without an agent (plain ferry-bridge)"
fi

teardown() {
  echo "== down"
  "${harness[@]}" down || true
}
trap teardown EXIT
"${harness[@]}" down >/dev/null 2>&1 || true  # leftovers of an interrupted demo

echo "== up: 3 nodes, 2 pods per node"
if ((agent)); then
  "${harness[@]}" up --nodes 3 --datapath ebpf --bin "$build/bin"
else
  "${harness[@]}" up --nodes 3 --no-agent --bin "$build/bin"
fi
"${harness[@]}" add-pod 1 default a
"${harness[@]}" add-pod 1 web b --labels app=web
"${harness[@]}" add-pod 2 default c
"${harness[@]}" add-pod 2 web d --labels app=web
"${harness[@]}" add-pod 3 default e
"${harness[@]}" add-pod 3 web f --labels app=web
"${harness[@]}" status

if ((agent)) && "${harness[@]}" overlay 1 >/dev/null 2>&1; then
  echo
  echo "== node 1's overlay: ferry_vxlan, and a route + neighbour + FDB entry per other node"
  "${harness[@]}" overlay 1
fi

echo
echo "== a pod on node 1 asks a pod on node 2 who it is, over SCTP (the server reports the source it saw)"
"${harness[@]}" probe default/a web/d sctp 80
if ((agent)); then
  echo "== ... and a server outside the cluster (the underlay), which sees node 1's address (masquerade)"
  "${harness[@]}" probe default/a underlay tcp 80 || true
fi

# A ClusterIP Service over the three web pods, reached from a pod and from a node: 30 new
# connections each, counted by the backend that answered.
show_service() {
  local from
  for from in default/a node:2; do
    echo "-- $from -> web/web 10.96.0.80:80, 30 connections:"
    "${harness[@]}" exec "$from" -- "$build/bin/ferry-probe" spread --proto tcp --to 10.96.0.80 --port 80 --count 30 |
      jq -c '{answered: .answered, servers: .servers}'
  done
}

if ((agent)); then
  echo
  echo "== reachability, eBPF datapath (tc programs on every pod veth)"
  "${harness[@]}" matrix --proto tcp,udp,sctp,icmp
  echo
  echo "== a Service: web/web, ClusterIP 10.96.0.80:80 -> pods b, d, f (one per node), eBPF load-balancing"
  "${harness[@]}" add-service web web --cluster-ip 10.96.0.80 --port http:80/tcp:80 --endpoints b,d,f
  "${harness[@]}" sync
  show_service
  echo
  echo "== switching every node to the iptables datapath"
  "${harness[@]}" set-datapath iptables
  echo
  echo "== reachability, iptables datapath"
  "${harness[@]}" matrix --proto tcp,udp,sctp,icmp
  echo
  echo "== the same Service through the kube-proxy iptables layout"
  show_service
else
  echo
  echo "== reachability (no agent)"
  "${harness[@]}" matrix --proto tcp,udp,sctp,icmp
fi
echo
if ((agent)); then
  echo "== demo finished: every pod and node reached every other pod and node over TCP, UDP, SCTP and ICMP, and the Service spread its connections over its backends in both datapaths"
else
  echo "== demo finished: every pod and node reached every other pod and node over TCP, UDP, SCTP and ICMP"
fi
