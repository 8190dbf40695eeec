# shellcheck shell=bash
# tests/harness/services/lib.sh — the Services model on the netns harness (issue 6): backend
# pods that answer with their name, client pods on every node, the Services of the cases, and
# helpers that run `ferry-probe spread` (new connections, counted by the answering server) and
# check its JSON. Sourced by services.sh after tests/harness/lib.sh (cluster, fail, step,
# T_BIN, T_CLUSTER).
#
# A case is a function that probes and asserts with sv_* helpers; the first failed assertion
# ends it (it runs in a subshell with errexit). What a case changes (readiness, endpoints,
# policies) it records with sv_changed, and sv_run_case puts the model back afterwards.

SV_NS=sv
# Pods: 4 backends (web-4 only joins in the scale case), a client on every node, and two
# backends whose container port "web-port" has different numbers (named targetPort).
declare -A SV_NODE_OF=([web-1]=1 [web-2]=2 [web-3]=3 [web-4]=1 [cl-1]=1 [cl-2]=2 [cl-3]=3 [named-a]=1 [named-b]=2)
declare -A SV_POD_ARGS=(
  [web-1]="--labels app=web,pod=web-1" [web-2]="--labels app=web,pod=web-2"
  [web-3]="--labels app=web,pod=web-3" [web-4]="--labels app=web,pod=web-4"
  [cl-1]="--labels role=client,pod=cl-1" [cl-2]="--labels role=client,pod=cl-2"
  [cl-3]="--labels role=client,pod=cl-3"
  [named-a]="--labels app=named,pod=named-a --ports 8080/tcp=web-port"
  [named-b]="--labels app=named,pod=named-b --ports 9090/tcp=web-port")

# ClusterIPs (10.96.0.0/16, outside every pod CIDR) and node ports of the Services.
declare -A SV_IP=([web]=10.96.10.1 [sticky]=10.96.10.2 [empty]=10.96.10.3 [self]=10.96.10.4
  [named]=10.96.10.5 [np]=10.96.10.6 [np-local]=10.96.10.7 [scale]=10.96.10.8)
SV_NODEPORT=30080        # np: Cluster
SV_NODEPORT_LOCAL=30081  # np-local: Local, backends on nodes 1 and 2 only

SV_TIMEOUT_MS=${SV_TIMEOUT_MS:-1500}   # per connection; a dropped one costs this much
SV_WORK=""                             # scratch dir
# shellcheck disable=SC2034  # read by cases.sh
declare -A SV_IP4                      # pod -> IPv4

sv_setup_model() {
  local node pids=() pid pod
  for node in 1 2 3; do
    (
      for pod in "${!SV_NODE_OF[@]}"; do
        [[ ${SV_NODE_OF[$pod]} == "$node" ]] || continue
        # shellcheck disable=SC2086  # the arguments of the pod, split on purpose
        cluster add-pod "$node" "$SV_NS" "$pod" ${SV_POD_ARGS[$pod]}
      done
    ) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || fail "add-pod failed (above)"; done
  # shellcheck disable=SC2034  # read by cases.sh
  for pod in "${!SV_NODE_OF[@]}"; do SV_IP4[$pod]=$(cluster ip "$SV_NS/$pod"); done

  local web3="web-1,web-2,web-3"
  cluster add-service sv web --cluster-ip "${SV_IP[web]}" --endpoints "$web3" \
    --port http:80/tcp:80 --port alt:8080/tcp:81 --port udp:5353/udp:80 --port sctp:7000/sctp:80
  cluster add-service sv sticky --cluster-ip "${SV_IP[sticky]}" --endpoints "$web3" --port http:80/tcp:80 \
    --session-affinity ClientIP
  cluster add-service sv empty --cluster-ip "${SV_IP[empty]}" --endpoints - --port http:80/tcp:80 --port udp:80/udp:80
  cluster add-service sv self --cluster-ip "${SV_IP[self]}" --endpoints web-1 --port http:80/tcp:80
  cluster add-service sv named --cluster-ip "${SV_IP[named]}" --endpoints named-a,named-b --port http:80/tcp:web-port
  cluster add-service sv np --type NodePort --cluster-ip "${SV_IP[np]}" --endpoints "$web3" \
    --port "http:80/tcp:80:$SV_NODEPORT" --port "udp:80/udp:80:$SV_NODEPORT"
  cluster add-service sv np-local --type NodePort --cluster-ip "${SV_IP[np-local]}" --endpoints web-1,web-2 \
    --external-traffic-policy Local --port "http:80/tcp:80:$SV_NODEPORT_LOCAL"
  cluster add-service sv scale --cluster-ip "${SV_IP[scale]}" --endpoints "$web3" \
    --port http:80/tcp:80 --port stream:5001/tcp:5001
  cluster add-outside
  cluster sync
}

sv_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}'; }

