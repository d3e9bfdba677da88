#!/usr/bin/env bash
# seed_bench.sh — `pgsov seed` against `pgbench -i`, on the same throw-away local cluster.
#
#   1. pgsov seed: the credit scenario (rules/scenarios/credito.json) scaled to ~1,000,000 rows
#      over 5 tables with their primary keys, unique keys, foreign keys, checks and indexes,
#      loaded with COPY in one transaction (--truncate), SEED_BENCH_ROUNDS times;
#   2. pgbench -i -I dtg -s 10 (drop, create, client-side COPY of 1,000,110 rows, no keys),
#      the same number of times, interleaved with 1;
#   3. peak RSS of pgsov seed (GNU time -v) at ~100k and ~1M rows, to show memory stays flat.
# Prints medians, rows/s and the ratio, and where pgsov seed's time went (COPY of the rows,
# re-creating keys and indexes; medians of the times pgsov seed prints). Both go over TLS to
# localhost as the superuser.
#
# Environment: PGSOV_BIN (dir with pgsov; default bin/), SEED_BENCH_ROWS (default 1000000),
# SEED_BENCH_ROUNDS (default 3), SEED_BENCH_TEXT=1 to add the same number of
# `pgsov seed --text-copy` rounds (COPY text instead of binary), interleaved too.
# Needs pgbench and /usr/bin/time.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
PGSOV_BIN=${PGSOV_BIN:-$src/bin}
pgsov=$PGSOV_BIN/pgsov
rows_target=${SEED_BENCH_ROWS:-1000000}
rounds=${SEED_BENCH_ROUNDS:-3}
scenario=$src/rules/scenarios/credito.json

[[ -x $pgsov ]] || { echo "seed_bench: no $pgsov (build first, or set PGSOV_BIN)" >&2; exit 1; }
command -v pgbench >/dev/null || { echo "seed_bench: pgbench not found" >&2; exit 1; }
[[ -x /usr/bin/time ]] || { echo "seed_bench: /usr/bin/time not found (apt-get install time)" >&2; exit 1; }

source "$src/tests/lib/pgcluster.sh"
tmp=$(mktemp -d /tmp/pgsov-seedbench.XXXXXX)
cleanup() { pgc_stop_all; rm -rf "$tmp"; }
trap cleanup EXIT
trap 'exit 130' INT TERM

pgc_init "$tmp" >/dev/null
pgc_start bench
port=$PGC_PORT_bench
pgc_psql bench postgres -q -c "CREATE DATABASE seedbench" -c "CREATE DATABASE pgbenchdb"

cat > "$tmp/proxy.ini" <<INI
[proxy]
client_tls = disable

[env.development]
host = localhost
port = $port
database = seedbench
sslmode = verify-full
sslrootcert = $PGC_PKI/ca.crt
host_patterns = localhost:$port
INI
export PGUSER=postgres PGPASSWORD=$PGC_SUPERPASS
unset PGSOV_ENV NODE_ENV DEV_DATABASE_URL || true
"$pgsov" migrate -c "$tmp/proxy.ini" --env development --dir "$src/migrations" >/dev/null

# Scale the scenario so that all its tables together hold ~rows_target rows.
base=$("$pgsov" seed --scenario "$scenario" --seed 1 --dry-run | awk '/^total:/ {print $2}')
scale=$(awk -v r="$rows_target" -v b="$base" 'BEGIN { printf "%.4f", r / b }')

