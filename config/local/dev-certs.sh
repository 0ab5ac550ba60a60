#!/usr/bin/env bash
# Development certificates for the local fleet and the tests: a throw-away CA and one server
# certificate (EC P-256) for localhost, 127.0.0.1 and ::1, signed by it.
#
#   config/local/dev-certs.sh DIR [NAME...]   # extra DNS names or IP addresses for the server cert
#
# Writes DIR/ca.crt, DIR/ca.key, DIR/server.crt, DIR/server.key (keys 0600). Does nothing when
# DIR/server.crt exists and is valid for 30 more days, so re-running is cheap. Never commit DIR:
# the private keys are made on the machine that uses them (config/local/certs is git-ignored).
set -euo pipefail
dir=${1:?usage: dev-certs.sh DIR [NAME...]}
shift
command -v openssl >/dev/null || { echo "dev-certs.sh: openssl is not installed (make deps)" >&2; exit 1; }
mkdir -p "$dir"
if [ -s "$dir/server.crt" ] && [ -s "$dir/server.key" ] && [ -s "$dir/ca.crt" ] &&
   openssl x509 -in "$dir/server.crt" -noout -checkend $((30 * 86400)) >/dev/null 2>&1; then
  exit 0
fi
umask 077
san="DNS:localhost,IP:127.0.0.1,IP:::1"
for n in "$@"; do
  if [[ $n =~ ^[0-9.]+$ || $n == *:* ]]; then san="$san,IP:$n"; else san="$san,DNS:$n"; fi
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=imgate development CA" -keyout "$tmp/ca.key" -out "$tmp/ca.crt" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=localhost" \
  -keyout "$tmp/server.key" -out "$tmp/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
  "$san" >"$tmp/ext.cnf"
openssl x509 -req -in "$tmp/server.csr" -CA "$tmp/ca.crt" -CAkey "$tmp/ca.key" -CAcreateserial \
  -days 825 -extfile "$tmp/ext.cnf" -out "$tmp/server.crt" 2>/dev/null
chmod 600 "$tmp/ca.key" "$tmp/server.key"
chmod 644 "$tmp/ca.crt" "$tmp/server.crt"
mv "$tmp/ca.key" "$tmp/ca.crt" "$tmp/server.key" "$tmp/server.crt" "$dir/"
echo "dev-certs.sh: made a development CA and a server certificate ($san) in $dir"
