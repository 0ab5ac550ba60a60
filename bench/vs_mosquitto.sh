#!/usr/bin/env bash
# 1:1 CPU per delivered message: imgate-gateway against mosquitto (the MQTT broker), back to back,
# same machine, same shape of load (issue 18). Loopback only, bounded in count and time.
#
# Shape, both sides: PAIRS sender/receiver pairs, each sender sends only to its own receiver,
# PAYLOAD-byte payloads, at most WINDOW messages in flight per pair, MESSAGES in all.
#   imgate:    bench/cross_node_bench.cpp --mode pairs: sender i SENDs to user i (e-mail-like ids)
#              on one gateway (workers 1, send rate lifted); in flight = SENDs without SEND_RESULT.
#   mosquitto: bench/mosquitto_load.cpp (libmosquitto): subscriber i subscribes to bench/i, QoS 0,
#              publisher i publishes there; in flight = published minus received by subscriber i.
# Figure: the server's utime+stime (/proc/PID/stat) over the measured phase only (the load
# programs sample it after set-up and when the last message arrived) / delivered messages.
# ROUNDS rounds, alternating which side goes first, each run on a freshly started server; medians
# and the ratio imgate/mosquitto per round and of the medians. Then, separately (strace slows the
# traced process: never mixed with the CPU runs), one shorter run per side under
# `strace -c -f -p PID`, attached for the measured phase only: syscalls per delivered message.
# Installs nothing: without mosquitto or libmosquitto-dev it says so and exits 0.
#
# Usage: bench/vs_mosquitto.sh [build-dir]
# Env: PAIRS (50) WINDOW (20) MESSAGES (200000) PAYLOAD (64) ROUNDS (3) MAX_SECONDS (60)
#      STRACE_MESSAGES (20000; 0 = no syscall runs) MOSQ_CONF_EXTRA (lines appended to the
#      generated mosquitto.conf, e.g. "set_tcp_nodelay true")
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
bin="$root/$build/src"
pairs=${PAIRS:-50}
window=${WINDOW:-20}
messages=${MESSAGES:-200000}
payload=${PAYLOAD:-64}
rounds=${ROUNDS:-3}
max_seconds=${MAX_SECONDS:-60}
strace_messages=${STRACE_MESSAGES:-10000}
imgate_writes=${IMGATE_WRITES:-each}

# mosquitto lives in /usr/sbin, which a non-root PATH may lack.
mosquitto_bin=$(PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v mosquitto || true)
if [ -z "$mosquitto_bin" ] ||
    ! printf '#include <mosquitto.h>\nint main() { return mosquitto_lib_init(); }\n' |
    g++ -x c++ - -lmosquitto -o /dev/null 2>/dev/null; then
    echo "skipped: mosquitto not installed; \`make deps-bench\` installs it"
    exit 0
fi
[ -x "$bin/imgate-gateway" ] || { echo "build imgate-gateway first ($bin)" >&2; exit 1; }

. "$root/bench/lib.sh"
bench_init vsmosq
imgate_client="$root/$build/bench/gateway_bench_client"
mqtt_client="$root/$build/bench/mosquitto_load"
bench_compile "$root/bench/cross_node_bench.cpp" "$imgate_client" "$root/$build/src/libimgate_common.a"
bench_compile_mosquitto "$root/bench/mosquitto_load.cpp" "$mqtt_client"

have_strace=1
if [ "$strace_messages" != 0 ] && ! command -v strace >/dev/null; then
    echo "strace not installed: no syscall runs (\`make deps-bench\` installs it)"
    have_strace=0
fi

bench_single_gateway_fleet
cat >"$work/gateway.yaml" <<YAML
fleet: fleet.yaml
workers: 1
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

# Stops one process this script started: SIGTERM, up to 10 s, then SIGKILL; forgets its pid.
stop_pid() {
    local p=$1 i
    kill -TERM "$p" 2>/dev/null || true
    for i in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    forget_pid "$p"
}
# Drops a pid this script has reaped from $pids (so the EXIT trap never signals a reused pid).
forget_pid() {
    local keep=() i
    for i in "${pids[@]}"; do [ "$i" = "$1" ] || keep+=("$i"); done
    pids=("${keep[@]}")
}

