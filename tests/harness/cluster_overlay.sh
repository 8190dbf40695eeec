#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# VXLAN overlay between 3 nodes (issue 4), in eBPF mode and again after switching to iptables:
#   - every node has ferry_vxlan (the configured VNI 4242 and UDP port 4789, VTEP MAC, MTU) and
#     routes/neighbours/FDB entries for every other node;
#   - the full matrix (TCP, UDP, SCTP, ICMP; IPv4 and IPv6) across nodes, pod sources preserved;
#   - a capture on node 1's underlay port shows VXLAN with VNI 4242 to UDP port 4789, carrying
#     the pods' own addresses inside, and nothing of pod traffic outside the tunnel;
#   - pods got MTU = underlay - 50; full-size DF pings and a 2 MB TCP transfer (byte count and
#     SHA-256 confirmed by the receiver) cross nodes, IPv4 and IPv6.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh" fyh5 "$@"
require_overlay_agent
for t in tcpdump python3 ping; do
  command -v "$t" >/dev/null || skip "$t is not installed (scripts/setup.sh installs it)"
done

VNI=4242 PORT=4789
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/fyh5.XXXXXX)
T_WORK=$work

step "up: 3 nodes, eBPF datapath, VXLAN VNI $VNI port $PORT"
cluster up --nodes 3 --datapath ebpf --vni "$VNI" --vxlan-port "$PORT" --bin "$T_BIN"
cluster add-pod 1 default a
cluster add-pod 2 default b
cluster add-pod 3 default c
cluster add-pod 1 web d --labels app=web
cluster add-pod 2 web e --labels app=web
cluster add-pod 3 web f --labels app=web
# No plain routes between nodes: the only way across is the tunnel.
for i in 1 2 3; do
  if ip -n "$T_CLUSTER-n$i" route show | grep -E '^10\.244\.[0-9]+\.0/24 via 172\.30\.' ; then
    fail "node $i has a plain pod-CIDR route via the underlay (above)"
  fi
done
assert_overlay_state "$VNI" "$PORT"

step "pod MTU = underlay MTU - 50, the agent's conflist says so"
uplink_mtu=$(ip -n "$T_CLUSTER-n1" -j link show eth0 | jq '.[0].mtu')
pod_mtu=$((uplink_mtu - 50))
for p in default/a default/b default/c web/d web/e web/f; do
  mtu=$(cluster exec "$p" -- ip -j link show eth0 | jq '.[0].mtu')
  ((mtu == pod_mtu)) || fail "$p: eth0 MTU $mtu, expected $pod_mtu (underlay $uplink_mtu - 50)"
done
conflist=/run/ferry-harness/$T_CLUSTER/net.d/$T_CLUSTER-n1/10-ferry.conflist
jq -e --argjson m "$pod_mtu" '.plugins[0].mtu == $m and .plugins[0].agentRequired == true' "$conflist" >/dev/null ||
  fail "node 1's conflist (written by its agent) lacks mtu $pod_mtu / agentRequired: $(cat "$conflist")"
echo "pods have MTU $pod_mtu"

# Captures on node 1's port of the underlay bridge while `$@` runs; the decoded VXLAN packets
# (vxlan_pcap.py, one JSON per line) land in $work/$name.jsonl.
capture() {
  local name=$1 pid i
  shift
  rm -f "$work/$name.pcap" "$work/$name.err"
  # -Z root: tcpdump would drop to its own user and then fail to write into our directory.
  timeout 20 nsenter --net="/run/netns/$T_CLUSTER-ul" tcpdump -i n1 -nn -U --immediate-mode -Z root -c 40 \
    -w "$work/$name.pcap" "udp port $PORT" 2>"$work/$name.err" &
  pid=$!
  for ((i = 0; i < 100; i++)); do
    grep -q "listening on" "$work/$name.err" 2>/dev/null && break
    sleep 0.05
  done
  "$@"
  sleep 0.3  # let the last frames reach the capture, then stop it
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  python3 "$here/vxlan_pcap.py" "$work/$name.pcap" >"$work/$name.jsonl"
}

probes_a_to_b() {
  local proto
  for proto in tcp udp icmp; do
    cluster probe default/a default/b "$proto" >/dev/null
    cluster probe default/a default/b "$proto" --6 >/dev/null
  done
}

