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
work=$(mktemp -d /tmp/imgate-bench-idle.XXXXXX)
gw_pid=
cleanup() {
    [ -n "$gw_pid" ] && kill -TERM "$gw_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
. "$root/bench/lib.sh"
client="$root/$build/bench/gateway_idle_bench"
bench_compile "$root/bench/gateway_idle_bench.cpp" "$client" "$root/$build/src/libimgate_common.a"
head -c 32 /dev/urandom | base64 > "$work/token.secret"
cat > "$work/fleet.yaml" <<YAML
gateways:
  - id: gw1
    client: 127.0.0.1:0
    admin: 127.0.0.1:0
    rpc: 127.0.0.1:0
YAML
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
"$bin/imgate-gateway" --config "$work/gateway.yaml" --id gw1 --ready-file "$work/gw1.ready" \
    >"$work/gw1.log" 2>&1 &
gw_pid=$!
for _ in $(seq 1 200); do [ -s "$work/gw1.ready" ] && break; sleep 0.05; done
[ -s "$work/gw1.ready" ] || { echo "gateway did not start:"; cat "$work/gw1.log"; exit 1; }
addr=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["client"])' "$work/gw1.ready")
echo "== $sessions idle authenticated sessions on one gateway (workers $workers)"
"$client" --secret-file "$work/token.secret" --gateway "$addr" --pid "$gw_pid" \
    --sessions "$sessions" --concurrency 200 --sources 8 --max-seconds 120
