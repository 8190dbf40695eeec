# shellcheck shell=bash
# Shared by the harness scenario tests (tests/harness/cluster_*.sh). Each test sources this
# with its own cluster name; the cluster is torn down on exit, also when the test fails.
# Usage in a test:  source lib.sh <cluster-name> <bin-dir> <repo-dir>
# Exit codes: 0 pass, 1 fail, 77 skip (ctest SKIP_RETURN_CODE).

T_CLUSTER=$1
T_BIN=$2
T_REPO=$3
T_HARNESS="$T_REPO/netns-harness/cluster.sh"

skip() {
  echo "SKIP: $*"
  exit 77
}
fail() {
  echo "FAIL: $*" >&2
  exit 1
}
step() { echo "--- $*"; }

[[ $(id -u) == 0 ]] || skip "needs root (network namespaces, bpffs)"
for b in ferry-bridge ferry-host-local ferry-cnitool ferry-probe; do
  [[ -x $T_BIN/$b ]] || skip "$T_BIN/$b is not built (cmake --build <build> --target $b)"
done
[[ -x $T_BIN/ferry-agent ]] || skip "$T_BIN/ferry-agent is not built yet: the harness scenarios need the node agent"
command -v jq >/dev/null || skip "jq is not installed (scripts/setup.sh installs it)"

cluster() { "$T_HARNESS" --cluster "$T_CLUSTER" "$@"; }

