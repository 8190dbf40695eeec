# shellcheck shell=bash
# tests/harness/netpol/lib.sh — the Kubernetes NetworkPolicy e2e model on the netns harness
# (upstream: kubernetes test/e2e/network/netpol): namespaces x, y, z, pods a, b, c in each,
# a truth table ("reachability") per (port, protocol), a concurrent prober and the
# upstream-style matrix diff. Sourced by netpol.sh after tests/harness/lib.sh (cluster, fail,
# step, T_BIN, T_CLUSTER).
#
# A case is a function that writes policies (np_policy), waits until every agent handled them
# (np_sync), describes the expected truth table in an "expect" function and calls np_check.
# The expect function is called once per (port, protocol) as `fn <port> <proto>` and fills the
# table with np_default / np_expect / np_expect_all_ingress / np_expect_all_egress; loopback
# (a pod to itself) is always allowed afterwards, as upstream's AllowLoopback: it never leaves
# the pod.

NP_NAMESPACES=(x y z)
NP_PODS=(x/a x/b x/c y/a y/b y/c z/a z/b z/c)
# Pods spread over the 3 nodes: every namespace on every node, same-named pods on different
# nodes, so each case has same-node and cross-node pairs in every row.
declare -A NP_NODE_OF=([x/a]=1 [x/b]=2 [x/c]=3 [y/a]=2 [y/b]=3 [y/c]=1 [z/a]=3 [z/b]=1 [z/c]=2)
# Besides upstream's 80/81 x TCP/UDP/SCTP (named serve-<port>-<proto>), unnamed TCP and UDP
# ports 82-84 for the endPort edge cases.
NP_EXTRA_PORTS="82/tcp,83/tcp,84/tcp,82/udp,83/udp,84/udp"

NP_TIMEOUT_MS=${NP_TIMEOUT_MS:-1000}   # a blocked probe costs this much (in parallel)
NP_RETRIES=${NP_RETRIES:-2}            # mismatching cells are probed again this many times
NP_FAMILY=4                            # 4 or 6: the address family np_check probes
NP_COMBOS="80/tcp 81/tcp"              # (port/proto) tables np_check covers unless told
NP_WORK=""                             # scratch dir: policy files, probe output

declare -A NP_IP4 NP_IP6 NP_NETNS
declare -A NP_EXP NP_OBS NP_ERR        # keys "<port>/<proto>|<from>|<to>"
NP_COMBO=""                            # the combo np_default/np_expect write into

# --- the model ---------------------------------------------------------------------------
np_setup_model() {
  local ns pod
  for ns in "${NP_NAMESPACES[@]}"; do
    # Upstream's namespaces carry ns=<name> besides the automatic kubernetes.io/metadata.name.
    cluster label-ns "$ns" "ns=$ns" >/dev/null
  done
  # One sequence of add-pod per node, the nodes in parallel (their IPAM and CNI state are
  # separate; the namespaces exist already).
  local node pids=() pid
  for node in 1 2 3; do
    (
      for pod in "${NP_PODS[@]}"; do
        [[ ${NP_NODE_OF[$pod]} == "$node" ]] || continue
        cluster add-pod "$node" "${pod%/*}" "${pod#*/}" --labels "pod=${pod#*/}" --add-ports "$NP_EXTRA_PORTS"
      done
    ) &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || fail "add-pod failed (above)"; done
  local f state="/run/ferry-harness/$T_CLUSTER/pods"
  for pod in "${NP_PODS[@]}"; do
    f="$state/${pod%/*}_${pod#*/}.json"
    NP_IP4[$pod]=$(jq -r .ip4 "$f")
    NP_IP6[$pod]=$(jq -r .ip6 "$f")
    NP_NETNS[$pod]=$(jq -r .netns "$f")
  done
  np_sync
}

np_ip() { if [[ $NP_FAMILY == 6 ]]; then echo "${NP_IP6[$1]}"; else echo "${NP_IP4[$1]}"; fi; }
# A pod's address as a host prefix (/32, /128) and as the prefix of length $2 (host bits set,
# exactly as the upstream e2e writes its ipBlocks: "<podIP>/24").
np_host_cidr() { if [[ $NP_FAMILY == 6 ]]; then echo "${NP_IP6[$1]}/128"; else echo "${NP_IP4[$1]}/32"; fi; }
np_cidr() { echo "$(np_ip "$1")/$2"; }

