#!/usr/bin/env bash
# The directory at fleet size (issue 16 item 5): GATEWAYS real gateway processes on loopback
# (workers: 1 each) in announced mode and in redis mode, USERS clients logged in over all of them
# by `imgate load --gateways`, then a 1:1 send phase. Prints, per mode:
#   - directory traffic per login: announcement frames and bytes sent to peers (announced) or
#     Redis commands and bytes received by Redis (redis), from the metrics and INFO;
#   - memory per gateway: mean RSS of the gateways with the clients connected, minus the same
#     fleet with no client (so it is what the logins cost), and Redis's used_memory growth;
#   - the cost of a 1:1 send: gateway (+ Redis) CPU per delivered message, from a run with
#     sends minus a run with logins only, and in redis mode lookups per message and the cache
#     hit rate.
# Usage: bench/directory_fleet.sh [build-dir]
# Env: GATEWAYS (50) USERS (10000) RATE (2000 sends/s) DURATION (10 s) MODES ("announced redis")
#      CACHE_TTL (200ms, redis mode's directory.cache_ttl)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
bin="$root/$build/src"
. "$root/bench/lib.sh"
GATEWAYS=${GATEWAYS:-50}
USERS=${USERS:-10000}
RATE=${RATE:-2000}
DURATION=${DURATION:-10}
MODES=${MODES:-announced redis}
CACHE_TTL=${CACHE_TTL:-200ms}
[ "$GATEWAYS" -ge 2 ] && [ "$GATEWAYS" -le 100 ] || { echo "GATEWAYS must be 2..100" >&2; exit 2; }
[ "$USERS" -le 20000 ] || { echo "USERS must be at most 20000 (one load process)" >&2; exit 2; }
[ "$DURATION" -le 120 ] || { echo "DURATION must be at most 120 s" >&2; exit 2; }
for m in imgate-gateway imgate; do
    [ -x "$bin/$m" ] || { echo "missing $bin/$m: build first" >&2; exit 1; }
