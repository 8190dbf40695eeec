#!/usr/bin/env bash
# Builds the ferry image, loads it into a kind cluster, applies deploy/ferry.yaml and waits
# until the agent runs on every node. Needs docker, kind and kubectl.
#
#   deploy/install.sh [--cluster NAME] [--create] [--kube-proxy] [--image TAG] [--no-build]
#
#   --cluster NAME     kind cluster (default ferry)
#   --create           create the cluster first with deploy/kind-config-no-kube-proxy.yaml: ferry
#                      replaces kube-proxy, and the agent reaches the API server at
#                      <cluster>-control-plane:6443 (the ClusterIP needs ferry itself)
#   --kube-proxy       keep kube-proxy: create with deploy/kind-config.yaml and run the agent with
#                      services off (kube-proxy translates Services); for an existing cluster
#                      that has kube-proxy
#   --no-kube-proxy    the default; accepted for older scripts
#   --image TAG        image tag (default ferry:dev)
#   --no-build         use an image that is already built
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cluster=ferry image=ferry:dev create=0 kube_proxy=0 build=1
while (($#)); do
  case "$1" in
    --cluster) cluster="$2"; shift 2 ;;
    --image) image="$2"; shift 2 ;;
    --create) create=1; shift ;;
    --kube-proxy) kube_proxy=1; shift ;;
    --no-kube-proxy) kube_proxy=0; shift ;;
    --no-build) build=0; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "install.sh: $tool is not installed" >&2; exit 1; }
done
ctx="kind-$cluster"

if ((create)); then
  config="$here/kind-config-no-kube-proxy.yaml"
  ((kube_proxy)) && config="$here/kind-config.yaml"
  kind create cluster --name "$cluster" --config "$config"
fi
if ((build)); then
  docker build -f "$here/Dockerfile" -t "$image" "$root"
fi
kind load docker-image "$image" --name "$cluster"

# The manifests name ferry:dev; another tag is substituted on the way to kubectl, and beside
# kube-proxy the agent leaves Services to it.
services=on
((kube_proxy)) && services=off
sed -e "s|image: ferry:dev|image: $image|" -e "s|^    services: \"on\"|    services: \"$services\"|" "$here/ferry.yaml" |
  kubectl --context "$ctx" apply -f -
if ! ((kube_proxy)); then
  kubectl --context "$ctx" -n ferry-system set env daemonset/ferry-agent \
    KUBERNETES_SERVICE_HOST="$cluster-control-plane" KUBERNETES_SERVICE_PORT=6443
fi
kubectl --context "$ctx" -n ferry-system rollout status daemonset/ferry-agent --timeout=300s
# Nodes turn Ready once the agent has written their conflist.
kubectl --context "$ctx" wait --for=condition=Ready nodes --all --timeout=300s
kubectl --context "$ctx" -n ferry-system get pods -o wide
