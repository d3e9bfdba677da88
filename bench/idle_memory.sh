#!/usr/bin/env bash
# idle_memory.sh — the idle-client part of `make bench`: resident memory a proxy spends per
# connected, idle client. For pgsov-proxy and PgBouncer in turn: warm up with a few clients,
# read the process's VmRSS and Pss, hold BENCH_IDLE_CLIENTS idle clients open
# ($PGSOV_BUILD/bench/idle_clients), read them again, and report (with − without) / N.
#
# pgsov-proxy opens one upstream connection per client during startup, so every idle client
# holds a server connection too (the count of client backends is shown); PgBouncer in session
# mode assigns a server only when a client sends its first query, so its pool stays small.
#
# Started by run.sh, which owns the servers and exports BENCH_* (ports, pids, BENCH_OUT).
# Writes BENCH_OUT/idle.md and prints it. Stops only the idle_clients helpers it started.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"
trap 'exit 130' INT TERM

: "${BENCH_OUT:?run bench/run.sh, not this script}"
n=${BENCH_IDLE_CLIENTS:-1000}
helper=$PGSOV_BUILD/bench/idle_clients
helper_pid=

stop_helper() {
    [[ -n $helper_pid ]] || return 0
    kill -TERM "$helper_pid" 2>/dev/null
    wait "$helper_pid" 2>/dev/null
    helper_pid=
}
trap stop_helper EXIT

# hold TARGET COUNT: starts the helper with COUNT clients and waits for "ready"; 0 when held.
hold() {
    local target=$1 count=$2 port db out=$BENCH_OUT/idle-$1-$2.out
    read -r port db < <(bench_target_addr "$target")
    PGPASSWORD=$BENCH_PASS "$helper" "$count" \
        "host=127.0.0.1 port=$port dbname=$db user=$BENCH_USER sslmode=disable connect_timeout=30" \
        >"$out" 2>&1 &
    helper_pid=$!
    for _ in $(seq 1 1200); do
        grep -q '^ready' "$out" 2>/dev/null && return 0
        if ! kill -0 "$helper_pid" 2>/dev/null; then
            bench_say "idle_clients against $target failed:"; cat "$out" >&2
            helper_pid=
            return 1
        fi
        sleep 0.1
    done
    bench_say "idle_clients against $target: not ready after 120 s"
    stop_helper
    return 1
}

# parked_allowed TARGET: backends a proxy may keep parked with no client (upstream_max_idle,
# 100, per worker, for auth=proxy; none otherwise).
parked_allowed() {
    local workers=${BENCH_WORKERS:-auto}
    [[ $workers == auto ]] && workers=$(nproc)
    if [[ $1 == pgsov_auth ]]; then echo $((100 * workers)); else echo 0; fi
}

# measure TARGET PID: one table row.
measure() {
    local target=$1 pid=$2 rss0 pss0 rss1 pss1 backends rss_after left="pool"
    hold "$target" 10 || return 1          # warm-up: first-connection allocations, TLS/libpq init
    stop_helper
    sleep 1
    [[ $target == pgsov* ]] && bench_proxy_reap "$pid" "$(parked_allowed "$target")" >/dev/null
    rss0=$(bench_rss_kb "$pid"); pss0=$(bench_pss_kb "$pid")
    hold "$target" "$n" || return 1
    sleep 1
    rss1=$(bench_rss_kb "$pid"); pss1=$(bench_pss_kb "$pid")
    backends=$(bench_pg_backends)
    stop_helper
    sleep 1
    rss_after=$(bench_rss_kb "$pid")
    # PgBouncer keeps its server pool by design; pgsov-proxy must close every upstream (with
    # auth=proxy, all but the backends it parks for reuse).
    [[ $target == pgsov* ]] && left=$(bench_proxy_reap "$pid" "$(parked_allowed "$target")")
    [[ $target == pgsov_auth ]] && left="$left beyond $(parked_allowed "$target") parked"
    awk -v l="$(bench_target_label "$target")" -v n="$n" -v r0="$rss0" -v r1="$rss1" \
        -v p0="$pss0" -v p1="$pss1" -v b="$backends" -v ra="$rss_after" -v left="$left" 'BEGIN {
        printf "| %s | %d | %d kB | %d kB | %.2f kB | %.2f kB | %d | %d kB | %s |\n",
               l, n, r0, r1, (r1 - r0) / n, (p1 - p0) / n, b, ra, left }'
}

if [[ ! -x $helper ]]; then
    bench_say "idle clients: $helper not built (make bench builds bench/*.c); skipped"
    echo "idle clients: not measured ($helper not built)" > "$BENCH_OUT/idle.md"
    exit 0
fi

bench_say "idle clients: holding $n idle clients through pgsov-proxy, PgBouncer, then pgsov-proxy with auth=proxy"
{
    echo "| proxy | idle clients | VmRSS without | VmRSS with | VmRSS per client | Pss per client | server backends while held | VmRSS after close | upstreams left open after close |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    measure pgsov "$BENCH_SOV_PID" || echo "| pgsov | $n | failed | | | | | | |"
    measure pgbouncer "$BENCH_PGB_PID" || echo "| PgBouncer | $n | failed | | | | | | |"
    # last: the backends it parks would otherwise count as PgBouncer's
    measure pgsov_auth "$BENCH_SOVA_PID" || echo "| pgsov auth=proxy | $n | failed | | | | | | |"
} > "$BENCH_OUT/idle.md"
cat "$BENCH_OUT/idle.md"