# start_server SIDE: a fresh gateway or mosquitto; sets server_pid (and admin / addr / port).
start_server() {
    if [ "$1" = imgate ]; then
        rm -f "$work/gw1.ready"
        bench_start_gateway gw1
        server_pid=$started_pid
        bench_wait_ready gw1
        addr=$(ready_field gw1 tcp)
        admin=$(ready_field gw1 admin)
    else
        port=$(free_port)
        cat >"$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
log_dest stderr
log_type error
log_type warning
${MOSQ_CONF_EXTRA:-}
CONF
        "$mosquitto_bin" -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
        server_pid=$!
        pids+=("$server_pid")
        local i
        for i in $(seq 1 200); do
            (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.05
        done
        echo "mosquitto did not start:" >&2
        cat "$work/mosquitto.log" >&2
        exit 1
    fi
}

# The gateway's writer counters (frames written, socket writes) as "frames writes".
gw_counters() { gateway_write_counters "$admin"; }

# wait_file PATH PID SECONDS: until PATH exists; fails if PID exits or SECONDS pass.
wait_file() {
    local i
    for i in $(seq 1 $(($3 * 20))); do
        [ -e "$1" ] && return 0
        kill -0 "$2" 2>/dev/null || return 1
        sleep 0.05
    done
    return 1
}

# run_side SIDE COUNT TRACE(0|1) OUT: one run on a fresh server; the load program's lines go to
# OUT, plus "frames_per_write=" (imgate) and, when TRACE, the strace -c table in OUT.strace.
# Returns the load program's exit status.
run_side() {
    local side=$1 count=$2 trace=$3 out=$4 sync load_pid strace_pid="" c0="" c1="" rc=0
    sync=$(mktemp -d "$work/sync.XXXXXX")
    start_server "$side"
    if [ "$side" = imgate ]; then
        timeout $((max_seconds + 100)) "$imgate_client" --secret-file "$work/token.secret" \
            --mode pairs --send "$addr" --recv "$addr" --pids "$server_pid" \
            --messages "$count" --receivers "$pairs" --senders "$pairs" --window "$window" \
            --payload-bytes "$payload" --max-seconds "$max_seconds" --writes "$imgate_writes" \
            --sync-dir "$sync" >"$out" 2>&1 &
    else
        timeout $((max_seconds + 100)) "$mqtt_client" --port "$port" --pid "$server_pid" \
            --messages "$count" --pairs "$pairs" --window "$window" --payload-bytes "$payload" \
            --max-seconds "$max_seconds" --sync-dir "$sync" >"$out" 2>&1 &
    fi
    load_pid=$!
    pids+=("$load_pid")
    if wait_file "$sync/ready" "$load_pid" 40; then
        if [ "$side" = imgate ]; then c0=$(gw_counters); fi
        if [ "$trace" = 1 ]; then
            strace -c -f -p "$server_pid" -o "$out.strace" 2>"$out.strace-log" &
            strace_pid=$!
            pids+=("$strace_pid")
            # "Process N attached with T threads": every thread is traced from then on.
            for _ in $(seq 1 100); do
                if grep -qs attached "$out.strace-log" || ! kill -0 "$strace_pid" 2>/dev/null; then
                    break
                fi
                sleep 0.05
            done
            sleep 0.2
        fi
        touch "$sync/go"
        if wait_file "$sync/done" "$load_pid" $((max_seconds + 40)); then
            if [ -n "$strace_pid" ]; then
                kill -INT "$strace_pid" 2>/dev/null || true
                wait "$strace_pid" 2>/dev/null || true
                forget_pid "$strace_pid"
                strace_pid=""
            fi
            if [ "$side" = imgate ]; then c1=$(gw_counters); fi
        fi
        touch "$sync/exit"
    fi
    wait "$load_pid" || rc=$?
    forget_pid "$load_pid"
    if [ -n "$strace_pid" ]; then stop_pid "$strace_pid"; fi
    stop_pid "$server_pid"
    if [ -n "$c0" ] && [ -n "$c1" ]; then
        # shellcheck disable=SC2086 # c0 and c1 are "frames writes" pairs
        python3 -c 'import sys; f0,w0,f1,w1=map(int,sys.argv[1:]); print(f"frames_per_write={(f1-f0)/max(1,w1-w0):.2f} frames={f1-f0} writes={w1-w0}")' \
            $c0 $c1 >>"$out"
    fi
    return "$rc"
}

# field OUT KEY: KEY=value from a load program's output.
field() { grep -o "$2=[0-9.]*" "$1" | head -1 | cut -d= -f2 || true; }

echo "== 1:1 CPU per delivered message, imgate-gateway vs mosquitto ($("$mosquitto_bin" -h 2>/dev/null | head -1))"
echo "pairs=$pairs window=$window messages=$messages payload=${payload}B rounds=$rounds max_seconds=$max_seconds"
echo "gateway: $bin/imgate-gateway; tree at $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown), src/ last changed in $(git -C "$root" log -1 --format=%h -- src 2>/dev/null || echo unknown)$(git -C "$root" diff --quiet HEAD -- src 2>/dev/null || echo ' + uncommitted src changes')"
echo "uptime before: $(uptime)"
results="$work/results.tsv"
: >"$results"
failed=0
for r in $(seq 1 "$rounds"); do
    if [ $((r % 2)) = 1 ]; then order="imgate mosquitto"; else order="mosquitto imgate"; fi
    echo "-- round $r ($order)"
    for side in $order; do
        out="$work/r$r-$side.out"
        rc=0
        run_side "$side" "$messages" 0 "$out" || rc=$?
        sed 's/^/   | /' "$out"
        cpu=$(field "$out" cpu_us_per_delivered_copy)
        if [ "$rc" != 0 ] || [ -z "$cpu" ]; then
            echo "   $side: FAILED (exit $rc)"
            failed=1
            continue
        fi
        printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$r" "$side" "$cpu" "$(field "$out" msgs_per_s)" \
            "$(field "$out" delivered_copies)" "$(field "$out" frames_per_write)" \
            "$(field "$out" user_s)" "$(field "$out" system_s)" >>"$results"
    done
done

echo "-- CPU per delivered message (µs), rounds and medians"
python3 - "$results" "$rounds" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
by = {}
for r, side, cpu, mps, delivered, fpw, user, system in rows:
    d = int(delivered)
    split = f"{float(user) * 1e6 / d:.2f}/{float(system) * 1e6 / d:.2f}"
    by.setdefault(side, {})[int(r)] = (float(cpu), float(mps), d, fpw, split)
print("user/sys: the split of the CPU figure; frames/write: the gateway's counters, frames per"
      " gathered write (Asio's async_write sends at most 16 buffers per sendmsg: see the syscall run)")
print(f"{'round':>5} {'imgate_us':>9} {'user/sys':>9} {'mosq_us':>7} {'user/sys':>9} {'ratio':>6} "
      f"{'imgate_msg/s':>12} {'mosq_msg/s':>10} {'frames/write':>12}")
ratios = []
for r in range(1, int(sys.argv[2]) + 1):
    i, m = by.get("imgate", {}).get(r), by.get("mosquitto", {}).get(r)
    ratio = i[0] / m[0] if i and m and m[0] else None
    if ratio is not None: ratios.append(ratio)
    f = lambda x, k, fmt: format(x[k], fmt) if x else "-"
    print(f"{r:>5} {f(i,0,'.3f'):>9} {f(i,4,''):>9} {f(m,0,'.3f'):>7} {f(m,4,''):>9} "
          f"{format(ratio,'.3f') if ratio else '-':>6} "
          f"{f(i,1,'.0f'):>12} {f(m,1,'.0f'):>10} {(i[3] or '-') if i else '-':>12}")
med = {s: statistics.median(v[0] for v in by[s].values()) for s in by}
mps = {s: statistics.median(v[1] for v in by[s].values()) for s in by}
for s in ("imgate", "mosquitto"):
    if s in med: print(f"median {s}: {med[s]:.3f} µs/msg, {mps[s]:.0f} msg/s")
if "imgate" in med and "mosquitto" in med:
    print(f"ratio of medians imgate/mosquitto: {med['imgate'] / med['mosquitto']:.3f}"
          f"  (median of per-round ratios: {statistics.median(ratios):.3f})" if ratios else "")
    open(sys.argv[1] + ".ratio", "w").write(f"{med['imgate'] / med['mosquitto']:.3f}")
PY

if [ "$strace_messages" != 0 ] && [ "$have_strace" = 1 ]; then
    echo "-- syscalls per delivered message (separate runs of $strace_messages messages under strace -c -f -p, measured phase only; CPU not comparable)"
    for side in imgate mosquitto; do
        out="$work/strace-$side.out"
        rc=0
        run_side "$side" "$strace_messages" 1 "$out" || rc=$?
        sed 's/^/   | /' "$out"
        delivered=$(field "$out" delivered_copies)
        if [ "$rc" != 0 ] || [ -z "$delivered" ]; then
            echo "   $side: FAILED (exit $rc)"
            failed=1
            continue
        fi
        if ! grep -q total "$out.strace" 2>/dev/null; then
            # e.g. kernel.yama.ptrace_scope=1 and not root: strace may not attach to a sibling.
            echo "   $side: no syscall figures, strace did not attach: $(head -1 "$out.strace-log" 2>/dev/null)"
            continue
        fi
        sed 's/^/   : /' "$out.strace"
        # Frames the server wrote: the gateway's counter; mosquitto (QoS 0) writes only PUBLISHes.
        frames=$(field "$out" frames)
        python3 - "$out.strace" "$delivered" "$side" "${frames:-$delivered}" <<'PY'
import sys
path, delivered, side, frames = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
calls, total = {}, 0
for line in open(path):
    if not line[:1].isspace() and not line[:1].isdigit(): continue
    name = line.split()[-1] if line.split() else ""
    try: n = int(line[31:40])
    except ValueError: continue
    if name == "total": total = n
    else: calls[name] = n
group = lambda names: sum(calls.get(n, 0) for n in names)
reads = group(["read", "recvfrom", "recvmsg", "readv"])
writes = group(["write", "writev", "sendmsg", "sendto", "sendmmsg"])
waits = group(["epoll_wait", "epoll_pwait", "epoll_pwait2", "poll", "ppoll", "select", "pselect6"])
print(f"   {side}: syscalls_per_msg={total / delivered:.2f} (total {total}, delivered {delivered});"
      f" per msg: reads {reads / delivered:.3f}, writes {writes / delivered:.3f},"
      f" epoll/poll waits {waits / delivered:.3f}")
print(f"   {side}: frames_per_write_syscall={frames / max(1, writes):.2f} ({frames} frames / {writes} write calls)")
top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
print("   " + side + " top: " + ", ".join(f"{k} {v / delivered:.3f}/msg" for k, v in top))
PY
    done
fi
echo "uptime after: $(uptime)"
ratio=$(cat "$results.ratio" 2>/dev/null || echo NA)
echo "ratio_median=$ratio goal<=0.20"
exit "$failed"
