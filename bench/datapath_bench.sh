#!/usr/bin/env bash
# Same-node pod-to-pod datapath: raw veth (the limit), plain bridge, ferry eBPF, ferry iptables,
# measured in one run with interleaved rounds. See bench/README.md.
#
#   bench/datapath_bench.sh [FERRY_BIN_DIR] [--rounds N] [--seconds S] [--json [FILE]]
#                           [--bridge-nf 0|1] [--rr-cpu N|none]
#
# FERRY_BIN_DIR defaults to <repo>/build/bin and must hold ferry-agent, ferry-bridge,
# ferry-host-local, ferry-cnitool and ferry-probe. Builds four setups side by side:
#   raw veth   netns fybench-c <-> fybench-s, one veth pair, 10.99.0.1/24 - 10.99.0.2/24
#   bridge     harness cluster "fybenchb", --no-agent (ferry-bridge pods, bridge forwarding)
#   ebpf       harness cluster "fybenche", --datapath ebpf
#   iptables   harness cluster "fybenchi", --datapath iptables
# each with a client and a server pod on one node, an iperf3 server and a ferry-probe rr
# server in the server netns; datapath_bench.py then runs the rounds and prints the table.
# The rr client and server run on one CPU (--rr-cpu, default the last one; taskset on these
# two processes only, gone when they exit): across CPUs a 1-byte ping-pong measures mostly
# cross-CPU wake-ups, which vary several-fold with where the scheduler puts them.
# Progress goes to stderr; stdout carries only the table (or the JSON with a bare --json).
# Everything is removed on exit, also on failure or Ctrl-C.
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
bridge_nf=0
rr_cpu=$(python3 -c 'import os; print(max(os.sched_getaffinity(0)))')
while (($#)); do
  case $1 in
    --bridge-nf) bridge_nf=$2; shift 2 ;;
    --rr-cpu) rr_cpu=$2; shift 2 ;;
    -h | --help) sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) driver_args+=("$1"); shift ;;
  esac
done
[[ $bridge_nf =~ ^[01]$ ]] || { echo "datapath_bench: --bridge-nf must be 0 or 1" >&2; exit 2; }

log() { echo "datapath_bench: $*" >&2; }
die() { log "error: $*"; exit 1; }

((EUID == 0)) || die "needs root (network namespaces, bpffs)"
bin_dir=$(cd "$bin_arg" 2>/dev/null && pwd) || die "binary directory $bin_arg does not exist"
for b in ferry-agent ferry-bridge ferry-host-local ferry-cnitool ferry-probe; do
  [[ -x $bin_dir/$b ]] || die "$bin_dir/$b is missing; build it: cmake --build build -j2 --target $b"
done
# Bad driver options should fail now, not after the setup.
driver_args+=(--rr-cpu "$rr_cpu")
python3 "$here/datapath_bench.py" --setups - --probe - --validate-only "${driver_args[@]}" || exit 2
rr_pin=()
[[ $rr_cpu == none ]] || rr_pin=(taskset --cpu-list "$rr_cpu")
for t in iperf3 jq curl nsenter python3; do
  command -v "$t" >/dev/null || die "$t is not installed (scripts/setup.sh installs it)"
done

readonly raw_client=fybench-c raw_server=fybench-s
readonly clusters=(fybenchb fybenche fybenchi)
work=""
my_pids=()   # iperf3 / ferry-probe servers this script started

# One run at a time: the names are fixed, and two runs would measure each other anyway.
exec 9>/run/lock/ferry-datapath-bench.lock
flock -n 9 || die "another datapath_bench run holds /run/lock/ferry-datapath-bench.lock"

# 9>&-: the agents and servers the harness starts must not inherit (and hold) the lock.
harness() { "$cluster_sh" --cluster "$1" "${@:2}" 9>&-; }

