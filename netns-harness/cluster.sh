#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# netns-harness/cluster.sh — a Kubernetes-like cluster made of network namespaces on one
# Linux machine: an underlay bridge, nodes (each running ferry-agent), pods wired by the real
# ferry-bridge plugin, and a manifest directory standing in for the API server.
# See netns-harness/README.md for the commands, names and addressing plan.
set -euo pipefail

FH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FH_REPO=$(cd "$FH_DIR/.." && pwd)
# shellcheck source=lib.sh
source "$FH_DIR/lib.sh"

usage() {
  cat <<'EOF'
usage: cluster.sh [--cluster NAME] <command> [args]     (NAME default: $FERRY_CLUSTER or "fy")

  up [--nodes N] [--datapath ebpf|iptables|auto] [--overlay vxlan|none] [--vni N]
     [--vxlan-port P] [--bin DIR] [--no-agent]          (N default 3)
  add-node [--datapath MODE]       a new node (next free index) joins the running cluster
  remove-node <i>                  DEL its pods, stop its agent, delete its Node and netns
  add-pod <node-index> <namespace> <pod> [--labels k=v,...] [--ports SPEC] [--add-ports SPEC]
        SPEC: <port>/<tcp|udp|sctp>[=<name>],...  (default: 80 and 81 on tcp, udp, sctp,
        named serve-<port>-<proto>); the pod serves and declares exactly these ports
  del-pod <namespace> <pod>
  label-pod <ns>/<pod> <k=v,...|->   replace a pod's labels (its manifest is rewritten)
  label-ns <ns> <k=v,...|->          replace a namespace's labels (kubernetes.io/metadata.name stays)
  add-service <ns> <name> --cluster-ip IP[,IP6] --port SPEC... [--type ClusterIP|NodePort]
        [--endpoints pod,...] [--external-traffic-policy Cluster|Local]
        [--internal-traffic-policy Cluster|Local] [--session-affinity None|ClientIP[:timeout]]
        SPEC: <name>:<port>/<tcp|udp|sctp>:<targetPort>[:<nodePort>] (targetPort: number or
        container port name); writes the Service and its EndpointSlices (no selector)
  set-endpoints <ns>/<service> <pod,...|->   scale: the Service's endpoint pods become these
  set-ready <ns>/<pod> <true|false>          pod readiness (Pod condition + endpoint conditions)
  del-service <ns>/<service>
  add-outside          a client netns on the underlay outside the cluster (172.30.0.2): "outside"
  apply <file>...      copy manifests (JSON or YAML) into the manifest directory as applied-<file name>
  delete <file>...     remove what apply copied (by the same file name)
  sync [--timeout S]   wait until every agent has handled every manifest written before (a barrier)
  probe <src> <dst> <tcp|udp|sctp|icmp> [port] [--6] [--timeout-ms MS] [-o json]
        src: <ns>/<pod> | node:<i> | underlay | outside;  dst: the same, or an IP
  matrix [--proto tcp,udp,sctp,icmp] [--port 80] [--family 4|6|4,6] [--timeout-ms MS]
         [--parallel N] [--json] [--expect FILE]
  restart-agent <i> [--kill9] [--datapath MODE]
  set-datapath <ebpf|iptables|auto>
  exec <ns>/<pod>|node:<i>|underlay|outside -- <command...>   run a command in that network namespace
  ip <ns>/<pod>|node:<i>|underlay [--6]               print its IPv4 (or IPv6) address
  overlay <i>          node i's VXLAN device, its routes, neighbours and FDB entries
  logs <i> [-f]        status        down        check-clean
EOF
}

# --- cluster.env: what `up` decided, read by every later command -----------------------
save_env() {
  fh_write_atomic "$FH_STATE/cluster.env" <<EOF
FH_NODES=$FH_NODES
FH_NODE_IDS="$FH_NODE_IDS"
FH_DATAPATH=$FH_DATAPATH
FH_BIN=$FH_BIN
FH_AGENT=$FH_AGENT
FH_OVERLAY=$FH_OVERLAY
FH_VNI=$FH_VNI
FH_VXLAN_PORT=$FH_VXLAN_PORT
EOF
}

node_index_ok() {
  if ! [[ $1 =~ ^[0-9]+$ ]] || [[ " $FH_NODE_IDS " != *" $1 "* ]]; then
    fh_die "no node with index \"$1\" in cluster $FH_CLUSTER (nodes: $FH_NODE_IDS)"
  fi
}

# Plain pod-CIDR routes between nodes (no overlay): only without agents, with --overlay none,
# or with an agent that predates the overlay.
plain_routes() { [[ $FH_OVERLAY != vxlan ]]; }
# The harness writes the conflists itself only when no agent does (the agent writes its node's
# conflist from its Node object with --cni-conflist).
harness_writes_conflist() { ((FH_AGENT == 0)) || [[ $FH_OVERLAY == legacy ]]; }
agent_has_overlay_flags() { "$FH_BIN/ferry-agent" --help 2>&1 | grep -q -- '--overlay'; }

# --- up ---------------------------------------------------------------------------------
create_underlay() {
  local ul
  ul=$(fh_underlay)
  ip netns add "$ul"
  ip -n "$ul" link set lo up
  ip -n "$ul" link add br0 type bridge
  ip -n "$ul" link set br0 up
  # The underlay's own address: a destination outside every pod CIDR (masquerade is seen here).
  ip -n "$ul" addr add "$(fh_underlay_ip4)/24" dev br0
  ip -n "$ul" addr add "$(fh_underlay_ip6)/64" dev br0 nodad
}

create_node() {
  local i=$1 node ul
  node=$(fh_node "$i")
  ul=$(fh_underlay)
  ip netns add "$node"
  # The uplink pair is created directly in the two namespaces: nothing appears on the host.
  ip link add eth0 netns "$node" type veth peer name "n$i" netns "$ul"
  ip -n "$ul" link set "n$i" master br0 up
  ip -n "$node" link set lo up
  ip -n "$node" addr add "$(fh_node_ip4 "$i")/24" dev eth0
  ip -n "$node" addr add "$(fh_node_ip6 "$i")/64" dev eth0 nodad
  ip -n "$node" link set eth0 up
  # A default gateway, as every real node has: traffic from the node itself to a Service
  # address is routed before iptables-mode DNAT (OUTPUT) rewrites it; without a route,
  # connect() fails with "network unreachable". The underlay forwards nothing further.
  ip -n "$node" route add default via "$(fh_underlay_ip4)" dev eth0
  ip -n "$node" -6 route add default via "$(fh_underlay_ip6)" dev eth0
  fh_in "$node" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
}

# Plain route on node i to node j's pod CIDRs via j's uplink (only where there is no overlay).
plain_route() {
  local verb=$1 i=$2 j=$3 node
  node=$(fh_node "$i")
  ip -n "$node" route "$verb" "$(fh_pod_cidr4 "$j")" via "$(fh_node_ip4 "$j")" dev eth0
  ip -n "$node" -6 route "$verb" "$(fh_pod_cidr6 "$j")" via "$(fh_node_ip6 "$j")" dev eth0
}

# Node i gets routes to every other node, and every other node one to node i.
route_node_both_ways() {
  local i=$1 j
  for j in $FH_NODE_IDS; do
    ((j == i)) && continue
    plain_route replace "$i" "$j"
    plain_route replace "$j" "$i"
  done
}

write_node_manifest() {
  local i=$1 node
  node=$(fh_node "$i")
  jq -n --arg name "$node" --arg c4 "$(fh_pod_cidr4 "$i")" --arg c6 "$(fh_pod_cidr6 "$i")" \
    --arg ip4 "$(fh_node_ip4 "$i")" --arg ip6 "$(fh_node_ip6 "$i")" '{
      apiVersion: "v1", kind: "Node",
      metadata: {name: $name, labels: {"kubernetes.io/hostname": $name, "kubernetes.io/os": "linux"}},
      spec: {podCIDR: $c4, podCIDRs: [$c4, $c6]},
      status: {addresses: [{type: "InternalIP", address: $ip4}, {type: "InternalIP", address: $ip6},
                           {type: "Hostname", address: $name}]}}' |
    fh_write_atomic "$FH_MANIFESTS/node-$node.json"
}

# Node i's conflist: written by its agent (--cni-conflist) or, without one, by write_conflist.
# One directory per node: every node's network is called "ferry", and ferry-cnitool finds a
# network by name in a directory.
conflist_path() { echo "$FH_STATE/net.d/$(fh_node "$1")/10-ferry.conflist"; }

node_dirs() {
  local node
  node=$(fh_node "$1")
  mkdir -p "$FH_STATE/net.d/$node" "$FH_STATE/ipam/$node" "$FH_STATE/cni-cache/$node"
}

