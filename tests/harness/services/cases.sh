# shellcheck shell=bash disable=SC2317  # case functions are called through sv_run_case
# tests/harness/services/cases.sh — issue 6's "Must be shown by tests", one function each, run
# in both datapath modes by services.sh. Backends answer with their pod name ("sv/web-1") and
# the source address they saw; `ferry-probe spread` counts new connections by answering server.

WEB=$(sv_names sv/web-1 sv/web-2 sv/web-3)  # the answering names of the three backends

sv_case c_clusterip "ClusterIP reached from pods on every node and from every node (TCP, second port, UDP)"
c_clusterip() {
  local from port proto json n bad=0
  # Every source and port is tried before the case fails, so a failure shows the whole picture.
  for from in cl-1 cl-2 cl-3 node:1 node:2 node:3; do
    for port in 80/tcp 8080/tcp 5353/udp; do
      proto=${port#*/}
      json=$(sv_spread "$from" "${SV_IP[web]}" "$proto" "${port%/*}" 30)
      # 30 new connections reach all three backends (on every node) and only them.
      sv_all_by "$from -> web ${SV_IP[web]}:$port" "$json" "$WEB" || bad=1
      sv_expect "$from -> web:$port: every backend (node 1, 2, 3) answered" "$json" '.servers | length == 3' || bad=1
      if [[ $from == cl-* ]]; then
        # No SNAT between pods: the backend sees the client pod's own address.
        sv_expect "$from -> web:$port: backends saw the client's pod address ${SV_IP4[$from]}" "$json" \
          ".seen_sources | keys == [\"${SV_IP4[$from]}\"]" || bad=1
      fi
    done
  done
  ((bad == 0)) || fail "ClusterIP: some sources or ports failed (above)"
  # The second port is translated to targetPort 81 (each backend serves 80 and 81 alike, so the
  # answer proves DNAT to a served port; the per-port rules are the iptables/eBPF helpers' tests).
  n=$(sv_log_count web-1 '^tcp 81 from ')
  ((n > 0)) || fail "web-1 saw no TCP connection on port 81 (alt 8080 -> targetPort 81)"
  echo "    ok: web-1 served $n connection(s) on targetPort 81"
}

sv_case c_spread "spread: 300 TCP connections from one client over 3 backends, each >= 50"
c_spread() {
  local json
  json=$(sv_spread cl-1 "${SV_IP[web]}" tcp 80 300)
  sv_all_by "cl-1 -> web: 300 connections" "$json" "$WEB"
  sv_expect "each backend got >= 50 of 300" "$json" \
    '[.servers["sv/web-1"], .servers["sv/web-2"], .servers["sv/web-3"]] | all(. != null and . >= 50)'
}

sv_case c_nodeport_cluster "NodePort, externalTrafficPolicy Cluster: outside client -> every node, any backend, source = the node"
c_nodeport_cluster() {
  local i json addrs proto bad=0
  for i in 1 2 3; do
    addrs=$(sv_node_addresses "$i")
    for proto in tcp udp; do
      json=$(sv_spread outside "$(t_node_ip4 "$i")" "$proto" "$SV_NODEPORT" 30)
      sv_all_by "outside -> node $i $(t_node_ip4 "$i"):$SV_NODEPORT/$proto" "$json" "$WEB" || bad=1
      sv_expect "outside -> node $i/$proto: backends on other nodes answered too" "$json" '.servers | length >= 2' || bad=1
      # Cluster policy: SNAT to the node that took the connection (one of its addresses).
      sv_expect "outside -> node $i/$proto: backends saw an address of node $i, not the client's" "$json" \
        ".answered > 0 and ((.seen_sources | keys) - $addrs | length == 0)" || bad=1
    done
  done
  ((bad == 0)) || fail "NodePort (Cluster): some nodes or protocols failed (above)"
}

sv_case c_nodeport_local "NodePort, externalTrafficPolicy Local: only local backends, client address kept; a node without one drops"
c_nodeport_local() {
  local json i bad=0
  for i in 1 2; do
    json=$(sv_spread outside "$(t_node_ip4 "$i")" tcp "$SV_NODEPORT_LOCAL" 20)
    sv_all_by "outside -> node $i:$SV_NODEPORT_LOCAL answered only by its local backend web-$i" "$json" \
      "[\"sv/web-$i\"]" || bad=1
    sv_expect "node $i: the backend saw the client's real address 172.30.0.2" "$json" \
      '.seen_sources | keys == ["172.30.0.2"]' || bad=1
  done
  # Node 3 has no local backend: dropped (kube-proxy's DROP), not rejected, not forwarded.
  json=$(sv_spread outside "$(t_node_ip4 3)" tcp "$SV_NODEPORT_LOCAL" 3)
  sv_expect "outside -> node 3:$SV_NODEPORT_LOCAL (no local backend): dropped (timeouts, no answer, no refusal)" "$json" \
    '.answered == 0 and (.errors | keys | all(test("timed out")))' || bad=1
  ((bad == 0)) || fail "NodePort (Local): failed (above)"
}

sv_case c_affinity "sessionAffinity ClientIP: 30 connections of one client stay on one backend"
c_affinity() {
  local from json control
  for from in cl-1 cl-3 node:2; do
    json=$(SV_PARALLEL=1 sv_spread "$from" "${SV_IP[sticky]}" tcp 80 30)
    sv_all_by "$from -> sticky: 30 connections" "$json" "$WEB"
    sv_expect "$from -> sticky: one backend for all 30" "$json" '.servers | length == 1'
  done
  # The control: the same client without affinity is spread.
  control=$(SV_PARALLEL=1 sv_spread cl-1 "${SV_IP[web]}" tcp 80 30)
  sv_expect "control: cl-1 -> web (no affinity) reaches several backends" "$control" '.servers | length >= 2'
}

sv_case c_reject "no endpoints: TCP refused (RST/ICMP), UDP gets ICMP port unreachable — quickly, not a timeout"
c_reject() {
  local from json bad=0
  for from in cl-1 cl-2 node:3; do
    json=$(SV_TIMEOUT_MS=5000 sv_spread "$from" "${SV_IP[empty]}" tcp 80 3)
    sv_expect "$from -> empty:80/tcp refused" "$json" \
      '.answered == 0 and (.errors | keys | all(test("connection refused")))' || bad=1
  done
  for from in cl-1 cl-3; do
    json=$(SV_TIMEOUT_MS=5000 sv_spread "$from" "${SV_IP[empty]}" udp 80 3)
    sv_expect "$from -> empty:80/udp: ICMP port unreachable" "$json" \
      '.answered == 0 and (.errors | keys | all(test("refused: ICMP port unreachable")))' || bad=1
  done
  ((bad == 0)) || fail "no-endpoint Service: not rejected everywhere (above)"
}

sv_case c_hairpin "hairpin: a backend reaches itself through its Service"
c_hairpin() {
  local json
  json=$(sv_spread web-1 "${SV_IP[self]}" tcp 80 5)
  sv_all_by "web-1 -> self (its only backend is web-1)" "$json" '["sv/web-1"]'
  json=$(sv_spread web-2 "${SV_IP[web]}" tcp 80 30)
  sv_all_by "web-2 -> web: 30 connections" "$json" "$WEB"
  sv_expect "web-2 -> web: web-2 itself among the answers" "$json" '.servers["sv/web-2"] // 0 > 0'
}

sv_case c_named_port "named targetPort resolved per endpoint (web-port = 8080 on named-a, 9090 on named-b)"
c_named_port() {
  local json
  json=$(sv_spread cl-3 "${SV_IP[named]}" tcp 80 40)
  sv_all_by "cl-3 -> named: 40 connections" "$json" '["sv/named-a","sv/named-b"]'
  sv_expect "cl-3 -> named: both backends, each on its own port number" "$json" '.servers | length == 2'
  (($(sv_log_count named-a '^tcp 8080 from ') > 0)) || fail "named-a saw nothing on 8080"
  (($(sv_log_count named-b '^tcp 9090 from ') > 0)) || fail "named-b saw nothing on 9090"
  echo "    ok: named-a served on 8080, named-b on 9090"
}

sv_case c_udp "UDP: 150 datagram exchanges to a ClusterIP (port 5353 -> 80) spread over the 3 backends"
c_udp() {
  local json
  json=$(sv_spread cl-2 "${SV_IP[web]}" udp 5353 150)
  sv_all_by "cl-2 -> web:5353/udp: 150 exchanges" "$json" "$WEB"
  sv_expect "each backend answered >= 20" "$json" \
    '[.servers["sv/web-1"], .servers["sv/web-2"], .servers["sv/web-3"]] | all(. != null and . >= 20)'
  sv_expect "backends saw cl-2's own address" "$json" ".seen_sources | keys == [\"${SV_IP4[cl-2]}\"]"
}

sv_case c_sctp "SCTP: raw INITs to ClusterIP:7000 arrive at a backend's address and port 80; INIT-ACK comes back"
c_sctp() {
  local pod before=() after n=0 json i=0 pat
  # "sctp 80 INIT from <client> port <p> to <dst>": what the backend's raw socket saw.
  for pod in web-1 web-2 web-3; do
    pat="^sctp 80 INIT from ${SV_IP4[cl-1]//./\\.} port [0-9]+ to ${SV_IP4[$pod]//./\\.} "
    before+=("$(sv_log_count "$pod" "$pat")")
  done
  json=$(SV_PARALLEL=1 sv_spread cl-1 "${SV_IP[web]}" sctp 7000 6)
  for pod in web-1 web-2 web-3; do
    pat="^sctp 80 INIT from ${SV_IP4[cl-1]//./\\.} port [0-9]+ to ${SV_IP4[$pod]//./\\.} "
    after=$(sv_log_count "$pod" "$pat")
    n=$((n + after - before[i]))
    i=$((i + 1))
  done
  ((n >= 6)) || fail "backends' raw sockets saw $n INIT(s) from cl-1 at <backend address>:80, expected >= 6 (probe: $(sv_describe "$json"))"
  echo "    ok: $n INIT(s) from cl-1 arrived at backend addresses, port 80 (translated from ${SV_IP[web]}:7000)"
  sv_all_by "cl-1 -> web:7000/sctp: INIT-ACK from the ClusterIP (reverse NAT)" "$json" "$WEB"
}

# Scale up/down and readiness while a client loop runs (cl-2, a new connection every 25 ms for
# 20 s) and a long-lived TCP stream (cl-3 -> scale:5001) stays on its backend B:
#   +1.5 s             R (another backend) not ready -> no new connection to R from 1 s after
#   2.5 s later (+4)   D removed, web-4 added        -> none to D, some to web-4 from 1 s after
#   2.5 s later (+6.5) R ready again                 -> some to R from 1 s after
# A change's time is when the harness wrote the `scale` Service's EndpointSlices (their mtime:
# set-ready rewrites every Service of the pod, which takes seconds on a loaded machine); the next
# change waits for the previous command. SV_APPLY_S (default 1, the issue's bound) is how long
# the agents may take. Every window judged must hold at least 10 connections.
sv_case c_scale_readiness "scale up/down and readiness during a client loop: only ready backends within 1 s; an established stream keeps working"
c_scale_readiness() {
  local apply=${SV_APPLY_S:-1} stream_out="$SV_WORK/stream.json" loop_out="$SV_WORK/loop.json"
  local pod b="" r d before=() i=0 pat
  for pod in web-1 web-2 web-3; do
    before+=("$(sv_log_count "$pod" "^sink 5001 from ${SV_IP4[cl-3]//./\\.}$")")
  done
  cluster exec "$SV_NS/cl-3" -- "$T_BIN/ferry-probe" stream --to "${SV_IP[scale]}" --port 5001 --duration 24 \
    --stall-ms 3000 >"$stream_out" 2>&1 &
  local stream_pid=$! deadline=$((SECONDS + 5))
  while [[ -z $b ]] && ((SECONDS < deadline)); do
    i=0
    for pod in web-1 web-2 web-3; do
      (($(sv_log_count "$pod" "^sink 5001 from ${SV_IP4[cl-3]//./\\.}$") > before[i])) && b=$pod
      i=$((i + 1))
    done
    sleep 0.1
  done
  [[ -n $b ]] || { wait "$stream_pid" || true; fail "the stream cl-3 -> scale:5001 reached no backend: $(cat "$stream_out")"; }
  # R and D: the two backends the stream does not use.
  read -r r d <<<"$(printf '%s\n' web-1 web-2 web-3 | grep -vx "$b" | tr '\n' ' ')"
  echo "    stream cl-3 -> scale:5001 is on $b; R=$r (readiness), D=$d (removed), web-4 added"

  local t0=$EPOCHREALTIME
  cluster exec "$SV_NS/cl-2" -- "$T_BIN/ferry-probe" spread --proto tcp --to "${SV_IP[scale]}" --port 80 \
    --duration 20 --interval-ms 25 --timeout-ms "$SV_TIMEOUT_MS" --each >"$loop_out" &
  local loop_pid=$!
  sv_changed ready "$r"
  sv_changed scale -
  sv_at "$t0" 1.5
  local r_off_b=$EPOCHREALTIME
  cluster set-ready "$SV_NS/$r" false >/dev/null
  local r_off
  r_off=$(sv_scale_slices_written)
  sv_at "$EPOCHREALTIME" 2.5
  local scale_b=$EPOCHREALTIME
  cluster set-endpoints "$SV_NS/scale" "$b,$r,web-4" >/dev/null
  local scale_a
  scale_a=$(sv_scale_slices_written)
  sv_at "$EPOCHREALTIME" 2.5
  local r_on_b=$EPOCHREALTIME
  cluster set-ready "$SV_NS/$r" true >/dev/null
  local r_on
  r_on=$(sv_scale_slices_written)
  wait "$loop_pid" || fail "the client loop failed: $(head -c 300 "$loop_out")"
  local stream_rc=0
  wait "$stream_pid" || stream_rc=$?
  echo "    commands started / scale slices written at +$(sv_rel "$t0" "$r_off_b")/$(sv_rel "$t0" "$r_off") (R not ready), +$(sv_rel "$t0" "$scale_b")/$(sv_rel "$t0" "$scale_a") (scale), +$(sv_rel "$t0" "$r_on_b")/$(sv_rel "$t0" "$r_on") (R ready)"

  local loop
  loop=$(cat "$loop_out")
  sv_expect "client loop: every new connection answered during the changes" "$loop" '.answered == .connections'
  # Windows of start times: [from, to) with the server a connection there may or must not reach.
  sv_window "$loop" "R=$r not chosen from 1 s after it became not ready until it was ready again" \
    "$(sv_add "$r_off" "$apply")" "$r_on_b" "sv/$r" none
  sv_window "$loop" "D=$d not chosen from 1 s after the scale-down" "$(sv_add "$scale_a" "$apply")" 1e12 "sv/$d" none
  sv_window "$loop" "web-4 not chosen before the scale-up" 0 "$scale_b" sv/web-4 none
  sv_window "$loop" "web-4 chosen from 1 s after the scale-up" "$(sv_add "$scale_a" "$apply")" 1e12 sv/web-4 some
  sv_window "$loop" "R=$r chosen again from 1 s after it became ready" "$(sv_add "$r_on" "$apply")" 1e12 "sv/$r" some
  # How long the old choice was still seen (information: last start time that reached it).
  echo "    last new connection to R after 'not ready': +$(sv_last_after "$loop" "sv/$r" "$r_off" "$r_on_b") s; to D after the scale-down: +$(sv_last_after "$loop" "sv/$d" "$scale_a" 1e12) s"

  ((stream_rc == 0)) || fail "the established stream cl-3 -> scale:5001 (on $b) broke: $(cat "$stream_out")"
  jq -e '.ok' "$stream_out" >/dev/null || fail "stream not ok: $(cat "$stream_out")"
  echo "    ok: the established stream to $b kept working ($(jq -r '"\(.bytes) bytes in \(.seconds) s, longest stall \(.max_stall_ms) ms"' "$stream_out"))"
}

# When the `scale` Service's EndpointSlices were last written (Unix seconds).
sv_scale_slices_written() {
  stat -c '%.6Y' "/run/ferry-harness/$T_CLUSTER/manifests/endpointslice-$SV_NS.scale."*.json | sort -n | tail -n 1
}

# Sleeps until $2 seconds after $1 (an $EPOCHREALTIME).
sv_at() {
  local left
  left=$(awk -v a="$1" -v d="$2" -v now="$EPOCHREALTIME" 'BEGIN {l = a + d - now; printf "%.3f", (l > 0 ? l : 0)}')
  sleep "$left"
}
sv_add() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.6f", a + b}'; }
sv_rel() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", b - a}'; }
# Seconds after $3 of the last connection to server $2 that started in [$3, $4); "none" if none.
sv_last_after() {
  jq -r --arg s "$2" --argjson from "$3" --argjson to "$4" \
    '[.each[] | select(.t >= $from and .t < $to and .server == $s) | .t - $from] | max // "none"
     | if type == "number" then (. * 100 | round / 100) else . end' <<<"$1"
}
# sv_window <loop-json> <what> <from> <to> <server> <none|some>: among the connections that
# started in [from, to), none / at least one answered by server.
sv_window() {
  local loop=$1 what=$2 from=$3 to=$4 server=$5 want=$6 counts
  counts=$(jq -r --arg s "$server" --argjson from "$from" --argjson to "$to" \
    '[.each[] | select(.t >= $from and .t < $to)] | "\(length) \([.[] | select(.server == $s)] | length)"' <<<"$loop")
  local total=${counts% *} hits=${counts#* }
  if ((total < 10)); then
    fail "$what: only $total connections in the window, too few to judge (the loop or the harness was too slow)"
  elif [[ $want == none ]] && ((hits == 0)); then
    echo "    ok: $what ($total connections in the window, none to $server)"
  elif [[ $want == some ]] && ((hits > 0)); then
    echo "    ok: $what ($hits of $total connections in the window)"
  else
    fail "$what: $hits of $total connections in the window went to $server (want $want)"
  fi
}

sv_case c_policy "NetworkPolicy behind a Service: a policy denying a client blocks it through the ClusterIP too"
c_policy() {
  local file="$SV_WORK/web-from-cl-1.yaml" json
  cat >"$file" <<'EOF'
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-cl-1, namespace: sv}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from:
    - podSelector: {matchLabels: {pod: cl-1}}
EOF
  sv_changed policy "$file"
  cluster apply "$file"
  cluster sync
  json=$(sv_spread cl-1 "${SV_IP[web]}" tcp 80 15)
  sv_all_by "allowed client cl-1 -> web ClusterIP" "$json" "$WEB"
  json=$(sv_spread cl-2 "${SV_IP[web]}" tcp 80 6)
  sv_expect "denied client cl-2 -> web ClusterIP: blocked" "$json" '.answered == 0'
  json=$(sv_spread cl-2 "${SV_IP[web]}" udp 5353 3)
  sv_expect "denied client cl-2 -> web ClusterIP UDP: blocked" "$json" '.answered == 0'
  json=$(sv_spread cl-2 "${SV_IP4[web-1]}" tcp 80 2)
  sv_expect "denied client cl-2 -> web-1's pod address: blocked (the policy itself)" "$json" '.answered == 0'
}
