#!/bin/bash
# deploy/Dockerfile checked without Docker:
#  - every package it installs exists in apt (apt-cache show), for Debian 12 like its images;
#  - the build stage installs every package scripts/setup.sh installs for building;
#  - the binaries come from `cmake --install` (into a temp DESTDIR) or files the Dockerfile
#    installs, and cover what the DaemonSets run: ferry-node, the ferry-agent it execs, the
#    plugins install-cni copies, ferryctl;
#  - the runtime stage holds the package of every library those binaries link and of every
#    tool the agent and ferry-node run, unless the package is in debian:12-slim (Priority: required).
#   dockerfile_test.sh <source dir> <build dir>      exit 0 pass, 1 fail, 77 skip
set -euo pipefail
src=$1 build=$2
dockerfile=$src/deploy/Dockerfile
command -v apt-cache >/dev/null && command -v dpkg >/dev/null || { echo "SKIP: needs apt-cache and dpkg"; exit 77; }
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Packages of an "apt-get install" block between "# <name>" and "# end <name>".
block_packages() {
  sed -n "/^# $1/,/^# end $1/p" "$dockerfile" | tr '\\\n' '  ' |
    sed 's/.*--no-install-recommends//; s/&&.*//' | tr -s ' ' '\n' | sed '/^$/d' | sort -u
}
build_pkgs=$(block_packages build-packages)
runtime_pkgs=$(block_packages runtime-packages)
[ -n "$build_pkgs" ] && [ -n "$runtime_pkgs" ] || { echo "FAIL: package blocks not found in $dockerfile"; exit 1; }

# Priority of every package apt knows among those asked about (one apt-cache call per batch).
declare -A priority
apt_lookup() {
  local name="" line
  while IFS= read -r line; do
    case "$line" in
      "Package: "*) name=${line#Package: } ;;
      "Priority: "*) [ -n "$name" ] && priority[$name]=${line#Priority: } ;;
    esac
  done < <(apt-cache show --no-all-versions "$@" 2>/dev/null || true)
}
apt_lookup $build_pkgs $runtime_pkgs
for p in $build_pkgs $runtime_pkgs; do
  [ -n "${priority[$p]:-}" ] || fail "package $p is not in apt"
done
echo "apt: $(echo $build_pkgs | wc -w) build and $(echo $runtime_pkgs | wc -w) runtime packages exist"

setup_build=$(sed -n '/^  # build$/,/^  # run time$/p' "$src/scripts/setup.sh" | sed 's/#.*//' | tr -s ' ' '\n' | sed '/^$/d')
[ -n "$setup_build" ] || fail "no '# build' section found in scripts/setup.sh"
for p in $setup_build; do
  grep -qx "$p" <<<"$build_pkgs" || fail "scripts/setup.sh builds with $p; the build stage does not install it"
done

# In debian:12-slim already: the Priority: required packages (the image's minbase).
in_runtime() {
  grep -qx "$1" <<<"$runtime_pkgs" && return 0
  [ -n "${priority[$1]:-}" ] || apt_lookup "$1"
  [ "${priority[$1]:-}" = required ]
}
# The Debian package holding a file (usrmerge: /lib and /usr/lib name the same files).
package_of() {
  local f=$1 real
  real=$(readlink -f "$f")
  for cand in "$f" "$real" "/usr${real#/usr}" "${real#/usr}"; do
    dpkg -S "$cand" 2>/dev/null | head -n1 | sed 's/:.*//; s/, .*//' && return 0
  done
  return 1
}

# What `cmake --install` produces, at the Dockerfile's prefix.
cni_dir=$(sed -n 's/.*-DFERRY_CNI_BIN_DIR=\([^ ]*\).*/\1/p' "$dockerfile")
default_from=$(sed -n 's/^  from=\([^ ]*\) .*/\1/p' "$src/deploy/ferry-node.sh")
[ -n "$cni_dir" ] && [ "$cni_dir" = "$default_from" ] ||
  fail "the image stages plugins in '$cni_dir', ferry-node install-cni reads '$default_from'"
