# shellcheck shell=bash
# netns-harness/lib.sh — naming, addressing plan, state files and process helpers shared by
# cluster.sh and the tests. Sourced, never run. Everything a cluster creates is named from
# the cluster name C (short, [a-z][a-z0-9]*), so `down` can find it without state files:
#   netns      C-ul (underlay), C-n<i> (node i), C-<ns>-<pod> (pods)
#   state      /run/ferry-harness/C/      agent state /run/ferry/C-n<i>/
#   bpffs      /sys/fs/bpf/ferry/C-n<i>/

# shellcheck disable=SC2034  # globals used by cluster.sh and the tests
FH_STATE_ROOT=${FH_STATE_ROOT:-/run/ferry-harness}
# shellcheck disable=SC2034
FH_AGENT_PORT=9400

fh_die() {
  echo "cluster.sh: error: $*" >&2
  exit 1
}
fh_log() { echo "[$FH_CLUSTER] $*" >&2; }

fh_set_cluster() {
  FH_CLUSTER=$1
  [[ $FH_CLUSTER =~ ^[a-z][a-z0-9]{0,9}$ ]] ||
    fh_die "cluster name \"$FH_CLUSTER\" must be 1-10 characters [a-z0-9], starting with a letter (it prefixes every netns)"
  FH_STATE="$FH_STATE_ROOT/$FH_CLUSTER"
  # shellcheck disable=SC2034
  FH_MANIFESTS="$FH_STATE/manifests"
}

# --- naming and addressing plan --------------------------------------------------------
fh_underlay() { echo "$FH_CLUSTER-ul"; }
fh_underlay_ip4() { echo "172.30.0.1"; }    # on br0: outside every pod CIDR
fh_underlay_ip6() { echo "fd00:30::1"; }
fh_node() { echo "$FH_CLUSTER-n$1"; }
fh_node_ip4() { echo "172.30.0.$((10 + $1))"; }
fh_node_ip6() { echo "fd00:30::$((10 + $1))"; }
fh_pod_cidr4() { echo "10.244.$1.0/24"; }
fh_pod_cidr6() { echo "fd00:10:244:$1::/64"; }
fh_pod_netns() { echo "$FH_CLUSTER-$1-$2"; }   # namespace, pod
fh_pod_state() { echo "$FH_STATE/pods/$1_$2.json"; }
fh_node_runtime() { echo "/run/ferry/$(fh_node "$1")"; }
fh_node_bpffs() { echo "/sys/fs/bpf/ferry/$(fh_node "$1")"; }

fh_valid_label() { [[ $1 =~ ^[a-z0-9]([-a-z0-9]{0,30}[a-z0-9])?$ ]]; }

# --- state ------------------------------------------------------------------------------
fh_require_cluster() {
  [[ -f $FH_STATE/cluster.env ]] || fh_die "cluster \"$FH_CLUSTER\" is not up (no $FH_STATE/cluster.env); run: cluster.sh --cluster $FH_CLUSTER up"
  # shellcheck source=/dev/null
  source "$FH_STATE/cluster.env"
  # cluster.env of an older harness: nodes 1..N, no overlay
  FH_NODE_IDS=${FH_NODE_IDS:-$(seq -s ' ' 1 "$FH_NODES")}
  FH_OVERLAY=${FH_OVERLAY:-legacy} FH_VNI=${FH_VNI:-1} FH_VXLAN_PORT=${FH_VXLAN_PORT:-8472}
}

# Writes a file atomically: content from stdin to a temp file in the same filesystem, then
# rename, so a watcher (the agent's manifest source) never reads half a file.
fh_write_atomic() {
  local dest=$1 tmp
  mkdir -p "$FH_STATE/tmp"
  tmp=$(mktemp "$FH_STATE/tmp/.write.XXXXXX")
  cat >"$tmp"
  chmod 0644 "$tmp"
  mv -f "$tmp" "$dest"
}

# --- running things inside namespaces ---------------------------------------------------
# nsenter, not `ip netns exec`: the latter remounts /sys and would hide bpffs from the agent.
fh_in() {
  local ns=$1
  shift
  nsenter --net="/run/netns/$ns" "$@"
}

# Starts a daemon inside netns $1, log file $2, pid file $3, command "$@" after. setsid puts it
# in its own session (no terminal signals); nsenter and setsid both exec, so $! is the daemon.
fh_start_daemon() {
  local ns=$1 log=$2 pidfile=$3
  shift 3
  mkdir -p "$(dirname "$log")" "$(dirname "$pidfile")"
  setsid nsenter --net="/run/netns/$ns" "$@" >>"$log" 2>&1 </dev/null &
  echo $! >"$pidfile"
}

# Alive = exists and is not a zombie (an orphan's zombie lingers where init does not reap).
fh_pid_alive() {
  local stat
  [[ -n ${1:-} ]] && stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat%% *} != Z ]]
}

# Stops the process of a pid file (if it still runs the expected program), waiting for it.
fh_stop_pidfile() {
  local pidfile=$1 signal=${2:-TERM} pid i
  [[ -f $pidfile ]] || return 0
  pid=$(<"$pidfile")
  if fh_pid_alive "$pid"; then
    kill "-$signal" "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
      fh_pid_alive "$pid" || break
      sleep 0.05
    done
    if fh_pid_alive "$pid"; then
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.1
    fi
  fi
  rm -f "$pidfile"
}

# Every netns of the cluster, found by name (works after a crash, without state files).
fh_cluster_netns() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$FH_CLUSTER-" || true
}

fh_mount_bpffs() {
  if ! mountpoint -q /sys/fs/bpf; then
    mount -t bpf bpf /sys/fs/bpf || fh_die "cannot mount bpffs on /sys/fs/bpf"
  fi
}
