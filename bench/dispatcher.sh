#!/usr/bin/env bash
# Dispatcher benchmark (issue 5 item 8), everything on loopback, bounded in time:
#   1. wrk against GET /get-tcp-ip of the local 3-gateway fleet (one dispatcher thread) and, in
#      the same run, against nginx (one worker) returning a static JSON body of the same size;
#      keep-alive and "Connection: close"; prints both and the ratio.
#   2. the dispatcher with `threads: 1` against a second one with `threads: 2` (on 8090/8091,
#      same fleet), both under wrk -t2, in alternating rounds: does a second thread scale?
#   3. kill -9 of a gateway under traffic: time until the dispatcher last hands it out.
# Usage: bench/dispatcher.sh [build-dir]
#   env: DURATION=5s (per wrk run) ROUNDS=3 (runs per server and mode; medians reported)
#        CONNECTIONS=32 KILL_RUNS=3 THREADS=2 (the second dispatcher's; 1 skips phase 2)
# Needs wrk, nginx (nginx-light) and python3. Uses the fixed ports of config/local (8080-8081,
# 9001-9203, 9401-9603 for tls/ws/wss) plus 18080 for nginx and 8090-8091 for the second
# dispatcher: stop a running local fleet first.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
bin="$root/$build/src"
duration=${DURATION:-5s}
rounds=${ROUNDS:-3}
conns=${CONNECTIONS:-32}
kill_runs=${KILL_RUNS:-3}
threads=${THREADS:-2}
nginx_port=18080
. "$root/bench/lib.sh"
bench_init disp
cleanup() {
    [ -f "$work/nginx.pid" ] && kill -TERM "$(cat "$work/nginx.pid")" 2>/dev/null || true
    bench_cleanup
}
trap cleanup EXIT

for tool in wrk nginx python3 curl; do
    command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
