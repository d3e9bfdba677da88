#!/usr/bin/env bash
# Runs integration-test binaries against two fresh PostgreSQL clusters ("dev" and "prod").
# Each binary is a cmocka program that reads PGSOV_IT_* from the environment (harness.c).
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
source "$src/tests/lib/pgcluster.sh"

tmp=$(mktemp -d /tmp/pgsov-it.XXXXXX)
cleanup() { pgc_stop_all; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

pgc_init "$tmp"
pgc_start dev || exit 1
pgc_start prod || exit 1

export PGSOV_IT_DIR=$tmp PGSOV_IT_PKI=$PGC_PKI PGSOV_IT_DEV_PORT=$PGC_PORT_dev \
       PGSOV_IT_PROD_PORT=$PGC_PORT_prod PGSOV_IT_SUPERPASS=$PGC_SUPERPASS PGSOV_SRC=$src \
       PGSOV_IT_PGBIN=$PGC_BINDIR PGSOV_IT_RUNAS=$PGC_RUNAS
export PGSOV_BIN=${PGSOV_BIN:-$src/bin}

pass=0; fail=0; failed=()
for t in "$@"; do
    echo "== $(basename "$t")"
    start=$(date +%s)
    if timeout 300 "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); failed+=("$(basename "$t")"); fi
    echo "   ($(( $(date +%s) - start ))s)"
done
((fail > 0)) && echo "failed: ${failed[*]}"
echo "integration: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