done
if [[ " $MODES " == *" redis "* ]] && ! command -v redis-server >/dev/null; then
    echo "redis-server is not installed (make deps-redis): skipping redis mode" >&2
    MODES=${MODES//redis/}
fi
bench_init directory-fleet
echo "# $(date -u '+%F %T UTC'), $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# GATEWAYS=$GATEWAYS USERS=$USERS RATE=$RATE DURATION=$DURATION CACHE_TTL=$CACHE_TTL"

ids=()
declare -A admin_of pid_of
for ((i = 1; i <= GATEWAYS; i++)); do ids+=("g$i"); done

# Ports below the ephemeral range (32768-60999 here), so the mesh's own outgoing connections
# (GATEWAYS x (GATEWAYS-1) of them) can never take one between choosing it and binding it.
next_port=$((20000 + RANDOM % 8000))
# low_port: sets $port (no subshell, so $next_port moves on).
low_port() {
    while (echo >"/dev/tcp/127.0.0.1/$next_port") 2>/dev/null; do next_port=$((next_port + 1)); done
    port=$next_port
    next_port=$((next_port + 1))
}

# fleet.yaml: every gateway on fixed free ports (the mesh needs the RPC ports up front).
make_fleet() {
    bench_fleet_secrets
    {
        echo "cluster:"
        echo "  secret_file: cluster.secret"
        echo "gateways:"
        for id in "${ids[@]}"; do
            echo "  - id: $id"
            low_port && echo "    client: 127.0.0.1:$port"
            low_port && echo "    admin: 127.0.0.1:$port"
            low_port && echo "    rpc: 127.0.0.1:$port"
        done
    } >"$work/fleet.yaml"
}

gateway_yaml() {
    cat <<YAML
fleet: fleet.yaml
workers: 1
auth: {secret_files: [token.secret]}
admin: {token_file: admin.token}
limits: {login_rate: 0, gateway_login_rate: 0, max_connections: 15000}
log: {level: warn}
YAML
    if [ "$1" = redis ]; then
        echo "directory: {mode: redis, cache_ttl: $CACHE_TTL}"
        echo "redis: {unix_socket: $work/redis.sock}"
    fi
}

# sum_metric NAME [LABEL_FILTER]: the sum of a metric over every gateway's /metrics.
sum_metric() {
    local name=$1 filter=${2:-} total=0 v id
    for id in "${ids[@]}"; do
        v=$(curl -fsS "http://${admin_of[$id]}/metrics" 2>/dev/null |
            awk -v n="$name" -v f="$filter" '
                $1 ~ "^"n"([{]|$)" && index($1, f) { s += $2 } END { printf "%.0f", s }')
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

# RSS (kB) and CPU ticks (utime+stime) summed over the gateways.
rss_kb() {
    local t=0 id
    for id in "${ids[@]}"; do
        t=$((t + $(awk '/^VmRSS/ {print $2}' "/proc/${pid_of[$id]}/status")))
    done
    echo "$t"
}
cpu_ticks_of() { awk '{print $14 + $15}' "/proc/$1/stat"; }
gateways_cpu() {
    local t=0 id
    for id in "${ids[@]}"; do t=$((t + $(cpu_ticks_of "${pid_of[$id]}"))); done
    echo "$t"
}

redis_info() { redis-cli -s "$work/redis.sock" info "$1" | tr -d '\r'; }
redis_field() { redis_info "$1" | awk -F: -v k="$2" '$1 == k { print $2 }'; }
redis_calls() {  # every command's calls, summed
    redis_info commandstats | sed -n 's/.*:calls=\([0-9]*\),.*/\1/p' | awk '{s += $1} END {print s+0}'
}

# Waits (bounded) until the metric sum reaches a value.
wait_sum() {
    local name=$1 want=$2 filter=${3:-} i
    for ((i = 0; i < 600; i++)); do
        [ "$(sum_metric "$name" "$filter")" -ge "$want" ] && return 0
        sleep 0.1
    done
    echo "timed out waiting for $name >= $want (at $(sum_metric "$name" "$filter"))" >&2
    return 1
}

run_mode() {
    local mode=$1 id redis_pid="" gw_list="" rss0 rss1 mem0=0 mem1=0
    rm -f "$work"/*.ready "$work/redis.sock"
    pids=()
    if [ "$mode" = redis ]; then
        redis-server --port 0 --unixsocket "$work/redis.sock" --unixsocketperm 700 --save "" \
            --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
        redis_pid=$!
        pids+=("$redis_pid")
        for _ in $(seq 1 100); do
            [ "$(redis-cli -s "$work/redis.sock" ping 2>/dev/null)" = PONG ] && break
            sleep 0.05
        done
    fi
    gateway_yaml "$mode" >"$work/gateway.yaml"
    for id in "${ids[@]}"; do bench_start_gateway "$id"; done
    for id in "${ids[@]}"; do bench_wait_ready "$id"; done
    # Read once: the samples below must be quick, while every client is still connected.
    for id in "${ids[@]}"; do
        admin_of[$id]=$(ready_field "$id" admin)
        pid_of[$id]=$(ready_field "$id" pid)
    done
    wait_sum imgate_rpc_links_up $((GATEWAYS * (GATEWAYS - 1)))
    for id in "${ids[@]}"; do gw_list+="${gw_list:+,}$(ready_field "$id" client)"; done
    sleep 1  # let start-up allocations settle before the baseline
    rss0=$(rss_kb)
    [ -n "$redis_pid" ] && mem0=$(redis_field memory used_memory_dataset)

    # Phase 1: logins only (rate 1/s), sampled while every client is connected.
    local frames0 bytes0 calls0=0 rin0=0 cpu0 rcpu0=0
    frames0=$(sum_metric imgate_rpc_announcements_sent_total)
    bytes0=$(sum_metric imgate_rpc_announcement_bytes_sent_total)
    if [ -n "$redis_pid" ]; then
        calls0=$(redis_calls)
        rin0=$(redis_field stats total_net_input_bytes)
        rcpu0=$(cpu_ticks_of "$redis_pid")
    fi
    cpu0=$(gateways_cpu)
    "$bin/imgate" load --gateways "$gw_list" --secret-file "$work/token.secret" \
        --clients "$USERS" --rate 1 --duration "$DURATION" --rooms 0 --room-share 0 --json -q \
        >"$work/login.json" 2>"$work/login.err" &
    local load_pid=$!
    wait_sum imgate_gateway_sessions "$USERS" || true
    local t_up=$SECONDS
    sleep 1
    rss1=$(rss_kb)
    [ -n "$redis_pid" ] && mem1=$(redis_field memory used_memory_dataset)
    local frames1 bytes1 calls1=0 rin1=0
    frames1=$(sum_metric imgate_rpc_announcements_sent_total)
    bytes1=$(sum_metric imgate_rpc_announcement_bytes_sent_total)
    if [ -n "$redis_pid" ]; then
        calls1=$(redis_calls)
        rin1=$(redis_field stats total_net_input_bytes)
    fi
    local sessions_after
    sessions_after=$(sum_metric imgate_gateway_sessions)
    echo "# $mode: all $USERS sessions up, sampled within $((SECONDS - t_up)) s; sessions after sampling: $sessions_after"
    wait "$load_pid" || true
    local cpu_login rcpu_login=0
    cpu_login=$(($(gateways_cpu) - cpu0))
    [ -n "$redis_pid" ] && rcpu_login=$(($(cpu_ticks_of "$redis_pid") - rcpu0))

    # Phase 2: the same logins plus 1:1 sends (room share 0).
    local lk0 lc0 lr0 lf0 cpu2 rcpu2=0
    lk0=$(sum_metric imgate_directory_lookups_total)
    lc0=$(sum_metric imgate_directory_lookups_total 'source="cache"')
    lr0=$(sum_metric imgate_directory_lookups_total 'source="redis"')
    lf0=$(sum_metric imgate_directory_lookups_total 'source="fallback"')
    cpu2=$(gateways_cpu)
    [ -n "$redis_pid" ] && rcpu2=$(cpu_ticks_of "$redis_pid")
    "$bin/imgate" load --gateways "$gw_list" --secret-file "$work/token.secret" \
        --clients "$USERS" --rate "$RATE" --duration "$DURATION" --rooms 0 --room-share 0 \
        --json -q >"$work/send.json" 2>"$work/send.err" || true
    local cpu_send rcpu_send=0
    cpu_send=$(($(gateways_cpu) - cpu2))
    [ -n "$redis_pid" ] && rcpu_send=$(($(cpu_ticks_of "$redis_pid") - rcpu2))
    local lk lc lr lf
    lk=$(($(sum_metric imgate_directory_lookups_total) - lk0))
    lc=$(($(sum_metric imgate_directory_lookups_total 'source="cache"') - lc0))
    lr=$(($(sum_metric imgate_directory_lookups_total 'source="redis"') - lr0))
    lf=$(($(sum_metric imgate_directory_lookups_total 'source="fallback"') - lf0))

    python3 - "$mode" "$GATEWAYS" "$USERS" "$work/login.json" "$work/send.json" \
        "$((frames1 - frames0))" "$((bytes1 - bytes0))" "$((calls1 - calls0))" "$((rin1 - rin0))" \
        "$rss0" "$rss1" "$mem0" "$mem1" "$cpu_login" "$rcpu_login" "$cpu_send" "$rcpu_send" \
        "$lk" "$lc" "$lr" "$lf" "$(getconf CLK_TCK)" <<'PY'
import json, sys
(mode, gws, users, lj, sj, frames, fbytes, calls, rin, rss0, rss1, mem0, mem1, cpu_l, rcpu_l,
 cpu_s, rcpu_s, lk, lc, lr, lf, hz) = sys.argv[1:]
gws, users, hz = int(gws), int(users), float(hz)
login, send = json.load(open(lj)), json.load(open(sj))
logins = login.get("connected", users)
print(f"== {mode}: {gws} gateways, {logins} logins")
if mode == "announced":
    print(f"  directory traffic per login: {int(frames)/logins:.1f} frames, {int(fbytes)/logins:.0f} bytes to peers")
else:
    print(f"  directory traffic per login: {int(calls)/logins:.2f} Redis commands, {int(rin)/logins:.0f} bytes into Redis"
          f" (commands include lease renewals and MGETs during the phase)")
print(f"  memory per gateway for the logins: {(int(rss1)-int(rss0))/gws:.0f} kB RSS"
      f" ({(int(rss1)-int(rss0))*1024/logins:.0f} B per login over the whole fleet)")
if mode == "redis":
    print(f"  Redis used_memory_dataset growth: {(int(mem1)-int(mem0))/1024:.0f} kB ({(int(mem1)-int(mem0))/logins:.0f} B per login)")
res = send.get("results", {})
delivered = res.get("delivered", 0)
sends = send.get("sends", 0)
cpu = (int(cpu_s) - int(cpu_l)) / hz
rcpu = (int(rcpu_s) - int(rcpu_l)) / hz
print(f"  sends {sends}, results {res}, missing {send.get('missing', 0)}")
if delivered:
    print(f"  CPU per delivered 1:1 message (send run minus login run): gateways {cpu/delivered*1e6:.1f} us"
          + (f", Redis {rcpu/delivered*1e6:.1f} us" if mode == "redis" else ""))
    if mode == "redis":
        lk, lc, lr, lf = int(lk), int(lc), int(lr), int(lf)
        # The send run's logins look their user up once each too (the device claim).
        relogins = send.get("connected", 0)
        print(f"  lookups per message {(lk - relogins)/delivered:.2f} (all {lk} lookups of the run less"
              f" one per login): cache {lc}, redis {lr}, fallback {lf}"
              f" (cache hit rate {lc/lk*100 if lk else 0:.1f}%)")
PY
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}

make_fleet
for mode in $MODES; do run_mode "$mode"; done
