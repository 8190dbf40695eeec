#!/bin/sh
# ferry-node: the node-side steps of the ferry DaemonSet (installed in the image as
# /usr/local/bin/ferry-node). Every path is the host's own path: the DaemonSet mounts the host
# directories at the same places, so the conflist the agent writes is valid on the host too.
#
#   ferry-node install-cni [--from DIR] [--to DIR]   copy the CNI plugins (temp file + rename)
#   ferry-node prep --config FILE --node NAME        bpffs and br_netfilter (privileged step)
#   ferry-node agent --config FILE --node NAME ...   pick the host's iptables backend, exec ferry-agent
#   ferry-node cleanup --config FILE --node NAME     remove everything ferry made on this node
#
# Settings the steps share with the agent (state-dir, bpffs-root, cni-conflist, cni-network,
# ipam-dir, datapath) are read from the agent's YAML config, with the agent's defaults.
# Exit status: 0 on success, 2 for a usage error, 1 when a step fails (the message says which).
set -eu

PLUGINS="ferry-bridge ferry-host-local ferry-loopback ferry-portmap"

die() { echo "ferry-node: $*" >&2; exit 1; }
usage() { echo "ferry-node: $*" >&2; sed -n '4,8p' "$0" >&2; exit 2; }

# conf KEY DEFAULT: the value of a top-level "key: value" line of $config, else DEFAULT.
conf() {
  v=""
  if [ -n "${config:-}" ]; then
    [ -r "$config" ] || die "cannot read config $config"
    v=$(sed -n "s/^$1:[[:space:]]*\([^#]*\).*/\1/p" "$config" | head -n1 | sed 's/[[:space:]]*$//; s/^"\(.*\)"$/\1/')
  fi
  echo "${v:-$2}"
}

parse_node_args() {
  config="" node="${NODE_NAME:-}"
  while [ $# -gt 0 ]; do
    case "$1" in
      --config) config="$2"; shift 2 ;;
      --node) node="$2"; shift 2 ;;
      *) usage "unknown argument $1" ;;
    esac
  done
  [ -n "$node" ] || node=$(conf node "")
  [ -n "$node" ] || usage "--node NAME (or NODE_NAME) is required"
}

# --- install-cni ------------------------------------------------------------------------
# Each plugin is copied next to its destination and renamed over it: a runtime that execs the
# plugin at that moment runs the old or the new file, never a partial one, and a plugin binary
# that is running (text busy) is replaced without error.
install_cni() {
  from=/opt/ferry/cni to=/opt/cni/bin
  while [ $# -gt 0 ]; do
    case "$1" in
      --from) from="$2"; shift 2 ;;
      --to) to="$2"; shift 2 ;;
      *) usage "unknown argument $1" ;;
    esac
  done
  mkdir -p "$to"
  for p in $PLUGINS; do
    [ -x "$from/$p" ] || die "plugin $from/$p is missing"
    tmp="$to/.$p.ferry-tmp"
    cp "$from/$p" "$tmp" && chmod 0755 "$tmp" && mv -f "$tmp" "$to/$p" || { rm -f "$tmp"; die "failed to install $to/$p"; }
  done
  echo "ferry-node: installed $PLUGINS into $to"
}

# --- prep -------------------------------------------------------------------------------
# What the unprivileged agent container cannot do itself: mount bpffs on the host (the mount
# reaches the host through Bidirectional propagation) and, for the iptables datapath, load
# br_netfilter and set the sysctls its backend needs (/proc/sys is read-only in the agent).
set_sysctl() {
  f="/proc/sys/$(echo "$1" | tr . /)"
  [ -e "$f" ] || return 0
  [ "$(cat "$f")" = "$2" ] || echo "$2" > "$f" || die "failed to set $1=$2"
}

prep() {
  parse_node_args "$@"
  if ! grep -qs '^[^ ]* /sys/fs/bpf bpf ' /proc/mounts; then
    mkdir -p /sys/fs/bpf
    mount -t bpf bpf /sys/fs/bpf -o mode=0700 || die "failed to mount bpffs at /sys/fs/bpf"
    echo "ferry-node: mounted bpffs at /sys/fs/bpf"
  fi
  datapath=$(conf datapath auto)
  previous=$(cat "$(conf state-dir "/run/ferry/$node")/datapath" 2>/dev/null || true)
  if [ "$datapath" != ebpf ]; then
    # iptables (or auto, which may pick it): bridged pod traffic must reach iptables.
    [ -d /proc/sys/net/bridge ] || modprobe br_netfilter || die "cannot load br_netfilter"
    set_sysctl net.bridge.bridge-nf-call-iptables 1
    set_sysctl net.bridge.bridge-nf-call-ip6tables 1
  elif [ "$previous" = iptables ] && [ -d /proc/sys/net/bridge ]; then
    # Switch iptables -> ebpf: the agent's cleanup of the iptables datapath turns these off.
    set_sysctl net.bridge.bridge-nf-call-iptables 0
    set_sysctl net.bridge.bridge-nf-call-ip6tables 0
  fi
  echo "ferry-node: node $node prepared for datapath $datapath"
}

