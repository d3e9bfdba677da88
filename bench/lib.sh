#!/usr/bin/env bash
# lib.sh — shared pieces of the side-by-side benchmark (sourced by run.sh, pgbench_matrix.sh,
# idle_memory.sh): one tuned PostgreSQL cluster, PgBouncer in session mode, two pgsov-proxy
# instances (guard on / guard off), the target table, pgbench runs and process memory.
#
# Processes are stopped by run.sh's cleanup trap; the part scripts never start
# or stop servers. Everything listens on 127.0.0.1. Passwords never reach stdout or logs.

BENCH_SRC=${BENCH_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
# shellcheck source=../tests/lib/pgcluster.sh
source "$BENCH_SRC/tests/lib/pgcluster.sh"

# The app role from pgcluster.sh: SCRAM-SHA-256 verifier, owner of the bench database and its
# pgbench tables. (The cluster's postgres role has an MD5 verifier from initdb, which would
# make direct connections cheaper to open than PgBouncer's SCRAM ones.)
BENCH_USER=app
BENCH_PASS=app-secret
BENCH_DB=bench                   # real database name on the cluster and in PgBouncer
BENCH_ENV=development            # what clients of pgsov-proxy declare as their database

# Targets, in the order they appear in every table. A target is NAME:PORT:DBNAME once
# bench_targets_export has run (BENCH_TARGET_<NAME> holds "PORT DBNAME").
BENCH_TARGETS=(direct pgbouncer pgsov pgsov_noguard)

bench_say() { printf '%s\n' "bench: $*" >&2; }
bench_die() { printf '%s\n' "bench: $*" >&2; exit 1; }

bench_now() { date +%s; }

# ---- cluster -----------------------------------------------------------------------------

# bench_cluster_start DIR SCALE: one cluster "bench" tuned for benchmarking (max_connections
# 1100 so 1000 idle proxied clients fit, shared_buffers 256MB so scale 10 is cached), database
# $BENCH_DB initialised by pgbench -i. Exports BENCH_PG_PORT.
bench_cluster_start() {
    local dir=$1 scale=$2
    pgc_init "$dir" >/dev/null
    pgc_start bench || return 1
    BENCH_PG_PORT=$PGC_PORT_bench
    pgc_psql bench postgres -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL' || return 1
ALTER SYSTEM SET max_connections = 1100;
ALTER SYSTEM SET shared_buffers = '256MB';
ALTER SYSTEM SET log_min_messages = 'warning';
ALTER SYSTEM SET log_connections = off;
CREATE DATABASE bench OWNER app;
SQL
    # pg_ctl restart reuses postmaster.opts, so the port stays the same.
    pgc_as_user "$PGC_BINDIR/pg_ctl" -D "$dir/bench/pgdata" -l "$dir/bench/server.log" -w -t 60 \
        -m fast restart >/dev/null || { cat "$dir/bench/server.log" >&2; return 1; }
    PGPASSWORD=$BENCH_PASS PGSSLMODE=disable "$PGC_BINDIR/pgbench" -i -q -s "$scale" \
        -h 127.0.0.1 -p "$BENCH_PG_PORT" -U "$BENCH_USER" "$BENCH_DB" >"$dir/pgbench-init.log" 2>&1 \
        || { cat "$dir/pgbench-init.log" >&2; return 1; }
    export BENCH_PG_PORT
}

# bench_pg_backends: client backends connected to $BENCH_DB right now.
bench_pg_backends() {
    pgc_psql bench postgres -Atq -c \
        "select count(*) from pg_stat_activity where datname = '$BENCH_DB' and backend_type = 'client backend'"
}

# ---- PgBouncer ---------------------------------------------------------------------------

# bench_pgbouncer_start DIR: session pooling, SCRAM for clients with the role's own verifier
# from pg_authid in the userlist (so PgBouncer, like the server, runs no PBKDF2 per login, and
# logs in upstream with the client's SCRAM keys), plaintext on both links. Runs as the
# cluster's unprivileged user (PgBouncer refuses root). Exports BENCH_PGB_PORT, BENCH_PGB_PID.
bench_pgbouncer_start() {
    local dir=$1/pgbouncer port verifier
    mkdir -p "$dir"
    port=$(pgc_free_port) || return 1
    verifier=$(pgc_psql bench postgres -Atq -c "select rolpassword from pg_authid where rolname = '$BENCH_USER'")
    [[ $verifier == SCRAM-SHA-256* ]] || { bench_say "role $BENCH_USER has no SCRAM verifier"; return 1; }
    (umask 077; printf '"%s" "%s"\n' "$BENCH_USER" "$verifier" > "$dir/userlist.txt")
    cat > "$dir/pgbouncer.ini" <<INI
[databases]
$BENCH_DB = host=127.0.0.1 port=$BENCH_PG_PORT dbname=$BENCH_DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = scram-sha-256
auth_file = $dir/userlist.txt
pool_mode = session
max_client_conn = 2000
default_pool_size = 100
server_tls_sslmode = disable
client_tls_sslmode = disable
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
stats_period = 3600
INI
    [[ $(id -u) -eq 0 ]] && chown -R "$PGC_RUNAS" "$dir"
    pgc_as_user pgbouncer -d "$dir/pgbouncer.ini" >"$dir/start.log" 2>&1 \
        || { cat "$dir/start.log" "$dir/pgbouncer.log" >&2 2>/dev/null; return 1; }
    bench_wait_port "$port" || { cat "$dir/pgbouncer.log" >&2; return 1; }
    for _ in $(seq 1 100); do
        [[ -s $dir/pgbouncer.pid ]] && break
        sleep 0.05
    done
    BENCH_PGB_PID=$(cat "$dir/pgbouncer.pid")
    BENCH_PGB_PIDFILE=$dir/pgbouncer.pid
    BENCH_PGB_PORT=$port
    export BENCH_PGB_PORT BENCH_PGB_PID
}

bench_pgbouncer_stop() {
    [[ -n ${BENCH_PGB_PID:-} ]] || return 0
    kill -TERM "$BENCH_PGB_PID" 2>/dev/null
    for _ in $(seq 1 100); do
        kill -0 "$BENCH_PGB_PID" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$BENCH_PGB_PID" 2>/dev/null
    BENCH_PGB_PID=
}

# ---- pgsov-proxy -------------------------------------------------------------------------

# bench_proxy_start DIR NAME GUARD(on|off) [AUTH(passthrough|proxy)]: a proxy with one
# environment whose upstream is the bench cluster over plaintext (as PgBouncer's link),
# workers = BENCH_WORKERS (default auto), and a rule granting every class so pgbench is never
# refused. AUTH=proxy authenticates clients at the proxy against the role's own SCRAM verifier
# from pg_authid (as PgBouncer's userlist does) and logs in upstream with the proxy's own
# credential, reusing backends of clients that ended (upstream_reuse, the default).
# Sets BENCH_PROXY_PORT and BENCH_PROXY_PID; the caller copies them to per-instance names.
bench_proxy_start() {
    local dir=$1/$2 guard=$3 auth=${4:-passthrough} port auth_lines=
    mkdir -p "$dir"
    port=$(pgc_free_port) || return 1
    if [[ $auth == proxy ]]; then
        local verifier
        verifier=$(pgc_psql bench postgres -Atq -c "select rolpassword from pg_authid where rolname = '$BENCH_USER'")
        [[ $verifier == SCRAM-SHA-256* ]] || { bench_say "role $BENCH_USER has no SCRAM verifier"; return 1; }
        (umask 077; printf '%s %s\n' "$BENCH_USER" "$verifier" > "$dir/users")
        auth_lines="auth = proxy
upstream_password.$BENCH_USER = \${PGSOV_BENCH_UPSTREAM_PASSWORD}"
    fi
    cat > "$dir/access.rules" <<'RULES'
# bench: every source, user and class; the guard still classifies every statement when on.
allow all all all any all
RULES
    cat > "$dir/proxy.ini" <<INI
[proxy]
listen = 127.0.0.1:$port
rules = $dir/access.rules
client_tls = disable
max_clients = 5000
workers = ${BENCH_WORKERS:-auto}
guard = $guard
log_level = warn
log_file = $dir/proxy.log
$([[ $auth == proxy ]] && echo "users_file = $dir/users")

[env.$BENCH_ENV]
host = 127.0.0.1
port = $BENCH_PG_PORT
database = $BENCH_DB
sslmode = disable
host_patterns = 127.0.0.1:$BENCH_PG_PORT
$auth_lines
INI
    PGSOV_BENCH_UPSTREAM_PASSWORD=$BENCH_PASS "$PGSOV_BIN/pgsov-proxy" -c "$dir/proxy.ini" >"$dir/stderr.log" 2>&1 &
    BENCH_PROXY_PID=$!
    BENCH_OWN_PIDS+=("$BENCH_PROXY_PID")
    BENCH_PROXY_PORT=$port
    bench_wait_port "$port" || { cat "$dir/stderr.log" "$dir/proxy.log" >&2 2>/dev/null; return 1; }
}

# bench_proxy_upstream_ports PID: local ports of PID's established connections to the cluster.
bench_proxy_upstream_ports() {
    ss -tnpH state established "( dport = :$BENCH_PG_PORT )" 2>/dev/null \
        | awk -v p="pid=$1," 'index($0, p) { n = split($3, a, ":"); print a[n] }'
}

# bench_proxy_reap PID [PARKED]: once no client is connected, a proxy should hold no upstream
# connection beyond PARKED (default 0; with upstream reuse, at most one backend per client that
# was connected at once stays parked for the next). Waits up to 0.5 s for that; prints how many
# it holds beyond that (0 when healthy) and terminates those backends (so a leaking proxy
# cannot exhaust max_connections for later cells; the proxy keeps the dead sockets).
bench_proxy_reap() {
    local pid=$1 parked=${2:-0} ports
    for _ in 1 2 3 4 5; do
        ports=$(bench_proxy_upstream_ports "$pid")
        [[ -z $ports ]] && { echo 0; return 0; }
        (( $(echo "$ports" | wc -l) <= parked )) && { echo 0; return 0; }
        sleep 0.1
    done
    pgc_psql bench postgres -Atq >/dev/null -c \
        "select pg_terminate_backend(pid) from pg_stat_activity
          where client_addr = '127.0.0.1' and client_port in ($(echo $ports | tr ' ' ','))"
    echo "$ports" | wc -l
}

# ---- plumbing ----------------------------------------------------------------------------

bench_wait_port() {
    local port=$1
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.025
    done
    bench_say "nothing accepts on 127.0.0.1:$port after 5 s"
    return 1
}

# bench_target_addr NAME: "PORT DBNAME" of a target.
bench_target_addr() {
    case $1 in
        direct)        echo "$BENCH_PG_PORT $BENCH_DB" ;;
        pgbouncer)     echo "$BENCH_PGB_PORT $BENCH_DB" ;;
        pgsov)         echo "$BENCH_SOV_PORT $BENCH_ENV" ;;
        pgsov_noguard) echo "$BENCH_SOVNG_PORT $BENCH_ENV" ;;
        pgsov_auth)    echo "$BENCH_SOVA_PORT $BENCH_ENV" ;;
        *) bench_die "unknown target $1" ;;
    esac
}

