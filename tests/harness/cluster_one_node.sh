#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# One node, three pods in two namespaces: the full matrix (pod-to-pod on one bridge,
# node-to-pod, pod-to-node; TCP, UDP, SCTP, ICMP; IPv4 and IPv6) in both datapath modes.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh" fyh1 "$@"

step "up: 1 node, eBPF datapath"
cluster up --nodes 1 --datapath ebpf --bin "$T_BIN"
cluster add-pod 1 default a
cluster add-pod 1 default b
cluster add-pod 1 other c --labels app=c
assert_datapath ebpf 1
assert_full_matrix 1 3

step "same node, iptables datapath"
cluster set-datapath iptables
assert_datapath iptables 1
assert_full_matrix 1 3
