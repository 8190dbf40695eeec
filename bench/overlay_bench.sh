#!/usr/bin/env bash
# Cross-node pod-to-pod traffic over ferry's VXLAN overlay (eBPF and iptables mode) against the
# limit: the same traffic between two node namespaces over a plain VXLAN link without pods,
# measured in one run with interleaved rounds. See bench/README.md.
#
#   bench/overlay_bench.sh [FERRY_BIN_DIR] [--rounds N] [--seconds S] [--json [FILE]]
#                          [--rr-cpu N|none]
#
# FERRY_BIN_DIR defaults to <repo>/build/bin and must hold ferry-agent (with --overlay),
# ferry-bridge, ferry-host-local, ferry-cnitool and ferry-probe. Builds three setups:
#   plain VXLAN  netns fyovl-a, fyovl-b, each on a veth into bridge br0 of netns fyovl-ul (the
#                harness's underlay, 172.31.0.1/.2), a classic VXLAN device vx0 each (VNI 42,
#                port 8472, nolearning, MTU underlay - 50, static neighbour + FDB entries),
#                10.98.0.1/24 - 10.98.0.2/24 on vx0: the limit
#   ebpf         harness cluster "fyovle", 2 nodes, --datapath ebpf (overlay vxlan)
#   iptables     harness cluster "fyovli", 2 nodes, --datapath iptables (overlay vxlan)
# each with a client on node 1 and a server on node 2 (pods in the clusters), an iperf3 server
# and a ferry-probe rr server in the server netns; overlay_bench.py runs the rounds and prints
# the table. The rr client and server run on one CPU (--rr-cpu, default the last one), as in
# datapath_bench.sh. Progress goes to stderr; stdout carries only the table (or the JSON with
# a bare --json). Everything is removed on exit, also on failure or Ctrl-C.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/.." && pwd)
cluster_sh="$repo/netns-harness/cluster.sh"