# Leftovers of an earlier, interrupted run of this same test are ours to remove.
cluster down >/dev/null 2>&1 || true
T_WORK=""  # a test's scratch directory (mktemp), removed on exit
t_cleanup() {
  local rc=$?
  if ((rc != 0 && rc != 77)); then
    echo "--- test failed (exit $rc): agent logs of cluster $T_CLUSTER" >&2
    local log
    for log in /run/ferry-harness/"$T_CLUSTER"/logs/*.log; do
      [[ -e $log ]] && { echo "== $log" >&2; tail -n 30 "$log" >&2; }
    done
  fi
  cluster down >/dev/null 2>&1 || echo "WARNING: cluster $T_CLUSTER did not come down cleanly" >&2
  [[ -z $T_WORK ]] || rm -rf "$T_WORK"
  exit "$rc"
}
trap t_cleanup EXIT

# The node indexes of the running cluster (add-node/remove-node leave gaps), e.g. "1 2 4".
t_node_ids() {
  # shellcheck source=/dev/null
  (source "/run/ferry-harness/$T_CLUSTER/cluster.env" && echo "${FH_NODE_IDS:-$(seq -s ' ' 1 "$FH_NODES")}")
}

# Skips unless ferry-agent builds the overlay (issue 4: --overlay, --vxlan-vni, --cni-conflist).
require_overlay_agent() {
  local help
  help=$("$T_BIN/ferry-agent" --help 2>&1 || true)
  local flag
  for flag in --overlay --vxlan-vni --vxlan-port --underlay-interface --cni-conflist --ipam-dir; do
    [[ $help == *"$flag"* ]] || skip "$T_BIN/ferry-agent has no $flag flag yet (overlay not built in)"
  done
}

# Runs the full matrix (every protocol, both families) and checks that every cell answered,
# that the expected number of cells ran, and that the servers saw each pod's own IP as the
# source (no NAT between pods; pod-to-node cells may be masqueraded when the node is across
# the underlay, so only pod-to-pod cells are checked). $1: number of nodes, $2: number of pods.
assert_full_matrix() {
  local nodes=$1 pods=$2 out cells expected
  out=$(cluster matrix --proto tcp,udp,sctp,icmp --family 4,6 --json) || {
    cluster matrix --proto tcp,udp,sctp,icmp --family 4,6 || true
    fail "matrix: some cells are blocked (table above)"
  }
  local entities=$((nodes + pods))
  # sources = nodes + pods, destinations = pods + nodes, minus the self cells (pods and nodes)
  expected=$(((entities * entities - entities) * 4 * 2))
  cells=$(jq '.results | length' <<<"$out")
  ((cells == expected)) || fail "matrix ran $cells cells, expected $expected"
  jq -e '.ok' <<<"$out" >/dev/null || fail "matrix not ok: $(jq -c '[.results[] | select(.ok | not)]' <<<"$out")"
  # Source-IP preservation: a pod's probe is seen with that pod's address of the same family.
  local ips wrong
  ips=$(for f in /run/ferry-harness/"$T_CLUSTER"/pods/*.json; do
    jq -c '{key: (.namespace + "/" + .pod), value: {"4": .ip4, "6": .ip6}}' "$f"
  done | jq -s 'from_entries')
  wrong=$(jq -c --argjson ips "$ips" '[.results[] | select(.proto != "icmp" and ($ips[.from] != null))
      | select($ips[.to] != null)
      | select(.seen_source != $ips[.from][(.family | tostring)])
      | {from, to, proto, family, seen_source}]' <<<"$out")
  [[ $wrong == "[]" ]] || fail "servers saw rewritten source addresses: $wrong"
  echo "matrix ok: $cells cells (tcp, udp, sctp, icmp; IPv4 and IPv6), pod sources preserved pod-to-pod"
}

# The agents run the datapath the test asked for (from the agents' own view: /readyz text or
# the kernel: tc filters on the pod veths for eBPF, ferry iptables chains for iptables).
assert_datapath() {
  local mode=$1 nodes=$2 i node veths v
  for i in $(t_node_ids); do
    node="$T_CLUSTER-n$i"
    veths=$(ip -n "$node" -o link show master ferry0 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1)
    for v in $veths; do
      if [[ $mode == ebpf ]]; then
        ip netns exec "$node" tc filter show dev "$v" ingress | grep -q ferry_from_pod ||
          fail "$node: no ferry_from_pod program on $v in eBPF mode"
      else
        if ip netns exec "$node" tc filter show dev "$v" ingress | grep -q ferry_from_pod; then
          fail "$node: ferry_from_pod still attached to $v in iptables mode"
        fi
      fi
    done
    if [[ $mode == iptables ]]; then
      (($(ip netns exec "$node" iptables-save | grep -c ferry) > 0)) || fail "$node: no ferry iptables rules in iptables mode"
    fi
  done
  echo "datapath $mode active on $nodes node(s)"
}

# --- overlay (issue 4) --------------------------------------------------------------------
# Same addressing plan as netns-harness/lib.sh (node i: 172.30.0.<10+i>, pods 10.244.<i>.0/24).
t_node_ip4() { echo "172.30.0.$((10 + $1))"; }
t_node_ip6() { echo "fd00:30::$((10 + $1))"; }
# VTEP MAC of a node: 0e:fe + its underlay IPv4 address (agent/overlay's vtep_mac).
t_vtep_mac() {
  local a b c d
  IFS=. read -r a b c d <<<"$(t_node_ip4 "$1")"
  printf '0e:fe:%02x:%02x:%02x:%02x\n' "$a" "$b" "$c" "$d"
}

# Node $1's overlay entries for node $2 (routes v4+v6 via ferry_vxlan, neighbour, FDB), one
# word per entry present: "route4 route6 neigh4 fdb". Empty when none is left.
t_overlay_entries_for() {
  local node="$T_CLUSTER-n$1" j=$2 mac out=""
  mac=$(t_vtep_mac "$j")
  ip -n "$node" -j route show dev ferry_vxlan 2>/dev/null |
    jq -e --arg d "10.244.$j.0/24" 'any(.[]; .dst == $d)' >/dev/null && out+=" route4"
  ip -n "$node" -6 -j route show dev ferry_vxlan 2>/dev/null |
    jq -e --arg d "fd00:10:244:$j::/64" 'any(.[]; .dst == $d)' >/dev/null && out+=" route6"
  ip -n "$node" -j neigh show dev ferry_vxlan 2>/dev/null |
    jq -e --arg m "$mac" 'any(.[]; .lladdr == $m)' >/dev/null && out+=" neigh"
  bridge -n "$node" -j fdb show dev ferry_vxlan 2>/dev/null |
    jq -e --arg m "$mac" --arg d "$(t_node_ip4 "$j")" 'any(.[]; .mac == $m and .dst == $d)' >/dev/null && out+=" fdb"
  echo "${out# }"
}

# Every node has ferry_vxlan with VNI $1, UDP port $2, no learning, its VTEP MAC, MTU = uplink
# MTU - 50, and for every other node a route (v4, v6), a neighbour and an FDB entry.
assert_overlay_state() {
  local vni=$1 port=$2 ids i j node link uplink_mtu entries
  ids=$(t_node_ids)
  for i in $ids; do
    node="$T_CLUSTER-n$i"
    link=$(ip -n "$node" -d -j link show ferry_vxlan 2>/dev/null) || fail "$node: no ferry_vxlan device"
    uplink_mtu=$(ip -n "$node" -j link show eth0 | jq '.[0].mtu')
    jq -e --argjson vni "$vni" --argjson port "$port" --arg mac "$(t_vtep_mac "$i")" \
      --argjson mtu "$((uplink_mtu - 50))" --arg local "$(t_node_ip4 "$i")" '.[0] |
      .linkinfo.info_kind == "vxlan" and .linkinfo.info_data.id == $vni and
      .linkinfo.info_data.port == $port and .linkinfo.info_data.learning == false and
      .linkinfo.info_data.local == $local and .address == $mac and .mtu == $mtu' <<<"$link" >/dev/null ||
      fail "$node: ferry_vxlan is not VNI $vni, port $port, nolearning, local $(t_node_ip4 "$i"), MAC $(t_vtep_mac "$i"), MTU $((uplink_mtu - 50)): $(jq -c '.[0] | {address, mtu, info: .linkinfo.info_data}' <<<"$link")"
    for j in $ids; do
      ((i == j)) && continue
      entries=$(t_overlay_entries_for "$i" "$j")
      [[ $entries == "route4 route6 neigh fdb" ]] ||
        fail "$node: overlay entries for node $j are incomplete (have: \"$entries\"); $(ip -n "$node" route show dev ferry_vxlan | tr '\n' ';') $(bridge -n "$node" fdb show dev ferry_vxlan | tr '\n' ';')"
    done
  done
  echo "overlay ok on nodes $ids: ferry_vxlan VNI $vni port $port, routes/neighbours/FDB for every other node"
}

# The agents' pids (pidfiles of the harness), "i=pid ..." for the nodes given.
t_agent_pids() {
  local i out=""
  for i in "$@"; do out+="$i=$(cat "/run/ferry-harness/$T_CLUSTER/pids/$T_CLUSTER-n$i.agent.pid" 2>/dev/null) "; done
  echo "${out% }"
}

# A datapath packet counter of node $1 (eBPF mode), 0 if absent. Read from the pinned map with
# ferryctl rather than the agent's /metrics, which refreshes its datapath counters every 5 s.
# Without eBPF maps (iptables mode) every counter is 0.
t_packets() {
  { "$T_BIN/ferryctl" --node "$T_CLUSTER-n$1" -o json counters 2>/dev/null || echo '[]'; } |
    jq --arg c "$2" '[.[] | select(.name == $c) | .packets] | add // 0'
}
