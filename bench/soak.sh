#!/usr/bin/env bash
# Cross-node delivery soak (issue 11 item 8): "cross-node delivery that never lies". Loopback only,
# bounded in time and rate. Starts three gateways (gw1..gw3) of a private fleet on free ports,
# runs bench/soak.cpp against them (mixed 1:1, a one-way stream gw3 -> gw1, rooms, presence and
# room churn, acks, heartbeats), which judges every SEND against the sessions it holds and
# compares the gateways' RPC counters before and after; prints a summary and a PASS/FAIL verdict
# and exits non-zero on FAIL. Every gateway is stopped on exit or interruption (Ctrl-C reports
# what was seen so far, and so does SIGTERM to this script).
# Usage: [env] bench/soak.sh [soak options, e.g. --ids ascii|realistic --users 200 --rate 20]
# Env: DURATION (10m), BUILD_DIR (build); the fleet's cluster_rpc timers PING (ping_interval),
#      PEER_TIMEOUT, CALL_TIMEOUT, CONNECT_TIMEOUT, BACKOFF_MIN, BACKOFF_MAX (unset: product
#      defaults 5s/15s/2s/1s/100ms/5s); HEARTBEAT (5s) and IDLE_TIMEOUT (15s) for client sessions,
#      short so that heartbeats matter within a short run; WORKERS (1 thread per gateway);
#      KEEP_LOGS=DIR copies the gateways' logs there.
# Example (shows the liveness bug within seconds): PING=200ms PEER_TIMEOUT=600ms DURATION=30s \
#      bench/soak.sh --ids ascii
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-build}
bin="$root/$build/src"
duration=${DURATION:-10m}
[ -x "$bin/imgate-gateway" ] || { echo "build imgate-gateway first ($bin)" >&2; exit 1; }
. "$root/bench/lib.sh"
# Compiled into the build dir (not $work) so that repeated runs don't pay for it again.
bench_compile_libs "$root/bench/soak.cpp" "$root/$build/bench/soak" \
    "$bin/libimgate_client.a" "$bin/libimgate_common.a"
bench_init soak
keep_logs() {
    if [ -n "${KEEP_LOGS:-}" ] && [ -n "${work:-}" ]; then
        mkdir -p "$KEEP_LOGS" && cp "$work"/gw*.log "$KEEP_LOGS"/ 2>/dev/null || true
    fi
    bench_cleanup
}
trap keep_logs EXIT

bench_three_gateway_fleet
# Only the timers that were asked for are written: the rest keep the product's defaults.
rpc="" shown=""
for kv in "ping_interval=${PING:-}" "peer_timeout=${PEER_TIMEOUT:-}" \
          "call_timeout=${CALL_TIMEOUT:-}" "connect_timeout=${CONNECT_TIMEOUT:-}" \
          "backoff_min=${BACKOFF_MIN:-}" "backoff_max=${BACKOFF_MAX:-}"; do
    [ -n "${kv#*=}" ] && rpc+="  ${kv%%=*}: ${kv#*=}"$'\n' && shown+=" $kv"
done
cat >"$work/gateway.yaml" <<YAML
fleet: fleet.yaml
workers: ${WORKERS:-1}
auth:
  secret_files: [token.secret]
admin:
  token_file: admin.token
limits:
  max_connections: 20000
timeouts:
  heartbeat_interval: ${HEARTBEAT:-5s}
  idle_timeout: ${IDLE_TIMEOUT:-15s}
log:
  level: warn
YAML
[ -n "$rpc" ] && printf 'cluster_rpc:\n%s' "$rpc" >>"$work/gateway.yaml"

clients=() admins=()
# In their own sessions: a Ctrl-C on the terminal reaches only this script and the soak (which
# then drains and reports), not the gateways it is measuring; the EXIT trap stops them.
for id in gw1 gw2 gw3; do bench_start_gateway "$id" setsid; done
for id in gw1 gw2 gw3; do
    bench_wait_ready "$id"
    clients+=("$(ready_field "$id" client)")
    admins+=("$(ready_field "$id" admin)")
done
echo "== soak: 3 gateways (${clients[*]}), duration $duration, cluster_rpc:${shown:- product defaults}"
"$root/$build/bench/soak" --clients "$(IFS=,; echo "${clients[*]}")" \
    --admins "$(IFS=,; echo "${admins[*]}")" --secret-file "$work/token.secret" \
    --duration "$duration" --call-timeout "${CALL_TIMEOUT:-2s}" "$@" &
soak_pid=$!
pids+=("$soak_pid")
# Run in the background so that INT/TERM to this script are handled at once: the soak is told to
# end its traffic, drain and report; a signal interrupts `wait`, so wait again for its status.
trap 'kill -INT "$soak_pid" 2>/dev/null || true' INT TERM
rc=0
wait "$soak_pid" || rc=$?
while kill -0 "$soak_pid" 2>/dev/null; do
    rc=0
    wait "$soak_pid" || rc=$?
done
# What the gateways said about their links (first lines of each kind), to tell causes apart.
for id in gw1 gw2 gw3; do
    n=$(grep -c -i "cluster rpc" "$work/$id.log" || true)
    [ "$n" -gt 0 ] || continue
    echo "-- $id log: $n cluster rpc lines, e.g.:"
    grep -i "cluster rpc" "$work/$id.log" | sed -E 's/^\[[^]]*\] //' | \
        awk '{k=$0; gsub(/[0-9]+/, "N", k); if (!(k in seen)) {seen[k]=1; print "   " $0}}' | head -4
done
exit "$rc"
