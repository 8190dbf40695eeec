#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The Kubernetes NetworkPolicy e2e suite (issue 5) on a 3-node netns cluster (VXLAN overlay):
# namespaces x, y, z with pods a, b, c each, spread over the nodes, serving 80/81 on TCP, UDP
# and SCTP (named ports serve-80-tcp, ...); every case of cases.sh, first in eBPF mode, then in
# iptables mode on the same cluster (cluster.sh set-datapath). Before the cases, the baseline:
# with no policy every pod reaches every pod on every port and protocol.
#
# usage: netpol.sh <bin-dir> <repo-dir> [case-function...]     (default: every case)
# env:   NP_MODES        "ebpf iptables" (the order they run in)
#        NP_COMBOS_EBPF  (port/proto) tables per case in eBPF mode; default every port and
#                        protocol of upstream's model: 80,81 x tcp,udp,sctp
#        NP_COMBOS_IPTABLES  default "80/tcp 81/tcp 80/udp 81/sctp" (a representative subset,
#                        to stay within the CI budget; NP_COMBOS_IPTABLES="$NP_COMBOS_EBPF" for all)
#        NP_TIMEOUT_MS (1000), NP_RETRIES (2)
# Exit: 0 every case passed (skips allowed), 1 a case failed, 77 skipped (no root, no agent).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../lib.sh
source "$here/../lib.sh" fynp "$1" "$2"
shift 2
require_overlay_agent
command -v python3 >/dev/null || skip "python3 is not installed (CIDR arithmetic of the ipBlock cases)"
"$T_BIN/ferry-probe" batch --help >/dev/null 2>&1 || skip "$T_BIN/ferry-probe has no batch mode yet (rebuild it)"
# shellcheck source=lib.sh
source "$here/lib.sh"
# shellcheck source=cases.sh
source "$here/cases.sh"

NP_WORK=$(mktemp -d /tmp/fynp.XXXXXX)
T_WORK=$NP_WORK
read -r -a modes <<<"${NP_MODES:-ebpf iptables}"
# shellcheck disable=SC2034  # read through ${!combos_var}
combos_ebpf=${NP_COMBOS_EBPF:-80/tcp 81/tcp 80/udp 81/udp 80/sctp 81/sctp}
# shellcheck disable=SC2034
combos_iptables=${NP_COMBOS_IPTABLES:-80/tcp 81/tcp 80/udp 81/sctp}
selected=("$@")
((${#selected[@]})) || selected=("${NP_CASES[@]}")
for fn in "${selected[@]}"; do
  [[ -n ${NP_TITLE[$fn]:-} ]] || fail "no case \"$fn\" (cases: ${NP_CASES[*]})"
done
NP_CASES=("${selected[@]}")

t0=$SECONDS
step "up: 3 nodes, VXLAN overlay, ${modes[0]} datapath; namespaces x, y, z; pods a, b, c in each"
cluster up --nodes 3 --datapath "${modes[0]}" --bin "$T_BIN"
np_setup_model
echo "model ready after $((SECONDS - t0)) s"

for mode in "${modes[@]}"; do
  if [[ $(cat "/run/ferry-harness/$T_CLUSTER/pids/$T_CLUSTER-n1.agent.mode") != "$mode" ]]; then
    step "set-datapath $mode"
    cluster set-datapath "$mode"
    np_sync
  fi
  assert_datapath "$mode" 3
  combos_var="combos_$mode"
  NP_COMBOS=${!combos_var}
  step "$mode: baseline without policy (${NP_COMBOS}; IPv4 and IPv6)"
  # shellcheck disable=SC2086  # one argument per combo
  np_check np_expect_all_allowed $NP_COMBOS || fail "$mode: without any policy not every pod reaches every pod"
  (NP_FAMILY=6 && np_check np_expect_all_allowed 80/tcp 81/udp 80/sctp) || fail "$mode: IPv6 baseline failed"
  mode_start=$SECONDS
  for fn in "${NP_CASES[@]}"; do np_run_case "$mode" "$fn"; done
  echo "$mode: ${#NP_CASES[@]} cases in $((SECONDS - mode_start)) s (tables per case: $NP_COMBOS)"
done

echo "total: $((SECONDS - t0)) s"
np_summary "${modes[@]}" || fail "some NetworkPolicy cases failed (tables above)"
echo "all NetworkPolicy cases passed (or were skipped with a reason)"
