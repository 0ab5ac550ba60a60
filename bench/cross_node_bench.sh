#!/usr/bin/env bash
# Cross-node delivery benchmark (issue 4 item 8), loopback only, bounded in count and time.
# Starts three gateways (gw1..gw3) of a private fleet on free ports, then runs
# bench/cross_node_bench.cpp twice:
#   1. 1:1: senders on gw1, receivers on gw2; every message crosses gw1 -> gw2.
#      Figure: CPU µs (utime+stime of gw1 and gw2 from /proc) per delivered message.
#   2. baseline: the same 1:1 load with senders and receivers on one gateway (gw3), to show
#      what crossing gateways adds.
#   3. room: sender on gw1, room members on gw2 and gw3 (none on gw1); one FORWARD per gateway,
#      fanned out locally. Figure: CPU µs of all three gateways per delivered copy.
# Usage: bench/cross_node_bench.sh [build-dir]
# Env: MESSAGES (1:1 count, default 100000), ROOM_MESSAGES (default 2000), RECEIVERS (100),
#      ROOM_MEMBERS (1000), WINDOW (200), ROOM_WINDOW (20), PAYLOAD (64), WORKERS (1 event-loop thread/gateway)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
bin="$root/$build/src"
messages=${MESSAGES:-100000}
room_messages=${ROOM_MESSAGES:-2000}
receivers=${RECEIVERS:-100}
room_members=${ROOM_MEMBERS:-1000}
window=${WINDOW:-200}
payload=${PAYLOAD:-64}
workers=${WORKERS:-1}

[ -x "$bin/imgate-gateway" ] || { echo "build imgate-gateway first ($bin)" >&2; exit 1; }
. "$root/bench/lib.sh"
bench_init xnode
bench_compile "$root/bench/cross_node_bench.cpp" "$work/cross_node_bench" "$root/$build/src/libimgate_common.a"

bench_three_gateway_fleet
cat > "$work/gateway.yaml" <<YAML
fleet: fleet.yaml
workers: $workers
auth:
  secret_files: [token.secret]
admin:
  token_file: admin.token
limits:
  max_connections: 20000
  send_rate: 10000000
  send_burst: 10000000
  max_outbound_bytes: 16777216
log:
  level: warn
YAML

declare -A client_addr admin_addr pid_of
for id in gw1 gw2 gw3; do
    bench_start_gateway "$id"
    pid_of[$id]=$started_pid
done
for id in gw1 gw2 gw3; do
    bench_wait_ready "$id"
    client_addr[$id]=$(ready_field "$id" client)
    admin_addr[$id]=$(ready_field "$id" admin)
done

# Frames written to client sessions and the socket writes that carried them, summed over the
# named gateways' counters: "frames writes".
client_writes() {
    local f=0 w=0 id a b
    for id in "$@"; do
        read -r a b < <(gateway_write_counters "${admin_addr[$id]}")
        f=$((f + a)); w=$((w + b))
    done
    echo "$f $w"
}
# phase GATEWAYS... -- COMMAND...: runs the command and prints the client writes' batching of
# those gateways over it (frames per socket write; the benchmark rules ask for it beside CPU).
phase() {
    local gws=() before after
    while [ "$1" != -- ]; do gws+=("$1"); shift; done
    shift
    before=$(client_writes "${gws[@]}")
    "$@"
    after=$(client_writes "${gws[@]}")
    # shellcheck disable=SC2086 # before and after are "frames writes" pairs
    python3 -c 'import sys; f0,w0,f1,w1=map(int,sys.argv[2:]); print(f"client writes of {sys.argv[1]}: {f1-f0} frames in {w1-w0} socket writes = {(f1-f0)/max(1,w1-w0):.1f} frames per write")' \
        "${gws[*]}" $before $after
}

echo "== 1:1 cross-node: $messages messages, senders on gw1, $receivers receivers on gw2, window $window, payload $payload B, workers $workers"
phase gw1 gw2 -- "$work/cross_node_bench" --secret-file "$work/token.secret" --mode user \
    --send "${client_addr[gw1]}" --recv "${client_addr[gw2]}" \
    --pids "${pid_of[gw1]},${pid_of[gw2]}" --messages "$messages" --receivers "$receivers" \
    --senders 4 --window "$window" --payload-bytes "$payload" --max-seconds 60

echo "== baseline, same gateway 1:1: $messages messages, senders and $receivers receivers on gw3"
phase gw3 -- "$work/cross_node_bench" --secret-file "$work/token.secret" --mode user \
    --send "${client_addr[gw3]}" --recv "${client_addr[gw3]}" \
    --pids "${pid_of[gw3]}" --messages "$messages" --receivers "$receivers" \
    --senders 4 --window "$window" --payload-bytes "$payload" --max-seconds 60

echo "== room fan-out: $room_messages messages to one room of $room_members members on gw2+gw3, sender on gw1"
phase gw1 gw2 gw3 -- "$work/cross_node_bench" --secret-file "$work/token.secret" --mode room \
    --send "${client_addr[gw1]}" --recv "${client_addr[gw2]},${client_addr[gw3]}" \
    --pids "${pid_of[gw1]},${pid_of[gw2]},${pid_of[gw3]}" --messages "$room_messages" \
    --receivers "$room_members" --senders 1 --window "${ROOM_WINDOW:-20}" --payload-bytes "$payload" --max-seconds 60
