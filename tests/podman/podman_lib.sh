# shellcheck shell=bash
# Shared helpers for driving podman (CNI backend) against a chosen CNI plugin directory,
# sourced by tests/podman/podman_test.sh and bench/podman_run.sh.
#
# Podman runs with its own configuration, storage and lock files under a temporary
# directory, inside a dedicated network namespace (entered with nsenter --net, which
# keeps podman's cgroup and /run mounts intact where `ip netns exec` would not), so the
# bridge, veths and iptables rules the plugins create never touch the host's.
#
# Callers set PM_ROOT (temp dir) and PM_NETNS (netns name) and call pm_setup.

# pm_setup PLUGIN_DIR...: write containers.conf + storage.conf, create the netns.
pm_setup() {
  local plugin_dirs="" d
  for d in "$@"; do plugin_dirs+="${plugin_dirs:+, }\"$d\""; done
  mkdir -p "$PM_ROOT"/{net.d,storage,run,tmp,volumes,ipam}
  cat >"$PM_ROOT/containers.conf" <<EOF
[containers]
# The sandbox lacks CAP_SYS_RESOURCE: podman's default ulimits cannot be raised.
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
log_driver = "k8s-file"

[network]
network_backend = "cni"
cni_plugin_dirs = [$plugin_dirs]
network_config_dir = "$PM_ROOT/net.d"

[engine]
# crun fails on this host's hybrid cgroup layout; runc works.
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$PM_ROOT/events.log"
# File locks and a private tmp_dir: no shared /libpod_lock segment or /run/libpod.
lock_type = "file"
tmp_dir = "$PM_ROOT/tmp"
static_dir = "$PM_ROOT/storage/libpod"
volume_path = "$PM_ROOT/volumes"
EOF
  cat >"$PM_ROOT/storage.conf" <<EOF
[storage]
driver = "${PM_STORAGE_DRIVER:-overlay}"
graphroot = "$PM_ROOT/storage"
runroot = "$PM_ROOT/run"
EOF
  export CONTAINERS_CONF="$PM_ROOT/containers.conf"
  export CONTAINERS_STORAGE_CONF="$PM_ROOT/storage.conf"
  ip netns add "$PM_NETNS"
  ip -n "$PM_NETNS" link set lo up
}

# pm ARGS...: podman inside the test namespace.
pm() { nsenter --net="/run/netns/$PM_NETNS" podman "$@"; }

# pm_build_image NAME: an offline image holding busybox-static and its applet links.
pm_build_image() {
  local name=$1 rootfs="$PM_ROOT/rootfs" applet
  mkdir -p "$rootfs"/{bin,etc,tmp,www,proc,sys,dev}
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in sh ash cat echo sleep true false nc httpd ip ping wget ls hostname ifconfig \
                grep cut head tail tr wc seq mkdir rm kill ps sed awk netstat; do
    ln -sf busybox "$rootfs/bin/$applet"
  done
  echo "root:x:0:0:root:/:/bin/sh" >"$rootfs/etc/passwd"
  echo "root:x:0:" >"$rootfs/etc/group"
  echo "hello from ferry" >"$rootfs/www/index.html"
  tar -C "$rootfs" -cf "$PM_ROOT/rootfs.tar" .
  pm import --quiet --change 'CMD ["/bin/sh"]' --change 'ENV PATH=/bin' \
    "$PM_ROOT/rootfs.tar" "$name" >/dev/null
}

# pm_wait_listening CONTAINER PORT: until a TCP server in CONTAINER listens on PORT (servers
# start a moment after `podman run -d` returns); at most ~10 s.
pm_wait_listening() {
  for _ in $(seq 100); do
    pm exec "$1" netstat -ltn 2>/dev/null | grep -q ":$2 " && return 0
    sleep 0.1
  done
  echo "nothing listens on port $2 in $1" >&2
  return 1
}

# pm_write_conflist FILE NETWORK BRIDGE SUBNET TYPE_PREFIX [portmap]:
# bridge + host-local (+ portmap) with cniVersion 1.0.0 (spoken by both flavours).
# TYPE_PREFIX is "ferry-" for ferry's plugins and "" for the reference plugins.
pm_write_conflist() {
  local file=$1 network=$2 bridge=$3 subnet=$4 prefix=$5 with_portmap=${6:-}
  local gateway=${subnet%.*}.1 portmap=""
  if [[ $with_portmap == portmap ]]; then
    portmap=',
    { "type": "'"${prefix}"'portmap", "capabilities": { "portMappings": true } }'
  fi
  cat >"$file" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$network",
  "plugins": [
    {
      "type": "${prefix}bridge",
      "bridge": "$bridge",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "${prefix}host-local",
        "dataDir": "$PM_ROOT/ipam",
        "routes": [ { "dst": "0.0.0.0/0" } ],
        "ranges": [ [ { "subnet": "$subnet", "gateway": "$gateway" } ] ]
      }
    }$portmap
  ]
}
EOF
}

# pm_teardown: remove containers, storage and the netns; never fails, safe to call twice.
pm_teardown() {
  set +e
  if [[ -n ${CONTAINERS_CONF:-} && -e "/run/netns/$PM_NETNS" ]]; then
    pm rm --all --force --time 0 >/dev/null 2>&1
  fi
  [[ -e "/run/netns/$PM_NETNS" ]] && ip netns delete "$PM_NETNS"
  if [[ -n ${PM_ROOT:-} && -d $PM_ROOT ]]; then
    # Overlay layers (and the driver's private bind mount) may still be mounted.
    local m
    for m in $(grep -F " $PM_ROOT/" /proc/mounts | cut -d' ' -f2 | sort -r); do
      umount -l "$m"
    done
    rm -rf "$PM_ROOT"
  fi
  return 0
}