for port in 8080 8081 9001 9002 9003 9101 9102 9103 9401 9402 9403 9501 9502 9503 9601 9602 \
    9603 8090 8091 $nginx_port; do
    if (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null; then
        echo "port $port is in use (a local fleet running?)" >&2
        exit 1
    fi
done

gw_config="$root/config/local/gateway.yaml"
# Its tls block names the development certificate, made as `make run` makes it.
"$root/config/local/dev-certs.sh" "$root/config/local/certs" >/dev/null
# The gateways refuse secret files others can read; git keeps them 0644 (as run-fleet.sh does).
for f in "$root"/config/local/*.secret "$root/config/local/admin.token"; do chmod 0600 "$f"; done
start_gateway() {  # id -> pid in $gw_pid, once ready
    bench_start_gateway "$1"
    gw_pid=$started_pid
    bench_wait_ready "$1"
}

# disp_config OUT PUBLIC-PORT ADMIN-PORT THREADS: config/local/dispatcher.yaml with those, its
# relative paths made absolute, and pulls every 150 ms (timeout 150 ms) instead of 500. wrk never connects to the
# gateways it is handed, so every pick since a gateway's last pull counts as one of its
# connections (docs/load-balancing.md); a gateway whose descriptor limit caps max_connections
# near 20 000 then goes overloaded between two 500 ms pulls at 100 000+ answers/s, and the
# dispatcher answers 503 instead of a pick. Measured answers must be real 200 picks, as nginx's
# are. (The kill -9 phase runs the unchanged configuration.)
disp_config() {
    sed -e "s|^fleet: fleet.yaml|fleet: $root/config/local/fleet.yaml|" \
        -e "s|token_file: admin.token|token_file: $root/config/local/admin.token|" \
        -e "s|^listen: 127.0.0.1:8080|listen: 127.0.0.1:$2|" \
        -e "s|^admin_listen: 127.0.0.1:8081|admin_listen: 127.0.0.1:$3|" \
        -e "s|^threads: 1|threads: $4|" \
        -e "s|^  interval: 500ms|  interval: 150ms|" \
        -e "s|^  timeout: 300ms|  timeout: 150ms|" "$root/config/local/dispatcher.yaml" >"$1"
    grep -q "^threads: $4" "$1" && grep -q "^  interval: 150ms" "$1" &&
        grep -q "^  timeout: 150ms" "$1" ||
        { echo "config/local/dispatcher.yaml changed: $1 not made" >&2; exit 1; }
}
# start_dispatcher CONFIG NAME -> pid in $disp_pid
start_dispatcher() {
    "$bin/imgate-dispatcher" --config "$1" --ready-file "$work/$2.ready" >"$work/$2.log" 2>&1 &
    disp_pid=$!
    pids+=("$disp_pid")
}

declare -A gw_pids
for id in gw1 gw2 gw3; do start_gateway "$id"; gw_pids[$id]=$gw_pid; done
disp_config "$work/disp.yaml" 8080 8081 1
start_dispatcher "$work/disp.yaml" disp
wait_all_up() {
    for _ in $(seq 1 200); do
        n=$(curl -fsS http://127.0.0.1:8081/status 2>/dev/null |
            python3 -c 'import json,sys; print(json.load(sys.stdin)["available"])' 2>/dev/null || echo 0)
        [ "$n" = 3 ] && return 0
        sleep 0.05
    done
    echo "not all gateways came up" >&2; exit 1
}
wait_all_up

# nginx, one worker, a static body of the same size as a real answer.
body=$(curl -fsS 'http://127.0.0.1:8080/get-tcp-ip?uid=bench')
mkdir -p "$work/nginx"
cat >"$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $work/nginx; proxy_temp_path $work/nginx;
    fastcgi_temp_path $work/nginx; uwsgi_temp_path $work/nginx; scgi_temp_path $work/nginx;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$nginx_port;
        location /get-tcp-ip { default_type application/json; return 200 '$body'; }
    }
}
CONF
nginx -c "$work/nginx.conf" -p "$work/nginx"
for _ in $(seq 1 50); do curl -fsS "http://127.0.0.1:$nginx_port/get-tcp-ip" >/dev/null 2>&1 && break; sleep 0.05; done

rps() { awk '/Requests\/sec/ {print $2}'; }
total_requests() { awk '/requests in/ {print $1}'; }
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; }  # utime stime
# One wrk run against pid $1; appends "req/s cpu-us-per-request" to $work/$2 and prints wrk's
# latency lines. CPU per request (utime+stime of the server, all its threads, over the run) is
# the steadier number on a shared machine; req/s also depends on what else runs.
wrk_threads=1  # wrk -t
measure() {  # pid label wrk-args...
    local pid=$1 label=$2; shift 2
    local t0 t1 out n r us split
    t0=$(cpu_ticks "$pid")
    out=$(wrk -t"$wrk_threads" -c"$conns" -d"$duration" --latency "$@")
    t1=$(cpu_ticks "$pid")
    n=$(echo "$out" | total_requests)
    r=$(echo "$out" | rps)
    # shellcheck disable=SC2086 # t0 and t1 are "utime stime" pairs
    read -r us split < <(python3 -c '
import sys
u0, s0, u1, s1, hz, n = map(float, sys.argv[1:])
k = 1e6 / hz / n
print(f"{(u1 - u0 + s1 - s0) * k:.1f} {(u1 - u0) * k:.2f}/{(s1 - s0) * k:.2f}")' $t0 $t1 "$(getconf CLK_TCK)" "$n")
    echo "$r $us $split" >>"$work/$label"
    printf '    %-10s %9.0f req/s  %5.1f us CPU/req (user/sys %s)  p50 %s  p99 %s\n' "$label" "$r" \
        "$us" "$split" "$(echo "$out" | awk '$1=="50%" {print $2}')" \
        "$(echo "$out" | awk '$1=="99%" {print $2}')"
    echo "$out" | grep -E "Non-2xx|Socket errors" | sed 's/^/      /' || true
}
echo "body: ${#body} bytes: $body"
echo "machine: $(nproc) cores, $(uname -sr); wrk -t1 -c$conns -d$duration, $rounds rounds per mode"
echo "load before: $(uptime | sed 's/.*load average/load average/')"
nginx_worker=$(pgrep -P "$(cat "$work/nginx.pid")" | head -1)
disp_url="http://127.0.0.1:8080/get-tcp-ip?uid=bench"
nginx_url="http://127.0.0.1:$nginx_port/get-tcp-ip?uid=bench"
# Rounds alternate which server goes first, so a drift in background load hits both alike; the
# report uses the median of the rounds.
for mode in keepalive close; do
    hdr=()
    [ "$mode" = close ] && hdr=(-H "Connection: close")
    echo
    echo "== $mode"
    for round in $(seq 1 "$rounds"); do
        if [ $((round % 2)) = 1 ]; then
            measure "$disp_pid" "disp_$mode" "${hdr[@]}" "$disp_url"
            measure "$nginx_worker" "nginx_$mode" "${hdr[@]}" "$nginx_url"
        else
            measure "$nginx_worker" "nginx_$mode" "${hdr[@]}" "$nginx_url"
            measure "$disp_pid" "disp_$mode" "${hdr[@]}" "$disp_url"
        fi
    done
done
echo "load after: $(uptime | sed 's/.*load average/load average/')"
echo
# summarize A-file B-file title A-name B-name: medians of req/s and CPU, the ratio of the
# medians and the per-round ratios.
summarize() {
    python3 - "$@" <<'PY'
import statistics, sys
def load(p):
    rows = [l.split() for l in open(p) if l.strip()]
    med = lambda i: statistics.median(float(r[i]) for r in rows)
    # user/sys: medians of each part over the rounds (they need not add up to the CPU median)
    us = [r[2].split("/") for r in rows]
    split = (f"{statistics.median(float(u) for u, _ in us):.2f}/"
             f"{statistics.median(float(s) for _, s in us):.2f}")
    return med(0), med(1), [float(r[0]) for r in rows], split
d, du, dr, ds = load(sys.argv[1]); n, nu, nr, ns = load(sys.argv[2])
an, bn = sys.argv[4], sys.argv[5]
ratios = " ".join(f"{a / b:.2f}" for a, b in zip(dr, nr))
print(f"{sys.argv[3]}: {an} {d:.0f} req/s ({du:.1f} us CPU/req, user/sys {ds}), {bn} {n:.0f} "
      f"req/s ({nu:.1f} us CPU/req, user/sys {ns}), ratio {d / n:.2f} (medians; per round: {ratios})")
PY
}
for mode in keepalive close; do
    summarize "$work/disp_$mode" "$work/nginx_$mode" "$mode" dispatcher nginx
done
echo "picks per gateway during the run:"
curl -fsS http://127.0.0.1:8081/status | python3 -c '
import json, sys
d = json.load(sys.stdin)
tot = sum(g["picks"] for g in d["gateways"]) or 1
for g in d["gateways"]:
    print("  %s weight %d: %d picks (%.1f%%)" % (g["id"], g["weight"], g["picks"], 100.0 * g["picks"] / tot))'

# A second dispatcher with `threads: $threads` on the same fleet (8090/8091), against the first
# (threads: 1), both under wrk -t2 (one load-generating thread could not feed two server
# threads). The machine has two cores, shared with wrk: this shows what a second thread adds
# when the cores are already busy, not the scaling on an idle many-core host.
if [ "$threads" -gt 1 ]; then
    disp1_pid=$disp_pid
    disp_config "$work/disp2.yaml" 8090 8091 "$threads"
    start_dispatcher "$work/disp2.yaml" disp2
    disp2_pid=$disp_pid
    disp_pid=$disp1_pid
    for _ in $(seq 1 200); do
        curl -fsS 'http://127.0.0.1:8090/get-tcp-ip?uid=bench' >/dev/null 2>&1 && break
        sleep 0.05
    done
    wrk_threads=2
    disp2_url="http://127.0.0.1:8090/get-tcp-ip?uid=bench"
    echo
    echo "== threads: 1 against threads: $threads, wrk -t2 -c$conns -d$duration"
    echo "load before: $(uptime | sed 's/.*load average/load average/')"
    for mode in keepalive close; do
        hdr=()
        [ "$mode" = close ] && hdr=(-H "Connection: close")
        echo "-- $mode"
        for round in $(seq 1 "$rounds"); do
            if [ $((round % 2)) = 1 ]; then
                measure "$disp_pid" "t1_$mode" "${hdr[@]}" "$disp_url"
                measure "$disp2_pid" "t${threads}_$mode" "${hdr[@]}" "$disp2_url"
            else
                measure "$disp2_pid" "t${threads}_$mode" "${hdr[@]}" "$disp2_url"
                measure "$disp_pid" "t1_$mode" "${hdr[@]}" "$disp_url"
            fi
        done
    done
    echo "load after: $(uptime | sed 's/.*load average/load average/')"
    for mode in keepalive close; do
        summarize "$work/t${threads}_$mode" "$work/t1_$mode" "$mode" "threads $threads" "threads 1"
    done
    kill -TERM "$disp2_pid" 2>/dev/null || true
fi

# kill -9 under traffic: when does the dispatcher stop handing the dead gateway out? With the
# configuration as shipped (pulls every 500 ms).
kill -TERM "$disp_pid" 2>/dev/null || true
wait "$disp_pid" 2>/dev/null || true
start_dispatcher "$root/config/local/dispatcher.yaml" disp-stock
wait_all_up
echo
echo "== kill -9 of gw1 under traffic (poll interval 500ms, timeout 300ms, fall 2; goal <= 1.3s)"
for run in $(seq 1 "$kill_runs"); do
    python3 - "${gw_pids[gw1]}" <<'PY'
import http.client, os, signal, sys, time
pid = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", 8080, timeout=2)
def ask():
    c.request("GET", "/get-tcp-ip?uid=killbench")
    r = c.getresponse(); body = r.read()
    return r.status, body
t_end = time.monotonic() + 0.5
while time.monotonic() < t_end: ask()           # warm: gw1 is being handed out
t_kill = time.monotonic()
os.kill(pid, signal.SIGKILL)
last = None; n = 0
t_end = t_kill + 3.0
while time.monotonic() < t_end:
    st, body = ask(); n += 1
    if st == 200 and b'"id":"gw1"' in body.split(b'"alternates"')[0] + body.split(b']')[-1]:
        last = time.monotonic()
print(f"  last handed out {0 if last is None else (last - t_kill)*1000:.0f} ms after kill -9 ({n} requests in 3 s)")
PY
    start_gateway gw1; gw_pids[gw1]=$gw_pid
    wait_all_up
done
