#!/usr/bin/env bash
# Reconnect storms on a local fleet: N clients held by `imgate load --reconnect` (several shards,
# each under the 20 000-descriptor limit), then one scenario at a time on a fresh fleet:
#
#   kill     kill -9 the gateway holding the most clients
#   restart  SIGTERM all three gateways at once, start each again as soon as it has exited
#   join     add a fourth gateway (weight 100) to the full fleet, with dispatcher rebalancing on
#
# For each: time until 99% and 100% of the clients are logged in again, the lost clients'
# re-login times, failed attempts by cause (503s among them), logins per second at each gateway,
# the CPU of the dispatcher, the gateways and the load processes, and the spread against the
# weights (max over fair share), before and after.
#
#   bench/storm.sh                                   # all three scenarios, 30 000 clients
#   CLIENTS=3000 SCENARIOS=kill bench/storm.sh       # a quick one
#   JITTER=1s SHARDS=2 HOLD=20 bench/storm.sh
#   KEEP=/tmp/storm-runs bench/storm.sh              # keep each scenario's logs and events
#   CLIENTS=15000 MAXCONN=19000 bench/storm.sh       # capacity in proportion to the weights
#
# Everything runs on loopback (127.0.0.0/8); every wait is bounded. Results (one JSON object per
# scenario) go to ${OUT:-/tmp/imgate-storm.jsonl}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/${BUILD_DIR:-build}/src"
. "$root/bench/lib.sh"

CLIENTS=${CLIENTS:-30000}
SHARDS=${SHARDS:-$(((CLIENTS + 14999) / 15000))}
SCENARIOS=${SCENARIOS:-kill restart join}
JITTER=${JITTER:-1s}                  # dispatcher reconnect.jitter: the clients' spread after a loss
RECOVERY_LIMIT=${RECOVERY_LIMIT:-60}  # seconds to wait for everyone to be back (join: for the spread)
HOLD=${HOLD:-5}                       # seconds the fleet is watched after recovery
JOIN_GOAL=${JOIN_GOAL:-1.10}          # join: stop watching once max/fair is at or below this
# limits.max_connections of the weight-100 gateways; gw3 (weight 50) gets half. Each gateway also
# caps it at its descriptor limit minus a reserve (19 674 with this machine's 20 000).
MAXCONN=${MAXCONN:-100000}
OUT=${OUT:-/tmp/imgate-storm.jsonl}
PY=${PY:-/usr/bin/python3}

for b in imgate imgate-dispatcher imgate-gateway; do
    [ -x "$bin/$b" ] || { echo "no $bin/$b: run make build (or set BUILD_DIR)" >&2; exit 1; }
done
[ -x "$PY" ] || { echo "bench/storm.sh needs $PY (Debian package python3)" >&2; exit 1; }
if [ $((CLIENTS / SHARDS)) -gt 19000 ]; then
    echo "CLIENTS/SHARDS must stay under 19000 (descriptor limit $(ulimit -Hn) per process)" >&2
    exit 1
fi

ms_now() { date +%s%3N; }
# A free loopback port below the ephemeral range: the load's tens of thousands of outgoing
# connections take ephemeral ports, and gw4 binds its port long after it was picked.
low_port() {
    "$PY" -c '
import random, socket
lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
for _ in range(200):
    p = random.randrange(10000, lo)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        s.close()
'
}
ticks_of() { [ -r "/proc/$1/stat" ] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }

# The fleet of one scenario: fixed free ports (the dispatcher and every gateway read one fleet
# file), gw4 written only when the join scenario adds it.
write_fleet() {  # write_fleet GW...
    {
        echo "cluster:"
        echo "  secret_file: cluster.secret"
        echo "gateways:"
        for id in "$@"; do
            echo "  - id: $id"
            echo "    client: 127.0.0.1:${client_port[$id]}"
            echo "    admin: 127.0.0.1:${admin_port[$id]}"
            echo "    rpc: 127.0.0.1:${rpc_port[$id]}"
            echo "    weight: ${weight[$id]}"
        done
    } >"$work/fleet.yaml.tmp"
    mv "$work/fleet.yaml.tmp" "$work/fleet.yaml"
}