# The model pods whose address (of NP_FAMILY) is inside cidr $1 and outside every except $2...
np_pods_in_block() {
  local pod list=""
  for pod in "${NP_PODS[@]}"; do list+="$pod=$(np_ip "$pod") "; done
  python3 - "$list" "$@" <<'EOF'
import ipaddress, sys
pods = [p.split("=", 1) for p in sys.argv[1].split()]
block = ipaddress.ip_network(sys.argv[2], strict=False)
excepts = [ipaddress.ip_network(e, strict=False) for e in sys.argv[3:]]
for name, ip in pods:
    a = ipaddress.ip_address(ip)
    if a in block and not any(a in e for e in excepts):
        print(name)
EOF
}

# --- policies and labels -----------------------------------------------------------------
# np_policy <namespace> <name>: a NetworkPolicy whose spec is stdin (YAML, indented as the
# top level of spec), applied through the harness's manifest directory.
np_policy() {
  local ns=$1 name=$2 file="$NP_WORK/np-$1-$2.yaml"
  {
    printf 'apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: %s\n  namespace: %s\nspec:\n' "$name" "$ns"
    sed 's/^/  /'
  } >"$file"
  cluster apply "$file"
}
np_policy_delete() { cluster delete "$NP_WORK/np-$1-$2.yaml"; }

# Labels: a pod's or namespace's whole label set (k=v,...); np_restore_labels puts the model's
# labels back on whatever a case changed.
np_label_pod() {
  cluster label-pod "$1" "$2" >/dev/null
  echo "pod $1" >>"$NP_WORK/relabelled"
}
np_label_ns() {
  cluster label-ns "$1" "$2" >/dev/null
  echo "ns $1" >>"$NP_WORK/relabelled"
}
np_restore_labels() {
  [[ -e $NP_WORK/relabelled ]] || return 0
  local kind name
  while read -r kind name; do
    if [[ $kind == ns ]]; then
      cluster label-ns "$name" "ns=$name" >/dev/null
    else
      cluster label-pod "$name" "pod=${name#*/}" >/dev/null
    fi
  done < <(sort -u "$NP_WORK/relabelled")
  rm -f "$NP_WORK/relabelled"
}

# Every policy a case applied is removed (by file: the harness's `apply` names them).
np_delete_all_policies() {
  local f
  for f in "$NP_WORK"/np-*.yaml; do
    [[ -e $f ]] || continue
    cluster delete "$f"
    rm -f "$f"
  done
}

# Returns once every agent has handled every manifest written so far (cluster.sh sync: a
# barrier through the agents' event loop and /metrics), at most 10 s.
np_sync() {
  local t0=$EPOCHREALTIME
  cluster sync --timeout "${NP_SYNC_TIMEOUT_S:-10}"
  echo "    synced: every agent handled the manifests ($(np_since "$t0") s)"
}

# --- truth tables ------------------------------------------------------------------------
np_default() {
  local f t
  for f in "${NP_PODS[@]}"; do
    for t in "${NP_PODS[@]}"; do NP_EXP[$NP_COMBO|$f|$t]=$1; done
  done
}
# np_expect <from> <to> <0|1>; from/to: "x/a", "x/*" (a namespace), "*/a", "*" (every pod).
np_expect() {
  local f t
  for f in "${NP_PODS[@]}"; do
    # shellcheck disable=SC2053  # glob patterns on purpose
    [[ $f == $1 ]] || continue
    for t in "${NP_PODS[@]}"; do
      # shellcheck disable=SC2053
      [[ $t == $2 ]] && NP_EXP[$NP_COMBO|$f|$t]=$3
    done
  done
  return 0
}
np_expect_all_ingress() { np_expect '*' "$1" "$2"; }
np_expect_all_egress() { np_expect "$1" '*' "$2"; }

