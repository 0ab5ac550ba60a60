#!/usr/bin/env bash
# Single-gateway CPU benchmark (issue 3), loopback only, bounded in count and time.
# Starts ONE gateway (single-node fleet, free ports) and drives it with the bench client of
# bench/cross_node_bench.cpp, senders and receivers all on that gateway:
#   1. 1:1: 4 senders -> RECEIVERS receivers. Figure: gateway CPU µs per delivered message.
#   2. room: 1 sender -> one room of ROOM_MEMBERS members. Figure: gateway CPU µs per room copy.
# CPU is utime+stime of the gateway process from /proc/PID/stat over the measured phase.
# Usage: bench/gateway_bench.sh [build-dir]
# Env: MESSAGES (default 200000), ROOM_MESSAGES (2000), RECEIVERS (100), ROOM_MEMBERS (1000),
#      WINDOW (200), ROOM_WINDOW (20), PAYLOAD (64), WORKERS (gateway event-loop threads, default 1),
#      MODES ("user room"), TRANSPORT (tcp or tls: the clients' transport, default tcp), GW_WRAPPER (e.g. "perf record -g -o /tmp/gw.perf --" to profile;
#      the CPU figures are then meaningless)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
bin="$root/$build/src"
messages=${MESSAGES:-200000}
room_messages=${ROOM_MESSAGES:-2000}
receivers=${RECEIVERS:-100}
room_members=${ROOM_MEMBERS:-1000}
window=${WINDOW:-200}
payload=${PAYLOAD:-64}
workers=${WORKERS:-1}

[ -x "$bin/imgate-gateway" ] || { echo "build imgate-gateway first ($bin)" >&2; exit 1; }
. "$root/bench/lib.sh"
bench_init gw
client="$root/$build/bench/gateway_bench_client"
bench_compile "$root/bench/cross_node_bench.cpp" "$client" "$root/$build/src/libimgate_common.a"

bench_single_gateway_fleet
cat > "$work/gateway.yaml" <<YAML
fleet: fleet.yaml
workers: $workers
auth:
  secret_files: [token.secret]
limits:
  max_connections: 20000
  send_rate: 10000000
  send_burst: 10000000
  max_outbound_bytes: 16777216
log:
  level: warn
$(bench_tls_yaml)
YAML
transport=${TRANSPORT:-tcp}

# shellcheck disable=SC2086 # GW_WRAPPER is a command line
bench_start_gateway gw1 ${GW_WRAPPER:-}
gw_pid=$started_pid
bench_wait_ready gw1
addr=$(ready_field gw1 "$transport")
admin=$(ready_field gw1 admin)
# Frames per gathered socket write so far (the batching the writer achieved).
# utime and stime of the gateway in clock ticks.
cpu_ticks() { awk '{print $14, $15}' "/proc/$gw_pid/stat"; }
# Prints user/system CPU µs per delivered copy between two cpu_ticks samples.
split_cpu() {
    local u0 s0 u1 s1 copies hz
    read -r u0 s0 <<<"$1"; read -r u1 s1 <<<"$2"; copies=$3; hz=$(getconf CLK_TCK)
    python3 -c "import sys; u,s,c,h=map(float,sys.argv[1:]); print(f'user_us_per_copy={u*1e6/h/c:.3f} system_us_per_copy={s*1e6/h/c:.3f}')" \
        "$((u1 - u0))" "$((s1 - s0))" "$copies" "$hz"
}
batching() { curl -s "http://$admin/metrics" | grep -E '^imgate_gateway_(socket_writes|frames_written)_total' | tr '\n' ' '; echo; }

modes=${MODES:-user room}
if [[ " $modes " == *" user "* ]]; then
echo "== 1:1 on one gateway over $transport: $messages messages, 4 senders, $receivers receivers, window $window, payload $payload B, workers $workers"
t0=$(cpu_ticks)
"$client" --secret-file "$work/token.secret" --mode user --send "$addr" --recv "$addr" \
    --pids "$gw_pid" --messages "$messages" --receivers "$receivers" --senders 4 \
    --window "$window" --payload-bytes "$payload" --max-seconds 60 \
    --transport "$transport" --ca "$work/certs/ca.crt" | tee "$work/user.out"
split_cpu "$t0" "$(cpu_ticks)" "$(grep -o 'delivered_copies=[0-9]*' "$work/user.out" | cut -d= -f2)"
batching
fi
if [[ " $modes " == *" room "* ]]; then
echo "== room on one gateway: $room_messages messages to one room of $room_members members, window ${ROOM_WINDOW:-20}"
t0=$(cpu_ticks)
"$client" --secret-file "$work/token.secret" --mode room --send "$addr" --recv "$addr" \
    --pids "$gw_pid" --messages "$room_messages" --receivers "$room_members" --senders 1 \
    --window "${ROOM_WINDOW:-20}" --payload-bytes "$payload" --max-seconds 60 \
    --transport "$transport" --ca "$work/certs/ca.crt" | tee "$work/room.out"
split_cpu "$t0" "$(cpu_ticks)" "$(grep -o 'delivered_copies=[0-9]*' "$work/room.out" | cut -d= -f2)"
batching
fi
