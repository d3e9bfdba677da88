#!/usr/bin/env bash
# demo_check.sh — `make demo` as a user runs it: start scripts/demo.sh, paste the lines it prints,
# check what each must answer, stop it and check it left nothing behind. Part of `make test`, so
# the README's first command cannot rot unnoticed. Needs bin/ built (make all).
#
# Checks: development answers through the proxy with the seeded rows; production answers and
# refuses DDL with 42501 naming the rule; the preview user is refused production at connect;
# `pgsov status` and `pgsov audit --env production` (the example manifest against the demo's
# production stand-in) both exit 0; after SIGTERM no cluster, proxy or temp dir is left.
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=$(mktemp /tmp/pgsov-demo-check.XXXXXX)
pass=0; fail=0
ok()   { echo "  ok   $1"; pass=$((pass + 1)); }
bad()  { echo "  FAIL $1"; fail=$((fail + 1)); }

setsid scripts/demo.sh >"$out" 2>&1 &
demo_pid=$!
stop_demo() {
    kill -TERM "$demo_pid" 2>/dev/null
    for _ in $(seq 1 150); do kill -0 "$demo_pid" 2>/dev/null || return 0; sleep 0.1; done
    kill -KILL -- "-$demo_pid" 2>/dev/null
    return 1
}
trap 'stop_demo; rm -f "$out"' EXIT

for _ in $(seq 1 600); do
    grep -q 'Press Ctrl-C' "$out" && break
    kill -0 "$demo_pid" 2>/dev/null || break
    sleep 0.2
done
if ! grep -q 'Press Ctrl-C' "$out"; then
    echo "demo_check: the demo did not come up; its output:"
    cat "$out"
    echo "demo: 0 passed, 1 failed"
    exit 1
fi
demo_dir=$(sed -n 's/^demo: starting PostgreSQL clusters in //p' "$out")

# The ready-to-paste lines, as printed.
line() { grep -F -- "$1" "$out" | head -1 | sed 's/^ *//'; }
dev_cmd=$(line 'app:app-proxy-pw@localhost' | grep development)
prod_cmd=$(grep -F 'app:app-proxy-pw@localhost' "$out" | grep '/production' | grep 'select count' | sed 's/^ *//')
drop_cmd=$(grep -F 'drop table app.payments' "$out" | sed 's/^ *//')
preview_cmd=$(line 'preview:preview-proxy-pw@localhost')
status_cmd=$(line 'bin/pgsov status --env production')
audit_cmd=$(line 'bin/pgsov audit --env production')

run() { bash -c "$1" 2>&1; }

r=$(run "${dev_cmd/psql /psql -X -A -t }"); rc=$?
[[ $rc -eq 0 && $r == 1000 ]] && ok "development through the proxy: 1000 seeded clients" \
    || bad "development: exit $rc: $r"
r=$(run "${prod_cmd/psql /psql -X -A -t }"); rc=$?
[[ $rc -eq 0 && $r == 0 ]] && ok "production through the proxy: reads allowed, no test data" \
    || bad "production: exit $rc: $r"
r=$(run "${drop_cmd/psql /psql -X -v VERBOSITY=verbose }"); rc=$?
[[ $rc -ne 0 && $r == *"ERROR:  42501: pgsov: DDL refused for user \"app\" in environment \"production\""* &&
   $r == *"access.rules:"* ]] && ok "production DDL refused with 42501 and the rule" \
    || bad "production DDL: exit $rc: $r"
r=$(run "$preview_cmd -X -c 'select 1'"); rc=$?
[[ $rc -ne 0 && $r == *'pgsov: user "preview"'*'may not reach environment "production"'* ]] \
    && ok "preview refused production at connect" || bad "preview: exit $rc: $r"
r=$(run "$status_cmd"); rc=$?
[[ $rc -eq 0 && $r == *"0 pending, 0 problems"* ]] && ok "pgsov status --env production" \
    || bad "status: exit $rc: $r"
r=$(run "$audit_cmd"); rc=$?
[[ $rc -eq 0 && $r == *"COMPLIANT"* ]] \
    && ok "pgsov audit --env production: the example manifest passes on the production stand-in" \
    || bad "audit: exit $rc: $r"

if stop_demo && grep -q 'demo: stopped and cleaned up' "$out" && [[ -n $demo_dir && ! -e $demo_dir ]] &&
   ! pgrep -f "$demo_dir" >/dev/null; then
    ok "stopped: clusters and proxy gone, $demo_dir removed"
else
    bad "stop: $(tail -3 "$out")"
fi
echo "demo: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