# --- agent ------------------------------------------------------------------------------
# The image has iptables-legacy and iptables-nft; use the one the host's rules are in (the
# heuristic of kubernetes-sigs/iptables-wrappers), so ferry's chains sit beside kube-proxy's.
agent() {
  if command -v update-alternatives >/dev/null && command -v iptables-legacy-save >/dev/null; then
    legacy=$( (iptables-legacy-save; ip6tables-legacy-save) 2>/dev/null | grep -c '^-' || true)
    nft=$( (iptables-nft-save; ip6tables-nft-save) 2>/dev/null | grep -c '^-' || true)
    mode=nft
    [ "$legacy" -gt "$nft" ] && mode=legacy
    for t in iptables ip6tables; do
      update-alternatives --quiet --set "$t" "/usr/sbin/$t-$mode" >/dev/null 2>&1 || true
    done
    echo "ferry-node: iptables backend $mode ($legacy legacy rules, $nft nft rules on the host)" >&2
  fi
  exec ferry-agent "$@"
}

# --- cleanup ----------------------------------------------------------------------------
# Removes exactly ferry's objects, found by name, in this network namespace and on these paths.
# Idempotent. Run it after the agent stopped (the agent would recreate what it owns).
cleanup_iptables() {  # $1 = iptables | ip6tables
  command -v "$1-save" >/dev/null || return 0
  for table in filter nat mangle raw; do
    saved=$("$1-save" -t "$table" 2>/dev/null) || continue
    # Rules of other chains that jump to a FERRY chain go first, then FERRY chains are flushed
    # and deleted (a chain can only be deleted once nothing references it).
    batch=$(printf '%s\n' "$saved" | awk '
      /^:FERRY-/ { split($1, a, ":"); chains[++n] = a[2] }
      /^-A / && $2 !~ /^FERRY-/ && / -[jg] FERRY-/ { sub(/^-A /, "-D "); rules[++m] = $0 }
      END {
        for (i = 1; i <= m; i++) print rules[i]
        for (i = 1; i <= n; i++) print "-F " chains[i]
        for (i = 1; i <= n; i++) print "-X " chains[i]
      }')
    [ -n "$batch" ] || continue
    printf '*%s\n%s\nCOMMIT\n' "$table" "$batch" | "$1-restore" --noflush --wait \
      || die "$1-restore failed removing ferry's $table rules"
  done
}

# Links are listed with ip(8), not /sys/class/net: sysfs shows the namespace it was mounted in.
links() { ip -o link show "$@" | sed 's/^[0-9]*: \([^:@]*\).*/\1/'; }

cleanup_tc() {
  for dev in $(links); do
    for dir in ingress egress; do
      # ferry's filters: handle 0xfe, priority 1, program named ferry_* (FERRY_TC_HANDLE/PRIORITY).
      if tc filter show dev "$dev" "$dir" 2>/dev/null | grep -q 'pref 1 bpf .*handle 0xfe ferry_'; then
        tc filter del dev "$dev" "$dir" pref 1 handle 0xfe bpf || die "failed to remove the $dir filter of $dev"
      fi
    done
  done
}

cleanup() {
  parse_node_args "$@"
  state_dir=$(conf state-dir "/run/ferry/$node")
  bpffs_root=$(conf bpffs-root "/sys/fs/bpf/ferry/$node")
  conflist=$(conf cni-conflist "")
  network=$(conf cni-network ferry)
  ipam_dir=$(conf ipam-dir /var/lib/cni/networks)
  cni_bin=${FERRY_CNI_BIN_DIR:-/opt/cni/bin}

  if [ -n "$conflist" ]; then rm -f "$conflist" "$conflist.tmp"; fi
  for p in $PLUGINS; do rm -f "$cni_bin/$p" "$cni_bin/.$p.ferry-tmp"; done
  cleanup_tc
  rm -rf "$bpffs_root"
  rmdir "$(dirname "$bpffs_root")" 2>/dev/null || true
  cleanup_iptables iptables
  cleanup_iptables ip6tables
  for set in $(ipset list -n 2>/dev/null | grep '^ferry-' || true); do
    ipset destroy "$set" || die "failed to destroy ipset $set"
  done
  if ip link show ferry_vxlan >/dev/null 2>&1; then ip link del ferry_vxlan || die "failed to delete ferry_vxlan"; fi
  # The pod bridge goes only when no pod is attached to it any more.
  if ip link show ferry0 >/dev/null 2>&1 && [ -z "$(links master ferry0)" ]; then ip link del ferry0; fi
  rm -rf "$state_dir" "$ipam_dir/$network"
  rmdir "$(dirname "$state_dir")" 2>/dev/null || true
  echo "ferry-node: node $node cleaned"
}

[ $# -gt 0 ] || usage "a command is required"
cmd="$1"
shift
case "$cmd" in
  install-cni) install_cni "$@" ;;
  prep) prep "$@" ;;
  agent) agent "$@" ;;
  cleanup) cleanup "$@" ;;
  *) usage "unknown command $cmd" ;;
esac
