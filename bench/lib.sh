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
            -lssl -lcrypto -lspdlog -lfmt -lyaml-cpp -lsystemd -pthread -o "$out"
    fi
}

# A loopback port that was free a moment ago.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
