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
trap 'exit 130' INT TERM

: "${BENCH_OUT:?run bench/run.sh, not this script}"
rounds=${BENCH_ROUNDS:-5}
seconds=${BENCH_SECONDS:-2}

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
    "C-simple-8|connect per txn (-C), select-only, simple, 8 clients|direct,pgbouncer,pgsov,pgsov_auth|-C -S -M simple -c 8 -j 2"
)

# BENCH_CELLS="id id ..." runs only those cells (ids as in the list above), for a quick look.
if [[ -n ${BENCH_CELLS:-} ]]; then
    kept=()
    for cell in "${cells[@]}"; do [[ " $BENCH_CELLS " == *" ${cell%%|*} "* ]] && kept+=("$cell"); done
    cells=("${kept[@]}")
fi

raw=$BENCH_OUT/raw.tsv
logs=$BENCH_OUT/logs
mkdir -p "$logs"
leaks=$BENCH_OUT/leaks.tsv
printf 'cell\ttarget\tround\ttps\tlatency_ms\tproxy_cpu_us_per_txn\n' > "$raw"
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
            pid=$(bench_target_pid "$t")
            cpu0=; [[ -n $pid ]] && cpu0=$(bench_cpu_us "$pid")
            # shellcheck disable=SC2086  # args is a word list on purpose
            if out=$(bench_pgbench "$t" "$log" -T "$seconds" $args); then
                read -r tps lat txns <<<"$out"
                cpu=-
                if [[ -n $cpu0 ]] && ((txns > 0)); then
                    cpu=$(awk -v a="$cpu0" -v b="$(bench_cpu_us "$pid")" -v n="$txns" 'BEGIN { printf "%.2f", (b - a) / n }')
                fi
                printf '%s\t%s\t%d\t%s\t%s\t%s\n' "$id" "$t" "$r" "$tps" "$lat" "$cpu" >> "$raw"
                line+=$(printf ' %s %.0f' "$t" "$tps")
            else
                printf '%s\t%s\t%d\tfail\tfail\t-\n' "$id" "$t" "$r" >> "$raw"
                line+=" $t FAILED"
                bench_say "pgbench against $t failed ($id round $((r + 1))); last lines of $log:"
                tail -5 "$log" >&2
            fi
            # A proxy with no clients left must hold no upstream connection.
            # With upstream reuse (auth=proxy) each worker's pool may keep up to one backend per
            # client that was connected at once.
            if [[ $t == pgsov* ]]; then
                pid=$(bench_target_pid "$t") parked=0
                if [[ $t == pgsov_auth ]]; then
                    workers=${BENCH_WORKERS:-auto}; [[ $workers == auto ]] && workers=$(nproc)
                    parked=$(( $(awk '{ for (i = 1; i < NF; i++) if ($i == "-c") print $(i + 1) }' <<<"$args") * workers ))
                fi
                leaked=$(bench_proxy_reap "$pid" "$parked")
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
        'NR > 1 && $1 == c && $2 == t && $col != "fail" && $col != "-" { print $col }' "$raw" | bench_median
}
# ratio CELL A B: the median over rounds of TPS(A) / TPS(B) within the same round — a paired
# comparison of runs seconds apart, so noise that drifts between rounds cancels out.
# Two decimals; "–" when no round has both.
ratio() {
    awk -F'\t' -v c="$1" -v a="$2" -v b="$3" '
        NR > 1 && $1 == c && $4 != "fail" && ($2 == a || $2 == b) { v[$2, $3] = $4; r[$3] = 1 }
        END { for (k in r) if ((a, k) in v && (b, k) in v && v[b, k] > 0) print v[a, k] / v[b, k] }' "$raw" \
        | bench_median | awk '{ printf "%.2f", $1 } END { if (!NR) printf "–" }'
}
# spread CELL: the largest (max − min) / median of TPS over rounds among the cell's targets,
# in percent: how noisy the machine was while this cell ran.
spread() {
    awk -F'\t' -v c="$1" 'NR > 1 && $1 == c && $4 != "fail" { print $2, $4 }' "$raw" | sort -k1,1 -k2,2g \
        | awk '{ v[$1, ++n[$1]] = $2 }
               END { for (t in n) { m = v[t, int((n[t] + 1) / 2)]; s = (v[t, n[t]] - v[t, 1]) / m
                                    if (m > 0 && s > worst) worst = s }
                     printf "%.0f %%", worst * 100 }'
}
cellfmt() { if [[ -z $1 ]]; then echo "failed"; else printf '%.0f (%.3f ms)' "$1" "$2"; fi; }