start_gateway() {  # start_gateway ID: starts it, waits until ready, records its pid
    rm -f "$work/$1.ready"
    # gw3 is the half-size machine: half the weight and half the connection limit, so that the
    # balancer's headroom factor (1 - connections/max_connections) is the same on every gateway
    # at its fair share and the spread follows the weights.
    gw_config=$work/gateway.yaml
    [ "$1" = gw3 ] && gw_config=$work/gateway-small.yaml
    bench_start_gateway "$1"
    gw_pid[$1]=$started_pid
    bench_wait_ready "$1"
}

# Sum of `connected` over the shards' status files (0 while one is missing).
connected_now() {
    "$PY" - "$work" "$SHARDS" <<'PY'
import json, sys
total = 0
for i in range(int(sys.argv[2])):
    try:
        total += json.load(open(f"{sys.argv[1]}/status{i}.json"))["connected"]
    except Exception:
        pass
print(total)
PY
}

# One JSON object {id: connections} from the gateways' admin /status.
gateway_counts() {
    local first=1
    printf '{'
    for id in "${running[@]}"; do
        c=$(curl -fsS -m 2 "http://127.0.0.1:${admin_port[$id]}/status" 2>/dev/null |
            "$PY" -c 'import json,sys; print(json.load(sys.stdin)["sessions"])' 2>/dev/null || echo null)
        [ $first = 1 ] || printf ','
        first=0
        printf '"%s":%s' "$id" "$c"
    done
    printf '}'
}

weights_json() {
    local first=1
    printf '{'
    for id in "${running[@]}"; do
        [ $first = 1 ] || printf ','
        first=0
        printf '"%s":%s' "$id" "${weight[$id]}"
    done
    printf '}'
}

max_over_fair() {  # max_over_fair COUNTS_JSON WEIGHTS_JSON
    "$PY" - "$1" "$2" <<'PY'
import json, sys
c, w = json.loads(sys.argv[1]), json.loads(sys.argv[2])
c = {k: v for k, v in c.items() if v is not None}
tot, wsum = sum(c.values()), sum(w[k] for k in c)
print(f"{max(v / (tot * w[k] / wsum) for k, v in c.items()):.3f}" if tot and wsum else "nan")
PY
}

