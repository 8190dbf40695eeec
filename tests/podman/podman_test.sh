#!/usr/bin/env bash
# Interop test: podman (CNI backend) drives ferry's plugins as a real container runtime.
#
#   tests/podman/podman_test.sh PLUGIN_DIR
#
# PLUGIN_DIR holds ferry-bridge, ferry-host-local and ferry-portmap. Podman runs with its
# own config, storage and lock files in a temp dir, inside the network namespace h5pm-<pid>
# (its "host"), from an image built offline out of busybox-static. The test shows what a
# podman user observes: addresses from ferry's IPAM, container-to-container TCP, a
# published port, the IP released on `podman rm`, nothing of ours left after
# `podman network rm`. Prints one ok:/FAIL: line per check; exits 1 on any failure,
# 77 (skip) when not root or podman is missing. Set FERRY_PODMAN_TYPE_PREFIX="" and
# PLUGIN_DIR=/usr/lib/cni to run the same checks against the reference plugins.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/podman/podman_lib.sh
source "$here/podman_lib.sh"

plugin_dir=${1:?usage: podman_test.sh PLUGIN_DIR}
prefix=${FERRY_PODMAN_TYPE_PREFIX-ferry-}

if ((EUID != 0)); then echo "SKIP: needs root (network namespaces, rootful podman)"; exit 77; fi
if ! command -v podman >/dev/null; then echo "SKIP: podman is not installed"; exit 77; fi
for tool in runc nsenter busybox iptables-save; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is missing (scripts/setup.sh installs it)"; exit 1; }
done
for plugin in bridge host-local portmap; do
  [[ -x $plugin_dir/$prefix$plugin ]] ||
    { echo "FAIL: $plugin_dir/$prefix$plugin is missing; build it first"; exit 1; }
done

network=h5net
bridge=h5br0
subnet=10.251.0.0/24
gateway=10.251.0.1
host_port=18080
image=localhost/h5busybox
PM_NETNS=h5pm-$$
PM_ROOT=$(mktemp -d /tmp/h5podman.XXXXXX)
client_netns=h5pmcl-$$
uplink_host=192.168.251.1 # the podman host's address on the link to the client netns
failures=0

teardown() {
  pm_teardown
  [[ -e /run/netns/$client_netns ]] && ip netns delete "$client_netns"
  return 0
}
trap teardown EXIT
trap 'exit 130' INT TERM
trap 'echo "FAIL: line $LINENO: \"$BASH_COMMAND\" exited with $?"' ERR

ok() { echo "ok: $*"; }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# check DESCRIPTION COMMAND...: one ok/FAIL line; the command's output is shown on failure.
check() {
  local description=$1 output
  shift
  if output=$("$@" 2>&1); then ok "$description"; else fail "$description"; sed 's/^/    /' <<<"$output"; fi
}
in_host() { nsenter --net="/run/netns/$PM_NETNS" "$@"; }
# reservations: host-local's reservation files (one per allocated IP) in the store.
reservations() {
  find "$PM_ROOT/ipam/$network" -maxdepth 1 -type f ! -name lock ! -name 'last_reserved_ip.*' \
    -printf '%f\n' 2>/dev/null | sort
}
expect_eq() { # expect_eq WANT GOT
  [[ $1 == "$2" ]] || { echo "want: $1"; echo "got:  $2"; return 1; }
}
expect_contains() { # expect_contains NEEDLE HAYSTACK
  [[ $2 == *"$1"* ]] || { echo "want output containing: $1"; echo "got: $2"; return 1; }
}
container_ip() { pm inspect -f "{{(index .NetworkSettings.Networks \"$network\").IPAddress}}" "$1"; }

# --- setup ---------------------------------------------------------------------------------
pm_setup "$plugin_dir"
pm_build_image "$image"
pm_write_conflist "$PM_ROOT/net.d/$network.conflist" "$network" "$bridge" "$subnet" "$prefix" portmap
# A client namespace linked to the podman host: traffic to the published port from outside.
ip netns add "$client_netns"
ip -n "$PM_NETNS" link add h5uplink type veth peer name eth0 netns "$client_netns"
ip -n "$PM_NETNS" addr add "$uplink_host/30" dev h5uplink
ip -n "$PM_NETNS" link set h5uplink up
ip -n "$client_netns" addr add 192.168.251.2/30 dev eth0
ip -n "$client_netns" link set eth0 up
ip -n "$client_netns" link set lo up
echo "# podman $(podman --version | cut -d' ' -f3), plugins from $plugin_dir (type prefix '${prefix}')"

