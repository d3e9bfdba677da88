#!/usr/bin/env bash
# run.sh — `make bench`: pgsov-proxy side by side with a direct connection and PgBouncer.
#
# Starts one tuned PostgreSQL cluster (pgbench data at scale BENCH_SCALE), PgBouncer in session
# mode and two pgsov-proxy instances (guard on, guard off), all plaintext on 127.0.0.1, then:
#   1. idle_memory.sh     resident memory per idle client (pgsov-proxy, PgBouncer)
#   2. pgbench_matrix.sh  throughput and latency, every cell interleaved across the targets
# writes $PGSOV_BUILD/bench/results.md, stops everything it started, and finally runs the other
# benchmarks when present: $PGSOV_BUILD/bench/guard_bench and bench/seed_bench.sh.
#
# Environment: PGSOV_BIN (dir with pgsov-proxy), PGSOV_BUILD (build dir), BENCH_QUICK=1 (about
# one minute: 1 round of 1 s per cell, scale 1, 200 idle clients), or individually
# BENCH_ROUNDS, BENCH_SECONDS, BENCH_SCALE, BENCH_IDLE_CLIENTS. See docs/bench.md.
set -u
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/.." && pwd)
export BENCH_SRC=$src
export PGSOV_BIN=${PGSOV_BIN:-$src/bin}
export PGSOV_BUILD=${PGSOV_BUILD:-$src/build}
source "$here/lib.sh"

if [[ ${BENCH_QUICK:-0} == 1 ]]; then
    : "${BENCH_ROUNDS:=1}" "${BENCH_SECONDS:=1}" "${BENCH_SCALE:=1}" "${BENCH_IDLE_CLIENTS:=200}"
    # seed_bench.sh's own knobs, smaller unless already set
    : "${SEED_BENCH_ROWS:=100000}" "${SEED_BENCH_ROUNDS:=1}"
    export SEED_BENCH_ROWS SEED_BENCH_ROUNDS
else
    : "${BENCH_ROUNDS:=5}" "${BENCH_SECONDS:=2}" "${BENCH_SCALE:=10}" "${BENCH_IDLE_CLIENTS:=1000}"
fi
export BENCH_ROUNDS BENCH_SECONDS BENCH_SCALE BENCH_IDLE_CLIENTS

[[ -x $PGSOV_BIN/pgsov-proxy ]] || bench_die "no $PGSOV_BIN/pgsov-proxy: build first (make all), or set PGSOV_BIN"
command -v pgbouncer >/dev/null || bench_die "pgbouncer not found: apt-get install pgbouncer (make deps does)"
[[ -x $PGC_BINDIR/pgbench ]] || bench_die "pgbench not found in $PGC_BINDIR (package postgresql-contrib / postgresql)"

# 1000 idle clients need 1000+ descriptors in the helper, PgBouncer and the proxy.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
if (( $(ulimit -n) < BENCH_IDLE_CLIENTS * 2 + 100 )); then
    bench_say "open-file limit $(ulimit -n) is too low for $BENCH_IDLE_CLIENTS idle clients; using $(( ($(ulimit -n) - 100) / 2 ))"
    BENCH_IDLE_CLIENTS=$(( ($(ulimit -n) - 100) / 2 ))
fi

