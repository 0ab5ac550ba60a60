#!/usr/bin/env bash
# Starts the local fleet (1 dispatcher + 3 gateways on loopback) in the foreground.
# Ctrl-C or SIGTERM stops all four; if any of them dies, the others are stopped too.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/${BUILD_DIR:-build}/src"
pids=()

stop_all() {
    trap - INT TERM EXIT
    echo
    echo "stopping the fleet..."
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
    wait 2>/dev/null
    echo "fleet stopped"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

for id in gw1 gw2 gw3; do
    "$bin/imgate-gateway" --config "$here/gateway.yaml" --id "$id" &
    pids+=($!)
done
"$bin/imgate-dispatcher" --config "$here/dispatcher.yaml" &
pids+=($!)

for _ in $(seq 1 50); do
    curl -fsS http://127.0.0.1:8080/healthz >/dev/null 2>&1 && break
    sleep 0.1
done

cat <<TIPS

imgate local fleet is running:
  dispatcher  public http://127.0.0.1:8080   admin/dashboard http://127.0.0.1:8081/
  gateways    gw1 127.0.0.1:9001   gw2 127.0.0.1:9002   gw3 127.0.0.1:9003 (admin 91xx)

Try:
  curl -s 'http://127.0.0.1:8080/get-tcp-ip?uid=alice'
  $bin/imgate listen --user bob                       # terminal 1: picks a gateway via the dispatcher
  $bin/imgate send --user alice --to bob "hello"      # terminal 2
  curl -s http://127.0.0.1:8081/status

Ctrl-C stops all four processes.
TIPS

# Exit (and stop the rest) as soon as any member of the fleet exits.
wait -n "${pids[@]}"
echo "a fleet process exited; stopping the others" >&2
