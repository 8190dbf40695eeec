#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Two nodes, two pods each: the full matrix across nodes in eBPF mode, then the same cluster
# switched to iptables and back to eBPF, the matrix complete after every switch.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh" fyh2 "$@"

step "up: 2 nodes, eBPF datapath"
cluster up --nodes 2 --datapath ebpf --bin "$T_BIN"
cluster add-pod 1 default a
cluster add-pod 1 web b --labels app=web
cluster add-pod 2 default c
cluster add-pod 2 web d --labels app=web
assert_datapath ebpf 2
assert_full_matrix 2 4

step "switch to iptables"
cluster set-datapath iptables
assert_datapath iptables 2
assert_full_matrix 2 4

step "switch back to eBPF"
cluster set-datapath ebpf
assert_datapath ebpf 2
assert_full_matrix 2 4

step "a pod added after the switches is reachable too"
cluster add-pod 2 default e
assert_full_matrix 2 5