write_conflist() {
  local i=$1 node runtime
  node=$(fh_node "$i")
  runtime=$(fh_node_runtime "$i")
  jq -n --arg ipam "$FH_STATE/ipam/$node" --arg c4 "$(fh_pod_cidr4 "$i")" --arg c6 "$(fh_pod_cidr6 "$i")" \
    --arg epdir "$runtime/endpoints" --arg sock "$runtime/agent.sock" --argjson agent "$FH_AGENT" '{
      cniVersion: "1.1.0", name: "ferry",
      plugins: [({type: "ferry-bridge", bridge: "ferry0", isGateway: true, ipMasq: false,
                 endpointDir: $epdir, agentSocket: $sock,
                 ipam: {type: "ferry-host-local", dataDir: $ipam,
                        ranges: [[{subnet: $c4}], [{subnet: $c6}]],
                        routes: [{dst: "0.0.0.0/0"}, {dst: "::/0"}]}}
                + (if $agent == 1 then {agentRequired: true} else {} end))]}' |
    fh_write_atomic "$(conflist_path "$i")"
}

# A probe server in a netns answering on 80/81 (TCP, UDP, SCTP), plus a stream sink (5001)
# and a request/response echo (5002). It answers with `name`, so probes see who answered.
# $3..$5 (optional): the TCP, UDP and SCTP ports, comma-separated (default 80,81 each; "" none).
start_probe_server() {
  local ns=$1 name=$2 tcp=${3-80,81} udp=${4-80,81} sctp=${5-80,81} pidfile="$FH_STATE/pids/$1.probe.pid" i
  local serve=()
  [[ -n $tcp ]] && serve+=(--tcp "$tcp")
  [[ -n $udp ]] && serve+=(--udp "$udp")
  [[ -n $sctp ]] && serve+=(--sctp "$sctp")
  rm -f "$pidfile.ready"
  mkdir -p "$FH_STATE/pids"
  setsid nsenter --net="/run/netns/$ns" "$FH_BIN/ferry-probe" serve --name "$name" \
    "${serve[@]}" --sink 5001 --rr 5002 --pidfile "$pidfile.ready" \
    >>"$FH_STATE/logs/$ns.probe.log" 2>&1 </dev/null &
  echo $! >"$pidfile"
  for ((i = 0; i < 200; i++)); do
    [[ -f $pidfile.ready ]] && return 0
    fh_pid_alive "$(<"$pidfile")" || break
    sleep 0.025
  done
  fh_die "ferry-probe server in $ns did not start: $(tail -n 5 "$FH_STATE/logs/$ns.probe.log")"
}

agent_pidfile() { echo "$FH_STATE/pids/$(fh_node "$1").agent.pid"; }

start_agent() {
  local i=$1 mode=$2 node log pidfile deadline
  node=$(fh_node "$i")
  log="$FH_STATE/logs/$node.log"
  pidfile=$(agent_pidfile "$i")
  mkdir -p "$(fh_node_bpffs "$i")" "$(fh_node_runtime "$i")"
  echo "=== $(date -Is) starting ferry-agent --datapath $mode" >>"$log"
  local overlay=()
  if [[ $FH_OVERLAY != legacy ]]; then
    overlay=(--overlay "$FH_OVERLAY" --vxlan-vni "$FH_VNI" --vxlan-port "$FH_VXLAN_PORT"
      --underlay-interface eth0 --cni-conflist "$(conflist_path "$i")" --cni-network ferry
      --ipam-dir "$FH_STATE/ipam/$node")
  fi
  fh_start_daemon "$node" "$log" "$pidfile" "$FH_BIN/ferry-agent" --node "$node" \
    --datastore "dir:$FH_MANIFESTS" --datapath "$mode" --bpffs-root "$(fh_node_bpffs "$i")" \
    --state-dir "$(fh_node_runtime "$i")" --listen "127.0.0.1:$FH_AGENT_PORT" "${overlay[@]}"
  echo "$mode" >"$FH_STATE/pids/$node.agent.mode"
  deadline=$((SECONDS + ${FH_AGENT_TIMEOUT:-30}))
  until fh_in "$node" curl -sf --max-time 1 -o /dev/null "http://127.0.0.1:$FH_AGENT_PORT/readyz"; do
    if ! fh_pid_alive "$(<"$pidfile")"; then
      fh_die "ferry-agent on $node exited during start-up; last lines of $log:
$(tail -n 20 "$log")"
    fi
    if ((SECONDS >= deadline)); then
      fh_die "ferry-agent on $node not ready after ${FH_AGENT_TIMEOUT:-30}s (http://127.0.0.1:$FH_AGENT_PORT/readyz in its netns); last lines of $log:
$(tail -n 20 "$log")"
    fi
    sleep 0.1
  done
  fh_log "ferry-agent on $node ready ($mode datapath, pid $(<"$pidfile"))"
}

# The agent writes its node's conflist from its Node object; pods can be added once it is there
# and names the node's own pod CIDR.
wait_conflist() {
  local i=$1 file node log deadline
  harness_writes_conflist && return 0
  file=$(conflist_path "$i")
  node=$(fh_node "$i")
  log="$FH_STATE/logs/$node.log"
  deadline=$((SECONDS + ${FH_AGENT_TIMEOUT:-30}))
  until [[ -s $file ]] && jq -e --arg c "$(fh_pod_cidr4 "$i")" \
    '[.. | .subnet? // empty] | index($c) != null' "$file" >/dev/null 2>&1; do
    fh_pid_alive "$(<"$(agent_pidfile "$i")")" ||
      fh_die "ferry-agent on $node exited before writing $file; last lines of $log:
$(tail -n 20 "$log")"
    ((SECONDS < deadline)) ||
      fh_die "ferry-agent on $node did not write its conflist $file (with subnet $(fh_pod_cidr4 "$i")) within ${FH_AGENT_TIMEOUT:-30}s; last lines of $log:
$(tail -n 20 "$log")"
    sleep 0.1
  done
}

stop_agent() {
  local i=$1 signal=${2:-TERM}
  fh_stop_pidfile "$(agent_pidfile "$i")" "$signal"
}

cmd_up() {
  FH_NODES=3 FH_DATAPATH=auto FH_BIN=${FERRY_BIN:-$FH_REPO/build/bin} FH_AGENT=1
  FH_OVERLAY=vxlan FH_VNI=1 FH_VXLAN_PORT=8472
  local overlay_asked=0
  while (($#)); do
    case $1 in
      --nodes) FH_NODES=$2; shift 2 ;;
      --datapath) FH_DATAPATH=$2; shift 2 ;;
      --overlay) FH_OVERLAY=$2; overlay_asked=1; shift 2 ;;
      --vni) FH_VNI=$2; overlay_asked=1; shift 2 ;;
      --vxlan-port) FH_VXLAN_PORT=$2; overlay_asked=1; shift 2 ;;
      --bin) FH_BIN=$2; shift 2 ;;
      --no-agent) FH_AGENT=0; shift ;;
      *) fh_die "up: unknown argument \"$1\"" ;;
    esac
  done
  if ! [[ $FH_NODES =~ ^[0-9]+$ ]] || ((FH_NODES < 1 || FH_NODES > 200)); then fh_die "--nodes must be 1-200"; fi
  [[ $FH_DATAPATH =~ ^(ebpf|iptables|auto)$ ]] || fh_die "--datapath must be ebpf, iptables or auto"
  [[ $FH_OVERLAY =~ ^(vxlan|none)$ ]] || fh_die "--overlay must be vxlan or none"
  if ! [[ $FH_VNI =~ ^[0-9]+$ ]] || ((FH_VNI < 1 || FH_VNI > 16777215)); then fh_die "--vni must be 1-16777215"; fi
  if ! [[ $FH_VXLAN_PORT =~ ^[0-9]+$ ]] || ((FH_VXLAN_PORT < 1 || FH_VXLAN_PORT > 65535)); then fh_die "--vxlan-port must be 1-65535"; fi
  FH_BIN=$(cd "$FH_BIN" 2>/dev/null && pwd) || fh_die "--bin directory does not exist"
  local b need=(ferry-bridge ferry-host-local ferry-cnitool ferry-probe)
  ((FH_AGENT)) && need+=(ferry-agent)
  for b in "${need[@]}"; do
    [[ -x $FH_BIN/$b ]] || fh_die "$FH_BIN/$b is missing; build it (cmake --build build --target $b)$([[ $b == ferry-agent ]] && echo ' or pass --no-agent')"
  done
  if ((FH_AGENT == 0)); then
    ((overlay_asked == 0)) || [[ $FH_OVERLAY == none ]] ||
      fh_die "--no-agent has no overlay (the agent builds it); drop --overlay/--vni/--vxlan-port"
    FH_OVERLAY=none
  elif ! agent_has_overlay_flags; then
    ((overlay_asked == 0)) || fh_die "$FH_BIN/ferry-agent has no --overlay flag (built before the overlay); rebuild it"
    FH_OVERLAY=legacy
    fh_log "note: $FH_BIN/ferry-agent predates the overlay: plain pod-CIDR routes and harness-written conflists"
  fi
  [[ -f $FH_STATE/cluster.env ]] && fh_die "cluster \"$FH_CLUSTER\" is already up; run: cluster.sh --cluster $FH_CLUSTER down"
  [[ -z $(fh_cluster_netns) ]] ||
    fh_die "namespaces of cluster \"$FH_CLUSTER\" are left from an earlier run ($(fh_cluster_netns | tr '\n' ' ')); run: cluster.sh --cluster $FH_CLUSTER down"

  FH_NODE_IDS=$(seq -s ' ' 1 "$FH_NODES")
  mkdir -p "$FH_STATE"/{manifests,pods,pids,logs,tmp}
  save_env
  fh_mount_bpffs
  local i
  create_underlay
  start_probe_server "$(fh_underlay)" underlay
  for i in $FH_NODE_IDS; do create_node "$i"; done
  for i in $FH_NODE_IDS; do
    node_dirs "$i"
    if plain_routes; then route_node_both_ways "$i"; fi
    write_node_manifest "$i"
    if harness_writes_conflist; then write_conflist "$i"; fi
    start_probe_server "$(fh_node "$i")" "node:$i"
  done
  if ((FH_AGENT)); then
    for i in $FH_NODE_IDS; do start_agent "$i" "$FH_DATAPATH"; done
    for i in $FH_NODE_IDS; do wait_conflist "$i"; done
  else
    fh_log "no agent (--no-agent): pods are plain ferry-bridge pods, plain pod-CIDR routes between nodes"
  fi
  fh_log "up: $FH_NODES node(s), datapath $FH_DATAPATH, overlay $(overlay_text), state in $FH_STATE"
}

