#!/usr/bin/env bash
# Drives the RUNNING local fleet (`make run`) with `imgate load` for a bounded time and reports
# throughput, latency percentiles and the gateways' CPU per delivered message.
#
#   bench/load_local.sh                       # defaults below, through the dispatcher
#   CLIENTS=2000 RATE=5000 DURATION=15s bench/load_local.sh
#   TARGET=gateways bench/load_local.sh       # connect to gw1..gw3 directly
#
# Everything stays on loopback; imgate load refuses anything else and caps clients (20000) and
# duration (600 s). Writes the JSON report to ${OUT:-/tmp/imgate-load.json}.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin="$root/${BUILD_DIR:-build}/src/imgate"
CLIENTS=${CLIENTS:-1000}
ROOMS=${ROOMS:-20}
RATE=${RATE:-2000}
DURATION=${DURATION:-10s}
PAYLOAD=${PAYLOAD:-64}
ROOM_SHARE=${ROOM_SHARE:-0.1}
TARGET=${TARGET:-dispatcher}
OUT=${OUT:-/tmp/imgate-load.json}
DISPATCHER=${DISPATCHER:-http://127.0.0.1:8080}
ADMINS=${ADMINS:-127.0.0.1:9101 127.0.0.1:9102 127.0.0.1:9103}

[ -x "$bin" ] || { echo "no $bin: run make build (or set BUILD_DIR)" >&2; exit 1; }
curl -fsS "$DISPATCHER/healthz" >/dev/null 2>&1 ||
    { echo "the local fleet is not running at $DISPATCHER: start it with make run" >&2; exit 1; }

# Gateway pids from their admin /status, to measure their CPU time over the run.
pids=()
for a in $ADMINS; do
    pid=$(curl -fsS "http://$a/status" 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])' 2>/dev/null || true)
    [ -n "$pid" ] && pids+=("$pid")
done
cpu_ticks() {  # utime+stime of all gateway pids, in clock ticks
    local t=0
    for p in "${pids[@]}"; do
        [ -r "/proc/$p/stat" ] || continue
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}

if [ "$TARGET" = gateways ]; then
    target=(--gateways 127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003)
else
    target=(--dispatcher "$DISPATCHER")
fi
cmd=("$bin" load "${target[@]}" --clients "$CLIENTS" --rooms "$ROOMS" --rate "$RATE"
     --duration "$DURATION" --payload-bytes "$PAYLOAD" --room-share "$ROOM_SHARE"
     --secret-file "$root/config/local/token.secret")
echo "command: ${cmd[*]#$root/}"
before=$(cpu_ticks)
set +e
"${cmd[@]}" --json -q >"$OUT"
rc=$?
set -e
after=$(cpu_ticks)
hz=$(getconf CLK_TCK)
python3 - "$OUT" "$((after - before))" "$hz" "${#pids[@]}" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
ticks, hz, ngw = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
lat = r["latency_us"]
res = " ".join(f"{k} {v}" for k, v in sorted(r["results"].items()))
print(f"clients {r['connected']}/{r['params']['clients']} connected, rooms {r['params']['rooms']}")
print(f"sends {r['sends']} ({r['sends_per_s']:.0f}/s)  results: {res}  missing {r['missing']}  not queued {r['not_queued']}")
print(f"deliveries {r['deliveries']} ({r['deliveries_per_s']:.0f}/s)  receipts {r['receipts']}")
for k in ("send_to_result", "send_to_deliver"):
    l = lat[k]
    print(f"{k:16} p50 {l['p50']} us  p90 {l['p90']} us  p99 {l['p99']} us  p99.9 {l['p999']} us  max {l['max']} us")
if ngw and r["deliveries"]:
    cpu_s = ticks / hz
    print(f"gateways' CPU over the run ({ngw} processes, incl. logins): {cpu_s:.2f} s"
          f" = {cpu_s * 1e6 / r['deliveries']:.1f} us per delivered message")
PY
exit $rc
