#!/usr/bin/env bash
# Side-by-side CNI latency: ferry's bridge + host-local (+ loopback) against the reference
# plugins, in one run on this machine. See bench/README.md.
#
#   bench/cni_bench.sh [FERRY_BIN_DIR] [cni_bench.py options, e.g. --pods 100 --json out.json]
#
# FERRY_BIN_DIR defaults to <repo>/build/bin. The plugins run
# inside a private "node" namespace (h5bnode-<pid>): their bridges (h5bf, h5br), iptables
# rules and sysctls never touch the real host, and deleting it removes all of them.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ferry_dir=$(realpath "${1:-$here/../build/bin}")
shift || true

((EUID == 0)) || { echo "cni_bench: needs root (network namespaces)" >&2; exit 1; }

node=h5bnode-$$
export H5BENCH_RUN_ID=$$
cleanup() {
  # The python driver DELs and deletes its pod namespaces itself; this sweeps what an
  # abrupt kill may have left, then the node namespace (bridges, masquerade chains).
  local ns
  for ns in /run/netns/h5bp"$H5BENCH_RUN_ID"*; do
    [[ -e $ns ]] && ip netns delete "${ns##*/}"
  done
  [[ -e /run/netns/$node ]] && ip netns delete "$node"
  return 0
}
trap cleanup EXIT

ip netns add "$node"
ip -n "$node" link set lo up
# In the background so that Ctrl-C/TERM reach this shell at once; it hands them on as TERM,
# on which the driver DELs what it attached before exiting.
nsenter --net="/run/netns/$node" python3 "$here/cni_bench.py" --ferry-dir "$ferry_dir" "$@" &
driver=$!
trap 'kill -TERM $driver 2>/dev/null; wait $driver; exit 130' INT TERM
wait $driver