for mode in ebpf iptables; do
  if [[ $mode == iptables ]]; then
    step "switch every node to iptables"
    cluster set-datapath iptables
    assert_overlay_state "$VNI" "$PORT"
  fi
  assert_datapath "$mode" 3
  # The kernel keeps 15 characters of a program's name: ferry_from_overlay shows as ferry_from_over.
  for i in 1 2 3; do
    filters=$(ip netns exec "$T_CLUSTER-n$i" tc filter show dev ferry_vxlan ingress 2>/dev/null || true)
    if [[ $mode == ebpf && $filters != *ferry_from_over* ]]; then
      fail "node $i: no ferry_from_overlay program on ferry_vxlan ingress in eBPF mode"
    elif [[ $mode == iptables && $filters == *ferry_from_over* ]]; then
      fail "node $i: ferry_from_overlay still on ferry_vxlan in iptables mode"
    fi
  done

  step "$mode: full matrix across 3 nodes (6 pods)"
  assert_full_matrix 3 6

  step "$mode: the underlay carries VXLAN, VNI $VNI, UDP port $PORT, pod addresses inside"
  capture "$mode" probes_a_to_b
  a4=$(cluster ip default/a) b4=$(cluster ip default/b)
  a6=$(cluster ip default/a --6) b6=$(cluster ip default/b --6)
  count=$(wc -l <"$work/$mode.jsonl")
  ((count > 0)) || fail "$mode: no VXLAN packet to port $PORT on node 1's underlay port ($(cat "$work/$mode.err"))"
  jq -s -e --argjson vni "$VNI" --argjson port "$PORT" \
    'all(.vni == $vni and .udp_dport == $port and (.vxlan_flags == 8))' "$work/$mode.jsonl" >/dev/null ||
    fail "$mode: VXLAN packets with another VNI/port/flags: $(jq -c -s 'map({vni, udp_dport, vxlan_flags}) | unique' "$work/$mode.jsonl")"
  for pair in "$a4 $b4" "$b4 $a4" "$a6 $b6" "$b6 $a6"; do
    read -r src dst <<<"$pair"
    jq -s -e --arg s "$src" --arg d "$dst" --arg o "$(t_node_ip4 1)" --arg o2 "$(t_node_ip4 2)" \
      'any(.inner_src == $s and .inner_dst == $d and (.outer_src == $o or .outer_src == $o2))' \
      "$work/$mode.jsonl" >/dev/null || fail "$mode: no VXLAN packet carrying $src -> $dst (inner): $(jq -c '{outer_src, outer_dst, inner_src, inner_dst}' "$work/$mode.jsonl" | head -n 8)"
  done
  # Inner Ethernet: between the two nodes' VTEP MACs (0e:fe + underlay IPv4).
  jq -s -e --arg o "$(t_node_ip4 1)" --arg m1 "$(t_vtep_mac 1)" --arg m2 "$(t_vtep_mac 2)" \
    'map(select(.outer_src == $o)) | length > 0 and all(.inner_src_mac == $m1 and .inner_dst_mac == $m2)' \
    "$work/$mode.jsonl" >/dev/null ||
    fail "$mode: inner frames from node 1 are not $(t_vtep_mac 1) -> $(t_vtep_mac 2): $(jq -c -s 'map({outer_src, inner_src_mac, inner_dst_mac}) | unique' "$work/$mode.jsonl")"
  echo "$mode: $count VXLAN packets on the underlay, all VNI $VNI to UDP port $PORT; a <-> b inside (IPv4 and IPv6), VTEP MACs $(t_vtep_mac 1) -> $(t_vtep_mac 2)"
  # Nothing of pod traffic travels unencapsulated.
  timeout 3 nsenter --net="/run/netns/$T_CLUSTER-ul" tcpdump -i n1 -nn -l --immediate-mode -c 1 -Z root \
    "net 10.244.0.0/16 or net fd00:10:244::/48" >"$work/plain.txt" 2>/dev/null &
  plain_pid=$!
  sleep 0.5
  cluster probe default/a default/b tcp >/dev/null
  cluster probe default/a default/b icmp --6 >/dev/null
  wait "$plain_pid" 2>/dev/null || true
  # (tcpdump -l ends its output with an empty line even when it captured nothing)
  ! grep -q '[^[:space:]]' "$work/plain.txt" || fail "$mode: pod traffic seen unencapsulated on the underlay: $(cat "$work/plain.txt")"

  step "$mode: full-size DF ping and a 2 MB TCP transfer across nodes (MTU $pod_mtu)"
  cluster exec default/a -- ping -q -c 3 -i 0.2 -W 2 -M "do" -s $((pod_mtu - 28)) "$b4" >/dev/null ||
    fail "$mode: a DF ping of $pod_mtu bytes from a to b ($b4) got no answer"
  cluster exec default/a -- ping -q -c 3 -i 0.2 -W 2 -M "do" -s $((pod_mtu - 48)) "$b6" >/dev/null ||
    fail "$mode: a $pod_mtu-byte IPv6 ping from a to b ($b6) got no answer"
  tunnel_before=$(t_packets 1 redirect_tunnel) overlay_before=$(t_packets 2 from_overlay)
  # tcp_transfer.py: the receiver confirms the byte count and SHA-256 of what arrived.
  for dst in "$b4" "$b6"; do
    rm -f "$work/ready"
    cluster exec default/b -- python3 "$here/tcp_transfer.py" serve --port 5301 --ready "$work/ready" &
    server=$!
    for ((i = 0; i < 100; i++)); do
      [[ -f $work/ready ]] && break
      sleep 0.05
    done
    out=$(cluster exec default/a -- python3 "$here/tcp_transfer.py" send --to "$dst" --port 5301 --bytes $((2 << 20))) ||
      fail "$mode: 2 MB TCP transfer a -> b ($dst) did not arrive intact: $out"
    wait "$server" || true
    echo "$mode: 2 MB a -> b ($dst) arrived intact: $out"
  done
  if [[ $mode == ebpf ]]; then
    # The direct path carried it: node 1's from-pod sent to the tunnel device itself, node 2's
    # from-overlay program saw the decapsulated packets.
    tunnel=$(($(t_packets 1 redirect_tunnel) - tunnel_before))
    overlay=$(($(t_packets 2 from_overlay) - overlay_before))
    ((tunnel > 0)) || fail "ebpf: node 1's redirect_tunnel counter did not move during the transfers"
    ((overlay > 0)) || fail "ebpf: node 2's from_overlay counter did not move during the transfers"
    echo "ebpf: direct path used: node 1 redirect_tunnel +$tunnel packets, node 2 from_overlay +$overlay"
  fi
done
