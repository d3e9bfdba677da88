#!/usr/bin/env bash
# Installs what pgsov needs to build, test, demo and bench, when it is missing.
# Debian/Ubuntu: apt-get (as root, or through sudo). Elsewhere: prints what to install.
set -euo pipefail

PKGS=(build-essential pkg-config libevent-dev libssl-dev libpq-dev libinih-dev libpg-query-dev
      libjansson-dev libcmocka-dev postgresql postgresql-contrib pgbouncer openssl procps)

missing=()
if command -v dpkg-query >/dev/null 2>&1; then
    for p in "${PKGS[@]}"; do
        status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
        [[ "$status" == "install ok installed" ]] || missing+=("$p")
    done
else
    echo "deps: not a Debian/Ubuntu system. Install by hand: libevent (2.1), OpenSSL 3, libpq," >&2
    echo "      inih, libpg_query (PostgreSQL 15 grammar), jansson, cmocka, PostgreSQL 15+" >&2
    echo "      server binaries (initdb, pg_ctl), pgbouncer (benchmark only), pkg-config." >&2
    exit 0
fi

if ((${#missing[@]} == 0)); then
    exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
        echo "deps: missing ${missing[*]}; run as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# postgresql's package starts a system cluster on 5432 by default; pgsov's tests and demo run
# their own clusters on free ports, so the system one is left as the package set it up.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