now() { date +%s.%N; }
median() { sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

seed_times=() pgbench_times=() pgbench_pk_times=() text_times=() copy_times=() key_times=() seed_rows=0
# pgsov seed's own report: "app.x: N rows (1.23s, COPY binary)" per table, then
# "keys and indexes: N re-created after COPY (1.23s; ...)"
copy_seconds() { sed -n 's/^[^ ]*: [0-9]* rows (\([0-9.]*\)s, COPY.*/\1/p' | awk '{ s += $1 } END { printf "%.3f", s }'; }
key_seconds() { sed -n 's/^keys and indexes: .*(\([0-9.]*\)s;.*/\1/p' | awk '{ s += $1 } END { printf "%.3f", s }'; }
for ((r = 1; r <= rounds; r++)); do
    t0=$(now)
    out=$("$pgsov" seed -c "$tmp/proxy.ini" --env development --scenario "$scenario" --seed "$r" \
          --scale "$scale" --truncate)
    t1=$(now)
    seed_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
    seed_rows=$(sed -n 's/.*: \([0-9]*\) rows in .*/\1/p' <<<"$out")
    copy_times+=("$(copy_seconds <<<"$out")")
    key_times+=("$(key_seconds <<<"$out")")

    if [[ ${SEED_BENCH_TEXT:-0} == 1 ]]; then
        t0=$(now)
        "$pgsov" seed -c "$tmp/proxy.ini" --env development --scenario "$scenario" --seed "$r" \
            --scale "$scale" --truncate --text-copy >/dev/null
        t1=$(now)
        text_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
    fi

    t0=$(now)
    PGHOST=localhost PGPORT=$port PGSSLMODE=require pgbench -q -i -I dtg -s 10 pgbenchdb >/dev/null 2>&1
    t1=$(now)
    pgbench_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")

    # For comparison only (the issue's target is against dtg): pgbench also building its
    # primary keys, as pgsov seed builds the schema's keys and indexes.
    t0=$(now)
    PGHOST=localhost PGPORT=$port PGSSLMODE=require pgbench -q -i -I dtgp -s 10 pgbenchdb >/dev/null 2>&1
    t1=$(now)
    pgbench_pk_times+=("$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')")
done
pgbench_rows=$(pgc_psql bench pgbenchdb -At -c "SELECT (SELECT count(*) FROM pgbench_accounts) + \
    (SELECT count(*) FROM pgbench_branches) + (SELECT count(*) FROM pgbench_tellers)")

seed_med=$(printf '%s\n' "${seed_times[@]}" | median)
pgbench_med=$(printf '%s\n' "${pgbench_times[@]}" | median)
pgbench_pk_med=$(printf '%s\n' "${pgbench_pk_times[@]}" | median)
copy_med=$(printf '%s\n' "${copy_times[@]}" | median)
key_med=$(printf '%s\n' "${key_times[@]}" | median)
text_med=$( ((${#text_times[@]})) && printf '%s\n' "${text_times[@]}" | median || echo 0)

# Peak RSS at a tenth of the rows and at all of them.
rss() {
    /usr/bin/time -v "$pgsov" seed -c "$tmp/proxy.ini" --env development --scenario "$scenario" \
        --seed 99 --scale "$1" --truncate 2>&1 >/dev/null | awk '/Maximum resident set size/ { print $NF }'
}
small_scale=$(awk -v s="$scale" 'BEGIN { printf "%.4f", s / 10 }')
rss_small=$(rss "$small_scale")
rss_large=$(rss "$scale")

awk -v sr="$seed_rows" -v st="$seed_med" -v pr="$pgbench_rows" -v pt="$pgbench_med" \
    -v all_s="${seed_times[*]}" -v all_p="${pgbench_times[*]}" -v n="$rounds" \
    -v rs="$rss_small" -v rl="$rss_large" -v cm="$copy_med" -v km="$key_med" -v tm="$text_med" \
    -v all_t="${text_times[*]}" -v pkt="$pgbench_pk_med" 'BEGIN {
    printf "| load (median of %d) | rows | seconds | rows/s |\n|---|---:|---:|---:|\n", n
    printf "| pgsov seed (credito.json, 5 tables, keys + FKs + indexes) | %d | %.2f | %.0f |\n", sr, st, sr / st
    if (tm > 0)
        printf "| pgsov seed --text-copy (same, COPY text) | %d | %.2f | %.0f |\n", sr, tm, sr / tm
    printf "| pgbench -i -I dtg -s 10 (4 tables, no keys) | %d | %.2f | %.0f |\n", pr, pt, pr / pt
    printf "| pgbench -i -I dtgp -s 10 (same, with its primary keys; comparison only) | %d | %.2f | %.0f |\n", pr, pkt, pr / pkt
    printf "\nseed rows/s ÷ pgbench -i rows/s = %.2f   (runs: seed %s s; pgbench %s s)\n", \
           (sr / st) / (pr / pt), all_s, all_p
    printf "for comparison, seed ÷ pgbench -i -I dtgp (pgbench building its keys too) = %.2f\n", \
           (sr / st) / (pr / pkt)
    printf "pgsov seed time (medians): COPY of the rows %.2f s (%.0f rows/s), keys and indexes %.2f s, rest %.2f s\n", \
           cm, sr / cm, km, st - cm - km
    if (tm > 0)
        printf "pgsov seed --text-copy runs: %s s\n", all_t
    printf "pgsov seed peak RSS: %d KiB at ~%d rows, %d KiB at ~%d rows\n", rs, sr / 10, rl, sr
}'