overlay_text() {
  case $FH_OVERLAY in
    vxlan) echo "vxlan (VNI $FH_VNI, UDP port $FH_VXLAN_PORT)" ;;
    legacy) echo "none (agent without overlay support; plain routes)" ;;
    *) echo "none (plain routes)" ;;
  esac
}

# --- nodes joining and leaving ------------------------------------------------------------
cmd_add_node() {
  local mode=""
  while (($#)); do
    case $1 in
      --datapath) mode=$2; shift 2 ;;
      *) fh_die "add-node: unknown argument \"$1\"" ;;
    esac
  done
  fh_require_cluster
  [[ -n $mode ]] || mode=$FH_DATAPATH
  [[ $mode =~ ^(ebpf|iptables|auto)$ ]] || fh_die "--datapath must be ebpf, iptables or auto"
  local i=0 j node
  for j in $FH_NODE_IDS; do ((j > i)) && i=$j; done
  i=$((i + 1))
  ((i <= 200)) || fh_die "no free node index (at most 200)"
  node=$(fh_node "$i")
  [[ -e /run/netns/$node ]] && fh_die "netns $node exists already; run: cluster.sh --cluster $FH_CLUSTER down"
  create_node "$i"
  FH_NODE_IDS="$FH_NODE_IDS $i"
  FH_NODES=$((FH_NODES + 1))
  save_env
  node_dirs "$i"
  if plain_routes; then route_node_both_ways "$i"; fi
  # The other agents learn about the node from this manifest (no restarts).
  write_node_manifest "$i"
  if harness_writes_conflist; then write_conflist "$i"; fi
  start_probe_server "$node" "node:$i"
  if ((FH_AGENT)); then
    start_agent "$i" "$mode"
    wait_conflist "$i"
  fi
  echo "node:$i $node $(fh_node_ip4 "$i") $(fh_node_ip6 "$i") pods $(fh_pod_cidr4 "$i") $(fh_pod_cidr6 "$i")"
}

