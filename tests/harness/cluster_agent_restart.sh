#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# A TCP stream across nodes survives agent restarts (graceful and kill -9) and a restart does
# not break reachability.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh" fyh4 "$@"

cluster up --nodes 2 --datapath ebpf --bin "$T_BIN"
cluster add-pod 1 default a
cluster add-pod 2 default b
dst=$(cluster ip default/b)

step "stream a -> b while both agents restart"
out=$(mktemp)
cluster exec default/a -- "$T_BIN/ferry-probe" stream --to "$dst" --port 5001 --duration 4 >"$out" &
stream_pid=$!
sleep 1
cluster restart-agent 1
cluster restart-agent 2 --kill9
status=0
wait "$stream_pid" || status=$?
cat "$out"
((status == 0)) || fail "the stream broke during the agent restarts: $(cat "$out")"
jq -e '.bytes > 0 and (.broken | not)' "$out" >/dev/null || fail "stream result: $(cat "$out")"
rm -f "$out"
assert_full_matrix 2 2
