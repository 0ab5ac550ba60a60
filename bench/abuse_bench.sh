#!/usr/bin/env bash
# Hostile clients against one real gateway (issue 12), loopback only, bounded in count and time:
# RSS growth for CONNECTIONS connections each holding a pre-login partial frame (declaring
# DECLARED bytes, default max_token_bytes+2, then 64 KiB), the gateway's CPU during DURATION seconds of a
# JOIN/LEAVE flood from one session, and from a flooder that logs in again after every flood
# close, with limits.flood_penalty 0s (off) and 30s.
# Usage: bench/abuse_bench.sh [build-dir]
# Env: GATEWAY_BIN (another build's imgate-gateway; default build-dir/src/imgate-gateway),
#      DECLARED (8194), CONNECTIONS (1000), DURATION (5, seconds per flood), NO_PENALTY_KEY=1 for a gateway that
#      predates limits.flood_penalty.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
gateway_bin=${GATEWAY_BIN:-$root/$build/src/imgate-gateway}
[ -x "$gateway_bin" ] || { echo "no gateway binary $gateway_bin: build first" >&2; exit 1; }
ulimit -n "$(ulimit -Hn)"
. "$root/bench/lib.sh"
prog="$root/$build/bench/abuse_bench"
bench_compile_libs "$root/bench/abuse_bench.cpp" "$prog" "$root/$build/src/libimgate_common.a"
args=(--gateway-bin "$gateway_bin" --declared "${DECLARED:-8194}"
      --connections "${CONNECTIONS:-1000}" --seconds "${DURATION:-5}")
[ "${NO_PENALTY_KEY:-0}" = 1 ] && args+=(--no-penalty-key)
echo "== hostile clients: gateway $gateway_bin; load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$prog" "${args[@]}"
echo "== load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