# Runs the probes of the given cells ("<port>/<proto>|<from>|<to>"): one `ferry-probe batch`
# per source pod, all sources at once; fills NP_OBS (1 answered by the probed pod, 0 not) and
# NP_ERR.
np_probe_cells() {
  local cell combo rest from to ip dir
  local -A lines=()
  dir=$(mktemp -d "$NP_WORK/probe.XXXXXX")
  # Plain parameter expansion, no subshells: this runs for every cell on a loaded machine.
  for cell in "$@"; do
    combo=${cell%%|*} rest=${cell#*|}
    from=${rest%%|*} to=${rest#*|}
    if [[ $NP_FAMILY == 6 ]]; then ip=${NP_IP6[$to]}; else ip=${NP_IP4[$to]}; fi
    lines[$from]+="$cell ${combo#*/} $ip ${combo%/*}"$'\n'
  done
  for from in "${!lines[@]}"; do printf '%s' "${lines[$from]}" >"$dir/${from/\//_}.in"; done
  local in pids=()
  for in in "$dir"/*.in; do
    [[ -e $in ]] || continue
    from=$(basename "$in" .in)
    from=${from/_//}
    nsenter --net="/run/netns/${NP_NETNS[$from]}" "$T_BIN/ferry-probe" batch --timeout-ms "$NP_TIMEOUT_MS" \
      <"$in" >"${in%.in}.out" 2>"${in%.in}.err" &
    pids+=($!)
  done
  local pid
  for pid in "${pids[@]}"; do wait "$pid" || true; done
  local id ok err
  # A cell answered by a different server than the one probed counts as not answered.
  while IFS=$'\t' read -r id ok err; do
    NP_OBS[$id]=$ok
    NP_ERR[$id]=$err
  done < <(cat "$dir"/*.out 2>/dev/null | jq -r '(.id | split("|")[2]) as $to
      | [.id, (if .ok and .server == $to then "1" else "0" end),
         (if .ok and .server != $to then "answered by \(.server)" else .error // "" end)] | @tsv')
  for cell in "$@"; do
    if [[ -z ${NP_OBS[$cell]:-} ]]; then
      NP_OBS[$cell]=0
      NP_ERR[$cell]="no result from ferry-probe batch: $(cat "$dir"/*.err 2>/dev/null | head -c 300)"
    fi
  done
  rm -rf "$dir"
}

# np_check <expect-fn> [combo...]: builds the expected table of every combo (default
# $NP_COMBOS), probes every pod to every pod, re-probes mismatching cells up to NP_RETRIES
# times (transient loss of a first packet), and on a remaining mismatch prints the tables and
# returns 1.
np_check() {
  local fn=$1
  shift
  local combos=("$@")
  ((${#combos[@]})) || read -r -a combos <<<"$NP_COMBOS"
  local combo f t cells=()
  for combo in "${combos[@]}"; do
    NP_COMBO=$combo
    np_default 1
    "$fn" "${combo%/*}" "${combo#*/}" || true  # an expect function's last test may be false
    for f in "${NP_PODS[@]}"; do
      NP_EXP[$combo|$f|$f]=1  # loopback
      for t in "${NP_PODS[@]}"; do cells+=("$combo|$f|$t"); done
    done
  done
  local t0=$EPOCHREALTIME
  np_probe_cells "${cells[@]}"
  local round bad=() cell
  for ((round = 0; ; round++)); do
    bad=()
    for cell in "${cells[@]}"; do
      [[ ${NP_OBS[$cell]} == "${NP_EXP[$cell]}" ]] || bad+=("$cell")
    done
    ((${#bad[@]} == 0 || round >= NP_RETRIES)) && break
    np_probe_cells "${bad[@]}"
  done
  local n_allowed=0
  for cell in "${cells[@]}"; do ((NP_EXP[$cell])) && n_allowed=$((n_allowed + 1)); done
  if ((${#bad[@]} == 0)); then
    echo "    ok: ${combos[*]} IPv$NP_FAMILY: ${#cells[@]} cells match ($n_allowed allowed, $((${#cells[@]} - n_allowed)) blocked; probed in $(np_since "$t0") s, $round re-probe round(s))"
    return 0
  fi
  for combo in "${combos[@]}"; do np_print_diff "$combo"; done
  echo "    FAILED: ${#bad[@]} of ${#cells[@]} cells differ from the truth table (after $NP_RETRIES re-probes)" >&2
  return 1
}

np_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN {printf "%.2f", b - a}'; }

# Upstream's print of a failed case: expected, observed and the comparison (rows from,
# columns to; in expected/observed "." = allowed, "X" = blocked; in the comparison "." =
# match, "X" = mismatch), then each mismatch with the prober's reason.
np_print_diff() {
  local combo=$1 f t any=0 which cell mark
  for f in "${NP_PODS[@]}"; do
    for t in "${NP_PODS[@]}"; do
      [[ ${NP_OBS[$combo|$f|$t]} == "${NP_EXP[$combo|$f|$t]}" ]] || any=1
    done
  done
  ((any)) || return 0
  {
    echo "    == ${combo#*/} port ${combo%/*}, IPv$NP_FAMILY (rows: from, columns: to)"
    for which in expected observed comparison; do
      echo "    $which:"
      printf '    %-4s' "-"
      for t in "${NP_PODS[@]}"; do printf ' %-4s' "$t"; done
      echo
      for f in "${NP_PODS[@]}"; do
        printf '    %-4s' "$f"
        for t in "${NP_PODS[@]}"; do
          cell="$combo|$f|$t"
          mark=X
          case $which in
            expected) ((NP_EXP[$cell])) && mark=. ;;
            observed) ((NP_OBS[$cell])) && mark=. ;;
            *) [[ ${NP_OBS[$cell]} == "${NP_EXP[$cell]}" ]] && mark=. ;;
          esac
          printf ' %-4s' "$mark"
        done
        echo
      done
    done
    for f in "${NP_PODS[@]}"; do
      for t in "${NP_PODS[@]}"; do
        cell="$combo|$f|$t"
        [[ ${NP_OBS[$cell]} == "${NP_EXP[$cell]}" ]] && continue
        if ((NP_EXP[$cell])); then
          echo "    $f -> $t (${combo#*/} $(np_ip "$t") port ${combo%/*}): expected allowed, observed blocked: ${NP_ERR[$cell]}"
        else
          echo "    $f -> $t (${combo#*/} $(np_ip "$t") port ${combo%/*}): expected blocked, observed allowed"
        fi
      done
    done
  } >&2
}

# Baseline: no policy, every pod reaches every pod.
np_expect_all_allowed() { np_default 1; }

# --- running cases -----------------------------------------------------------------------
declare -A NP_RESULT       # "<mode>|<case>" -> pass | FAIL | skip
declare -A NP_SECONDS      # "<mode>|<case>" -> duration
NP_CASES=()                # function names, in order
declare -A NP_TITLE        # function -> upstream It() text (or "ferry: ..." for own cases)

# np_case <function> <title>: registers a case.
np_case() {
  NP_CASES+=("$1")
  NP_TITLE[$1]=$2
}

# Runs one case in a subshell with errexit (a failed np_check ends it), then removes its
# policies and labels whatever happened, waits for the agents, and checks that every pod
# reaches every pod again (a deleted policy must restore access).
np_run_case() {
  local mode=$1 fn=$2 rc start=$EPOCHREALTIME
  echo "--- [$mode] ${NP_TITLE[$fn]}"
  set +e
  (
    set -e
    "$fn"
  )
  rc=$?
  set -e
  np_delete_all_policies
  np_restore_labels
  np_sync
  if ((rc == 0)); then
    echo "    cleanup:"
    np_check np_expect_all_allowed 80/tcp || rc=1
  elif ((rc != 77)); then
    # Leave the next case a clean slate even after a failure (no assertion here).
    np_check np_expect_all_allowed 80/tcp >/dev/null 2>&1 || true
  fi
  case $rc in
    0) NP_RESULT[$mode|$fn]=pass ;;
    77) NP_RESULT[$mode|$fn]=skip ;;
    *) NP_RESULT[$mode|$fn]=FAIL ;;
  esac
  NP_SECONDS[$mode|$fn]=$(np_since "$start")
  echo "    => ${NP_RESULT[$mode|$fn]} (${NP_SECONDS[$mode|$fn]} s)"
}

# A case that cannot run yet: prints why, counts as skipped.
np_skip() {
  echo "    SKIP: $*"
  exit 77
}

np_summary() {
  local modes=("$@") fn mode line failed=0
  echo "=== NetworkPolicy e2e summary (modes: ${modes[*]})"
  for fn in "${NP_CASES[@]}"; do
    line=""
    for mode in "${modes[@]}"; do
      line+=$(printf '%-8s %-4s %5ss  ' "$mode" "${NP_RESULT[$mode|$fn]:-n/a}" "${NP_SECONDS[$mode|$fn]:-}")
      [[ ${NP_RESULT[$mode|$fn]:-} == FAIL ]] && failed=$((failed + 1))
    done
    echo "$line ${NP_TITLE[$fn]}"
  done
  return $((failed > 0))
}
