#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# `down` leaves nothing behind — after a normal run, when run twice, and after a crashed
# run whose state directory is gone (agents killed with -9, pins and endpoint records left).
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh" fyh3 "$@"

assert_nothing_left() {
  local what=$1
  if ip netns list | awk '{print $1}' | grep -E "^$T_CLUSTER-"; then fail "$what: netns left (above)"; fi
  if ip -o link show | grep -E ": $T_CLUSTER-"; then fail "$what: host links left (above)"; fi
  if compgen -G "/sys/fs/bpf/ferry/$T_CLUSTER-n*" >/dev/null; then fail "$what: bpffs pins left: $(ls -d /sys/fs/bpf/ferry/"$T_CLUSTER"-n*)"; fi
  if compgen -G "/run/ferry/$T_CLUSTER-n*" >/dev/null; then fail "$what: runtime dirs left"; fi
  [[ ! -e /run/ferry-harness/$T_CLUSTER ]] || fail "$what: state dir left"
  local rules
  rules=$( (iptables-save; ip6tables-save) | grep -c -- "$T_CLUSTER-" || true)
  ((rules == 0)) || fail "$what: $rules host iptables rules mention $T_CLUSTER-"
  # Overlay state lives inside the node namespaces; none may have leaked into the host's.
  if ip link show ferry_vxlan >/dev/null 2>&1; then fail "$what: a ferry_vxlan device in the host netns"; fi
  if ipset list -n 2>/dev/null | grep '^ferry-pods-'; then fail "$what: ferry-pods ipsets in the host netns (above)"; fi
  if iptables-save -t nat | grep '^:FERRY-POSTROUTING'; then fail "$what: FERRY-POSTROUTING in the host netns"; fi
  if pgrep -f -- "--node $T_CLUSTER-n" >/dev/null; then fail "$what: agent processes left"; fi
  if pgrep -f -- "serve --name $T_CLUSTER-" >/dev/null; then fail "$what: probe servers left"; fi
  echo "$what: nothing of $T_CLUSTER left"
}

up_with_pods() {
  cluster up --nodes 2 --datapath "$1" --bin "$T_BIN"
  cluster add-pod 1 default a
  cluster add-pod 2 default b
  # The run really created what down must remove.
  [[ -d /sys/fs/bpf/ferry/$T_CLUSTER-n1 || $1 == iptables ]] || fail "no pins under /sys/fs/bpf/ferry/$T_CLUSTER-n1"
  [[ $(ip netns list | grep -c "^$T_CLUSTER-") == 5 ]] || fail "expected 5 netns (underlay, 2 nodes, 2 pods)"
  if "$T_BIN/ferry-agent" --help 2>&1 | grep -q -- --overlay; then
    ip -n "$T_CLUSTER-n1" link show ferry_vxlan >/dev/null || fail "no ferry_vxlan in node 1 (overlay agent)"
  fi
}

step "normal run, eBPF"
up_with_pods ebpf
cluster down
assert_nothing_left "after down"
cluster down
assert_nothing_left "after a second down"

step "crashed run: agents killed -9, state directory lost"
up_with_pods ebpf
cluster set-datapath iptables  # leave both kinds of kernel state behind
for pidfile in /run/ferry-harness/"$T_CLUSTER"/pids/*.agent.pid; do kill -KILL "$(<"$pidfile")"; done
rm -rf "/run/ferry-harness/$T_CLUSTER"
cluster down
assert_nothing_left "after down of a crashed run"
