#!/usr/bin/env bash
# pgcluster.sh — start and stop throw-away PostgreSQL clusters for tests, benchmarks and the demo.
#
#   source tests/lib/pgcluster.sh
#   pgc_init DIR            make DIR, the test PKI in DIR/pki, and pick the unprivileged user
#   pgc_start NAME [CONF]   initdb + start DIR/NAME with TLS on a free loopback port;
#                           sets PGC_PORT_<NAME>; CONF: extra postgresql.conf lines
#   pgc_stop_all            stop every cluster started here (also on EXIT via the caller's trap)
#
# Clusters listen on 127.0.0.1 only, with TLS (server.crt from the test PKI) and password auth
# (scram or md5, whichever the role's verifier is). Roles created in every cluster:
#   postgres   superuser, password $PGC_SUPERPASS
#   app        login, scram, password app-secret
#   app_md5    login, md5,   password md5-secret
#   migrator   login, scram, password migrator-secret, CREATEDB
# initdb and pg_ctl refuse to run as root: as root they run as the 'postgres' system user
# (or 'pgsovtest', created on demand).

PGC_SUPERPASS=${PGC_SUPERPASS:-super-secret}
PGC_BINDIR=$(pg_config --bindir 2>/dev/null || true)
[[ -x "$PGC_BINDIR/initdb" ]] || PGC_BINDIR=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PGC_CLUSTERS=()

pgc_as_user() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u "$PGC_RUNAS" -- "$@"
    else
        "$@"
    fi
}

pgc_init() {
    PGC_DIR=$1
    mkdir -p "$PGC_DIR"
    if [[ $(id -u) -eq 0 ]]; then
        if id postgres >/dev/null 2>&1; then PGC_RUNAS=postgres
        else
            id pgsovtest >/dev/null 2>&1 || useradd --system --no-create-home pgsovtest
            PGC_RUNAS=pgsovtest
        fi
        chmod 755 "$PGC_DIR"
    else
        PGC_RUNAS=$(id -un)
    fi
    PGC_PKI=$PGC_DIR/pki
    "$(dirname "${BASH_SOURCE[0]}")/certs.sh" "$PGC_PKI"
    chmod 755 "$PGC_PKI"; chmod 644 "$PGC_PKI"/*.crt
    export PGC_DIR PGC_PKI PGC_RUNAS PGC_SUPERPASS PGC_BINDIR
}

pgc_port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

pgc_free_port() {
    local p
    for _ in $(seq 1 200); do
        p=$((20000 + RANDOM % 30000))
        if pgc_port_free "$p"; then echo "$p"; return 0; fi
    done
    return 1
}

pgc_start() {
    local name=$1 extra_conf=${2:-} data=$PGC_DIR/$1 port pwfile
    mkdir -p "$data"
    [[ $(id -u) -eq 0 ]] && chown "$PGC_RUNAS" "$data"
    pwfile=$data.pw
    printf '%s\n' "$PGC_SUPERPASS" > "$pwfile"
    [[ $(id -u) -eq 0 ]] && chown "$PGC_RUNAS" "$pwfile"
    pgc_as_user "$PGC_BINDIR/initdb" -D "$data/pgdata" -U postgres --pwfile="$pwfile" \
        --auth-local=trust --auth-host=md5 -E UTF8 --locale=C.UTF-8 >"$data/initdb.log" 2>&1 \
        || { cat "$data/initdb.log" >&2; return 1; }
    rm -f "$pwfile"
    cp "$PGC_PKI/server.crt" "$PGC_PKI/server.key" "$data/pgdata/"
    [[ $(id -u) -eq 0 ]] && chown "$PGC_RUNAS" "$data/pgdata/server.crt" "$data/pgdata/server.key"
    chmod 600 "$data/pgdata/server.key"
    mkdir -p "$data/sock"; [[ $(id -u) -eq 0 ]] && chown "$PGC_RUNAS" "$data/sock"
    cat >> "$data/pgdata/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
unix_socket_directories = '$data/sock'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
password_encryption = 'scram-sha-256'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
log_min_messages = warning
$extra_conf
CONF
    for _ in 1 2 3 4 5; do
        port=$(pgc_free_port)
        if pgc_as_user "$PGC_BINDIR/pg_ctl" -D "$data/pgdata" -l "$data/server.log" -w -t 30 \
               -o "-p $port" start >/dev/null 2>&1; then
            PGC_CLUSTERS+=("$data/pgdata")
            printf -v "PGC_PORT_$name" '%s' "$port"
            export "PGC_PORT_$name"
            pgc_psql "$name" postgres -q -v ON_ERROR_STOP=1 <<SQL >/dev/null
CREATE ROLE app LOGIN PASSWORD 'app-secret';
SET password_encryption = 'md5';
CREATE ROLE app_md5 LOGIN PASSWORD 'md5-secret';
RESET password_encryption;
CREATE ROLE migrator LOGIN CREATEDB PASSWORD 'migrator-secret';
SQL
            return 0
        fi
    done
    echo "pgcluster: could not start $name; see $data/server.log" >&2
    cat "$data/server.log" >&2 2>/dev/null
    return 1
}

# pgc_psql NAME DB [psql args...]: superuser psql over the unix socket.
pgc_psql() {
    local name=$1 db=$2; shift 2
    local port_var=PGC_PORT_$name
    PGPASSWORD=$PGC_SUPERPASS psql -X -h "$PGC_DIR/$name/sock" -p "${!port_var}" -U postgres -d "$db" "$@"
}

pgc_stop_all() {
    local d
    for d in "${PGC_CLUSTERS[@]}"; do
        pgc_as_user "$PGC_BINDIR/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 || true
    done
    PGC_CLUSTERS=()
}
