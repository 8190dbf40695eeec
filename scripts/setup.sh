#!/usr/bin/env bash
# Installs every Debian package ferry needs to build, test and run. Idempotent.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(
  # build
  build-essential cmake pkg-config clang llvm lld
  libnl-3-dev libnl-route-3-dev nlohmann-json3-dev libcli11-dev libyaml-cpp-dev
  libspdlog-dev libfmt-dev libssl-dev libbpf-dev bpftool libelf-dev zlib1g-dev
  libnetfilter-conntrack-dev  # ferry-portmap: delete stale UDP conntrack entries
  libgtest-dev libgmock-dev libbenchmark-dev
  libcpp-httplib-dev libcurl4-openssl-dev  # agent: metrics/health HTTP, Kubernetes API
  # run time
  iproute2 iptables ipset kmod procps nftables
  # tests, interop and benchmarks
  containernetworking-plugins iputils-ping netcat-openbsd tcpdump conntrack
  podman runc busybox-static uidmap hyperfine python3 jq iperf3 util-linux curl
  openssl  # tests/k8s: the fake API server's test CA and certificate
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#packages[@]} packages present"
fi