bench_target_label() {
    case $1 in
        direct)        echo "direct" ;;
        pgbouncer)     echo "PgBouncer" ;;
        pgsov)         echo "pgsov" ;;
        pgsov_noguard) echo "pgsov guard=off" ;;
        pgsov_auth)    echo "pgsov auth=proxy" ;;
        *)             echo "$1" ;;
    esac
}

# bench_pgbench TARGET LOG ARGS...: runs pgbench against TARGET over plaintext TCP and prints
# "TPS LATENCY_MS TRANSACTIONS", or returns 1 (the log keeps pgbench's output).
bench_pgbench() {
    local target=$1 log=$2; shift 2
    local port db
    read -r port db < <(bench_target_addr "$target")
    if ! PGPASSWORD=$BENCH_PASS PGSSLMODE=disable PGCONNECT_TIMEOUT=10 timeout 120 \
            "$PGC_BINDIR/pgbench" -n "$@" -h 127.0.0.1 -p "$port" -U "$BENCH_USER" "$db" >"$log" 2>&1; then
        return 1
    fi
    awk '/^tps = / && !tps { tps = $3 }
         /^latency average = / { lat = $4 }
         /^number of transactions actually processed: / { split($NF, a, "/"); n = a[1] }
         END { if (tps == "" || lat == "") exit 1; print tps, lat, n + 0 }' "$log"
}