# --- probing -------------------------------------------------------------------------------
# sv_spread <from> <ip> <proto> <port> <count> [extra ferry-probe args...] -> spread JSON.
# from: a pod name of the model, node:<i> or outside; SV_PARALLEL (4): connections in flight.
# With 10 or more connections, one goes
# first: if it is not answered, that one is the result (a broken Service fails in one timeout,
# not in count/4 of them).
sv_spread() {
  local from=$1 ip=$2 proto=$3 port=$4 count=$5 first
  shift 5
  [[ $from == node:* || $from == outside ]] || from="$SV_NS/$from"
  if ((count >= 10)); then
    first=$(cluster exec "$from" -- "$T_BIN/ferry-probe" spread --proto "$proto" --to "$ip" --port "$port" \
      --count 1 --timeout-ms "$SV_TIMEOUT_MS")
    [[ $(jq .answered <<<"$first") == 1 ]] || { echo "$first"; return 0; }
  fi
  cluster exec "$from" -- "$T_BIN/ferry-probe" spread --proto "$proto" --to "$ip" --port "$port" \
    --count "$count" --parallel "${SV_PARALLEL:-4}" --timeout-ms "$SV_TIMEOUT_MS" "$@"
}

# One line for the log: "answered a/n: server=count ...; errors: ...".
sv_describe() {
  jq -r '"answered \(.answered)/\(.connections): \(.servers | to_entries | map("\(.key)=\(.value)") | join(" "))"
    + (if (.errors | length) > 0 then "; errors: \(.errors | to_entries | map("\(.key) x\(.value)") | join(", "))" else "" end)
    + "; sources seen: \(.seen_sources | keys | join(" "))"' <<<"$1"
}

# sv_expect <what> <spread-json> <jq condition>: fails the case with the spread's description.
sv_expect() {
  local what=$1 json=$2 cond=$3
  if jq -e "$cond" <<<"$json" >/dev/null; then
    echo "    ok: $what ($(sv_describe "$json"))"
  else
    echo "    FAILED: $what: $(sv_describe "$json")" >&2
    return 1
  fi
}

# Every connection answered, only by the servers given (JSON array of names).
sv_all_by() {
  local what=$1 json=$2 servers=$3
  sv_expect "$what" "$json" "(.answered == .connections) and (.servers | keys - $servers | length == 0)"
}

# A JSON array of names from words: sv_names sv/web-1 sv/web-2 -> ["sv/web-1","sv/web-2"]
sv_names() { printf '%s\n' "$@" | jq -R -s -c 'split("\n") | map(select(. != ""))'; }

# Until a Service answers from `from` (agents program it after the manifests; bounded).
sv_wait_answered() {
  local from=$1 ip=$2 proto=$3 port=$4 deadline=$((SECONDS + 15)) out
  while :; do
    out=$(sv_spread "$from" "$ip" "$proto" "$port" 1)
    [[ $(jq .answered <<<"$out") == 1 ]] && return 0
    ((SECONDS < deadline)) || { echo "    $ip:$port/$proto never answered $from within 15 s: $(sv_describe "$out")" >&2; return 1; }
    sleep 0.2
  done
}

# Every address of a node's netns, as a JSON array (a masqueraded source must be one of them).
sv_node_addresses() {
  ip -n "$T_CLUSTER-n$1" -j addr show | jq -c '[.[].addr_info[].local]'
}

# Lines of a pod's probe-server log (what the pod saw arrive).
sv_probe_log() { cat "/run/ferry-harness/$T_CLUSTER/logs/$T_CLUSTER-$SV_NS-$1.probe.log" 2>/dev/null || true; }
sv_log_count() { sv_probe_log "$1" | grep -cE "$2" || true; }

# --- changes a case makes, undone by sv_run_case -------------------------------------------
sv_changed() { echo "$*" >>"$SV_WORK/changed"; }
sv_restore() {
  [[ -e $SV_WORK/changed ]] || return 0
  local kind arg
  while read -r kind arg; do
    case $kind in
      ready) cluster set-ready "$SV_NS/$arg" true >/dev/null ;;
      scale) cluster set-endpoints "$SV_NS/scale" web-1,web-2,web-3 >/dev/null ;;
      policy) cluster delete "$arg" ;;
    esac
  done < <(sort -u "$SV_WORK/changed")
  rm -f "$SV_WORK/changed"
  cluster sync
}

# --- running cases ---------------------------------------------------------------------------
declare -A SV_RESULT SV_SECONDS SV_TITLE
SV_CASES=()
sv_case() {
  SV_CASES+=("$1")
  SV_TITLE[$1]=$2
}

sv_run_case() {
  local mode=$1 fn=$2 rc start=$EPOCHREALTIME
  echo "--- [$mode] ${SV_TITLE[$fn]}"
  set +e
  (
    set -e
    "$fn"
  )
  rc=$?
  set -e
  sv_restore
  case $rc in
    0) SV_RESULT[$mode|$fn]=pass ;;
    *) SV_RESULT[$mode|$fn]=FAIL ;;
  esac
  SV_SECONDS[$mode|$fn]=$(sv_since "$start")
  echo "    => ${SV_RESULT[$mode|$fn]} (${SV_SECONDS[$mode|$fn]} s)"
}

sv_summary() {
  local modes=("$@") fn mode line failed=0
  echo "=== Services summary (modes: ${modes[*]})"
  for fn in "${SV_CASES[@]}"; do
    line=""
    for mode in "${modes[@]}"; do
      line+=$(printf '%-8s %-4s %6ss  ' "$mode" "${SV_RESULT[$mode|$fn]:-n/a}" "${SV_SECONDS[$mode|$fn]:-}")
      [[ ${SV_RESULT[$mode|$fn]:-} == FAIL ]] && failed=$((failed + 1))
    done
    echo "$line ${SV_TITLE[$fn]}"
  done
  return $((failed > 0))
}
