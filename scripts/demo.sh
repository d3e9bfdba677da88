#!/usr/bin/env bash
# make demo — two local PostgreSQL clusters (development and production stand-ins, TLS on
# loopback, free ports, data in a temp dir), the example schema migrated into both, test data
# seeded into development, and pgsov-proxy in front of them. Ctrl-C stops everything.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
source tests/lib/pgcluster.sh

demo=$(mktemp -d /tmp/pgsov-demo.XXXXXX)
proxy_pid=
cleanup() {
    trap - EXIT INT TERM
    echo
    echo "demo: stopping"
    [[ -n "$proxy_pid" ]] && kill -INT "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null || true
    pgc_stop_all
    rm -rf "$demo"
    echo "demo: stopped and cleaned up"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "demo: starting PostgreSQL clusters in $demo"
pgc_init "$demo"
pgc_start dev
# The production stand-in is configured like a production database: DDL is logged and WAL is
# archived (point-in-time recovery), so the audit's settings checks verify real settings.
mkdir -p "$demo/wal-archive"
[[ $(id -u) -eq 0 ]] && chown "$PGC_RUNAS" "$demo/wal-archive"
pgc_start prod "log_statement = 'ddl'
archive_mode = on
archive_command = 'test ! -f $demo/wal-archive/%f && cp %p $demo/wal-archive/%f'"
for c in dev prod; do
    pgc_psql "$c" postgres -q -v ON_ERROR_STOP=1 >/dev/null <<'SQL'
CREATE ROLE preview LOGIN PASSWORD 'preview-secret';
ALTER ROLE migrator CREATEROLE;  -- migrations create the app's roles
CREATE DATABASE app OWNER migrator;
SQL
done

# Credential isolation: apps know only proxy passwords (users file, SCRAM verifiers); the
# upstream passwords reach the proxy through its environment, never the app's.
{
    printf 'app-proxy-pw\n' | bin/pgsov passwd --stdin app
    printf 'preview-proxy-pw\n' | bin/pgsov passwd --stdin preview
} > "$demo/users"
chmod 600 "$demo/users"
export PGSOV_DEMO_APP_PASSWORD=app-secret PGSOV_DEMO_PREVIEW_PASSWORD=preview-secret

proxy_port=6432
pgc_port_free "$proxy_port" || proxy_port=$(pgc_free_port)
cat > "$demo/proxy.ini" <<INI
; written by make demo
[proxy]
listen = 127.0.0.1:$proxy_port
rules = $root/rules/access.rules
client_tls = allow
client_tls_cert = $PGC_PKI/server.crt
client_tls_key = $PGC_PKI/server.key
client_tls_ca = $PGC_PKI/ca.crt
audit_log = $demo/audit.jsonl
users_file = $demo/users

[env.development]
aliases = dev, preview
host = localhost
port = $PGC_PORT_dev
database = app
sslmode = verify-full
sslrootcert = $PGC_PKI/ca.crt
host_patterns = localhost:$PGC_PORT_dev
migrations_dir = $root/migrations
auth = proxy
upstream_password.app = \${PGSOV_DEMO_APP_PASSWORD}
upstream_password.preview = \${PGSOV_DEMO_PREVIEW_PASSWORD}

[env.production]
aliases = prod
host = localhost
port = $PGC_PORT_prod
database = app
sslmode = verify-full
sslrootcert = $PGC_PKI/ca.crt
host_patterns = localhost:$PGC_PORT_prod
migrations_dir = $root/migrations
auth = proxy
upstream_password.app = \${PGSOV_DEMO_APP_PASSWORD}
INI
export PGSOV_CONFIG=$demo/proxy.ini

echo "demo: migrating both environments (governed, checksummed)"
export PGUSER=migrator PGPASSWORD=migrator-secret
bin/pgsov migrate --env development
bin/pgsov migrate baseline --env production   # attest: this database IS production
plan_hash=$(bin/pgsov migrate plan --env production | sed -n 's/^plan hash: *//p' | head -1)
bin/pgsov migrate --env production --approve "$plan_hash"
unset PGPASSWORD PGUSER
for c in dev prod; do
    pgc_psql "$c" app -q -v ON_ERROR_STOP=1 -f rules/ddl_event_trigger.sql >/dev/null 2>&1
    # The schema grants its privileges to app_user; the login roles the proxy uses join it.
    pgc_psql "$c" app -q -v ON_ERROR_STOP=1 -c "GRANT app_user TO app" >/dev/null
done
pgc_psql dev app -q -v ON_ERROR_STOP=1 -c "GRANT app_user TO preview" >/dev/null
if [[ -f rules/scenarios/credito.json ]]; then
    echo "demo: seeding development with the credit scenario (seed 42)"
    PGUSER=postgres PGPASSWORD=$PGC_SUPERPASS bin/pgsov seed --env development \
        --scenario rules/scenarios/credito.json --seed 42
fi

bin/pgsov-proxy -c "$demo/proxy.ini" 2>"$demo/proxy.log" &
proxy_pid=$!
for _ in $(seq 1 100); do
    pgc_port_free "$proxy_port" || break
    sleep 0.05
done

url="postgresql://%s:%s@localhost:$proxy_port/%s?sslmode=verify-full&sslrootcert=$PGC_PKI/ca.crt&channel_binding=require"
cat <<MSG

pgsov-proxy is listening on localhost:$proxy_port   (log: $demo/proxy.log, audit: $demo/audit.jsonl)
The apps hold proxy credentials only (users file $demo/users); the database passwords stay
in the proxy's environment. TLS to the proxy is verified, with SCRAM channel binding.

  development, as the app:
    psql "$(printf "$url" app app-proxy-pw development)" -c 'select count(*) from app.clients'
  production, as the app (read/write allowed, DDL refused):
    psql "$(printf "$url" app app-proxy-pw production)" -c 'select count(*) from app.clients'
    psql "$(printf "$url" app app-proxy-pw production)" -c 'drop table app.payments'
  refused: a preview deployment may only reach development:
    psql "$(printf "$url" preview preview-proxy-pw production)"

  governed tools against the same environments:
    PGSOV_CONFIG=$demo/proxy.ini PGUSER=postgres PGPASSWORD=$PGC_SUPERPASS bin/pgsov status --env production
    PGSOV_CONFIG=$demo/proxy.ini PGUSER=postgres PGPASSWORD=$PGC_SUPERPASS bin/pgsov audit --env production
    (backups are the provider's: reported unverified until --backup-reply gives the evidence)

Press Ctrl-C to stop the proxy and both clusters.
MSG
wait "$proxy_pid"
