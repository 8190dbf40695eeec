#!/usr/bin/env bash
# Builds ferry and runs every test through ctest: unit tests, root-only integration tests in
# real network namespaces (interop with the reference plugins, podman), and bounded fuzz runs.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

# 1. libFuzzer targets need clang: a separate build tree.
CC=clang CXX=clang++ cmake -S . -B build-fuzz -DFERRY_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$jobs"

# 2. Everything else with the default compiler (g++).
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFERRY_FUZZ_BIN_DIR="$PWD/build-fuzz/bin" >/dev/null
cmake --build build -j "$jobs"

ctest --test-dir build --output-on-failure --timeout 600 -j "$jobs"
