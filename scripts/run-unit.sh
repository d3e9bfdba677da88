#!/usr/bin/env bash
# Runs each cmocka unit-test binary; prints cmocka's own summary per binary and one total line.
set -u
pass=0; fail=0
for t in "$@"; do
    echo "== $(basename "$t")"
    if "$t"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $t"; fi
done
echo "unit: $pass passed, $fail failed"
[[ $fail -eq 0 ]]