stage=$(mktemp -d /tmp/fyd7-stage.XXXXXX)
trap 'rm -rf "$stage"' EXIT
if ! DESTDIR=$stage cmake --install "$build" --prefix /usr/local >"$stage.log" 2>&1; then
  cat "$stage.log"; rm -f "$stage.log"
  echo "FAIL: cmake --install $build failed (build every target first: cmake --build $build)"; exit 1
fi
rm -f "$stage.log"
build_cni_dir=$(sed -n 's/^FERRY_CNI_BIN_DIR:[A-Z]*=//p' "$build/CMakeCache.txt")
produced=$(cd "$stage" && find . -type f -perm -u+x | sed 's|^\.||')
# Files the Dockerfile installs itself: "install ... <from> /staging<to>".
copied=$(sed -n 's|.*install -D -m 0755 \([^ ]*\) /staging\([^ ]*\).*|\1 \2|p' "$dockerfile")

need() {  # need <path in the image>: produced by cmake --install or installed by the Dockerfile
  local path=$1 rel
  rel=$path
  [[ $path == "$cni_dir"/* ]] && rel=$build_cni_dir/${path#"$cni_dir"/}
  grep -qx "$rel" <<<"$produced" && return 0
  grep -q " $path\$" <<<"$copied" && return 0
  fail "$path is in neither the cmake install nor the Dockerfile's install lines"
}
need /usr/local/bin/ferry-agent  # ferry-node agent execs it
need /usr/local/bin/ferryctl
for p in $(sed -n 's/^PLUGINS="\(.*\)"/\1/p' "$src/deploy/ferry-node.sh"); do need "$cni_dir/$p"; done
while read -r from to; do
  [ -e "$src/$from" ] || [ -e "$build/${from#build/}" ] || fail "the Dockerfile installs $from, which the build does not make"
done <<<"$copied"
# The first word of every container command in the manifests.
for cmd in $(sed -n 's/^ *command: \[\([^,]*\),.*/\1/p' "$src"/deploy/ferry*.yaml | sort -u); do
  if grep -q " /usr/local/bin/$cmd\$" <<<"$copied" || grep -qx "/usr/local/bin/$cmd" <<<"$produced"; then continue; fi
  pkg=$(package_of "$(command -v "$cmd" || echo "$cmd")") || pkg=""
  [ -n "$pkg" ] && in_runtime "$pkg" || fail "container command $cmd is not in the image"
done

# Libraries the installed binaries link directly (DT_NEEDED; apt brings their own dependencies),
# resolved to files by ldd. Statically linked plugins need none.
bins=$(cd "$stage" && find . -type f -perm -u+x | sed "s|^|$stage/|"; echo "$build/bin/ferryctl")
libs=$(for b in $bins; do
  needed=$(objdump -p "$b" 2>/dev/null | awk '$1 == "NEEDED" {print $2}')
  ldd "$b" 2>/dev/null | awk -v needed=" $(echo $needed) " 'index(needed, " " $1 " ") && /=> \// {print $3}' || true
done | sort -u)
for lib in $libs; do
  pkg=$(package_of "$lib") || { fail "no package holds $lib"; continue; }
  in_runtime "$pkg" || fail "$lib ($pkg) is linked but the runtime stage does not install $pkg"
done
echo "libraries: $(echo $libs | wc -w) linked, each from a runtime package"

# Tools the agent (overlay, iptables backend) and ferry-node run.
for tool in ip tc iptables-save iptables-restore ip6tables-save ip6tables-restore iptables-legacy-save \
            iptables-nft-save ipset conntrack modprobe mount update-alternatives sed awk grep sleep cp mv; do
  path=$(command -v "$tool") || { fail "$tool is not installed here to look up its package"; continue; }
  pkg=$(package_of "$path") || { fail "no package holds $path"; continue; }
  in_runtime "$pkg" || fail "$tool ($pkg) is run on the node but the runtime stage does not install $pkg"
done

((failures == 0)) || { echo "$failures failures"; exit 1; }
echo "PASS"
