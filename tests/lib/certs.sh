#!/usr/bin/env bash
# certs.sh DIR — a throw-away test PKI, generated at test time (never committed):
#   ca.crt/ca.key            the test CA
#   server.crt/server.key    CN=localhost, SAN localhost, 127.0.0.1, ::1 (upstreams and proxy)
#   client-app.crt/.key      CN=app        client certificates signed by the test CA
#   client-ci.crt/.key       CN=ci-deploy
#   wrong-ca.crt/.key        a CA that signed nothing we use (for "wrong CA" tests)
#   other-host.crt/.key      CN=other.example, signed by the test CA (for "wrong host" tests)
set -euo pipefail
dir=$1
mkdir -p "$dir"
cd "$dir"
subj() { echo "/O=pgsov test/CN=$1"; }
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "$(subj 'pgsov test CA')" -keyout ca.key -out ca.crt 2>/dev/null
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "$(subj 'wrong CA')" -keyout wrong-ca.key -out wrong-ca.crt 2>/dev/null
leaf() { # name cn san
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$(subj "$2")" \
        -keyout "$1.key" -out "$1.csr" 2>/dev/null
    printf 'basicConstraints=CA:FALSE\nsubjectAltName=%s\n' "$3" > "$1.ext"
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile "$1.ext" -out "$1.crt" 2>/dev/null
    rm -f "$1.csr" "$1.ext"
    chmod 600 "$1.key"
}
leaf server localhost "DNS:localhost,IP:127.0.0.1,IP:::1"
leaf client-app app "DNS:app"
leaf client-ci ci-deploy "DNS:ci-deploy"
leaf other-host other.example "DNS:other.example"