run_scenario() {
    local scenario=$1
    bench_init "storm-$scenario"
    declare -gA client_port admin_port rpc_port weight gw_pid
    weight=([gw1]=100 [gw2]=100 [gw3]=50 [gw4]=100)
    for id in gw1 gw2 gw3 gw4; do
        client_port[$id]=$(low_port)
        admin_port[$id]=$(low_port)
        rpc_port[$id]=$(low_port)
    done
    running=(gw1 gw2 gw3)
    (umask 077 && for f in token.secret cluster.secret admin.token; do
        head -c 32 /dev/urandom | base64 >"$work/$f"
    done)
    write_fleet "${running[@]}"
    cat >"$work/gateway.yaml" <<YAML
fleet: fleet.yaml
workers: 1
auth:
  secret_files: [token.secret]
admin:
  token_file: admin.token
limits:
  max_connections: $MAXCONN
drain:
  reconnect_after: 1s
log:
  level: warn
YAML
    sed "s/max_connections: $MAXCONN/max_connections: $((MAXCONN / 2))/" "$work/gateway.yaml" >"$work/gateway-small.yaml"
    local rebalance=false
    [ "$scenario" = join ] && rebalance=true
    disp_port=$(low_port)
    disp_admin=$(low_port)
    cat >"$work/dispatcher.yaml" <<YAML
id: storm
fleet: fleet.yaml
listen: 127.0.0.1:$disp_port
admin_listen: 127.0.0.1:$disp_admin
poll:
  interval: 500ms
  timeout: 300ms
  fast_interval: 100ms
  slow_start: 10s
reconnect:
  base: 500ms
  max: 30s
  jitter: $JITTER
rebalance:
  enabled: $rebalance
  threshold: 0.05
  rate: 500
  interval: 2s
  token_file: admin.token
http:
  max_connections: 100000
log:
  level: warn
YAML
    for id in "${running[@]}"; do start_gateway "$id"; done
    "$bin/imgate-dispatcher" --config "$work/dispatcher.yaml" >"$work/dispatcher.log" 2>&1 &
    disp_pid=$!
    pids+=("$disp_pid")
    for _ in $(seq 1 100); do
        curl -fsS -m 1 "http://127.0.0.1:$disp_port/healthz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    curl -fsS -m 1 "http://127.0.0.1:$disp_port/healthz" >/dev/null ||
        { echo "dispatcher not ready:" >&2; cat "$work/dispatcher.log" >&2; exit 1; }

    # The clients: SHARDS processes of one run (shared user-id prefix).
    local load_pids=()
    for i in $(seq 0 $((SHARDS - 1))); do
        "$bin/imgate" load --dispatcher "http://127.0.0.1:$disp_port" --reconnect \
            --clients "$CLIENTS" --shard "$i/$SHARDS" --run-id storm --rate 0 --rooms 0 --room-share 0 \
            --duration 600s --events "$work/events$i.jsonl" --status-file "$work/status$i.json" \
            --secret-file "$work/token.secret" --json -q >"$work/report$i.json" \
            2>"$work/load$i.log" &
        load_pids+=($!)
        pids+=($!)
    done
    local t_start
    t_start=$(ms_now)
    for _ in $(seq 1 $((10 * (60 + CLIENTS / 500)))); do
        [ "$(connected_now)" -ge "$CLIENTS" ] && break
        sleep 0.1
    done
    local c0
    c0=$(connected_now)
    [ "$c0" -ge "$CLIENTS" ] ||
        { echo "only $c0 of $CLIENTS clients connected; load log:" >&2; tail "$work/load0.log" >&2; exit 1; }
    echo "[$scenario] $CLIENTS clients connected in $(( $(ms_now) - t_start )) ms" >&2
    # Let pulls catch up with the final counts before the spread is read.
    sleep 1.5
    local before_counts before_weights
    before_counts=$(gateway_counts)
    before_weights=$(weights_json)

    # CPU before the storm (the gateways restarted in `restart` are read when they start).
    declare -gA cpu0
    cpu0[dispatcher]=$(ticks_of "$disp_pid")
    for id in "${running[@]}"; do cpu0[$id]=$(ticks_of "${gw_pid[$id]}"); done
    local lt=0
    for p in "${load_pids[@]}"; do lt=$((lt + $(ticks_of "$p"))); done
    cpu0[load]=$lt

    local t0 victim="" killed_count=0
    t0=$(ms_now)
    case $scenario in
    kill)
        victim=$("$PY" -c 'import json,sys; c=json.loads(sys.argv[1]); print(max(c, key=lambda k: c[k] or 0))' "$before_counts")
        killed_count=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$before_counts" "$victim")
        t0=$(ms_now)
        kill -9 "${gw_pid[$victim]}"
        wait "${gw_pid[$victim]}" 2>/dev/null || true
        running=($(printf '%s\n' "${running[@]}" | grep -vx "$victim"))
        ;;
    restart)
        t0=$(ms_now)
        for id in "${running[@]}"; do kill -TERM "${gw_pid[$id]}"; done
        local waiting=("${running[@]}")
        for _ in $(seq 1 400); do  # 20 s bound
            local still=()
            for id in "${waiting[@]}"; do
                if kill -0 "${gw_pid[$id]}" 2>/dev/null; then still+=("$id"); else
                    wait "${gw_pid[$id]}" 2>/dev/null || true
                    start_gateway "$id"
                    cpu0[$id]=0
                fi
            done
            waiting=("${still[@]}")
            [ ${#waiting[@]} -eq 0 ] && break
            sleep 0.05
        done
        [ ${#waiting[@]} -eq 0 ] || { echo "gateways did not exit: ${waiting[*]}" >&2; exit 1; }
        echo "[$scenario] all three restarted $(( $(ms_now) - t0 )) ms after SIGTERM" >&2
        ;;
    join)
        running+=(gw4)
        write_fleet "${running[@]}"
        t0=$(ms_now)
        start_gateway gw4
        cpu0[gw4]=0
        kill -HUP "$disp_pid"
        for id in gw1 gw2 gw3; do kill -HUP "${gw_pid[$id]}"; done
        ;;
    esac

    # Watch: connected (all shards) every 100 ms; for join the spread once a second.
    local t99="" t100="" t_spread="" spread="" deadline=$(( $(ms_now) + RECOVERY_LIMIT * 1000 ))
    local need99=$(( (CLIENTS * 99 + 99) / 100 )) last_spread_check=0
    # A kill or restart is not over before the losses are seen: wait for a dip first (bounded).
    local dipped=0
    [ "$scenario" = join ] && dipped=1
    while [ "$(ms_now)" -lt "$deadline" ]; do
        c=$(connected_now)
        now=$(ms_now)
        [ "$c" -lt "$CLIENTS" ] && dipped=1
        if [ $dipped = 1 ] && [ "$scenario" != join ]; then
            [ -z "$t99" ] && [ "$c" -ge "$need99" ] && t99=$((now - t0))
            if [ "$c" -ge "$CLIENTS" ]; then t100=$((now - t0)); break; fi
        fi
        if [ "$scenario" = join ] && [ $((now - last_spread_check)) -ge 1000 ]; then
            last_spread_check=$now
            spread=$(max_over_fair "$(gateway_counts)" "$(weights_json)")
            echo "[$scenario] +$(( (now - t0) / 1000 )) s: max/fair $spread" >&2
            if "$PY" -c 'import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)' "$spread" "$JOIN_GOAL"; then
                t_spread=$((now - t0))
                break
            fi
        fi
        sleep 0.1
    done
    local t_end
    t_end=$(ms_now)
    declare -gA cpu1
    cpu1[dispatcher]=$(ticks_of "$disp_pid")
    for id in "${running[@]}"; do cpu1[$id]=$(ticks_of "${gw_pid[$id]}"); done
    lt=0
    for p in "${load_pids[@]}"; do lt=$((lt + $(ticks_of "$p"))); done
    cpu1[load]=$lt
    local cpu_json="{" first=1
    for k in dispatcher load "${running[@]}"; do
        [ $first = 1 ] || cpu_json+=","
        first=0
        cpu_json+="\"$k\":$(( ${cpu1[$k]:-0} - ${cpu0[$k]:-0} ))"
    done
    cpu_json+="}"
    # Hold a few seconds, then read the settled spread (pulls and rebalancing have caught up).
    sleep "$HOLD"
    local after_counts
    after_counts=$(gateway_counts)
    local t_stop
    t_stop=$(ms_now)
    for p in "${load_pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
    for p in "${load_pids[@]}"; do wait "$p" 2>/dev/null || true; done
    local disp_status
    disp_status=$(curl -fsS -m 2 "http://127.0.0.1:$disp_admin/status" 2>/dev/null || echo '{}')
    echo "$disp_status" >"$work/dispatcher-status.json"

    "$PY" "$root/bench/storm_report.py" --scenario "$scenario" --work "$work" --shards "$SHARDS" \
        --clients "$CLIENTS" --t0 "$t0" --t-end "$t_end" --t-stop "$t_stop" --t99 "${t99:-}" --t100 "${t100:-}" \
        --t-spread "${t_spread:-}" --victim "$victim" --killed-count "$killed_count" \
        --before "$before_counts" --after "$after_counts" --weights "$(weights_json)" --weights-before "$before_weights" \
        --cpu "$cpu_json" --hz "$(getconf CLK_TCK)" --jitter "$JITTER" \
        --loadavg "$(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT.txt" |
        tail -n +1 >&2
    tail -n 1 "$work/summary.json" >>"$OUT"
    if [ -n "${KEEP:-}" ]; then  # KEEP=dir: keep this scenario's configs, logs and events
        mkdir -p "$KEEP/$scenario" && cp -r "$work"/. "$KEEP/$scenario/"
    fi
    bench_cleanup
    trap - EXIT
}

echo "storm: $CLIENTS clients in $SHARDS load processes; scenarios: $SCENARIOS; machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
: >"$OUT"
: >"$OUT.txt"
for s in $SCENARIOS; do
    case $s in kill | restart | join) run_scenario "$s" ;; *) echo "unknown scenario $s" >&2; exit 1 ;; esac
done
echo "results: $OUT (JSON lines), $OUT.txt (text)" >&2