# bench_target_pid TARGET: the process that serves TARGET (empty for direct).
bench_target_pid() {
    case $1 in
        pgbouncer)     echo "${BENCH_PGB_PID:-}" ;;
        pgsov)         echo "${BENCH_SOV_PID:-}" ;;
        pgsov_noguard) echo "${BENCH_SOVNG_PID:-}" ;;
        pgsov_auth)    echo "${BENCH_SOVA_PID:-}" ;;
        *)             echo "" ;;
    esac
}

# bench_cpu_us PID: user + system CPU the process (all threads) has used, in microseconds.
bench_cpu_us() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%.0f\n", ($14 + $15) * 1e6 / hz }' "/proc/$1/stat"
}

# bench_rss_kb PID: resident set (VmRSS) in kB; bench_pss_kb PID: proportional set size (Pss).
bench_rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
bench_pss_kb() { awk '/^Pss:/ { print $2; exit }' "/proc/$1/smaps_rollup" 2>/dev/null || echo 0; }

# bench_median: the median of the numbers on stdin (the lower middle one for an even count).
bench_median() {
    sort -g | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'
}

bench_machine() {
    local cpu
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    [[ -n $cpu ]] || cpu=$(lscpu 2>/dev/null | awk -F': *' '/Model name/ { print $2; exit }')
    printf '%s, %s CPUs (nproc), %s GB RAM, %s, PostgreSQL %s, %s' \
        "${cpu:-unknown CPU}" "$(nproc)" \
        "$(awk '/^MemTotal:/ { printf "%.0f", $2 / 1048576 }' /proc/meminfo)" \
        "$(uname -sr)" "$("$PGC_BINDIR/postgres" -V | awk '{ print $3 }')" \
        "$(pgbouncer --version 2>/dev/null | head -1)"
}