cmd_remove_node() {
  (($# == 1)) || fh_die "usage: remove-node <i>"
  fh_require_cluster
  node_index_ok "$1"
  local i=$1 node f j ids=""
  node=$(fh_node "$i")
  [[ $FH_NODE_IDS != "$i" ]] || fh_die "node $i is the last node; use down"
  # Its pods first, through the plugin, while its agent still runs to see them go.
  for f in "$FH_STATE"/pods/*.json; do
    [[ -e $f && $(jq -r .node "$f") == "$node" ]] || continue
    remove_pod "$(jq -r .namespace "$f")" "$(jq -r .pod "$f")" "$node"
  done
  ((FH_AGENT)) && stop_agent "$i"
  fh_stop_pidfile "$FH_STATE/pids/$node.probe.pid"
  # The other agents drop the node's routes, neighbour and FDB entries when its Node goes.
  rm -f "$FH_MANIFESTS/node-$node.json"
  for j in $FH_NODE_IDS; do ((j == i)) || ids+="${ids:+ }$j"; done
  if plain_routes; then
    for j in $ids; do plain_route del "$j" "$i" 2>/dev/null || true; done
  fi
  kill_in_netns "$node"
  ip netns del "$node" 2>/dev/null || true
  rm -rf "/sys/fs/bpf/ferry/$node" "/run/ferry/$node" "$FH_STATE/net.d/$node" "$FH_STATE/ipam/$node" \
    "$FH_STATE/cni-cache/$node" "$FH_STATE/pids/$node".*
  FH_NODE_IDS=$ids
  FH_NODES=$((FH_NODES - 1))
  save_env
  echo "node:$i $node removed"
}

# --- pods -------------------------------------------------------------------------------
ensure_namespace_manifest() {
  local ns=$1 file="$FH_MANIFESTS/namespace-$1.json"
  [[ -f $file ]] && return 0
  write_namespace_manifest "$ns" '{}'
}

# The API server sets kubernetes.io/metadata.name on every namespace; it cannot be changed.
write_namespace_manifest() {
  local ns=$1 labels=$2
  jq -n --arg ns "$ns" --argjson labels "$labels" '{apiVersion: "v1", kind: "Namespace",
      metadata: {name: $ns, labels: ($labels + {"kubernetes.io/metadata.name": $ns})}}' |
    fh_write_atomic "$FH_MANIFESTS/namespace-$ns.json"
}

# Container ports "80/tcp=serve-80-tcp,82/udp" -> JSON [{name, containerPort, protocol}]
# (name "" = unnamed). The default: 80 and 81 on TCP, UDP and SCTP, named serve-<port>-<proto>.
readonly DEFAULT_POD_PORTS="80/tcp=serve-80-tcp,80/udp=serve-80-udp,80/sctp=serve-80-sctp,81/tcp=serve-81-tcp,81/udp=serve-81-udp,81/sctp=serve-81-sctp"
ports_json() {
  local text=$1 item items=()
  local IFS=,
  for item in $text; do
    if ! [[ $item =~ ^([0-9]+)/(tcp|udp|sctp)(=([a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?))?$ ]] ||
      ((BASH_REMATCH[1] < 1 || BASH_REMATCH[1] > 65535)); then
      fh_die "port \"$item\" is not <port>/<tcp|udp|sctp>[=<name>] (name: an IANA service name, at most 15 characters)"
    fi
    items+=("${BASH_REMATCH[1]} ${BASH_REMATCH[2]^^} ${BASH_REMATCH[4]}")
  done
  printf '%s\n' "${items[@]}" | jq -R -s -c '[split("\n")[] | select(. != "") | split(" ")
      | {name: .[2], containerPort: (.[0] | tonumber), protocol: .[1]}]'
}

# The comma-separated port list of one protocol in a ports JSON (for ferry-probe serve).
ports_of() { jq -r --arg p "$2" '[.[] | select(.protocol == $p) | .containerPort] | unique | map(tostring) | join(",")' <<<"$1"; }

# labels "k=v,k2=v2" -> JSON object
labels_json() {
  local text=$1 pair out='{}'
  local IFS=,
  for pair in $text; do
    [[ $pair =~ ^([A-Za-z0-9./_-]+)=([A-Za-z0-9._-]*)$ ]] || fh_die "label \"$pair\" is not key=value"
    out=$(jq -c --arg k "${BASH_REMATCH[1]}" --arg v "${BASH_REMATCH[2]}" '. + {($k): $v}' <<<"$out")
  done
  echo "$out"
}

# The Pod object as a kubelet would report it; ip4/ip6 empty = not yet networked (Pending).
# ports: JSON from ports_json; ready (default true): its Ready condition (set-ready).
write_pod_manifest() {
  local node=$1 ns=$2 pod=$3 uid=$4 labels=$5 ports=$6 ip4=${7:-} ip6=${8:-} ready=${9:-true}
  jq -n --arg node "$node" --arg ns "$ns" --arg pod "$pod" --arg uid "$uid" --argjson labels "$labels" \
    --argjson ports "$ports" --arg ip4 "$ip4" --arg ip6 "$ip6" --arg ready "${ready^}" '
    {apiVersion: "v1", kind: "Pod",
     metadata: {name: $pod, namespace: $ns, uid: $uid, labels: $labels},
     spec: {nodeName: $node,
            containers: [{name: "probe", image: "ferry-probe",
                          ports: [$ports[] | if .name == "" then del(.name) else . end]}]},
     status: (if $ip4 == "" and $ip6 == "" then {phase: "Pending"} else
              {phase: "Running", podIP: (if $ip4 != "" then $ip4 else $ip6 end),
               podIPs: [($ip4, $ip6) | select(. != "") | {ip: .}],
               conditions: [{type: "Ready", status: $ready}]} end)}' |
    fh_write_atomic "$FH_MANIFESTS/pod-$ns-$pod.json"
}

cnitool() {
  local node=$1
  shift
  fh_in "$node" env CNI_PATH="$FH_BIN" NETCONFPATH="$FH_STATE/net.d/$node" \
    "$FH_BIN/ferry-cnitool" "$@" --cache-dir "$FH_STATE/cni-cache/$node"
}

cmd_add_pod() {
  (($# >= 3)) || fh_die "usage: add-pod <node-index> <namespace> <pod> [--labels k=v,...] [--ports SPEC] [--add-ports SPEC]"
  local i=$1 ns=$2 pod=$3 labels="" ports=$DEFAULT_POD_PORTS
  shift 3
  while (($#)); do
    case $1 in
      --labels) labels=$2; shift 2 ;;
      --ports) ports=$2; shift 2 ;;
      --add-ports) ports+=",$2"; shift 2 ;;
      *) fh_die "add-pod: unknown argument \"$1\"" ;;
    esac
  done
  fh_require_cluster
  node_index_ok "$i"
  fh_valid_label "$ns" || fh_die "namespace \"$ns\" is not a DNS label"
  fh_valid_label "$pod" || fh_die "pod name \"$pod\" is not a DNS label"
  local node netns uid labels_obj ports_obj state result ip4 ip6
  ports_obj=$(ports_json "$ports")
  node=$(fh_node "$i")
  netns=$(fh_pod_netns "$ns" "$pod")
  state=$(fh_pod_state "$ns" "$pod")
  [[ -e $state || -e /run/netns/$netns ]] && fh_die "pod $ns/$pod already exists"
  labels_obj=$(labels_json "${labels:-pod=$pod}")
  uid=$(</proc/sys/kernel/random/uuid)

  ensure_namespace_manifest "$ns"
  write_pod_manifest "$node" "$ns" "$pod" "$uid" "$labels_obj" "$ports_obj"  # scheduled, not yet networked
  ip netns add "$netns"
  ip -n "$netns" link set lo up
  if ! result=$(cnitool "$node" add ferry "/run/netns/$netns" --container-id "$netns" \
    --args "IgnoreUnknown=1;K8S_POD_NAMESPACE=$ns;K8S_POD_NAME=$pod;K8S_POD_INFRA_CONTAINER_ID=$netns" 2>&1); then
    ip netns del "$netns" 2>/dev/null || true
    rm -f "$FH_MANIFESTS/pod-$ns-$pod.json"
    fh_die "CNI ADD of $ns/$pod on $node failed: $result"
  fi
  ip4=$(jq -r '[.ips[].address | select(contains(".")) | split("/")[0]][0] // ""' <<<"$result")
  ip6=$(jq -r '[.ips[].address | select(contains(":")) | split("/")[0]][0] // ""' <<<"$result")
  jq -n --arg node "$node" --argjson index "$i" --arg ns "$ns" --arg pod "$pod" --arg netns "$netns" \
    --arg ip4 "$ip4" --arg ip6 "$ip6" --arg uid "$uid" --argjson labels "$labels_obj" --argjson ports "$ports_obj" \
    '{node: $node, nodeIndex: $index, namespace: $ns, pod: $pod, netns: $netns, ip4: $ip4, ip6: $ip6, uid: $uid,
      labels: $labels, ports: $ports}' |
    fh_write_atomic "$state"
  write_pod_manifest "$node" "$ns" "$pod" "$uid" "$labels_obj" "$ports_obj" "$ip4" "$ip6"
  start_probe_server "$netns" "$ns/$pod" "$(ports_of "$ports_obj" TCP)" "$(ports_of "$ports_obj" UDP)" \
    "$(ports_of "$ports_obj" SCTP)"
  echo "$ns/$pod on $node: $ip4 $ip6"
}

# Removes a pod: probe server, CNI DEL through the plugin, netns, manifest, state.
remove_pod() {
  local ns=$1 pod=$2 node=${3:-} netns
  netns=$(fh_pod_netns "$ns" "$pod")
  fh_stop_pidfile "$FH_STATE/pids/$netns.probe.pid"
  rm -f "$FH_MANIFESTS/pod-$ns-$pod.json"
  if [[ -n $node && -e /run/netns/$node && -x ${FH_BIN:-}/ferry-cnitool ]]; then
    cnitool "$node" del ferry "/run/netns/$netns" --container-id "$netns" >/dev/null 2>&1 ||
      fh_log "warning: CNI DEL of $ns/$pod failed (continuing)"
  fi
  ip netns del "$netns" 2>/dev/null || true
  rm -f "$(fh_pod_state "$ns" "$pod")"
}

cmd_del_pod() {
  (($# == 2)) || fh_die "usage: del-pod <namespace> <pod>"
  fh_require_cluster
  local state
  state=$(fh_pod_state "$1" "$2")
  [[ -f $state ]] || fh_die "no pod $1/$2 in cluster $FH_CLUSTER"
  remove_pod "$1" "$2" "$(jq -r .node "$state")"
  refresh_services_of "$1" "$2"  # a deleted pod is no endpoint any more
  echo "$1/$2 deleted"
}

# labels "k=v,..." or "-" (none) -> JSON object
labels_arg() { if [[ $1 == - ]]; then echo '{}'; else labels_json "$1"; fi; }

# A label change as the API server would make it: the Pod object is rewritten, nothing else
# (no CNI call, the pod keeps its IPs and its probe server).
cmd_label_pod() {
  (($# == 2)) || fh_die "usage: label-pod <ns>/<pod> <k=v,...|->"
  [[ $1 =~ ^([^/]+)/([^/]+)$ ]] || fh_die "\"$1\" is not <namespace>/<pod>"
  local ns=${BASH_REMATCH[1]} pod=${BASH_REMATCH[2]} state labels_obj ports_obj
  fh_require_cluster
  state=$(fh_pod_state "$ns" "$pod")
  [[ -f $state ]] || fh_die "no pod $ns/$pod in cluster $FH_CLUSTER"
  labels_obj=$(labels_arg "$2")
  ports_obj=$(jq -c '.ports // empty' "$state")
  # Pods added by an older harness have no ports in their state: the fixed set it declared.
  [[ -n $ports_obj ]] || ports_obj=$(ports_json "$DEFAULT_POD_PORTS")
  jq --argjson labels "$labels_obj" '.labels = $labels' "$state" | fh_write_atomic "$state"
  write_pod_manifest "$(jq -r .node "$state")" "$ns" "$pod" "$(jq -r .uid "$state")" "$labels_obj" \
    "$ports_obj" "$(jq -r .ip4 "$state")" "$(jq -r .ip6 "$state")" "$(jq -r '.ready != false' "$state")"
  echo "$ns/$pod labels $labels_obj"
}

cmd_label_ns() {
  (($# == 2)) || fh_die "usage: label-ns <ns> <k=v,...|->"
  fh_require_cluster
  fh_valid_label "$1" || fh_die "namespace \"$1\" is not a DNS label"
  local labels_obj
  labels_obj=$(labels_arg "$2")
  write_namespace_manifest "$1" "$labels_obj"
  echo "namespace $1 labels $(jq -c .metadata.labels "$FH_MANIFESTS/namespace-$1.json")"
}

# --- services ---------------------------------------------------------------------------
# A Service and its EndpointSlices as the API server and the endpointslice controller would
# write them, from explicit endpoint pods (the Services have no selector, so nothing depends on
# an agent deriving slices). The harness keeps what it was asked in services/<ns>_<name>.json
# ({service: <manifest>, endpoints: [pod...]}) and rewrites the slices whenever an endpoint pod
# changes (set-ready, set-endpoints, del-pod).
service_state() { echo "$FH_STATE/services/$1_$2.json"; }
service_manifest() { echo "$FH_MANIFESTS/service-$1.$2.json"; }
# Slices are "endpointslice-<ns>.<svc>.<slice>.json": Kubernetes names have no dots, so one
# Service's glob never matches another's.
slice_glob() { echo "$FH_MANIFESTS/endpointslice-$1.$2."; }

# Service port "<name>:<port>/<proto>:<targetPort>[:<nodePort>]" -> JSON ServicePort
service_port_json() {
  [[ $1 =~ ^([a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?):([0-9]+)/(tcp|udp|sctp):([0-9]+|[a-z0-9]([-a-z0-9]{0,13}[a-z0-9])?)(:([0-9]+))?$ ]] ||
    fh_die "service port \"$1\" is not <name>:<port>/<tcp|udp|sctp>:<targetPort>[:<nodePort>] (targetPort: a number or a container port name)"
  jq -n -c --arg name "${BASH_REMATCH[1]}" --argjson port "${BASH_REMATCH[3]}" --arg proto "${BASH_REMATCH[4]^^}" \
    --arg target "${BASH_REMATCH[5]}" --arg node_port "${BASH_REMATCH[8]}" '
    {name: $name, port: $port, protocol: $proto,
     targetPort: (if $target | test("^[0-9]+$") then $target | tonumber else $target end)}
    + (if $node_port != "" then {nodePort: ($node_port | tonumber)} else {} end)'
}

# Pod names "a,b" (or "-": none) of namespace $1 -> JSON array; each must exist.
endpoint_pods_json() {
  local ns=$1 text=$2 pod out=()
  if [[ $text != - && -n $text ]]; then
    local IFS=,
    for pod in $text; do
      [[ -f $(fh_pod_state "$ns" "$pod") ]] || fh_die "no pod $ns/$pod in cluster $FH_CLUSTER (endpoints are pods of the Service's namespace)"
      out+=("$pod")
    done
  fi
  printf '%s\n' "${out[@]}" | jq -R -s -c '[split("\n")[] | select(. != "")]'
}

# The EndpointSlices of Service $1/$2 from its endpoint pods that still exist: per address
# family of its clusterIPs, one slice per distinct set of resolved ports (a named targetPort is
# looked up in each pod's container ports, by name and protocol; a pod without it is not an
# endpoint of that port), as the endpointslice controller groups them. Conditions: ready and
# serving = the pod's readiness (set-ready), terminating false. Stale slices are removed.
write_endpoint_slices() {
  local ns=$1 name=$2 state pods="[]" pod f files=() slices prefix slice_name slice keep=()
  state=$(service_state "$ns" "$name")
  # Few jq runs per Service: readiness changes are timed against this (within 1 s).
  for pod in $(jq -r '.endpoints[]' "$state"); do
    f=$(fh_pod_state "$ns" "$pod")
    [[ -f $f ]] && files+=("$f")
  done
  ((${#files[@]})) && pods=$(jq -s -c . "${files[@]}")
  slices=$(jq -r --argjson pods "$pods" '
    .service as $svc
    | def resolve($pod): [$svc.spec.ports[] as $sp
        | (if ($sp.targetPort | type) == "string"
           then [($pod.ports // [])[] | select(.name == $sp.targetPort and .protocol == $sp.protocol) | .containerPort][0]
           else ($sp.targetPort // $sp.port) end) as $n
        | select($n != null) | {name: $sp.name, port: $n, protocol: $sp.protocol}];
    [$svc.spec.clusterIPs[] | if contains(":") then "6" else "4" end] | unique
    | [.[] as $fam
       | [$pods[] | select(.["ip" + $fam] != "") | {pod: ., ports: resolve(.)}]
       | (if length == 0 then [[]] else group_by(.ports) end)
       | to_entries[]
       | {apiVersion: "discovery.k8s.io/v1", kind: "EndpointSlice",
          metadata: {name: "\($svc.metadata.name)-ipv\($fam)-\(.key)", namespace: $svc.metadata.namespace,
                     labels: {"kubernetes.io/service-name": $svc.metadata.name,
                              "endpointslice.kubernetes.io/managed-by": "netns-harness"}},
          addressType: "IPv\($fam)",
          endpoints: [.value[] | .pod | {addresses: [.["ip" + $fam]],
                       conditions: {ready: (.ready != false), serving: (.ready != false), terminating: false},
                       nodeName: .node, targetRef: {kind: "Pod", namespace: .namespace, name: .pod, uid: .uid}}],
          ports: (.value[0].ports // [])}] | .[] | "\(.metadata.name)\t\(tojson)"' "$state")
  prefix=$(slice_glob "$ns" "$name")
  while IFS=$'\t' read -r slice_name slice; do
    [[ -n $slice_name ]] || continue
    # The file is named after the slice: a rewrite never shows one slice in two files.
    printf '%s\n' "$slice" | fh_write_atomic "$prefix$slice_name.json"
    keep+=("$prefix$slice_name.json")
  done <<<"$slices"
  for f in "$prefix"*.json; do
    [[ -e $f && " ${keep[*]} " != *" $f "* ]] && rm -f "$f"
  done
  return 0
}

cmd_add_service() {
  (($# >= 2)) || fh_die "usage: add-service <ns> <name> --cluster-ip IP[,IP6] --port SPEC... [--type ClusterIP|NodePort] [--endpoints pod,...] [--external-traffic-policy Cluster|Local] [--internal-traffic-policy Cluster|Local] [--session-affinity None|ClientIP[:timeout]]"
  local ns=$1 name=$2 cluster_ip="" type=ClusterIP endpoints="" etp=Cluster itp=Cluster affinity=None ports=()
  shift 2
  while (($#)); do
    case $1 in
      --cluster-ip) cluster_ip=$2; shift 2 ;;
      --port) ports+=("$(service_port_json "$2")"); shift 2 ;;
      --type) type=$2; shift 2 ;;
      --endpoints) endpoints=$2; shift 2 ;;
      --external-traffic-policy) etp=$2; shift 2 ;;
      --internal-traffic-policy) itp=$2; shift 2 ;;
      --session-affinity) affinity=$2; shift 2 ;;
      *) fh_die "add-service: unknown argument \"$1\"" ;;
    esac
  done
  fh_require_cluster
  fh_valid_label "$ns" || fh_die "namespace \"$ns\" is not a DNS label"
  fh_valid_label "$name" || fh_die "service name \"$name\" is not a DNS label"
  [[ -n $cluster_ip ]] || fh_die "add-service: --cluster-ip is required (the harness has no IP allocator)"
  ((${#ports[@]})) || fh_die "add-service: give at least one --port"
  [[ $type =~ ^(ClusterIP|NodePort)$ ]] || fh_die "--type must be ClusterIP or NodePort"
  [[ $etp =~ ^(Cluster|Local)$ && $itp =~ ^(Cluster|Local)$ ]] || fh_die "traffic policies are Cluster or Local"
  [[ $affinity =~ ^(None|ClientIP)(:([0-9]+))?$ ]] || fh_die "--session-affinity must be None or ClientIP[:timeoutSeconds]"
  local affinity_type=${BASH_REMATCH[1]} affinity_timeout=${BASH_REMATCH[3]:-10800} eps
  eps=$(endpoint_pods_json "$ns" "$endpoints")
  ensure_namespace_manifest "$ns"
  mkdir -p "$FH_STATE/services"
  printf '%s\n' "${ports[@]}" | jq -s -c --arg ns "$ns" --arg name "$name" --arg ips "$cluster_ip" --arg type "$type" \
    --arg etp "$etp" --arg itp "$itp" --arg aff "$affinity_type" --argjson timeout "$affinity_timeout" \
    --argjson eps "$eps" '. as $ports | ($ips | split(",")) as $ips
    | {endpoints: $eps,
       service: {apiVersion: "v1", kind: "Service", metadata: {name: $name, namespace: $ns},
                 spec: ({type: $type, clusterIP: $ips[0], clusterIPs: $ips,
                         ipFamilies: [$ips[] | if contains(":") then "IPv6" else "IPv4" end],
                         ipFamilyPolicy: (if ($ips | length) > 1 then "RequireDualStack" else "SingleStack" end),
                         ports: $ports, sessionAffinity: $aff, internalTrafficPolicy: $itp}
                        + (if $aff == "ClientIP" then {sessionAffinityConfig: {clientIP: {timeoutSeconds: $timeout}}} else {} end)
                        + (if $type == "NodePort" then {externalTrafficPolicy: $etp} else {} end))}}' |
    fh_write_atomic "$(service_state "$ns" "$name")"
  # Slices first: agents see the endpoints as soon as they see the Service.
  write_endpoint_slices "$ns" "$name"
  jq .service "$(service_state "$ns" "$name")" | fh_write_atomic "$(service_manifest "$ns" "$name")"
  echo "service $ns/$name $cluster_ip endpoints $(jq -r '.endpoints | join(",")' "$(service_state "$ns" "$name")")"
}

# "<ns>/<name>" -> sets NS and NAME of an existing service (for the commands below)
service_arg() {
  [[ $1 =~ ^([^/]+)/([^/]+)$ ]] || fh_die "\"$1\" is not <namespace>/<service>"
  SVC_NS=${BASH_REMATCH[1]} SVC_NAME=${BASH_REMATCH[2]}
  [[ -f $(service_state "$SVC_NS" "$SVC_NAME") ]] || fh_die "no service $1 in cluster $FH_CLUSTER (add-service)"
}

# Scale up/down: the Service's endpoint pods become exactly these (the slices are rewritten).
cmd_set_endpoints() {
  (($# == 2)) || fh_die "usage: set-endpoints <ns>/<service> <pod,...|->"
  fh_require_cluster
  service_arg "$1"
  local state eps
  state=$(service_state "$SVC_NS" "$SVC_NAME")
  eps=$(endpoint_pods_json "$SVC_NS" "$2")
  jq --argjson eps "$eps" '.endpoints = $eps' "$state" | fh_write_atomic "$state"
  write_endpoint_slices "$SVC_NS" "$SVC_NAME"
  echo "service $1 endpoints $(jq -r '.endpoints | join(",")' "$state")"
}

cmd_del_service() {
  (($# == 1)) || fh_die "usage: del-service <ns>/<service>"
  fh_require_cluster
  service_arg "$1"
  rm -f "$(service_manifest "$SVC_NS" "$SVC_NAME")" "$(slice_glob "$SVC_NS" "$SVC_NAME")"*.json \
    "$(service_state "$SVC_NS" "$SVC_NAME")"
  echo "service $1 deleted"
}

# Rewrites the slices of every Service that lists pod $1/$2 as an endpoint.
refresh_services_of() {
  local ns=$1 pod=$2 f
  for f in "$FH_STATE/services/${ns}_"*.json; do
    [[ -e $f ]] || continue
    # A cheap text test first (most Services do not list the pod), then the exact one.
    grep -q "\"$pod\"" "$f" && jq -e --arg p "$pod" '.endpoints | index($p) != null' "$f" >/dev/null &&
      write_endpoint_slices "$ns" "$(jq -r .service.metadata.name "$f")"
  done
  return 0
}

# A readiness change as the kubelet reports it: the Pod's Ready condition and, as the
# endpointslice controller does, the ready/serving conditions of its endpoints.
cmd_set_ready() {
  if (($# != 2)) || ! [[ $2 =~ ^(true|false)$ ]]; then fh_die "usage: set-ready <ns>/<pod> <true|false>"; fi
  [[ $1 =~ ^([^/]+)/([^/]+)$ ]] || fh_die "\"$1\" is not <namespace>/<pod>"
  local ns=${BASH_REMATCH[1]} pod=${BASH_REMATCH[2]} state
  fh_require_cluster
  state=$(fh_pod_state "$ns" "$pod")
  [[ -f $state ]] || fh_die "no pod $ns/$pod in cluster $FH_CLUSTER"
  jq --argjson r "$2" '.ready = $r' "$state" | fh_write_atomic "$state"
  local node uid labels ports ip4 ip6
  { read -r node; read -r uid; read -r labels; read -r ports; read -r ip4; read -r ip6; } < <(
    jq -r '.node, .uid, (.labels | tojson), (.ports // [] | tojson), .ip4, .ip6' "$state")
  write_pod_manifest "$node" "$ns" "$pod" "$uid" "$labels" "$ports" "$ip4" "$ip6" "$2"
  refresh_services_of "$ns" "$pod"
  echo "$ns/$pod ready=$2"
}

# --- outside client ---------------------------------------------------------------------
# A host on the underlay that is not a node (NodePort clients): netns <c>-out, eth0 on br0 with
# 172.30.0.2 / fd00:30::2, and a probe server "outside". Created on first use, removed by down.
outside_netns() { echo "$FH_CLUSTER-out"; }
outside_ip() { if [[ $1 == 6 ]]; then echo "fd00:30::2"; else echo "172.30.0.2"; fi; }
cmd_add_outside() {
  fh_require_cluster
  local out ul
  out=$(outside_netns)
  ul=$(fh_underlay)
  if [[ ! -e /run/netns/$out ]]; then
    ip netns add "$out"
    ip link add eth0 netns "$out" type veth peer name out0 netns "$ul"
    ip -n "$ul" link set out0 master br0 up
    ip -n "$out" link set lo up
    ip -n "$out" addr add "$(outside_ip 4)/24" dev eth0
    ip -n "$out" addr add "$(outside_ip 6)/64" dev eth0 nodad
    ip -n "$out" link set eth0 up
    start_probe_server "$out" outside
  fi
  echo "outside $out $(outside_ip 4) $(outside_ip 6)"
}

applied_path() { echo "$FH_MANIFESTS/applied-$(basename "$1")"; }

cmd_apply() {
  (($#)) || fh_die "usage: apply <file>..."
  fh_require_cluster
  local f
  for f in "$@"; do
    [[ -f $f ]] || fh_die "apply: no file \"$f\""
    fh_write_atomic "$(applied_path "$f")" <"$f"
  done
}

cmd_delete() {
  (($#)) || fh_die "usage: delete <file>..."
  fh_require_cluster
  local f
  for f in "$@"; do rm -f "$(applied_path "$f")"; done
}

# A barrier: the agents handle manifest changes in order, and publish their object counts only
# after the policy pass of that change. So toggling a pod-less Namespace manifest and waiting
# until every agent counts the Namespaces that are now on disk means every change written
# before was handled (compiled and programmed) by every agent.
readonly SYNC_NAMESPACE=fh-sync
namespace_count_on_disk() {
  # The harness writes JSON with jq ("kind": "Namespace"); one grep, not a jq per file.
  grep -lE '"kind": *"Namespace"' "$FH_MANIFESTS"/*.json 2>/dev/null | wc -l
}
agent_namespace_count() {
  fh_in "$(fh_node "$1")" curl -sf --max-time 1 "http://127.0.0.1:$FH_AGENT_PORT/metrics" 2>/dev/null |
    awk '$1 == "ferry_cluster_objects{kind=\"Namespace\"}" {print $2}'
}
cmd_sync() {
  local timeout=10
  while (($#)); do
    case $1 in
      --timeout) timeout=$2; shift 2 ;;
      *) fh_die "sync: unknown argument \"$1\"" ;;
    esac
  done
  fh_require_cluster
  ((FH_AGENT)) || return 0
  local barrier="$FH_MANIFESTS/namespace-$SYNC_NAMESPACE.json" want i lagging deadline
  if [[ -e $barrier ]]; then rm -f "$barrier"; else write_namespace_manifest "$SYNC_NAMESPACE" '{}'; fi
  want=$(namespace_count_on_disk)
  deadline=$((SECONDS + timeout))
  while :; do
    lagging=""
    for i in $FH_NODE_IDS; do
      [[ $(agent_namespace_count "$i") == "$want" ]] || lagging+=" node:$i"
    done
    [[ -z $lagging ]] && return 0
    ((SECONDS < deadline)) ||
      fh_die "sync: after ${timeout}s these agents have not handled the manifest directory (want $want Namespaces in /metrics):$lagging"
    sleep 0.02
  done
}

# --- addressing targets -----------------------------------------------------------------
# "<ns>/<pod>", "node:<i>" or "underlay" -> netns name
target_netns() {
  local t=$1 i ns pod
  if [[ $t == underlay ]]; then
    fh_underlay
  elif [[ $t == outside ]]; then
    [[ -e /run/netns/$(outside_netns) ]] || fh_die "no outside client in cluster $FH_CLUSTER; run: cluster.sh --cluster $FH_CLUSTER add-outside"
    outside_netns
  elif [[ $t =~ ^node:([0-9]+)$ ]]; then
    i=${BASH_REMATCH[1]}
    node_index_ok "$i"
    fh_node "$i"
  elif [[ $t =~ ^([^/]+)/([^/]+)$ ]]; then
    ns=${BASH_REMATCH[1]} pod=${BASH_REMATCH[2]}
    [[ -f $(fh_pod_state "$ns" "$pod") ]] || fh_die "no pod $t in cluster $FH_CLUSTER"
    fh_pod_netns "$ns" "$pod"
  else
    fh_die "\"$t\" is neither <namespace>/<pod>, node:<index> nor underlay"
  fi
}

# "<ns>/<pod>" | "node:<i>" | "underlay" | IP, family 4|6 -> IP
target_ip() {
  local t=$1 family=$2 state i
  if [[ $t == underlay ]]; then
    if [[ $family == 6 ]]; then fh_underlay_ip6; else fh_underlay_ip4; fi
  elif [[ $t == outside ]]; then
    outside_ip "$family"
  elif [[ $t =~ ^node:([0-9]+)$ ]]; then
    i=${BASH_REMATCH[1]}
    node_index_ok "$i"
    if [[ $family == 6 ]]; then fh_node_ip6 "$i"; else fh_node_ip4 "$i"; fi
  elif [[ $t =~ ^([^/]+)/([^/]+)$ ]]; then
    state=$(fh_pod_state "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}")
    [[ -f $state ]] || fh_die "no pod $t in cluster $FH_CLUSTER"
    jq -r ".ip$family" "$state"
  else
    echo "$t"
  fi
}

cmd_probe() {
  local args=() family=4 timeout=1500 json=()
  while (($#)); do
    case $1 in
      --6) family=6; shift ;;
      --timeout-ms) timeout=$2; shift 2 ;;
      -o) [[ $2 == json ]] && json=(-o json); shift 2 ;;
      *) args+=("$1"); shift ;;
    esac
  done
  ((${#args[@]} == 3 || ${#args[@]} == 4)) || fh_die "usage: probe <src> <dst> <proto> [port] [--6] [--timeout-ms MS] [-o json]"
  fh_require_cluster
  local src dst
  src=$(target_netns "${args[0]}")
  dst=$(target_ip "${args[1]}" "$family")
  fh_in "$src" "$FH_BIN/ferry-probe" connect --proto "${args[2]}" --to "$dst" --port "${args[3]:-80}" \
    --timeout-ms "$timeout" "${json[@]}"
}

# --- matrix -----------------------------------------------------------------------------
# One probe, printed as one tab-separated line: coordinates, then ferry-probe's JSON (or its
# error text when it could not even run). Kept free of jq: the cells run by the hundred.
matrix_cell() {
  local netns=$1 from=$2 to=$3 ip=$4 proto=$5 fam=$6 port=$7 timeout=$8 out
  out=$(fh_in "$netns" "$FH_BIN/ferry-probe" connect -o json --proto "$proto" --to "$ip" --port "$port" \
    --timeout-ms "$timeout" 2>&1) || true
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$proto" "$fam" "$port" "$from" "$to" "$ip" "${out//$'\n'/ }"
}

# Every source (nodes, then pods) probes every destination (pods, then nodes), per protocol
# and family, in parallel. Prints one table per protocol/family; exit 1 when a cell is
# blocked (or, with --expect, when the tables differ from the file).
cmd_matrix() {
  local protos=tcp,udp,sctp,icmp port=80 families=4 timeout=1500 parallel=8 as_json=0 expect=""
  while (($#)); do
    case $1 in
      --proto) protos=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --family) families=$2; shift 2 ;;
      --timeout-ms) timeout=$2; shift 2 ;;
      --parallel) parallel=$2; shift 2 ;;
      --json) as_json=1; shift ;;
      --expect) expect=$2; shift 2 ;;
      *) fh_die "matrix: unknown argument \"$1\"" ;;
    esac
  done
  fh_require_cluster
  local pods=() nodes=() f i
  for f in "$FH_STATE"/pods/*.json; do
    [[ -e $f ]] && pods+=("$(jq -r '.namespace + "/" + .pod' "$f")")
  done
  for i in $FH_NODE_IDS; do nodes+=("node:$i"); done
  local sources=("${nodes[@]}" "${pods[@]}") dests=("${pods[@]}" "${nodes[@]}")
  local work
  work=$(mktemp -d "$FH_STATE/tmp/matrix.XXXXXX")

  local proto fam s d src dst si di running=0
  local -A netns_of ip_of
  for src in "${sources[@]}"; do netns_of[$src]=$(target_netns "$src"); done
  for dst in "${dests[@]}"; do
    for fam in ${families//,/ }; do ip_of[$dst.$fam]=$(target_ip "$dst" "$fam"); done
  done
  for proto in ${protos//,/ }; do
    [[ $proto =~ ^(tcp|udp|sctp|icmp)$ ]] || fh_die "unknown protocol \"$proto\""
    for fam in ${families//,/ }; do
      [[ $fam =~ ^[46]$ ]] || fh_die "family must be 4 or 6"
      for si in "${!sources[@]}"; do
        for di in "${!dests[@]}"; do
          s=${sources[$si]} d=${dests[$di]}
          [[ $s == "$d" ]] && continue
          if ((running >= parallel)); then
            wait -n 2>/dev/null || true
            running=$((running - 1))
          fi
          matrix_cell "${netns_of[$s]}" "$s" "$d" "${ip_of[$d.$fam]}" "$proto" "$fam" "$port" "$timeout" \
            >"$work/cell.$proto.$fam.$si.$di" &
          running=$((running + 1))
        done
      done
    done
  done
  wait
  # One JSON object per cell. A cell answered by the wrong server counts as blocked.
  local results="$work/results.jsonl"
  cat "$work"/cell.* 2>/dev/null | jq -c -R 'split("\t") as [$proto, $fam, $port, $from, $to, $ip, $out]
    | ($out | try fromjson catch {ok: false, error: $out})
    | . + {from: $from, to: $to, target: $ip, proto: $proto, family: ($fam | tonumber), port: ($port | tonumber)}
    | if .ok and .server != null and .server != $to then .ok = false
        | .error = "answered by \(.server), not \($to)" else . end' >"$results"

  local tables="$work/tables.txt" width=1 label row cell key mark
  local -A cells
  while read -r key mark; do cells[$key]=$mark; done < <(
    jq -r '"\(.proto)|\(.family)|\(.from)|\(.to) \(if .ok then "." else "X" end)"' "$results")
  for label in "${sources[@]}" "${dests[@]}"; do ((${#label} > width)) && width=${#label}; done
  {
    for proto in ${protos//,/ }; do
      for fam in ${families//,/ }; do
        if [[ $proto == icmp ]]; then
          echo "== ICMP echo, IPv$fam (rows: from, columns: to; . answered, X blocked, - self)"
        else
          echo "== ${proto^^} port $port, IPv$fam (rows: from, columns: to; . answered, X blocked, - self)"
        fi
        row=$(printf "%-${width}s" "")
        for d in "${dests[@]}"; do row+=" $(printf "%-${width}s" "$d")"; done
        echo "${row%"${row##*[! ]}"}"
        for s in "${sources[@]}"; do
          row=$(printf "%-${width}s" "$s")
          for d in "${dests[@]}"; do
            if [[ $s == "$d" ]]; then
              cell=-
            else
              cell=${cells[$proto|$fam|$s|$d]:-?}
            fi
            row+=" $(printf "%-${width}s" "$cell")"
          done
          echo "${row%"${row##*[! ]}"}"
        done
      done
    done
  } >"$tables"

  local status=0
  if [[ -n $expect ]]; then
    diff -u "$expect" "$tables" >&2 || status=1
  else
    jq -e -s 'all(.ok)' "$results" >/dev/null || status=1
  fi
  if ((as_json)); then
    jq -s --arg c "$FH_CLUSTER" '{cluster: $c, ok: all(.ok), results: .}' "$results"
  else
    cat "$tables"
    if ((status)) && [[ -z $expect ]]; then
      echo "blocked:"
      jq -r 'select(.ok | not) | "  \(.proto) IPv\(.family) \(.from) -> \(.to) (\(.target)): \(.error)"' "$results"
    fi
  fi
  rm -rf "$work"
  return $status
}

# --- agents -----------------------------------------------------------------------------
cmd_restart_agent() {
  (($# >= 1)) || fh_die "usage: restart-agent <i> [--kill9] [--datapath MODE]"
  local i=$1 signal=TERM mode=""
  shift
  while (($#)); do
    case $1 in
      --kill9) signal=KILL; shift ;;
      --datapath) mode=$2; shift 2 ;;
      *) fh_die "restart-agent: unknown argument \"$1\"" ;;
    esac
  done
  fh_require_cluster
  node_index_ok "$i"
  ((FH_AGENT)) || fh_die "cluster $FH_CLUSTER runs without agents (--no-agent)"
  local node
  node=$(fh_node "$i")
  [[ -n $mode ]] || mode=$(cat "$FH_STATE/pids/$node.agent.mode" 2>/dev/null || echo "$FH_DATAPATH")
  [[ $mode =~ ^(ebpf|iptables|auto)$ ]] || fh_die "--datapath must be ebpf, iptables or auto"
  stop_agent "$i" "$signal"
  start_agent "$i" "$mode"
}

cmd_set_datapath() {
  if (($# != 1)) || ! [[ $1 =~ ^(ebpf|iptables|auto)$ ]]; then fh_die "usage: set-datapath <ebpf|iptables|auto>"; fi
  fh_require_cluster
  ((FH_AGENT)) || fh_die "cluster $FH_CLUSTER runs without agents (--no-agent)"
  local i
  FH_DATAPATH=$1
  save_env
  for i in $FH_NODE_IDS; do
    stop_agent "$i"
    start_agent "$i" "$FH_DATAPATH"
  done
}

cmd_logs() {
  (($# >= 1)) || fh_die "usage: logs <i> [-f]"
  fh_require_cluster
  node_index_ok "$1"
  local log
  log="$FH_STATE/logs/$(fh_node "$1").log"
  [[ -f $log ]] || fh_die "no log for node $1 ($log)"
  if [[ ${2:-} == -f ]]; then tail -f "$log"; else cat "$log"; fi
}

cmd_status() {
  fh_require_cluster
  local i node pid f
  echo "cluster $FH_CLUSTER: $FH_NODES node(s), datapath $FH_DATAPATH, overlay $(overlay_text), binaries $FH_BIN"
  echo "  underlay $(fh_underlay) $(fh_underlay_ip4) $(fh_underlay_ip6) (bridge br0)"
  for i in $FH_NODE_IDS; do
    node=$(fh_node "$i")
    pid=$(cat "$(agent_pidfile "$i")" 2>/dev/null || true)
    if ((FH_AGENT)) && fh_pid_alive "$pid"; then
      echo "  node:$i $node $(fh_node_ip4 "$i") $(fh_node_ip6 "$i") pods $(fh_pod_cidr4 "$i") $(fh_pod_cidr6 "$i") agent pid $pid ($(cat "$FH_STATE/pids/$node.agent.mode"))"
    else
      echo "  node:$i $node $(fh_node_ip4 "$i") $(fh_node_ip6 "$i") pods $(fh_pod_cidr4 "$i") $(fh_pod_cidr6 "$i") agent not running"
    fi
  done
  for f in "$FH_STATE"/pods/*.json; do
    [[ -e $f ]] && jq -r '"  \(.namespace)/\(.pod) on \(.node): \(.ip4) \(.ip6)"' "$f"
  done
  return 0
}

cmd_exec() {
  if (($# < 3)) || [[ $2 != -- ]]; then fh_die "usage: exec <ns>/<pod>|node:<i> -- <command...>"; fi
  fh_require_cluster
  local ns
  ns=$(target_netns "$1")
  shift 2
  fh_in "$ns" "$@"
}

# What the agent built for the overlay on node i, as the kernel shows it.
cmd_overlay() {
  (($# == 1)) || fh_die "usage: overlay <i>"
  fh_require_cluster
  node_index_ok "$1"
  local node
  node=$(fh_node "$1")
  if ! ip -n "$node" link show ferry_vxlan >/dev/null 2>&1; then
    echo "$node: no ferry_vxlan device (overlay $(overlay_text))"
    return 1
  fi
  echo "== $node: device"
  ip -n "$node" -d link show ferry_vxlan
  ip -n "$node" addr show dev ferry_vxlan | grep -E 'inet6? ' || true
  echo "== routes (dev ferry_vxlan)"
  ip -n "$node" route show dev ferry_vxlan
  ip -n "$node" -6 route show dev ferry_vxlan
  echo "== neighbours"
  ip -n "$node" -4 neigh show dev ferry_vxlan
  ip -n "$node" -6 neigh show dev ferry_vxlan
  echo "== FDB"
  bridge -n "$node" fdb show dev ferry_vxlan
}

cmd_ip() {
  (($# >= 1)) || fh_die "usage: ip <ns>/<pod>|node:<i> [--6]"
  fh_require_cluster
  target_ip "$1" "$([[ ${2:-} == --6 ]] && echo 6 || echo 4)"
}

# --- down -------------------------------------------------------------------------------
# Stops every process left in the given namespaces (TERM, then KILL after 5 s).
kill_in_netns() {
  local ns pid i left
  for ns in "$@"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$pid" 2>/dev/null || true; done
  done
  for ((i = 0; i < 50; i++)); do
    left=""
    for ns in "$@"; do left+=$(ip netns pids "$ns" 2>/dev/null); done
    [[ -z $left ]] && return 0
    sleep 0.1
  done
  for ns in "$@"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null || true; done
  done
}

# Idempotent, and works from names alone: after a crash the state files may be gone.
cmd_down() {
  local f ns
  if [[ -f $FH_STATE/cluster.env ]]; then
    # shellcheck source=/dev/null
    source "$FH_STATE/cluster.env"
    # Pods first, through the plugin, while the agents still run to see them go.
    for f in "$FH_STATE"/pods/*.json; do
      [[ -e $f ]] || continue
      remove_pod "$(jq -r .namespace "$f")" "$(jq -r .pod "$f")" "$(jq -r .node "$f")"
    done
    for f in "$FH_STATE"/pids/*.pid; do
      [[ -e $f ]] && fh_stop_pidfile "$f"
    done
  fi
  # Whatever still runs inside our namespaces (agents, probe servers) was started by us.
  # shellcheck disable=SC2046
  kill_in_netns $(fh_cluster_netns)
  # The VXLAN device, ipsets and nat chains of a node live in its netns and go with it.
  for ns in $(fh_cluster_netns); do ip netns del "$ns" 2>/dev/null || true; done
  rm -rf "/sys/fs/bpf/ferry/$FH_CLUSTER-n"* "/run/ferry/$FH_CLUSTER-n"* "$FH_STATE"
  cmd_check_clean
}

# Lists anything of this cluster that is left; exit 1 if there is something.
cmd_check_clean() {
  local left=() ns link pin rules
  for ns in $(fh_cluster_netns); do left+=("netns $ns"); done
  while read -r link; do [[ -n $link ]] && left+=("link $link"); done < <(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -E "^$FH_CLUSTER-" || true)
  for pin in "/sys/fs/bpf/ferry/$FH_CLUSTER-n"* "/run/ferry/$FH_CLUSTER-n"*; do
    [[ -e $pin ]] && left+=("path $pin")
  done
  [[ -e $FH_STATE ]] && left+=("path $FH_STATE")
  rules=$( (iptables-save 2>/dev/null; ip6tables-save 2>/dev/null) | grep -c -- "$FH_CLUSTER-n" || true)
  ((rules > 0)) && left+=("$rules iptables rule(s) mentioning $FH_CLUSTER-n")
  # Overlay state belongs inside the node namespaces; on the host it means an agent ran in the
  # wrong netns (the harness plan is shared by every cluster, so it is reported, unattributed).
  ip link show ferry_vxlan >/dev/null 2>&1 && left+=("host link ferry_vxlan (overlay device outside a node netns)")
  if command -v ipset >/dev/null && ipset list -n 2>/dev/null | grep -q '^ferry-pods-'; then
    left+=("host ipset(s) $(ipset list -n | grep '^ferry-pods-' | tr '\n' ' ')")
  fi
  if (iptables-save -t nat 2>/dev/null; ip6tables-save -t nat 2>/dev/null) | grep -q '^:FERRY-POSTROUTING'; then
    left+=("host nat chain FERRY-POSTROUTING")
  fi
  if ((${#left[@]})); then
    printf 'cluster %s: left behind: %s\n' "$FH_CLUSTER" "${left[*]}" >&2
    return 1
  fi
  fh_log "clean: no netns, link, pin, runtime dir, iptables rule or overlay state of cluster $FH_CLUSTER remains"
}

# --- dispatch ---------------------------------------------------------------------------
main() {
  local cluster=${FERRY_CLUSTER:-fy}
  while (($#)); do
    case $1 in
      --cluster) cluster=$2; shift 2 ;;
      -h | --help) usage; return 0 ;;
      *) break ;;
    esac
  done
  (($#)) || { usage >&2; return 2; }
  fh_set_cluster "$cluster"
  [[ $(id -u) == 0 ]] || fh_die "needs root (network namespaces, bpffs)"
  local cmd=$1
  shift
  case $cmd in
    up) cmd_up "$@" ;;
    add-node) cmd_add_node "$@" ;;
    remove-node) cmd_remove_node "$@" ;;
    overlay) cmd_overlay "$@" ;;
    add-pod) cmd_add_pod "$@" ;;
    del-pod) cmd_del_pod "$@" ;;
    label-pod) cmd_label_pod "$@" ;;
    label-ns) cmd_label_ns "$@" ;;
    add-service) cmd_add_service "$@" ;;
    set-endpoints) cmd_set_endpoints "$@" ;;
    set-ready) cmd_set_ready "$@" ;;
    del-service) cmd_del_service "$@" ;;
    add-outside) cmd_add_outside "$@" ;;
    apply) cmd_apply "$@" ;;
    delete) cmd_delete "$@" ;;
    sync) cmd_sync "$@" ;;
    probe) cmd_probe "$@" ;;
    matrix) cmd_matrix "$@" ;;
    restart-agent) cmd_restart_agent "$@" ;;
    set-datapath) cmd_set_datapath "$@" ;;
    exec) cmd_exec "$@" ;;
    ip) cmd_ip "$@" ;;
    logs) cmd_logs "$@" ;;
    status) cmd_status "$@" ;;
    down) cmd_down "$@" ;;
    check-clean) cmd_check_clean "$@" ;;
    *) usage >&2; fh_die "unknown command \"$cmd\"" ;;
  esac
}

main "$@"
