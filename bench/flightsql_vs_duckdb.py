#!/usr/bin/env python3
"""Benchmark: the shop's Flight SQL server (over ADBC) against DuckDB in-process on the same files.

Runs a handful of analytic shop queries through both engines, checks that they return the same
rows, then times N repetitions of each and prints a Markdown table for docs/BENCHMARKS.md:
median time per engine, and the ratio Flight SQL / DuckDB. A full fetch of stage.purchases
measures transfer throughput (rows/s) both ways.

The Flight SQL times include everything a client sees: planning, execution, Arrow IPC over
gRPC on loopback, and decoding. DuckDB reads the same Parquet files directly in this process
(the live files of each table, from its Delta log).

    shop-analytics quickstart --lake /tmp/shop-lake --scale 1.0 &
    python bench/flightsql_vs_duckdb.py --lake /tmp/shop-lake --server grpc://127.0.0.1:50051

Needs the packages of tests/e2e/requirements.txt.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from decimal import Decimal
from pathlib import Path

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

QUERIES: list[tuple[str, str]] = [
    ("count_purchases", "SELECT count(*) AS n FROM stage.purchases"),
    (
        "revenue_by_category",
        """SELECT p.category, count(*) AS orders, sum(pu.quantity) AS units,
                  sum(pu.quantity * pu.unit_price) AS revenue
           FROM stage.purchases pu JOIN stage.products p ON pu.product_id = p.product_id
           GROUP BY p.category ORDER BY revenue DESC, p.category""",
    ),
    (
        "revenue_by_country",
        """SELECT c.country, count(DISTINCT pu.customer_id) AS buyers,
                  sum(pu.quantity * pu.unit_price) AS revenue
           FROM stage.purchases pu JOIN stage.customers c ON pu.customer_id = c.customer_id
           GROUP BY c.country ORDER BY c.country""",
    ),
    (
        "daily_sales_recompute",
        """SELECT dt, count(DISTINCT purchase_id) AS orders, sum(quantity) AS units,
                  sum(quantity * unit_price) AS revenue, count(DISTINCT customer_id) AS buyers
           FROM stage.purchases GROUP BY dt ORDER BY dt""",
    ),
    (
        "top_customers",
        """SELECT c.customer_id, c.name, c.city, sum(pu.quantity * pu.unit_price) AS revenue
           FROM stage.purchases pu JOIN stage.customers c ON pu.customer_id = c.customer_id
           GROUP BY c.customer_id, c.name, c.city
           ORDER BY revenue DESC, c.customer_id LIMIT 20""",
    ),
    (
        "best_product_per_category",
        """WITH per_product AS (
               SELECT p.category, p.product_id, sum(pu.quantity) AS units
               FROM stage.purchases pu JOIN stage.products p ON pu.product_id = p.product_id
               GROUP BY p.category, p.product_id),
           ranked AS (
               SELECT category, product_id, units,
                      row_number() OVER (PARTITION BY category ORDER BY units DESC, product_id)
                          AS rnk
               FROM per_product)
           SELECT category, product_id, units FROM ranked WHERE rnk = 1 ORDER BY category""",
    ),
    (
        "one_day_by_seller",
        """SELECT s.seller_id, s.name, count(*) AS orders, sum(pu.quantity * pu.unit_price) AS revenue
           FROM stage.purchases pu JOIN stage.sellers s ON pu.seller_id = s.seller_id
           WHERE pu.dt = DATE '{last_day}'
           GROUP BY s.seller_id, s.name ORDER BY revenue DESC, s.seller_id LIMIT 20""",
    ),
    (
        "daily_sales_table",
        "SELECT dt, orders, units, revenue, buyers FROM analytics.daily_sales ORDER BY dt",
    ),
]
FULL_FETCH = "SELECT * FROM stage.purchases"


# --- the lake's live files (tests/e2e/shoplake.py: a replay of each table's Delta log) -----------

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from shoplake import _hidden, table_files  # noqa: E402


def _hidden(rel: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in rel.parts)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def duckdb_over(lake: Path, threads: int | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    if threads:
        con.execute(f"SET threads = {threads}")
    for schema in ("stage", "analytics"):
        root = lake / schema
        if not root.is_dir():
            continue
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for table_dir in sorted(d for d in root.iterdir() if d.is_dir() and not _hidden(Path(d.name))):
            files = table_files(lake, schema, table_dir.name)
            if not files:
                continue
            in_file = set(pq.read_schema(files[0]).names)
            keys = [
                part.split("=", 1)[0]
                for part in files[0].relative_to(table_dir).parts[:-1]
                if "=" in part and part.split("=", 1)[0] not in in_file
            ]
            listing = "[" + ", ".join(_quote(str(f)) for f in files) + "]"
            if keys:
                types = ", ".join(f"{_quote(k)}: {'DATE' if k == 'dt' else 'VARCHAR'}" for k in keys)
                source = f"read_parquet({listing}, hive_partitioning = true, hive_types = {{{types}}})"
            else:
                source = f"read_parquet({listing}, hive_partitioning = false)"
            con.execute(f"CREATE VIEW {schema}.{table_dir.name} AS SELECT * FROM {source}")
    return con


# --- running and comparing ------------------------------------------------------------------------


def flight_table(conn, sql: str) -> pa.Table:
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def duck_table(con, sql: str) -> pa.Table:
    return con.sql(sql).to_arrow_table()


def _norm(v):
    if isinstance(v, Decimal):
        if v.as_tuple().exponent >= 0:
            # DuckDB sums integers into HUGEINT, which Arrow carries as decimal128(38, 0).
            return int(v)
        return ("dec", v.quantize(Decimal("0.0001")))
    if isinstance(v, float):
        return ("float", round(v, 6))
    if isinstance(v, dt.datetime):
        return v.astimezone(dt.timezone.utc) if v.tzinfo else v
    return v


def rows_of(table: pa.Table) -> list[tuple]:
    cols = [c.to_pylist() for c in table.columns]
    return [tuple(_norm(v) for v in r) for r in zip(*cols)]


def verify(name: str, a: pa.Table, b: pa.Table) -> str | None:
    if a.num_rows != b.num_rows:
        return f"{name}: {a.num_rows} rows through Flight SQL, {b.num_rows} in DuckDB"
    ra, rb = rows_of(a), rows_of(b)
    for i, (x, y) in enumerate(zip(ra, rb)):
        if x != y:
            return f"{name}: row {i} differs\n  flight: {x}\n  duckdb: {y}"
    return None


def timed(fn, reps: int, warmup: int) -> tuple[list[float], pa.Table]:
    result = None
    for _ in range(warmup):
        result = fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:,.1f}" if ms < 100 else f"{ms:,.0f}"


def fmt_rate(rows: float) -> str:
    if rows >= 1e6:
        return f"{rows / 1e6:,.2f} M"
    if rows >= 1e3:
        return f"{rows / 1e3:,.1f} k"
    return f"{rows:,.0f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lake", required=True, type=Path, help="the lake folder the server serves")
    ap.add_argument("--server", default="grpc://127.0.0.1:50051", help="Flight SQL URI")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per query (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    ap.add_argument("--full-fetch-reps", type=int, default=3, help="repetitions of the full fetch")
    ap.add_argument("--duckdb-threads", type=int, default=None, help="DuckDB threads (default: all)")
    ap.add_argument("--user", default=os.environ.get("SHOP_USER"))
    ap.add_argument("--password", default=os.environ.get("SHOP_PASSWORD"))
    ap.add_argument("--only", action="append", help="run only these queries (repeatable)")
    ap.add_argument("--skip-full-fetch", action="store_true")
    ap.add_argument("--no-verify", action="store_true", help="time even if results differ")
    ap.add_argument("--output", type=Path, help="also write the Markdown report to this file")
    args = ap.parse_args()

    lake = args.lake.resolve()
    if not (lake / "stage" / "purchases").is_dir():
        ap.error(f"{lake} has no stage/purchases: pass the folder the server serves")

    db_kwargs = {adbc_driver_flightsql.DatabaseOptions.WITH_MAX_MSG_SIZE.value: str(256 << 20)}
    if args.user:
        db_kwargs.update(username=args.user, password=args.password or "")
    conn = flightsql.connect(args.server, db_kwargs=db_kwargs, autocommit=True)
    duck = duckdb_over(lake, args.duckdb_threads)

    last_day = duck.execute("SELECT max(dt) FROM stage.purchases").fetchall()[0][0]
    (purchases,) = duck.execute("SELECT count(*) FROM stage.purchases").fetchall()[0]
    queries = [(n, q.replace("{last_day}", last_day.isoformat())) for n, q in QUERIES]
    if args.only:
        queries = [(n, q) for n, q in queries if n in args.only]
    scale = None
    marker = lake / "_demo.json"
    if marker.is_file():
        scale = json.loads(marker.read_text()).get("scale")

    print(f"lake {lake} (scale {scale}, {purchases:,} purchases), server {args.server}", file=sys.stderr)
    print(f"{args.reps} timed runs per query after {args.warmup} warm-up run(s)", file=sys.stderr)

    # 1. Same answers, or the timings mean nothing.
    failures = []
    for name, sql in queries:
        err = verify(name, flight_table(conn, sql), duck_table(duck, sql))
        if err:
            failures.append(err)
            print(f"MISMATCH {err}", file=sys.stderr)
    if failures and not args.no_verify:
        print(f"{len(failures)} quer(ies) differ between the engines; not timing.", file=sys.stderr)
        return 1
    print(f"verified {len(queries)} queries: identical results", file=sys.stderr)

    # 2. Timings.
    results = []
    for name, sql in queries:
        ft, ftable = timed(lambda: flight_table(conn, sql), args.reps, args.warmup)
        dtimes, _ = timed(lambda: duck_table(duck, sql), args.reps, args.warmup)
        f_med, d_med = statistics.median(ft), statistics.median(dtimes)
        results.append((name, ftable.num_rows, f_med, d_med, min(ft), min(dtimes)))
        print(f"  {name:<28} flight {fmt_ms(f_med):>9} ms   duckdb {fmt_ms(d_med):>9} ms", file=sys.stderr)

    full = None
    if not args.skip_full_fetch:
        ft, ftable = timed(lambda: flight_table(conn, FULL_FETCH), args.full_fetch_reps, 1)
        dtimes, dtable = timed(lambda: duck_table(duck, FULL_FETCH), args.full_fetch_reps, 1)
        if ftable.num_rows != dtable.num_rows:
            print(f"full fetch: {ftable.num_rows} rows vs {dtable.num_rows}", file=sys.stderr)
            if not args.no_verify:
                return 1
        full = (ftable.num_rows, ftable.nbytes, statistics.median(ft), statistics.median(dtimes))

    # 3. Report.
    lines = [
        f"Flight SQL (ADBC {adbc_driver_flightsql.__version__}, loopback) vs DuckDB "
        f"{duckdb.__version__} in-process, same Parquet files. Demo scale {scale}: "
        f"{purchases:,} purchases. {platform.system()} {platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, {dt.date.today()}. "
        f"Median of {args.reps} runs after {args.warmup} warm-up.",
        "",
        "| query | rows | Flight SQL (ms) | DuckDB (ms) | Flight / DuckDB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, n, f_med, d_med, _, _ in results:
        ratio = f_med / d_med if d_med > 0 else float("inf")
        lines.append(f"| {name} | {n:,} | {fmt_ms(f_med)} | {fmt_ms(d_med)} | {ratio:.2f}× |")
    if full:
        n, nbytes, f_med, d_med = full
        lines += [
            "",
            f"Full fetch of stage.purchases ({n:,} rows, {nbytes / 2**20:,.0f} MiB in Arrow), median of "
            f"{args.full_fetch_reps}:",
            "",
            "| path | time (s) | rows/s | MiB/s |",
            "|---|---:|---:|---:|",
            f"| Flight SQL (ADBC) | {f_med:.2f} | {fmt_rate(n / f_med)} | {nbytes / 2**20 / f_med:,.0f} |",
            f"| DuckDB in-process | {d_med:.2f} | {fmt_rate(n / d_med)} | {nbytes / 2**20 / d_med:,.0f} |",
        ]
    report = "\n".join(lines)
    print(report)
    if args.output:
        args.output.write_text(report + "\n")
    conn.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
