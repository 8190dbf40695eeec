#!/usr/bin/env bash
# `podman run --rm IMAGE true` wall time with ferry's plugins and with the reference plugins,
# same podman, same image, interleaved, in one run. See bench/README.md.
#
#   bench/podman_run.sh [FERRY_BIN_DIR] [RUNS]     (defaults: <repo>/build/bin, 20)
#
# Both networks chain bridge + host-local + portmap (cniVersion 1.0.0); they differ only in
# "type" (ferry-* or the reference's), bridge name and subnet. A third series with
# --network none shows what podman costs without any CNI plugin.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/podman/podman_lib.sh
source "$here/../tests/podman/podman_lib.sh"

ferry_dir=$(realpath "${1:-$here/../build/bin}")
runs=${2:-20}
reference_dir=/usr/lib/cni
image=localhost/h5busybox

((EUID == 0)) || { echo "podman_run: needs root" >&2; exit 1; }
command -v podman >/dev/null || { echo "podman_run: podman is not installed" >&2; exit 1; }
for p in "$ferry_dir"/ferry-{bridge,host-local,portmap} "$reference_dir"/{bridge,host-local,portmap}; do
  [[ -x $p ]] || { echo "podman_run: $p is missing" >&2; exit 1; }
done

PM_NETNS=h5pmb-$$
PM_ROOT=$(mktemp -d /tmp/h5podbench.XXXXXX)
trap pm_teardown EXIT
trap 'exit 130' INT TERM

pm_setup "$ferry_dir" "$reference_dir"
pm_build_image "$image"
pm_write_conflist "$PM_ROOT/net.d/h5pf.conflist" h5pf h5bpf 10.254.1.0/24 ferry- portmap
pm_write_conflist "$PM_ROOT/net.d/h5pr.conflist" h5pr h5bpr 10.254.2.0/24 "" portmap

declare -A samples=()
time_run() { # time_run NETWORK: one `podman run --rm`, appends its wall ms to samples[NETWORK]
  local start end
  start=$EPOCHREALTIME
  pm run --rm --network "$1" "$image" true
  end=$EPOCHREALTIME
  samples[$1]+="$(python3 -c "print(($end - $start) * 1000)") "
}

echo "podman_run: $runs x 'podman run --rm $image true' per network (+2 warm-up), interleaved"
for net in h5pf h5pr none h5pf h5pr none; do pm run --rm --network "$net" "$image" true; done
order=(h5pf h5pr none)
for ((i = 0; i < runs; i++)); do
  for net in "${order[@]}"; do time_run "$net"; done
  order=("${order[1]}" "${order[2]}" "${order[0]}") # rotate who goes first
done

python3 - "${samples[h5pf]}" "${samples[h5pr]}" "${samples[none]}" <<'EOF'
import math, statistics, sys
series = {name: [float(x) for x in arg.split()] for name, arg in
          zip(("ferry", "reference", "--network none"), sys.argv[1:])}
p95 = lambda v: sorted(v)[max(0, math.ceil(0.95 * len(v)) - 1)]
print(f"{'network':<16} {'median':>9} {'p95':>9}")
for name, v in series.items():
    print(f"{name:<16} {statistics.median(v):>7.1f}ms {p95(v):>7.1f}ms")
f, r, n = (statistics.median(series[k]) for k in ("ferry", "reference", "--network none"))
print(f"ratio ferry/reference (whole podman run): {f / r:.2f}")
if r > n:
    print(f"network share (median minus --network none): ferry {f - n:.1f}ms, reference {r - n:.1f}ms,"
          f" ratio {(f - n) / (r - n):.2f}")
EOF