bin_arg="$repo/build/bin"
if (($#)) && [[ $1 != -* ]]; then
  bin_arg=$1
  shift
fi
driver_args=()
rr_cpu=$(python3 -c 'import os; print(max(os.sched_getaffinity(0)))')
while (($#)); do
  case $1 in
    --rr-cpu) rr_cpu=$2; shift 2 ;;
    -h | --help) sed -n '2,22p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) driver_args+=("$1"); shift ;;
  esac
done

log() { echo "overlay_bench: $*" >&2; }
die() { log "error: $*"; exit 1; }

((EUID == 0)) || die "needs root (network namespaces, bpffs)"
bin_dir=$(cd "$bin_arg" 2>/dev/null && pwd) || die "binary directory $bin_arg does not exist"
for b in ferry-agent ferry-bridge ferry-host-local ferry-cnitool ferry-probe; do
  [[ -x $bin_dir/$b ]] || die "$bin_dir/$b is missing; build it: cmake --build build -j2 --target $b"
done
"$bin_dir/ferry-agent" --help 2>&1 | grep -q -- --overlay ||
  die "$bin_dir/ferry-agent has no --overlay flag (built before the VXLAN overlay); rebuild it"
driver_args+=(--rr-cpu "$rr_cpu")
python3 "$here/overlay_bench.py" --setups - --probe - --validate-only "${driver_args[@]}" || exit 2
rr_pin=()
[[ $rr_cpu == none ]] || rr_pin=(taskset --cpu-list "$rr_cpu")
for t in iperf3 jq curl nsenter python3; do
  command -v "$t" >/dev/null || die "$t is not installed (scripts/setup.sh installs it)"
done

readonly ns_a=fyovl-a ns_b=fyovl-b ns_ul=fyovl-ul
readonly clusters=(fyovle fyovli)
work=""
my_pids=()

exec 9>/run/lock/ferry-overlay-bench.lock
flock -n 9 || die "another overlay_bench run holds /run/lock/ferry-overlay-bench.lock"

harness() { "$cluster_sh" --cluster "$1" "${@:2}" 9>&-; }

delete_limit_netns() {
  local ns
  for ns in "$ns_a" "$ns_b" "$ns_ul"; do ip netns del "$ns" 2>/dev/null || true; done
}

cleanup() {
  local status=$? pid c out
  trap - EXIT INT TERM
  log "cleaning up"
  for pid in "${my_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${my_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for c in "${clusters[@]}"; do
    out=$(harness "$c" down 2>&1) || log "warning: cluster $c: down did not leave it clean: $out"
  done
  delete_limit_netns
  [[ -n $work ]] && rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
work=$(mktemp -d /tmp/fyovl.XXXXXX)

for c in "${clusters[@]}"; do harness "$c" down >/dev/null 2>&1 || true; done
delete_limit_netns

start_in() {
  local ns=$1 name=$2
  shift 2
  setsid nsenter --net="/run/netns/$ns" "$@" >>"$work/$name.log" 2>&1 </dev/null 9>&- &
  my_pids+=($!)
}

wait_listening() {
  local ns=$1 port=$2 i
  for ((i = 0; i < 100; i++)); do
    [[ -n $(nsenter --net="/run/netns/$ns" ss -Hltn "sport = :$port") ]] && return 0
    sleep 0.05
  done
  die "nothing listens on port $port in $ns"
}

# --- 1. the limit: plain VXLAN between two namespaces over the harness's kind of underlay ---
setup_limit() {
  log "setup plain VXLAN ($ns_a <-> $ns_b over bridge br0 in $ns_ul)"
  ip netns add "$ns_ul"
  ip -n "$ns_ul" link set lo up
  ip -n "$ns_ul" link add br0 type bridge
  ip -n "$ns_ul" link set br0 up
  local ns side ip peer_ip mac peer_mac overlay_ip peer_overlay_ip mtu
  for side in a b; do
    ns=fyovl-$side
    ip netns add "$ns"
    ip link add eth0 netns "$ns" type veth peer name "u$side" netns "$ns_ul"
    ip -n "$ns_ul" link set "u$side" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
  done
  for side in a b; do
    ns=fyovl-$side
    if [[ $side == a ]]; then
      ip=172.31.0.1 peer_ip=172.31.0.2 mac=0e:fe:ac:1f:00:01 peer_mac=0e:fe:ac:1f:00:02
      overlay_ip=10.98.0.1 peer_overlay_ip=10.98.0.2
    else
      ip=172.31.0.2 peer_ip=172.31.0.1 mac=0e:fe:ac:1f:00:02 peer_mac=0e:fe:ac:1f:00:01
      overlay_ip=10.98.0.2 peer_overlay_ip=10.98.0.1
    fi
    mtu=$(($(ip -n "$ns" -j link show eth0 | jq '.[0].mtu') - 50))
    ip -n "$ns" addr add "$ip/24" dev eth0
    ip -n "$ns" link add vx0 address "$mac" mtu "$mtu" type vxlan id 42 dstport 8472 local "$ip" dev eth0 nolearning
    ip -n "$ns" addr add "$overlay_ip/24" dev vx0
    ip -n "$ns" link set vx0 up
    ip -n "$ns" neigh add "$peer_overlay_ip" lladdr "$peer_mac" dev vx0 nud permanent
    bridge -n "$ns" fdb append "$peer_mac" dev vx0 dst "$peer_ip" self permanent
  done
}

# --- 2-3. harness clusters: client pod on node 1, server pod on node 2 ---------------------
setup_cluster() {
  local c=$1
  shift
  log "setup cluster $c (up --nodes 2 $*)"
  harness "$c" up --nodes 2 --bin "$bin_dir" "$@" >&2
  harness "$c" add-pod 2 bench server >&2
  harness "$c" add-pod 1 bench client >&2
}

setup_limit
setup_cluster fyovle --datapath ebpf
setup_cluster fyovli --datapath iptables

for ns in "$ns_b" fyovle-bench-server fyovli-bench-server; do
  start_in "$ns" "$ns.iperf3" iperf3 --server --port 5201
  start_in "$ns" "$ns.rr" "${rr_pin[@]}" "$bin_dir/ferry-probe" serve --name "$ns" --rr 5102
  wait_listening "$ns" 5201
  wait_listening "$ns" 5102
done

ip_of() { harness "$1" ip bench/server; }
mtu_of() { nsenter --net="/run/netns/$1" ip -j link show "$2" | jq '.[0].mtu'; }
jq -n --arg eip "$(ip_of fyovle)" --arg iip "$(ip_of fyovli)" --argjson lmtu "$(mtu_of "$ns_a" vx0)" \
  --argjson emtu "$(mtu_of fyovle-bench-client eth0)" --argjson imtu "$(mtu_of fyovli-bench-client eth0)" '[
  {name: "plain VXLAN", key: "limit", client: "fyovl-a", server_ip: "10.98.0.2",
   note: "two netns over a bridged veth underlay, classic VXLAN with static FDB, MTU \($lmtu), no pods"},
  {name: "ferry eBPF", key: "ebpf", client: "fyovle-bench-client", server_ip: $eip,
   node: "fyovle-n1", peer_node: "fyovle-n2", expect_mode: "ebpf",
   note: "pod -> from-pod redirect to ferry_vxlan -> underlay -> ferry_from_overlay -> pod, MTU \($emtu)"},
  {name: "ferry iptables", key: "iptables", client: "fyovli-bench-client", server_ip: $iip,
   node: "fyovli-n1", peer_node: "fyovli-n2", expect_mode: "iptables",
   note: "pod -> bridge -> routes + FDB -> ferry_vxlan -> underlay -> bridge -> pod, MTU \($imtu)"}
]' >"$work/setups.json"

log "setups ready; measuring"
python3 "$here/overlay_bench.py" --setups "$work/setups.json" --probe "$bin_dir/ferry-probe" \
  "${driver_args[@]}" 9>&- &
driver=$!
trap 'kill -TERM $driver 2>/dev/null; wait $driver; exit 130' INT TERM
wait $driver
