#!/usr/bin/env bash
# pgbench_matrix.sh — the throughput part of `make bench`: every cell of the pgbench matrix runs
# against every target, interleaved (round robin within a cell, the starting target rotating
# each round) so machine noise lands on all targets alike; the median of the rounds is reported.
#
# Started by run.sh, which owns the servers and exports BENCH_* (ports, rounds, seconds,
# BENCH_OUT). Writes BENCH_OUT/raw.tsv (every run) and BENCH_OUT/matrix.md (the table) and
# prints the table. Does not start or stop anything.
set -u
here=$(cd "$(dirname "$0")" && pwd)
source "$here/lib.sh"

: "${BENCH_OUT:?run bench/run.sh, not this script}"
rounds=${BENCH_ROUNDS:-3}
seconds=${BENCH_SECONDS:-5}

# id | label | targets | pgbench arguments (client count -c N goes with -j min(N,2))
cells=(
    "S-simple-1|select-only, simple, 1 client|all|-S -M simple -c 1 -j 1"
    "S-simple-8|select-only, simple, 8 clients|all|-S -M simple -c 8 -j 2"
    "S-simple-32|select-only, simple, 32 clients|all|-S -M simple -c 32 -j 2"
    "S-extended-1|select-only, extended, 1 client|all|-S -M extended -c 1 -j 1"
    "S-extended-8|select-only, extended, 8 clients|all|-S -M extended -c 8 -j 2"
    "S-extended-32|select-only, extended, 32 clients|all|-S -M extended -c 32 -j 2"
    "S-prepared-1|select-only, prepared, 1 client|all|-S -M prepared -c 1 -j 1"
    "S-prepared-8|select-only, prepared, 8 clients|all|-S -M prepared -c 8 -j 2"
    "S-prepared-32|select-only, prepared, 32 clients|all|-S -M prepared -c 32 -j 2"
    "tpcb-simple-8|TPC-B-like, simple, 8 clients|all|-M simple -c 8 -j 2"
    "C-simple-8|connect per txn (-C), select-only, simple, 8 clients|direct,pgbouncer,pgsov|-C -S -M simple -c 8 -j 2"
)

raw=$BENCH_OUT/raw.tsv
logs=$BENCH_OUT/logs
mkdir -p "$logs"
leaks=$BENCH_OUT/leaks.tsv
printf 'cell\ttarget\tround\ttps\tlatency_ms\n' > "$raw"
printf 'cell\ttarget\tround\tupstreams_left_open\n' > "$leaks"

n_cells=${#cells[@]}
ci=0
for cell in "${cells[@]}"; do
    IFS='|' read -r id label tlist args <<<"$cell"
    ci=$((ci + 1))
    if [[ $tlist == all ]]; then targets=("${BENCH_TARGETS[@]}"); else IFS=, read -r -a targets <<<"$tlist"; fi
    nt=${#targets[@]}
    for ((r = 0; r < rounds; r++)); do
        line="[$ci/$n_cells] $label, round $((r + 1))/$rounds:"
        for ((k = 0; k < nt; k++)); do
            t=${targets[$(((k + r) % nt))]}
            log=$logs/$id.$t.$r.log
            # shellcheck disable=SC2086  # args is a word list on purpose
            if out=$(bench_pgbench "$t" "$log" -T "$seconds" $args); then
                read -r tps lat <<<"$out"
                printf '%s\t%s\t%d\t%s\t%s\n' "$id" "$t" "$r" "$tps" "$lat" >> "$raw"
                line+=$(printf ' %s %.0f' "$t" "$tps")
            else
                printf '%s\t%s\t%d\tfail\tfail\n' "$id" "$t" "$r" >> "$raw"
                line+=" $t FAILED"
                bench_say "pgbench against $t failed ($id round $((r + 1))); last lines of $log:"
                tail -5 "$log" >&2
            fi
            # A proxy with no clients left must hold no upstream connection.
            if [[ $t == pgsov* ]]; then
                pid=$BENCH_SOV_PID; [[ $t == pgsov_noguard ]] && pid=$BENCH_SOVNG_PID
                leaked=$(bench_proxy_reap "$pid")
                if ((leaked > 0)); then
                    printf '%s\t%s\t%d\t%s\n' "$id" "$t" "$r" "$leaked" >> "$leaks"
                    line+=" (leaked $leaked)"
                fi
            fi
        done
        bench_say "$line"
    done
done

# ---- the table ---------------------------------------------------------------------------

# median COLUMN CELL TARGET: median of the successful runs, or "" when none succeeded.
median() {
    awk -F'\t' -v c="$2" -v t="$3" -v col="$1" \
        'NR > 1 && $1 == c && $2 == t && $col != "fail" { print $col }' "$raw" | bench_median
}
# ratio A B: A/B with two decimals, "–" when either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "–"; else printf "%.2f", a / b }'; }
cellfmt() { if [[ -z $1 ]]; then echo "failed"; else printf '%.0f (%.3f ms)' "$1" "$2"; fi; }

{
    echo "| cell | direct TPS (lat) | PgBouncer TPS (lat) | pgsov TPS (lat) | pgsov guard=off TPS (lat) | PgBouncer / direct | pgsov / direct | guard=off / direct | pgsov / PgBouncer | guard on / off |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for cell in "${cells[@]}"; do
        IFS='|' read -r id label tlist _ <<<"$cell"
        declare -A tps=() lat=()
        for t in "${BENCH_TARGETS[@]}"; do
            tps[$t]=$(median 4 "$id" "$t")
            lat[$t]=$(median 5 "$id" "$t")
        done
        row="| $label"
        for t in "${BENCH_TARGETS[@]}"; do
            if [[ $tlist != all && ,$tlist, != *,$t,* ]]; then row+=" | –"; else row+=" | $(cellfmt "${tps[$t]}" "${lat[$t]}")"; fi
        done
        row+=" | $(ratio "${tps[pgbouncer]}" "${tps[direct]}")"
        row+=" | $(ratio "${tps[pgsov]}" "${tps[direct]}")"
        row+=" | $(ratio "${tps[pgsov_noguard]}" "${tps[direct]}")"
        row+=" | $(ratio "${tps[pgsov]}" "${tps[pgbouncer]}")"
        row+=" | $(ratio "${tps[pgsov]}" "${tps[pgsov_noguard]}") |"
        echo "$row"
        unset tps lat
    done
    total=$(awk -F'\t' 'NR > 1 { n += $4 } END { print n + 0 }' "$leaks")
    if ((total > 0)); then
        echo
        echo "**Leak:** after its clients had gone, pgsov-proxy still held $total upstream" \
             "connections in total (the bench terminated those backends after each run;" \
             "per run in leaks.tsv)."
    fi
} > "$BENCH_OUT/matrix.md"
cat "$BENCH_OUT/matrix.md"
