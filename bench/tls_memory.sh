#!/usr/bin/env bash
# Heap an idle TLS server connection holds after its handshake, per TLS library available on
# this machine (issue 13 item 2: what a gateway's idle TLS session cannot go below). OpenSSL is
# always measured (the gateway's library); GnuTLS and wolfSSL only when their -dev packages are
# installed (this script installs nothing). In-process over socketpairs, no network.
# Usage: bench/tls_memory.sh   Env: CONNECTIONS (default 500)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
n=${CONNECTIONS:-500}
work=$(mktemp -d /tmp/imgate-bench-tlsmem.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$root/config/local/dev-certs.sh" "$work/certs" >/dev/null
g++ -std=c++20 -O2 "$root/bench/tls_memory/openssl.cpp" -o "$work/openssl" -lssl -lcrypto
"$work/openssl" "$work/certs" "$n"
if [ -f /usr/include/gnutls/gnutls.h ]; then
    g++ -std=c++20 -O2 "$root/bench/tls_memory/gnutls.cpp" -o "$work/gnutls" -lgnutls
    "$work/gnutls" "$work/certs" "$n"
else
    echo "gnutls: skipped (libgnutls28-dev is not installed)"
fi
if [ -f /usr/include/wolfssl/ssl.h ]; then
    g++ -std=c++20 -O2 "$root/bench/tls_memory/wolfssl.cpp" -o "$work/wolfssl" -lwolfssl
    "$work/wolfssl" "$work/certs" "$n"
else
    echo "wolfssl: skipped (libwolfssl-dev is not installed)"
fi
