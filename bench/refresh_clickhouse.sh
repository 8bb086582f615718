#!/usr/bin/env bash
# Benchmark of the analytics layer (not a test): see docs/BENCHMARKS.md.
#
#  1. `refresh --all-days` of a demo lake into the lake only, then into the lake and ClickHouse
#     (the same run, the same lake): time per day and the ClickHouse overhead as a ratio.
#  2. ClickHouse insert rate: every row of stage.purchases inserted by our path
#     (Arrow -> RowBinary -> LZ4 -> HTTP, aggregates/examples/clickhouse_insert.rs) against
#     `clickhouse-client` inserting the same rows (a RowBinary dump of what we inserted) over the
#     native protocol: the limit. Median of RUNS runs each.
#
# Needs the services of scripts/services.sh (ClickHouse) and a release build:
#   cargo build --release -p shop-cli -p shop-aggregates --bin shop-analytics \
#     --example clickhouse_insert
# Environment: SCALE (demo scale, default 1.0), RUNS (default 3), BIN_DIR (release dir).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/shop-analytics/target}/release}
SCALE=${SCALE:-1.0}
RUNS=${RUNS:-3}
eval "$(bash "$ROOT/scripts/services.sh" env)"
CH_URL=$SHOP_TEST_CLICKHOUSE_URL
CH_PORT=${SHOP_SERVICES_CLICKHOUSE_TCP_PORT:-59001}
DB=shop_bench
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
ch() { clickhouse-client --port "$CH_PORT" "$@"; }
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@" >/dev/null 2>&1; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }

"$BIN_DIR/shop-analytics" generate demo --lake "$WORK/lake" --scale "$SCALE" 2>/dev/null
purchases=$(find "$WORK/lake/stage/purchases" -name '*.parquet' | wc -l)
ch -q "DROP DATABASE IF EXISTS $DB"

echo "== refresh --all-days (scale $SCALE, 90 days, $purchases purchase files), median of $RUNS"
lake_only=(); with_ch=()
for _ in $(seq "$RUNS"); do
  lake_only+=("$(secs "$BIN_DIR/shop-analytics" refresh --lake "$WORK/lake" --all-days)")
  with_ch+=("$(secs "$BIN_DIR/shop-analytics" refresh --lake "$WORK/lake" --all-days \
    --clickhouse-url "$CH_URL" --clickhouse-database "$DB")")
done
lo=$(printf '%s\n' "${lake_only[@]}" | median)
wc=$(printf '%s\n' "${with_ch[@]}" | median)
rows=$(ch -q "SELECT (SELECT count() FROM $DB.daily_sales) + (SELECT count() FROM $DB.daily_product_sales) + (SELECT count() FROM $DB.daily_seller_sales) + (SELECT count() FROM $DB.daily_category_sales)")
printf 'lake only:          %6.2f s  (%.0f ms/day)\n' "$lo" "$(echo "$lo * 1000 / 90" | bc -l)"
printf 'lake + ClickHouse:  %6.2f s  (%.0f ms/day, %s aggregate rows + dimensions)  %.2fx lake only\n' \
  "$wc" "$(echo "$wc * 1000 / 90" | bc -l)" "$rows" "$(echo "$wc / $lo" | bc -l)"

echo "== ClickHouse insert of stage.purchases, median of $RUNS"
ours=()
for _ in $(seq "$RUNS"); do
  out=$("$BIN_DIR/examples/clickhouse_insert" "$WORK/lake" "$CH_URL" "$DB")
  ours+=("$(sed -E 's/.*insert_secs=([0-9.]+).*/\1/' <<<"$out")")
  n=$(sed -E 's/.*rows=([0-9]+) .*/\1/' <<<"$out")
done
ch -q "SELECT * FROM $DB.bench_purchases FORMAT RowBinary" > "$WORK/rows.bin"
theirs=()
for _ in $(seq "$RUNS"); do
  ch -q "DROP TABLE IF EXISTS $DB.bench_copy"
  ch -q "CREATE TABLE $DB.bench_copy AS $DB.bench_purchases"
  theirs+=("$(secs sh -c "clickhouse-client --port $CH_PORT -q 'INSERT INTO $DB.bench_copy FORMAT RowBinary' < $WORK/rows.bin")")
done
got=$(ch -q "SELECT count() FROM $DB.bench_copy")
[[ $got == "$n" ]] || { echo "clickhouse-client inserted $got rows, expected $n" >&2; exit 1; }
o=$(printf '%s\n' "${ours[@]}" | median)
t=$(printf '%s\n' "${theirs[@]}" | median)
printf 'clickhouse-client (RowBinary, native protocol): %6.2f s  %9.0f rows/s  1.00x\n' "$t" "$(echo "$n / $t" | bc -l)"
printf 'shop-analytics insert (Arrow->RowBinary, HTTP): %6.2f s  %9.0f rows/s  %.2fx\n' "$o" "$(echo "$n / $o" | bc -l)" "$(echo "$t / $o" | bc -l)"
ch -q "DROP DATABASE IF EXISTS $DB"
