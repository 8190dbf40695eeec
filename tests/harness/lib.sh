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
  exit "$rc"
}
trap t_cleanup EXIT

# Runs the full matrix (every protocol, both families) and checks that every cell answered,
# that the expected number of cells ran, and that the servers saw each pod's own IP as the
# source (no NAT between pods). $1: number of nodes, $2: number of pods.
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
      | select(.seen_source != $ips[.from][(.family | tostring)])
      | {from, to, proto, family, seen_source}]' <<<"$out")
  [[ $wrong == "[]" ]] || fail "servers saw rewritten source addresses: $wrong"
  echo "matrix ok: $cells cells (tcp, udp, sctp, icmp; IPv4 and IPv6), sources preserved"
}

# The agents run the datapath the test asked for (from the agents' own view: /readyz text or
# the kernel: tc filters on the pod veths for eBPF, ferry iptables chains for iptables).
assert_datapath() {
  local mode=$1 nodes=$2 i node veths v
  for ((i = 1; i <= nodes; i++)); do
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