# --- a container gets an address from ferry's IPAM ------------------------------------------
check "podman lists network $network (conflist: ${prefix}bridge + ${prefix}host-local + ${prefix}portmap)" \
  expect_contains $'\n'"$network"$'\n' $'\n'"$(pm network ls --format '{{.Name}}' 2>&1)"$'\n'
pm run -d --name h5c1 --network "$network" "$image" httpd -f -p 80 -h /www >/dev/null
pm_wait_listening h5c1 80
c1_id=$(pm inspect -f '{{.Id}}' h5c1)
c1_ip=$(container_ip h5c1)
check "podman inspect shows h5c1's address $c1_ip in $subnet" \
  expect_eq "10.251.0." "${c1_ip%.*}."
check "the address is on eth0 inside h5c1" \
  expect_contains "inet $c1_ip/24" "$(pm exec h5c1 ip -4 -o addr show dev eth0)"
check "the default route inside h5c1 points to the gateway $gateway" \
  expect_contains "default via $gateway dev eth0" "$(pm exec h5c1 ip -4 route show)"
check "lo is up inside h5c1" \
  expect_contains "inet 127.0.0.1/8" "$(pm exec h5c1 ip -4 -o addr show dev lo)"
# Exact bytes (host-local's format): "<container id>\r\n<ifname>", no trailing newline.
check "host-local's store file $network/$c1_ip holds h5c1's id and eth0 in the reference format" \
  expect_eq "$c1_id^M"$'\n'"eth0<EOF>" "$(cat -v "$PM_ROOT/ipam/$network/$c1_ip" 2>&1; echo '<EOF>')"
check "bridge $bridge in the podman host holds the gateway $gateway/24" \
  expect_contains "inet $gateway/24" "$(ip -n "$PM_NETNS" -4 -o addr show dev "$bridge")"
check "the podman host reaches h5c1's httpd at $c1_ip:80" \
  expect_eq "hello from ferry" "$(in_host timeout 10 busybox wget -q -O - "http://$c1_ip/" 2>&1)"

# --- two containers reach each other over TCP -----------------------------------------------
pm run -d --name h5c2 --network "$network" "$image" \
  sh -c 'while true; do echo reply-from-h5c2 | nc -l -p 5000; done' >/dev/null
pm_wait_listening h5c2 5000
c2_ip=$(container_ip h5c2)
check "h5c2 got a different address ($c2_ip) in $subnet" \
  bash -c "[[ ${c2_ip%.*} == 10.251.0 && $c2_ip != $c1_ip ]] || { echo c1=$c1_ip c2=$c2_ip; exit 1; }"
check "h5c2 fetches http://$c1_ip/ from h5c1 over TCP" \
  expect_eq "hello from ferry" "$(pm exec h5c2 wget -q -O - "http://$c1_ip/" 2>&1)"
check "h5c1 reads from h5c2's nc listener at $c2_ip:5000" \
  expect_eq "reply-from-h5c2" "$(pm exec h5c1 sh -c "nc -w 5 $c2_ip 5000 </dev/null" 2>&1)"

# --- a published port through ferry-portmap -------------------------------------------------
pm run -d --name h5c3 --network "$network" -p "$host_port:80" "$image" httpd -f -p 80 -h /www >/dev/null
pm_wait_listening h5c3 80
c3_ip=$(container_ip h5c3)
check "from the podman host, $uplink_host:$host_port reaches h5c3 ($c3_ip:80)" \
  expect_eq "hello from ferry" "$(in_host timeout 10 busybox wget -q -O - "http://$uplink_host:$host_port/" 2>&1)"
check "from a client namespace, $uplink_host:$host_port reaches h5c3 ($c3_ip:80)" \
  expect_eq "hello from ferry" \
  "$(ip netns exec "$client_netns" timeout 10 busybox wget -q -O - "http://$uplink_host:$host_port/" 2>&1)"
