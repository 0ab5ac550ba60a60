#!/usr/bin/env bash
# Starts the local fleet (1 dispatcher + 3 gateways on loopback) in the foreground.
# Ctrl-C or SIGTERM stops all four; if any of them dies, the others are stopped too.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
bin="$root/${BUILD_DIR:-build}/src"
run="$root/run"   # ready files and nothing else; git-ignored
mkdir -p "$run"
rm -f "$run"/*.ready
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
    "$bin/imgate-gateway" --config "$here/gateway.yaml" --id "$id" --ready-file "$run/$id.ready" &
    pids+=($!)
done
"$bin/imgate-dispatcher" --config "$here/dispatcher.yaml" --ready-file "$run/dispatcher.ready" &
pids+=($!)

# Wait until all four report they are listening, or one of them exits (e.g. a port in use).
for _ in $(seq 1 100); do
    ready=$(ls "$run"/*.ready 2>/dev/null | wc -l)
    [ "$ready" -eq 4 ] && break
    for p in "${pids[@]}"; do
        if ! kill -0 "$p" 2>/dev/null; then
            echo "error: a fleet process exited during start-up (see its log above;" \
                 "are ports 8080-8081, 9001-9003, 9101-9103, 9201-9203 free?)" >&2
            exit 1
        fi
    done
    sleep 0.1
done
if [ "$(ls "$run"/*.ready 2>/dev/null | wc -l)" -ne 4 ]; then
    echo "error: the fleet did not become ready within 10 s" >&2
    exit 1
fi

# The dispatcher hands out a gateway once it has seen `rise` good pulls of it (about 1 s).
for _ in $(seq 1 50); do
    curl -fsS -o /dev/null 'http://127.0.0.1:8080/get-tcp-ip?uid=run-fleet' 2>/dev/null && break
    sleep 0.1
done

secret="$here/token.secret"
cat <<TIPS

imgate local fleet is running:
  dispatcher  public http://127.0.0.1:8080   admin + dashboard http://127.0.0.1:8081/
  gateways    gw1 127.0.0.1:9001   gw2 127.0.0.1:9002   gw3 127.0.0.1:9003   (admin 9101-9103)

Try, in other terminals:
  curl -s 'http://127.0.0.1:8080/get-tcp-ip?uid=alice'
  $bin/imgate listen --secret-file $secret --user bob --room lobby
  $bin/imgate send   --secret-file $secret --user alice --to bob --wait-receipt 5s "hello bob"
  $bin/imgate send   --secret-file $secret --user alice --room lobby "hello room"
  $bin/imgate push   --admin 127.0.0.1:9102 --admin-token-file $here/admin.token --user bob "from the backend"
  $bin/imgate chat   --secret-file $secret --user carol --to bob      # each line typed is sent
  $bin/imgate load   --secret-file $secret --clients 200 --rate 500 --duration 5s
  open http://127.0.0.1:8081/ for the fleet dashboard;  curl -s http://127.0.0.1:8081/status

Ctrl-C stops all four processes.
TIPS

# Exit (and stop the rest) as soon as any member of the fleet exits.
wait -n "${pids[@]}"
echo "a fleet process exited; stopping the others" >&2
