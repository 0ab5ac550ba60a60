#!/usr/bin/env bash
# Idle-session memory of one gateway (issue 3 item 11), loopback only, bounded in count and time.
# Starts one gateway (single-node fleet, free ports) and opens SESSIONS authenticated idle
# sessions from several loopback source addresses; reports the gateway's RSS delta / sessions.
# Usage: bench/gateway_idle_bench.sh [build-dir]   Env: SESSIONS (default 15000), WORKERS (1)
# The fd limit of this machine's hard ulimit caps SESSIONS (each side needs one fd per session).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
bin="$root/$build/src"
sessions=${SESSIONS:-15000}
workers=${WORKERS:-1}
ulimit -n "$(ulimit -Hn)"
. "$root/bench/lib.sh"
bench_init idle
client="$root/$build/bench/gateway_idle_bench"
bench_compile "$root/bench/gateway_idle_bench.cpp" "$client" "$root/$build/src/libimgate_common.a"
bench_single_gateway_fleet
cat > "$work/gateway.yaml" <<YAML
fleet: fleet.yaml
workers: $workers
auth:
  secret_files: [token.secret]
limits:
  max_connections: 100000
log:
  level: warn
YAML
bench_start_gateway gw1
gw_pid=$started_pid
bench_wait_ready gw1
addr=$(ready_field gw1 client)
echo "== $sessions idle authenticated sessions on one gateway (workers $workers)"
"$client" --secret-file "$work/token.secret" --gateway "$addr" --pid "$gw_pid" \
    --sessions "$sessions" --concurrency 200 --sources 8 --max-seconds 120
