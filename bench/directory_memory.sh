#!/usr/bin/env bash
# Bytes per directory entry and RSS before/after a peer's entries are dropped (issue 12 item 3).
# Usage: bench/directory_memory.sh [build-dir]   Env: ENTRIES (default 500000)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
. "$root/bench/lib.sh"
out="$root/$build/bench/directory_memory"
bench_compile_libs "$root/bench/directory_memory.cpp" "$out" \
    "$root/$build/src/libimgate_gateway.a" "$root/$build/src/libimgate_common.a"
"$out" "${ENTRIES:-500000}"
