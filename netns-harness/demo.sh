#!/usr/bin/env bash
# The ferry demo: build the plugins, then wire two pods (network namespaces) onto one bridge
# with ferry-bridge + ferry-host-local, driven by ferry-cnitool as a container runtime would,
# and show them reaching each other and their gateway. Everything is torn down at the end,
# also when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

build=${FERRY_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j "$(nproc)" --target ferry-bridge ferry-host-local ferry-loopback \
  ferry-portmap ferry-cnitool >/dev/null

work=$(mktemp -d /tmp/ferry-demo.XXXXXX)
export CNI_PATH="$PWD/$build/bin"
export NETCONFPATH="$work/net.d"
cnitool="$PWD/$build/bin/ferry-cnitool"
cache="$work/cache"
pods=(ferry-demo-a ferry-demo-b)

cleanup() {
  set +e
  for pod in "${pods[@]}"; do
    [ -e "/run/netns/$pod" ] && "$cnitool" del demo "/run/netns/$pod" --container-id "$pod" \
      --cache-dir "$cache" >/dev/null 2>&1
    ip netns del "$pod" 2>/dev/null
  done
  ip link del ferrydemo0 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$NETCONFPATH"
cat > "$NETCONFPATH/10-demo.conflist" <<JSON
{
  "cniVersion": "1.1.0",
  "name": "demo",
  "plugins": [
    {"type": "ferry-bridge", "bridge": "ferrydemo0", "isGateway": true, "ipMasq": true,
     "ipam": {"type": "ferry-host-local", "dataDir": "$work/ipam",
              "ranges": [[{"subnet": "10.244.7.0/24"}], [{"subnet": "fd00:10:244:7::/64"}]],
              "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
    {"type": "ferry-portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
echo "== conflist"
cat "$NETCONFPATH/10-demo.conflist"

declare -A ip4 ip6
for pod in "${pods[@]}"; do
  ip netns add "$pod"
  echo "== ADD $pod"
  result=$("$cnitool" add demo "/run/netns/$pod" --container-id "$pod" --cache-dir "$cache")
  echo "$result"
  ip4[$pod]=$(jq -r '.ips[] | select(.address | contains(".")) | .address | split("/")[0]' <<<"$result")
  ip6[$pod]=$(jq -r '.ips[] | select(.address | contains(":")) | .address | split("/")[0]' <<<"$result")
done

a=${pods[0]} b=${pods[1]}
echo "== $a (${ip4[$a]}, ${ip6[$a]}) -> $b (${ip4[$b]}, ${ip6[$b]})"
ip netns exec "$a" ping -c 3 -i 0.2 -W 1 "${ip4[$b]}"
ip netns exec "$a" ping -6 -c 3 -i 0.2 -W 1 "${ip6[$b]}"
echo "== $b -> gateway 10.244.7.1"
ip netns exec "$b" ping -c 2 -i 0.2 -W 1 10.244.7.1

echo "== CHECK"
for pod in "${pods[@]}"; do
  "$cnitool" check demo "/run/netns/$pod" --container-id "$pod" --cache-dir "$cache" && echo "$pod: ok"
done
echo "== DEL"
for pod in "${pods[@]}"; do
  "$cnitool" del demo "/run/netns/$pod" --container-id "$pod" --cache-dir "$cache" && echo "$pod: deleted"
done
echo "== demo finished: two pods reached each other over ferry-bridge"
