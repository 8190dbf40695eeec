#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The dataplane keeps forwarding while the agent restarts: a continuous TCP stream (same node,
# through the eBPF redirect or the bridge, and across nodes) and a fast ping lose no connection
# and at most a few packets while the agents are stopped (SIGTERM) and killed (SIGKILL) and
# started again; and a restarted agent with nothing changed writes nothing to the kernel.
# Both datapath modes.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh" fyh4 "$@"

# kernel writes reported by node i's agent since it started (Prometheus counter)
kernel_writes() {
  cluster exec "node:$1" -- curl -sf --max-time 2 http://127.0.0.1:9400/metrics |
    awk '$1 == "ferry_datapath_kernel_writes_total" {print $2}'
}

cluster up --nodes 2 --datapath ebpf --bin "$T_BIN"
cluster add-pod 1 default a
cluster add-pod 1 default c
cluster add-pod 2 default b
remote=$(cluster ip default/b)
local_ip=$(cluster ip default/c)

for mode in ebpf iptables; do
  [[ $mode == ebpf ]] || cluster set-datapath "$mode"
  assert_datapath "$mode" 2
  step "$mode: streams a -> c (same node) and a -> b (other node) and a ping while both agents restart"
  work=$(mktemp -d)
  cluster exec default/a -- "$T_BIN/ferry-probe" stream --to "$local_ip" --port 5001 --duration 6 >"$work/local" &
  local_pid=$!
  cluster exec default/a -- "$T_BIN/ferry-probe" stream --to "$remote" --port 5001 --duration 6 >"$work/remote" &
  remote_pid=$!
  # 100 pings, 50 ms apart (5 s), that the restarts fall inside.
  cluster exec default/a -- ping -q -c 100 -i 0.05 -W 1 "$local_ip" >"$work/ping" 2>&1 &
  ping_pid=$!
  sleep 1
  cluster restart-agent 1
  cluster restart-agent 2 --kill9
  cluster restart-agent 1 --kill9
  for s in local remote; do
    status=0
    wait "$([[ $s == local ]] && echo $local_pid || echo $remote_pid)" || status=$?
    cat "$work/$s"
    ((status == 0)) || fail "$mode: the $s stream broke during the agent restarts: $(cat "$work/$s")"
    jq -e '.bytes > 0 and (.broken | not)' "$work/$s" >/dev/null || fail "$mode: $s stream result: $(cat "$work/$s")"
  done
  wait "$ping_pid" || true
  cat "$work/ping"
  received=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$work/ping")
  [[ -n $received ]] || fail "$mode: no ping summary"
  ((received >= 95)) || fail "$mode: ping lost $((100 - received)) of 100 packets while the agents restarted"
  echo "$mode: ping received $received/100 during the restarts"
  rm -rf "$work"

  step "$mode: a restarted agent with nothing changed writes nothing to the kernel"
  for i in 1 2; do
    writes=$(kernel_writes "$i")
    [[ $writes == 0 ]] || fail "$mode: node $i's agent wrote $writes times to the kernel after a restart with no change"
    last=$(grep "first reconcile:" "/run/ferry-harness/$T_CLUSTER/logs/$T_CLUSTER-n$i.log" | tail -n 1)
    [[ $last == *" 0 programmed, 0 removed, kernel writes 0"* ]] ||
      fail "$mode: node $i's last start was not a zero-write reconcile: $last"
  done
  echo "$mode: 0 kernel writes after restart on both nodes"
  assert_full_matrix 2 3
done
