#!/bin/sh
# The DaemonSet's node steps in a private mount + network namespace (tmpfs over /opt, /etc/cni,
# /var/lib, /run and /sys/fs/bpf, so nothing reaches the host): `ferry-node install-cni` puts the
# plugins in /opt/cni/bin by temp file + rename (also over a plugin binary that is running),
# and `ferry-node cleanup` with the ConfigMap's agent.yaml removes exactly what ferry put on
# the node and leaves other networks' files alone.
#   install_cni_test.sh <source dir> <plugin dir>       exit 0 pass, 1 fail, 77 skip
set -eu
src=$1 bin=$2
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root for a mount namespace"; exit 77; }
for d in /opt /etc/cni /var/lib /run /sys/fs/bpf; do
  [ -d "$d" ] || { echo "SKIP: $d does not exist to mount a tmpfs over"; exit 77; }
done
for p in ferry-bridge ferry-host-local ferry-loopback ferry-portmap; do
  [ -x "$bin/$p" ] || { echo "FAIL: $bin/$p is not built"; exit 1; }
done
export src bin
exec unshare --mount --net --propagation private sh -eu -c '
fail() { echo "FAIL: $*" >&2; exit 1; }
node=fyd7-node
for d in /opt /etc/cni /var/lib /run /sys/fs/bpf; do mount -t tmpfs fyd7 "$d"; done

# Files of other owners, which must survive the cleanup.
mkdir -p /opt/cni/bin /etc/cni/net.d /var/lib/cni/networks/other /run/ferry/other-node /sys/fs/bpf/ferry/other-node
echo other >/opt/cni/bin/loopback
echo "{}" >/etc/cni/net.d/10-other.conflist
echo other >/var/lib/cni/networks/other/10.0.0.2
echo other >/run/ferry/other-node/datapath
echo other >/sys/fs/bpf/ferry/other-node/map
others=$(find /opt /etc/cni /var/lib /run /sys/fs/bpf | sort)

# An old ferry-bridge that is running: a plain copy over it fails (text busy), a rename does not.
cp /bin/sleep /opt/cni/bin/ferry-bridge
/opt/cni/bin/ferry-bridge 60 &
sleeper=$!
trap "kill $sleeper 2>/dev/null || true" EXIT
if cp "$bin/ferry-bridge" /opt/cni/bin/ferry-bridge 2>/dev/null; then fail "copying over a running binary worked: the test cannot tell"; fi
sh "$src/deploy/ferry-node.sh" install-cni --from "$bin"
for p in ferry-bridge ferry-host-local ferry-loopback ferry-portmap; do
  cmp -s "$bin/$p" "/opt/cni/bin/$p" || fail "/opt/cni/bin/$p is not the built plugin"
  [ "$(stat -c %a "/opt/cni/bin/$p")" = 755 ] || fail "/opt/cni/bin/$p is not mode 755"
done
[ -z "$(find /opt/cni/bin -name ".*")" ] || fail "temp files left: $(find /opt/cni/bin -name ".*")"
echo "install-cni: 4 plugins installed, running old binary replaced"
kill $sleeper

# A node as the agent and the plugins leave it, with the ConfigMap agent.yaml as the config.
sed -n "/^  agent.yaml: |/,/^[^ ]/p" "$src/deploy/ferry.yaml" | sed -n "s/^    //p" >/run/fyd7-agent.yaml
grep -q "^cni-conflist: /etc/cni/net.d/05-ferry.conflist" /run/fyd7-agent.yaml || fail "agent.yaml not extracted"
mkdir -p /run/ferry/$node/endpoints /var/lib/cni/networks/ferry /sys/fs/bpf/ferry/$node
echo "{}" >/run/ferry/$node/endpoints/c1-eth0.json
echo ebpf >/run/ferry/$node/datapath
echo "{}" >/etc/cni/net.d/05-ferry.conflist
echo c1 >/var/lib/cni/networks/ferry/10.244.1.2
echo map >/sys/fs/bpf/ferry/$node/ferry_ct_v2

sh "$src/deploy/ferry-node.sh" cleanup --config /run/fyd7-agent.yaml --node $node
# Idempotent: a second run finds nothing to do and succeeds.
sh "$src/deploy/ferry-node.sh" cleanup --config /run/fyd7-agent.yaml --node $node >/dev/null
rm /run/fyd7-agent.yaml
left=$(find /opt /etc/cni /var/lib /run /sys/fs/bpf | sort)
[ "$left" = "$others" ] || { echo "expected only:"; echo "$others"; echo "found:"; echo "$left"; fail "cleanup left or removed the wrong files"; }
echo "cleanup: only the other owners files are left"
'
