#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Services (issue 6) on a 3-node netns cluster (VXLAN overlay): ClusterIP from pods and nodes,
# spread, NodePort from outside (Cluster and Local), session affinity, reject without endpoints,
# hairpin, named ports, UDP, SCTP, scale/readiness under a client loop, NetworkPolicy behind a
# Service — every case of cases.sh in eBPF mode, then in iptables mode on the same cluster
# (cluster.sh set-datapath). See README.md.
#
# usage: services.sh <bin-dir> <repo-dir> [case-function...]     (default: every case)
# env:   SV_MODES "ebpf iptables" (the order they run in), SV_TIMEOUT_MS (1500), SV_APPLY_S (1)
# Exit: 0 every case passed, 1 a case failed, 77 skipped (no root, no agent, no overlay).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh" fysv "$1" "$2"
shift 2
require_overlay_agent
"$T_BIN/ferry-probe" spread --help >/dev/null 2>&1 || skip "$T_BIN/ferry-probe has no spread mode yet (rebuild it)"
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=cases.sh
source "$here/cases.sh"

SV_WORK=$(mktemp -d /tmp/fysv.XXXXXX)
T_WORK=$SV_WORK
read -r -a modes <<<"${SV_MODES:-ebpf iptables}"
selected=("$@")
((${#selected[@]})) || selected=("${SV_CASES[@]}")
for fn in "${selected[@]}"; do
  [[ -n ${SV_TITLE[$fn]:-} ]] || fail "no case \"$fn\" (cases: ${SV_CASES[*]})"
done
SV_CASES=("${selected[@]}")

t0=$SECONDS
step "up: 3 nodes, VXLAN overlay, ${modes[0]} datapath; namespace sv: web-1..4, cl-1..3, named-a/b; 8 Services"
cluster up --nodes 3 --datapath "${modes[0]}" --bin "$T_BIN"
sv_setup_model
echo "model ready after $((SECONDS - t0)) s"

for mode in "${modes[@]}"; do
  if [[ $(cat "/run/ferry-harness/$T_CLUSTER/pids/$T_CLUSTER-n1.agent.mode") != "$mode" ]]; then
    step "set-datapath $mode"
    cluster set-datapath "$mode"
    cluster sync
  fi
  assert_datapath "$mode" 3
  # The agents program Services after the manifests; the first answer bounds that wait.
  # If it never does, the cases still run and each says what fails.
  sv_wait_answered cl-1 "${SV_IP[web]}" tcp 80 ||
    echo "WARNING: $mode: the web Service never answered cl-1; agent log of node 1: $(cluster logs 1 | grep -iE 'service|error' | tail -n 5)" >&2
  mode_start=$SECONDS
  for fn in "${SV_CASES[@]}"; do sv_run_case "$mode" "$fn"; done
  echo "$mode: ${#SV_CASES[@]} cases in $((SECONDS - mode_start)) s"
done

echo "total: $((SECONDS - t0)) s"
sv_summary "${modes[@]}" || fail "some Services cases failed (above)"
echo "all Services cases passed"
