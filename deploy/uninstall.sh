#!/usr/bin/env bash
# Removes ferry from a kind (or any) cluster and leaves every node clean: stops the agents,
# runs `ferry-node cleanup` on every node (deploy/ferry-cleanup.yaml), then deletes the rest.
# Pods started on ferry's network lose their network; delete them first.
#
#   deploy/uninstall.sh [--cluster NAME] [--image TAG]      (kubectl context kind-NAME)
#   deploy/uninstall.sh --context CONTEXT [--image TAG]     (any cluster)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
ctx=kind-ferry image=ferry:dev
while (($#)); do
  case "$1" in
    --cluster) ctx="kind-$2"; shift 2 ;;
    --context) ctx="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "uninstall.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
k() { kubectl --context "$ctx" "$@"; }

# 1. The agents go first (they would recreate what the cleanup removes); wait for their pods.
k -n ferry-system delete daemonset ferry-agent --cascade=foreground --ignore-not-found --wait=true
# 2. Clean every node; the cleanup pods turn Ready once their init container succeeded.
sed "s|image: ferry:dev|image: $image|" "$here/ferry-cleanup.yaml" | k apply -f -
k -n ferry-system rollout status daemonset/ferry-cleanup --timeout=300s
# 3. Everything else.
k delete -f "$here/ferry-cleanup.yaml" --ignore-not-found --wait=true
k delete -f "$here/ferry.yaml" --ignore-not-found --wait=true
echo "uninstall.sh: ferry removed; nodes have no CNI until another one is installed"