{
    cols=("${BENCH_TARGETS[@]}" pgsov_auth)
    echo "| cell | direct TPS (lat) | PgBouncer TPS (lat) | pgsov TPS (lat) | pgsov guard=off TPS (lat) | pgsov auth=proxy TPS (lat) | PgBouncer / direct | pgsov / direct | guard=off / direct | pgsov / PgBouncer | auth=proxy / PgBouncer | guard on / off | spread |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for cell in "${cells[@]}"; do
        IFS='|' read -r id label tlist _ <<<"$cell"
        declare -A tps=() lat=()
        for t in "${cols[@]}"; do
            tps[$t]=$(median 4 "$id" "$t")
            lat[$t]=$(median 5 "$id" "$t")
        done
        row="| $label"
        for t in "${cols[@]}"; do
            if [[ ($tlist == all && $t == pgsov_auth) || ($tlist != all && ,$tlist, != *,$t,*) ]]; then
                row+=" | –"
            else
                row+=" | $(cellfmt "${tps[$t]}" "${lat[$t]}")"
            fi
        done
        row+=" | $(ratio "$id" pgbouncer direct)"
        row+=" | $(ratio "$id" pgsov direct)"
        row+=" | $(ratio "$id" pgsov_noguard direct)"
        row+=" | $(ratio "$id" pgsov pgbouncer)"
        row+=" | $(ratio "$id" pgsov_auth pgbouncer)"
        row+=" | $(ratio "$id" pgsov pgsov_noguard)"
        row+=" | $(spread "$id") |"
        echo "$row"
        unset tps lat
    done
    echo
    echo "Proxy CPU per transaction (user + system time of the proxy process during the run ÷" \
         "transactions; median of rounds) — the proxy's own cost, much less sensitive to machine" \
         "noise than TPS:"
    echo
    echo "| cell | PgBouncer µs/txn | pgsov µs/txn | pgsov guard=off µs/txn | pgsov auth=proxy µs/txn | pgsov ÷ PgBouncer (above 1: pgsov spends more) |"
    echo "|---|---:|---:|---:|---:|---:|"
    for cell in "${cells[@]}"; do
        IFS='|' read -r id label tlist _ <<<"$cell"
        row="| $label"
        for t in pgbouncer pgsov pgsov_noguard pgsov_auth; do
            v=$(median 6 "$id" "$t"); row+=" | ${v:-–}"
        done
        b=$(median 6 "$id" pgbouncer); p=$(median 6 "$id" pgsov)
        row+=" | $(awk -v a="$p" -v b="$b" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "–"; else printf "%.2f", a / b }') |"
        echo "$row"
    done
    echo
    echo "TPS and latency: median of $rounds rounds x $seconds s. Ratios: median over rounds of the" \
         "two targets' TPS in the same round. Spread: largest (max − min) / median of a target's" \
         "TPS across rounds; above ~20 % the machine was busy and single ratios are rough."
    total=$(awk -F'\t' 'NR > 1 { n += $4 } END { print n + 0 }' "$leaks")
    if ((total > 0)); then
        echo
        echo "**Leak:** after its clients had gone, pgsov-proxy still held $total upstream" \
             "connections in total (the bench terminated those backends after each run;" \
             "per run in leaks.tsv)."
    fi
} > "$BENCH_OUT/matrix.md"
cat "$BENCH_OUT/matrix.md"