cleanup() {
  local status=$? pid c out
  trap - EXIT INT TERM
  log "cleaning up"
  for pid in "${my_pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${my_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  for c in "${clusters[@]}"; do
    out=$(harness "$c" down 2>&1) || log "warning: cluster $c: down did not leave it clean: $out"
  done
  ip netns del "$raw_client" 2>/dev/null || true
  ip netns del "$raw_server" 2>/dev/null || true
  [[ -n $work ]] && rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
work=$(mktemp -d /tmp/fybench.XXXXXX)

# Leftovers of an earlier run that was killed hard (SIGKILL skips the trap).
for c in "${clusters[@]}"; do harness "$c" down >/dev/null 2>&1 || true; done
ip netns del "$raw_client" 2>/dev/null || true
ip netns del "$raw_server" 2>/dev/null || true

# Starts "$@" as a daemon in netns $1 (host mounts, like the harness); remembers its pid.
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

# --- 1. raw veth: two namespaces, one veth pair, one subnet -----------------------------
setup_raw() {
  log "setup raw veth ($raw_client <-> $raw_server)"
  ip netns add "$raw_client"
  ip netns add "$raw_server"
  ip link add eth0 netns "$raw_client" type veth peer name eth0 netns "$raw_server"
  local ns
  for ns in "$raw_client" "$raw_server"; do
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
  done
  ip -n "$raw_client" addr add 10.99.0.1/24 dev eth0
  ip -n "$raw_server" addr add 10.99.0.2/24 dev eth0
}

# --- 2-4. harness clusters with a client and a server pod on node 1 ---------------------
setup_cluster() {
  local c=$1
  shift
  log "setup cluster $c (up --nodes 1 $*)"
  harness "$c" up --nodes 1 --bin "$bin_dir" "$@" >&2
  harness "$c" add-pod 1 bench server >&2
  harness "$c" add-pod 1 bench client >&2
}

setup_raw
setup_cluster fybenchb --no-agent
# Without an agent nobody sets br_netfilter's switch in this node; pin it so the bridge path
# is what --bridge-nf asks for (0: plain L2 forwarding; 1: as on a kubeadm node, where every
# bridged packet also walks the netfilter hooks).
if [[ -e /proc/sys/net/bridge ]]; then
  nsenter --net=/run/netns/fybenchb-n1 sysctl -qw "net.bridge.bridge-nf-call-iptables=$bridge_nf" \
    "net.bridge.bridge-nf-call-ip6tables=$bridge_nf"
  bridge_nf_text="bridge-nf-call-iptables=$bridge_nf"
else
  bridge_nf_text="br_netfilter not loaded"
fi
setup_cluster fybenche --datapath ebpf
setup_cluster fybenchi --datapath iptables

# Our own servers in each server netns: iperf3 (5201) and an rr echo (5102, pinned like the
# client; the harness's own probe server on 5002 is left as it is).
for ns in "$raw_server" fybenchb-bench-server fybenche-bench-server fybenchi-bench-server; do
  start_in "$ns" "$ns.iperf3" iperf3 --server --port 5201
  start_in "$ns" "$ns.rr" "${rr_pin[@]}" "$bin_dir/ferry-probe" serve --name "$ns" --rr 5102
  wait_listening "$ns" 5201
  wait_listening "$ns" 5102
done

ip_of() { harness "$1" ip bench/server; }
jq -n --arg bip "$(ip_of fybenchb)" --arg eip "$(ip_of fybenche)" --arg iip "$(ip_of fybenchi)" \
  --arg bnf "$bridge_nf_text" '[
  {name: "raw veth", key: "raw", client: "fybench-c", server_ip: "10.99.0.2",
   note: "two netns, one veth pair"},
  {name: "bridge (no agent)", key: "bridge", client: "fybenchb-bench-client", server_ip: $bip,
   note: "ferry-bridge pods, Linux bridge forwarding, \($bnf)"},
  {name: "ferry eBPF", key: "ebpf", client: "fybenche-bench-client", server_ip: $eip,
   node: "fybenche-n1", expect_mode: "ebpf", note: "bpf_redirect_peer between the pods"},
  {name: "ferry iptables", key: "iptables", client: "fybenchi-bench-client", server_ip: $iip,
   node: "fybenchi-n1", expect_mode: "iptables", note: "bridge + br_netfilter + ferry chains"}
]' >"$work/setups.json"

log "setups ready; measuring"
# In the background so that Ctrl-C/TERM reach this shell at once; it hands them on as TERM.
python3 "$here/datapath_bench.py" --setups "$work/setups.json" --probe "$bin_dir/ferry-probe" \
  "${driver_args[@]}" 9>&- &
driver=$!
trap 'kill -TERM $driver 2>/dev/null; wait $driver; exit 130' INT TERM
wait $driver
