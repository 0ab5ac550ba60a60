#!/usr/bin/env bash
# Idle-session memory of one gateway (issue 3 item 11, issue 13 item 2), loopback only, bounded
# in count and time. For each transport of TRANSPORTS, starts one gateway (single-node fleet,
# free ports, a throw-away certificate) and opens SESSIONS authenticated idle sessions from
# several loopback source addresses; reports the gateway's RSS delta / sessions and its CPU per
# session set up (TLS/WebSocket handshake + LOGIN).
# Usage: bench/gateway_idle_bench.sh [build-dir]
# Env: SESSIONS (default 15000), WORKERS (1), TRANSPORTS ("tcp" ; e.g. "tcp tls ws wss"),
#      MARK (SESSIONS/3; 0: off): the RSS is also read at MARK sessions, and the marginal bytes
#      per session between MARK and SESSIONS printed (fixed costs drop out)
# The fd limit of this machine's hard ulimit caps SESSIONS (each side needs one fd per session).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
bin="$root/$build/src"
sessions=${SESSIONS:-15000}
workers=${WORKERS:-1}
mark=${MARK:-$((sessions / 3))}
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
  login_burst: 100000
log:
  level: warn
$(bench_tls_yaml)
YAML
for transport in ${TRANSPORTS:-tcp}; do
    rm -f "$work/gw1.ready"
    # shellcheck disable=SC2086 # GW_WRAPPER is a command line
    bench_start_gateway gw1 ${GW_WRAPPER:-}
    wrapper_pid=$started_pid
    bench_wait_ready gw1
    # The gateway's own pid (under a GW_WRAPPER such as heaptrack it is not the started one).
    gw_pid=$(ready_field gw1 pid)
    addr=$(ready_field gw1 "$transport")
    echo "== $sessions idle authenticated $transport sessions on one gateway (workers $workers)"
    "$client" --secret-file "$work/token.secret" --gateway "$addr" --pid "$gw_pid" \
        --sessions "$sessions" --concurrency 200 --sources 8 --max-seconds 120 --settle-seconds "${SETTLE:-7}" --mark "$mark" \
        --transport "$transport" --ca "$work/certs/ca.crt" || true
    kill -TERM "$gw_pid" || { echo "the gateway died:"; tail -20 "$work/gw1.log"; }
    wait "$wrapper_pid" 2>/dev/null || true
done
