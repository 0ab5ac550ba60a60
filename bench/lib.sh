# Shared by the bench/*.sh scripts (sourced, not run).
# bench_compile SRC OUT LIB: builds a bench program against the build's libimgate_common.a when
# OUT is missing or older than SRC or LIB. The bench programs are not CMake targets so that the
# test build (and CI) does not pay for them.
bench_compile() {
    local src=$1 out=$2 lib=$3
    [ -f "$lib" ] || { echo "missing $lib: build first" >&2; return 1; }
    mkdir -p "$(dirname "$out")"
    if [ ! -x "$out" ] || [ "$src" -nt "$out" ] || [ "$lib" -nt "$out" ]; then
        g++ -std=c++20 -O2 -DBOOST_ASIO_SEPARATE_COMPILATION -DBOOST_BEAST_SEPARATE_COMPILATION \
            -DBOOST_ASIO_NO_DEPRECATED -I"$root/src" -I"$root" "$src" "$lib" \
            -lssl -lcrypto -lspdlog -lfmt -lyaml-cpp -lsystemd -lhiredis -pthread -o "$out"
    fi
}

# gateway_write_counters ADMIN-HOSTPORT: the gateway's client-writer counters as "frames writes"
# (imgate_gateway_frames_written_total, imgate_gateway_socket_writes_total): frames per write.
gateway_write_counters() {
    curl -fsS "http://$1/metrics" | awk '
        /^imgate_gateway_frames_written_total/ {f=$2} /^imgate_gateway_socket_writes_total/ {w=$2}
        END {printf "%d %d\n", f, w}'
}

# A loopback port that was free a moment ago.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# bench_init NAME: a fresh work dir in $work, an empty $pids and an EXIT trap that stops every
# process in $pids (SIGTERM, then waits) and removes the work dir.
bench_init() {
    work=$(mktemp -d "/tmp/imgate-bench-$1.XXXXXX")
    pids=()
    trap bench_cleanup EXIT
}
bench_cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$work"
}

# bench_start_gateway ID [WRAPPER...]: starts imgate-gateway ID with ${gw_config:-$work/gateway.yaml},
# its ready file and log in $work, optionally under WRAPPER (e.g. perf record ... --); sets
# started_pid and adds it to $pids. Does not wait: see bench_wait_ready.
bench_start_gateway() {
    local id=$1
    shift
    "$@" "$bin/imgate-gateway" --config "${gw_config:-$work/gateway.yaml}" --id "$id" \
        --ready-file "$work/$id.ready" >"$work/$id.log" 2>&1 &
    started_pid=$!
    pids+=("$started_pid")
}

# bench_wait_ready NAME: waits up to 10 s for $work/NAME.ready, else prints NAME's log and exits.
bench_wait_ready() {
    for _ in $(seq 1 200); do [ -s "$work/$1.ready" ] && return 0; sleep 0.05; done
    echo "$1 did not start:" >&2
    cat "$work/$1.log" >&2
    exit 1
}

# ready_field NAME KEY: one field of NAME's ready file (client, admin, public, pid, ...).
ready_field() {
    python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/$1.ready" "$2"
}

# bench_single_gateway_fleet: $work/fleet.yaml with one gateway gw1 on port 0 everywhere, and a
# random $work/token.secret.
bench_single_gateway_fleet() {
    # Secrets 0600: the gateway refuses secret files others can read.
    (umask 077 && head -c 32 /dev/urandom | base64 >"$work/token.secret")
    cat >"$work/fleet.yaml" <<YAML
gateways:
  - id: gw1
    client: 127.0.0.1:0
    tls: 127.0.0.1:0
    ws: 127.0.0.1:0
    wss: 127.0.0.1:0
    admin: 127.0.0.1:0
    rpc: 127.0.0.1:0
YAML
    # A throw-away CA and certificate for the tls and wss listeners (the gateway.yaml of each
    # script names them: bench_tls_yaml).
    "$root/config/local/dev-certs.sh" "$work/certs" >/dev/null
}

# bench_tls_yaml: the gateway.yaml `tls:` block for bench_single_gateway_fleet's certificate.
bench_tls_yaml() {
    printf 'tls:\n  cert_file: certs/server.crt\n  key_file: certs/server.key\n  max_handshakes: 100000\n'
}

# bench_fleet_secrets: random $work/{token,cluster}.secret and admin.token, 0600 (the gateway
# refuses secret files others can read).
bench_fleet_secrets() {
    (umask 077 && for f in token.secret cluster.secret admin.token; do
        head -c 32 /dev/urandom | base64 >"$work/$f"
    done)
}

# bench_three_gateway_fleet: random $work/{token,cluster}.secret and admin.token, and
# $work/fleet.yaml with gw1..gw3 on port 0 for clients and admin and free ports for the RPC mesh.
bench_three_gateway_fleet() {
    bench_fleet_secrets
    {
        echo "cluster:"
        echo "  secret_file: cluster.secret"
        echo "gateways:"
        for id in gw1 gw2 gw3; do
            echo "  - id: $id"
            echo "    client: 127.0.0.1:0"
            echo "    admin: 127.0.0.1:0"
            echo "    rpc: 127.0.0.1:$(free_port)"
        done
    } >"$work/fleet.yaml"
}

# bench_compile_libs SRC OUT LIB...: bench_compile for a program that needs several of the build's
# libraries (in link order, e.g. libimgate_client.a before libimgate_common.a). Rebuilds when OUT
# is missing or older than SRC or any LIB, so OUT may live in the build dir across runs.
bench_compile_libs() {
    local src=$1 out=$2 lib stale=0
    shift 2
    for lib in "$@"; do
        [ -f "$lib" ] || { echo "missing $lib: build first" >&2; return 1; }
        [ "$lib" -nt "$out" ] && stale=1
    done
    mkdir -p "$(dirname "$out")"
    if [ ! -x "$out" ] || [ "$src" -nt "$out" ] || [ "$stale" = 1 ]; then
        echo "compiling $(basename "$src") ..." >&2
        g++ -std=c++20 -O2 -DBOOST_ASIO_SEPARATE_COMPILATION -DBOOST_BEAST_SEPARATE_COMPILATION \
            -DBOOST_ASIO_NO_DEPRECATED -I"$root/src" -I"$root" "$src" "$@" \
            -lssl -lcrypto -lspdlog -lfmt -lyaml-cpp -lsystemd -lhiredis -pthread -o "$out"
    fi
}

# bench_compile_mosquitto SRC OUT: builds a bench program that links libmosquitto only (not the
# build's libraries) when OUT is missing or older than SRC.
bench_compile_mosquitto() {
    local src=$1 out=$2
    mkdir -p "$(dirname "$out")"
    if [ ! -x "$out" ] || [ "$src" -nt "$out" ]; then
        echo "compiling $(basename "$src") ..." >&2
        g++ -std=c++20 -O2 -I"$root" "$src" -lmosquitto -pthread -o "$out"
    fi
}