check "podman port shows the mapping $host_port -> 80" \
  expect_contains "80/tcp -> 0.0.0.0:$host_port" "$(pm port h5c3)"

# --- a requested address and MAC (podman passes them as CNI_ARGS IP= and MAC=) -------------
static=$(pm run --rm --network "$network" --ip 10.251.0.50 --mac-address 02:00:00:00:02:50 "$image" \
  sh -c 'ip -o link show eth0; ip -4 -o addr show eth0' 2>&1 || true)
check "podman run --ip 10.251.0.50 gets exactly that address" expect_contains "inet 10.251.0.50/24" "$static"
check "podman run --mac-address 02:00:00:00:02:50 gets exactly that MAC" \
  expect_contains "link/ether 02:00:00:00:02:50" "$static"

# --- podman rm releases everything per container --------------------------------------------
check "the store holds exactly the three containers' addresses" \
  expect_eq "$(printf '%s\n' "$c1_ip" "$c2_ip" "$c3_ip" | sort | paste -sd' ')" "$(reservations | paste -sd' ')"
pm rm --force --time 0 h5c1 h5c2 h5c3 >/dev/null
check "after podman rm, the store holds no reservation" expect_eq "" "$(reservations | paste -sd' ')"
check "after podman rm, no veth is left on $bridge" \
  expect_eq "" "$(ip -n "$PM_NETNS" -o link show master "$bridge")"
check "after podman rm, $uplink_host:$host_port is no longer forwarded" \
  bash -c "! ip netns exec $client_netns timeout 5 busybox wget -q -O - http://$uplink_host:$host_port/"
nat_rules=$(in_host iptables-save -t nat)
check "after podman rm, no per-container NAT chain or rule is left (no container id, address or DN chain)" \
  bash -c "! grep -E -- '$c1_id|$c1_ip|$c2_ip|$c3_ip|CNI-DN-|:$host_port' <<<\"\$1\"" _ "$nat_rules"

# --- podman network rm leaves nothing of ours -----------------------------------------------
pm network rm "$network" >/dev/null
check "podman network rm removed the network" \
  bash -c "[[ ! -e $PM_ROOT/net.d/$network.conflist ]]"
links=$(ip -n "$PM_NETNS" -o link show)
check "no ferry* link and no veth is left in the podman host" \
  bash -c "! grep -E ': (ferry[^:]*|veth[^:]*)[:@]' <<<\"\$1\"" _ "$links"
if [[ $prefix != "" ]] && grep -q ": ${bridge}[:@]" <<<"$links"; then
  # Podman deletes the bridge itself on network rm only for driver "bridge" (plugin type
  # "bridge"); for any other plugin type it leaves the bridge, as the CNI spec has no verb
  # for "network removed". The namespace teardown removes it here.
  echo "info: $bridge stays after podman network rm (podman removes bridges only for type \"bridge\")"
fi
rules=$( { in_host iptables-save; in_host ip6tables-save; } 2>&1)
# The hostport chains FERRY-HOSTPORT-{DNAT,MASQ,SETMARK} are node-wide, shared by every
# network, and stay (empty) like the reference's CNI-HOSTPORT-*; anything else of ours must go.
shared_chains='^:FERRY-HOSTPORT-(DNAT|MASQ|SETMARK) '
check "no FERRY-* chain other than the shared hostport chains is left in iptables/ip6tables" \
  bash -c "! grep -E '^:FERRY-' <<<\"\$1\" | grep -v -E '$shared_chains'" _ "$rules"
check "no rule for network $network, its subnet or a container is left; FERRY-HOSTPORT-DNAT is empty" \
  bash -c "! grep -E -- '^-A FERRY-HOSTPORT-DNAT |$network|10\\.251\\.|$c1_id' <<<\"\$1\"" _ "$rules"
if grep -q -E "$shared_chains" <<<"$rules"; then
  echo "info: the shared chains FERRY-HOSTPORT-{DNAT,MASQ,SETMARK} stay, empty (as the reference's CNI-HOSTPORT-*)"
fi

if ((failures)); then
  echo "podman interop: $failures check(s) FAILED"
  exit 1
fi
echo "podman interop: all checks passed"