BENCH_OWN_PIDS=()
tmp=$(mktemp -d /tmp/pgsov-bench.XXXXXX)
cleaned=0
part_pid=
cleanup() {
    ((cleaned)) && return 0
    cleaned=1
    local p
    if [[ -n $part_pid ]]; then kill -TERM "$part_pid" 2>/dev/null; wait "$part_pid" 2>/dev/null; fi
    for p in "${BENCH_OWN_PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
    for p in "${BENCH_OWN_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    bench_pgbouncer_stop
    pgc_stop_all
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

export BENCH_OUT=$PGSOV_BUILD/bench
mkdir -p "$BENCH_OUT"
started=$(bench_now)

bench_say "starting PostgreSQL (pgbench -i -s $BENCH_SCALE), PgBouncer, pgsov-proxy guard on and off"
bench_cluster_start "$tmp" "$BENCH_SCALE" || bench_die "could not start the cluster"
bench_pgbouncer_start "$tmp" || bench_die "could not start PgBouncer (log above)"
bench_proxy_start "$tmp" proxy-guard on || bench_die "could not start pgsov-proxy (guard on)"
export BENCH_SOV_PORT=$BENCH_PROXY_PORT BENCH_SOV_PID=$BENCH_PROXY_PID
bench_proxy_start "$tmp" proxy-noguard off || bench_die "could not start pgsov-proxy (guard off)"
export BENCH_SOVNG_PORT=$BENCH_PROXY_PORT BENCH_SOVNG_PID=$BENCH_PROXY_PID
bench_proxy_start "$tmp" proxy-auth on proxy || bench_die "could not start pgsov-proxy (auth = proxy)"
export BENCH_SOVA_PORT=$BENCH_PROXY_PORT BENCH_SOVA_PID=$BENCH_PROXY_PID

# Every target must answer before anything is measured.
for t in "${BENCH_TARGETS[@]}" pgsov_auth; do
    bench_pgbench "$t" "$BENCH_OUT/check-$t.log" -S -t 10 -c 1 >/dev/null \
        || { cat "$BENCH_OUT/check-$t.log" >&2; bench_die "target $t does not run pgbench"; }
done
bench_say "setup took $(( $(bench_now) - started )) s; $BENCH_ROUNDS rounds x $BENCH_SECONDS s per cell"

# The parts run in the background so that a signal reaches our trap at once (bash defers
# traps while a foreground child runs); cleanup stops the running part first.
run_part() {
    "$@" &
    part_pid=$!
    wait "$part_pid"
    local rc=$?
    part_pid=
    return $rc
}

machine=$(bench_machine)
run_part "$here/idle_memory.sh" || bench_say "idle-memory part failed"
run_part "$here/pgbench_matrix.sh" || bench_say "pgbench matrix failed"

{
    echo "# pgsov-proxy vs direct vs PgBouncer"
    echo
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- machine: $machine"
    echo "- settings: scale $BENCH_SCALE, $BENCH_ROUNDS round(s) x $BENCH_SECONDS s per cell and target, median;" \
         "everything on 127.0.0.1 without TLS; PgBouncer session mode (pool 100);" \
         "pgsov-proxy workers = ${BENCH_WORKERS:-auto} (auto: one per CPU, the default), rule \`allow all all all any all\`, passthrough SCRAM (pgsov auth=proxy: SCRAM at the proxy against the role's pg_authid verifier, as PgBouncer's userlist, with upstream reuse)" \
         "$([[ ${BENCH_QUICK:-0} == 1 ]] && echo '(BENCH_QUICK=1: indicative only)')"
    echo
    echo "## Throughput (pgbench TPS, average latency; ratios of TPS)"
    echo
    cat "$BENCH_OUT/matrix.md" 2>/dev/null || echo "(not measured)"
    echo
    echo "## Idle clients: proxy memory per client"
    echo
    cat "$BENCH_OUT/idle.md" 2>/dev/null || echo "(not measured)"
} > "$BENCH_OUT/results.md"

cleanup
bench_say "results in $BENCH_OUT/results.md ($(( $(bench_now) - started )) s)"

# ---- the other engineers' benchmarks, after ours and with our servers stopped ---------------
echo
if [[ -x $PGSOV_BUILD/bench/guard_bench ]]; then
    echo "== guard_bench (statement classifier)"
    "$PGSOV_BUILD/bench/guard_bench" || bench_say "guard_bench failed"
else
    echo "== guard_bench: not present ($PGSOV_BUILD/bench/guard_bench)"
fi
echo
if [[ -x $here/seed_bench.sh ]]; then
    echo "== seed_bench (pgsov seed vs pgbench -i)"
    "$here/seed_bench.sh" || bench_say "seed_bench failed"
elif [[ -f $here/seed_bench.sh ]]; then
    echo "== seed_bench"
    bash "$here/seed_bench.sh" || bench_say "seed_bench failed"
else
    echo "== seed_bench: not present (bench/seed_bench.sh)"
fi
