#!/usr/bin/env bash
# Benchmark: `shop-analytics ingest postgres` against pg2parquet and against the limit,
# `COPY customers TO STDOUT (FORMAT binary)` into /dev/null, on the same table in the same run.
#
#   bash scripts/services.sh up            # PostgreSQL 15 on 127.0.0.1:55432
#   cargo build --release                  # the binary measured
#   cargo install pg2parquet --locked      # the tool compared against (or set PG2PARQUET=…)
#   bash bench/pg_export.sh [ROWS] [RUNS]  # default 1000000 customers, 3 runs
#
# Every tool writes zstd (level 3) Parquet to the local disk; each figure is the median of RUNS
# runs, wall clock of the whole command (connection and process start included). Prints a
# Markdown table for docs/BENCHMARKS.md.
set -euo pipefail

ROWS=${1:-1000000}
RUNS=${2:-3}
REPO=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/shop-analytics/target}
SHOP=${SHOP_BIN:-$TARGET/release/shop-analytics}
PG2PARQUET=${PG2PARQUET:-$(command -v pg2parquet || echo "$HOME/.cargo/bin/pg2parquet")}
ADMIN_URL=${SHOP_TEST_PG_URL:-postgres://postgres@127.0.0.1:55432/postgres}
DB=shop_bench_export
URL=${ADMIN_URL%/*}/$DB
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

for tool in "$SHOP" "$PG2PARQUET"; do
    [[ -x $tool ]] || { echo "missing $tool (see the header of $0)" >&2; exit 1; }
done

psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
"$SHOP" generate postgres --pg-url "$URL" --customers "$ROWS" --sellers 10 --log-filter warn
psql -q "$URL" -c "VACUUM ANALYZE customers" >/dev/null
# Warm the table into shared buffers / the page cache, so the first run is not penalised.
psql -q "$URL" -c "COPY customers TO STDOUT (FORMAT binary)" >/dev/null

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

# time_runs NAME COMMAND…: median wall seconds over RUNS runs.
time_runs() {
    local name=$1; shift
    local times=()
    for _ in $(seq "$RUNS"); do
        rm -rf "$WORK/out"; mkdir -p "$WORK/out"
        local start end
        start=$(date +%s.%N)
        "$@" >/dev/null 2>"$WORK/err" || { echo "$name failed:" >&2; cat "$WORK/err" >&2; exit 1; }
        end=$(date +%s.%N)
        times+=("$(echo "$end - $start" | bc -l)")
    done
    printf '%s\n' "${times[@]}" | median
}

copy_s=$(time_runs copy psql -q "$URL" -c "COPY customers TO STDOUT (FORMAT binary)")
# pg2parquet: numerics as DECIMAL(12,2) like ours (its default is float64); PGPASSWORD keeps it
# from asking for a password on a trust-auth server.
P2P_ARGS=(--quiet -c "$URL" -t customers --compression zstd --compression-level 3
    --numeric-handling decimal --decimal-precision 12 --decimal-scale 2)
export PGPASSWORD=${PGPASSWORD:-unused}
pg2parquet_s=$(time_runs pg2parquet "$PG2PARQUET" export "${P2P_ARGS[@]}" -o "$WORK/out/customers.parquet")
shop_s=$(time_runs shop "$SHOP" ingest postgres --pg-url "$URL" --tables customers \
    --lake "$WORK/out/lake" --log-filter warn)

# Sizes of what each tool wrote (last run).
"$PG2PARQUET" export "${P2P_ARGS[@]}" -o "$WORK/p.parquet" >/dev/null
"$SHOP" ingest postgres --pg-url "$URL" --tables customers --lake "$WORK/lake" --log-filter warn 2>/dev/null
p_size=$(stat -c %s "$WORK/p.parquet")
s_size=$(find "$WORK/lake/stage/customers" -name '*.parquet' -printf '%s\n' | awk '{s+=$1} END {print s}')

rate() { echo "$ROWS / $1" | bc -l | xargs printf '%.0f'; }
ratio() { echo "$1 / $2" | bc -l | xargs printf '%.2f'; }

cat <<EOF
Export of $ROWS customers (13 columns), median of $RUNS runs, $(nproc) cores, PostgreSQL $(psql -tAq "$URL" -c 'SHOW server_version'):

| tool | seconds | rows/s | time vs shop-analytics | Parquet bytes |
| --- | ---: | ---: | ---: | ---: |
| \`COPY … TO STDOUT (FORMAT binary)\` → /dev/null (the limit) | $(printf '%.2f' "$copy_s") | $(rate "$copy_s") | $(ratio "$copy_s" "$shop_s")× | – |
| \`shop-analytics ingest postgres\` | $(printf '%.2f' "$shop_s") | $(rate "$shop_s") | 1.00× | $s_size |
| \`pg2parquet export\` | $(printf '%.2f' "$pg2parquet_s") | $(rate "$pg2parquet_s") | $(ratio "$pg2parquet_s" "$shop_s")× | $p_size |

shop-analytics reaches $(echo "100 * $copy_s / $shop_s" | bc -l | xargs printf '%.0f')% of the COPY limit and is $(ratio "$pg2parquet_s" "$shop_s")× as fast as pg2parquet.
EOF
psql -q "$ADMIN_URL" -c "DROP DATABASE IF EXISTS $DB" >/dev/null
