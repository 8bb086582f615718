"""Query results through Flight SQL equal DuckDB's on the same Parquet files."""

from __future__ import annotations

import datetime as dt

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from e2e_util import arrow, assert_same_rows, duck_rows, rows

# (id, SQL run on both engines). DuckDB sees the same tables as views stage.* / analytics.*.
SAME_SQL = [
    ("count_customers", "SELECT count(*) FROM stage.customers"),
    ("count_sellers", "SELECT count(*) FROM stage.sellers"),
    ("count_products", "SELECT count(*) FROM stage.products"),
    ("count_purchases", "SELECT count(*) FROM stage.purchases"),
    ("count_daily_sales", "SELECT count(*) FROM analytics.daily_sales"),
    (
        "purchase_totals",
        """SELECT count(*), count(DISTINCT purchase_id), sum(quantity), sum(unit_price),
                  sum(quantity * unit_price), min(unit_price), max(unit_price),
                  min(dt), max(dt), count(DISTINCT dt)
           FROM stage.purchases""",
    ),
    (
        "revenue_by_category",
        """SELECT p.category, count(*) AS orders, sum(pu.quantity) AS units,
                  sum(pu.quantity * pu.unit_price) AS revenue,
                  count(DISTINCT pu.customer_id) AS buyers
           FROM stage.purchases pu JOIN stage.products p ON pu.product_id = p.product_id
           GROUP BY p.category ORDER BY p.category""",
    ),
    (
        "revenue_by_customer_country",
        """SELECT c.country, count(*) AS orders, sum(pu.quantity * pu.unit_price) AS revenue,
                  count(DISTINCT c.customer_id) AS buyers
           FROM stage.purchases pu JOIN stage.customers c ON pu.customer_id = c.customer_id
           GROUP BY c.country ORDER BY c.country""",
    ),
    (
        "revenue_by_country_and_category",
        """SELECT c.country, p.category, sum(pu.quantity * pu.unit_price) AS revenue
           FROM stage.purchases pu
           JOIN stage.customers c ON pu.customer_id = c.customer_id
           JOIN stage.products p ON pu.product_id = p.product_id
           WHERE c.is_active
           GROUP BY c.country, p.category ORDER BY c.country, p.category""",
    ),
    (
        "seller_country_and_ratings",
        """SELECT s.country, count(*) AS sellers, count(s.rating) AS rated, sum(s.rating),
                  min(s.rating), max(s.rating)
           FROM stage.sellers s GROUP BY s.country ORDER BY s.country""",
    ),
    (
        "top_products",
        """SELECT pu.product_id, p.name, sum(pu.quantity * pu.unit_price) AS revenue
           FROM stage.purchases pu JOIN stage.products p ON pu.product_id = p.product_id
           GROUP BY pu.product_id, p.name
           ORDER BY revenue DESC, pu.product_id LIMIT 10""",
    ),
    (
        "best_product_per_category_window",
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
        "unicode_cities",
        """SELECT city, count(*), sum(length(city)), min(name), max(email)
           FROM stage.customers GROUP BY city ORDER BY city""",
    ),
    (
        "active_customers",
        "SELECT is_active, count(*) FROM stage.customers GROUP BY is_active ORDER BY is_active",
    ),
    (
        "purchases_after_timestamp",
        """SELECT count(*), sum(quantity) FROM stage.purchases
           WHERE purchased_at >= '2026-09-01T00:00:00Z'""",
    ),
    (
        "purchases_one_day_partition",
        """SELECT count(*), sum(quantity * unit_price) FROM stage.purchases
           WHERE dt = (SELECT max(dt) FROM stage.purchases)""",
    ),
    (
        "daily_sales_files",
        "SELECT dt, orders, units, revenue, buyers FROM analytics.daily_sales ORDER BY dt",
    ),
    (
        "customers_without_purchases",
        """SELECT count(*) FROM stage.customers c
           WHERE NOT EXISTS (SELECT 1 FROM stage.purchases pu WHERE pu.customer_id = c.customer_id)""",
    ),
    (
        "products_price_bands",
        """SELECT band, count(*), sum(price)
           FROM (SELECT CASE WHEN price < 10 THEN 'low' WHEN price < 100 THEN 'mid'
                             ELSE 'high' END AS band, price
                 FROM stage.products) AS t
           GROUP BY band ORDER BY band""",
    ),
]

# Queries whose first value must be non-zero, or the comparison would prove nothing.
NONZERO = {sql for name, sql in SAME_SQL if name != "customers_without_purchases"}


@pytest.mark.parametrize("sql", [s for _, s in SAME_SQL], ids=[i for i, _ in SAME_SQL])
def test_same_result_as_duckdb(conn, duck, sql):
    flight = rows(conn, sql)
    reference = duck_rows(duck, sql)
    assert reference, "DuckDB returned nothing: the reference query is wrong"
    if sql in NONZERO:
        assert any(v for v in reference[0] if not isinstance(v, bool)), (
            f"the reference selects nothing, so the comparison proves nothing: {sql}"
        )
    assert_same_rows(flight, reference, sql.split()[1])


def test_demo_data_is_not_empty(conn, duck):
    (n,) = rows(conn, "SELECT count(*) FROM stage.purchases")[0]
    assert n > 1000, f"only {n} purchases at the test scale"
    (days,) = rows(conn, "SELECT count(DISTINCT dt) FROM stage.purchases")[0]
    assert days == 90, days
    (categories,) = rows(conn, "SELECT count(DISTINCT category) FROM stage.products")[0]
    assert categories >= 5


def test_daily_sales_matches_an_independent_aggregation(conn, duck):
    served = rows(
        conn, "SELECT dt, orders, units, revenue, buyers FROM analytics.daily_sales ORDER BY dt"
    )
    reference = duck_rows(
        duck,
        """SELECT dt,
                  count(DISTINCT purchase_id)   AS orders,
                  sum(quantity)                 AS units,
                  sum(quantity * unit_price)    AS revenue,
                  count(DISTINCT customer_id)   AS buyers
           FROM stage.purchases GROUP BY dt ORDER BY dt""",
    )
    assert len(served) == len(reference) == 90
    assert all(isinstance(r[0], dt.date) for r in served)
    assert_same_rows(served, reference, "daily_sales")


# The per-product, per-seller and per-category aggregates against DuckDB over the stage files.
BREAKDOWNS = [
    (
        "daily_product_sales",
        "dt, product_id, currency, orders, units, revenue, buyers",
        """SELECT dt, product_id, currency, count(DISTINCT purchase_id), sum(quantity),
                  sum(quantity * unit_price), count(DISTINCT customer_id)
           FROM stage.purchases GROUP BY ALL ORDER BY dt, product_id, currency""",
    ),
    (
        "daily_seller_sales",
        "dt, seller_id, currency, orders, units, revenue, buyers, products",
        """SELECT dt, seller_id, currency, count(DISTINCT purchase_id), sum(quantity),
                  sum(quantity * unit_price), count(DISTINCT customer_id),
                  count(DISTINCT product_id)
           FROM stage.purchases GROUP BY ALL ORDER BY dt, seller_id, currency""",
    ),
    (
        "daily_category_sales",
        "dt, category, currency, orders, units, revenue, buyers",
        """SELECT pu.dt, coalesce(p.category, 'unknown') AS category, pu.currency,
                  count(DISTINCT pu.purchase_id), sum(pu.quantity),
                  sum(pu.quantity * pu.unit_price), count(DISTINCT pu.customer_id)
           FROM stage.purchases pu LEFT JOIN stage.products p ON p.product_id = pu.product_id
           GROUP BY ALL ORDER BY 1, 2, 3""",
    ),
]


@pytest.mark.parametrize("table,columns,reference", BREAKDOWNS, ids=[b[0] for b in BREAKDOWNS])
def test_breakdown_aggregates_match_an_independent_aggregation(conn, duck, table, columns, reference):
    key = ", ".join(columns.split(", ")[:3])
    served = rows(conn, f"SELECT {columns} FROM analytics.{table} ORDER BY {key}")
    expected = duck_rows(duck, reference)
    assert len(expected) > 90, f"{table}: only {len(expected)} reference rows"
    assert_same_rows(served, expected, table)


def test_the_quickstart_refresh_runs_are_queryable(conn):
    runs = rows(
        conn,
        """SELECT trigger, status, count(*), count(DISTINCT day), sum(lake_rows),
                  count(clickhouse_rows), count(error)
           FROM system.refresh_runs WHERE trigger = 'manual' GROUP BY trigger, status""",
    )
    (lake_rows,) = rows(
        conn,
        """SELECT (SELECT count(*) FROM analytics.daily_sales)
                + (SELECT count(*) FROM analytics.daily_product_sales)
                + (SELECT count(*) FROM analytics.daily_seller_sales)
                + (SELECT count(*) FROM analytics.daily_category_sales)""",
    )[0]
    # One succeeded run per day of the demo, each with every aggregate; no ClickHouse here.
    # (Servers of other tests on this lake run the scheduler, whose catch-up runs are not
    # manual.)
    assert runs == [("manual", "succeeded", 90, 90, lake_rows, 0, 0)], runs


def test_full_table_fetch_equals_duckdb(conn, duck):
    sql = "SELECT * FROM stage.purchases ORDER BY purchase_id"
    flight = arrow(conn, sql)
    reference = duck.sql(sql).to_arrow_table()
    assert flight.num_rows == reference.num_rows > 0
    assert flight.column_names == reference.column_names
    for name in flight.column_names:
        a, b = flight.column(name), reference.column(name)
        if pa.types.is_timestamp(a.type):
            a = a.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
            b = b.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        elif pa.types.is_string(a.type) or pa.types.is_large_string(a.type):
            a, b = a.cast(pa.string()), b.cast(pa.string())
        assert a.type == b.type or pa.types.is_decimal(a.type), f"{name}: {a.type} vs {b.type}"
        assert a.to_pylist() == b.to_pylist(), f"column {name} differs"
    # purchase_id is a UUID in its text form
    ids = flight.column("purchase_id")
    assert pc.all(pc.match_substring_regex(ids, r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")).as_py()


def test_large_result_streams_completely(conn, duck):
    """A cross join big enough to need many batches/messages arrives whole."""
    sql = """SELECT pu.purchase_id, c.name, c.email, c.city
             FROM stage.purchases pu CROSS JOIN (SELECT * FROM stage.customers LIMIT 5) c"""
    with conn.cursor() as cur:
        cur.execute(sql)
        reader = cur.fetch_record_batch()
        n = 0
        batches = 0
        for batch in reader:
            n += batch.num_rows
            batches += 1
    (expected,) = duck_rows(duck, f"SELECT count(*) FROM ({sql})")[0]
    assert n == expected
    assert batches > 1


def test_fetch_row_by_row_dbapi(conn, duck):
    with conn.cursor() as cur:
        cur.execute("SELECT seller_id, name, country FROM stage.sellers ORDER BY seller_id")
        assert [d[0] for d in cur.description] == ["seller_id", "name", "country"]
        first = cur.fetchone()
        some = cur.fetchmany(2)
        rest = cur.fetchall()
    got = [first, *some, *rest]
    assert_same_rows(
        got, duck_rows(duck, "SELECT seller_id, name, country FROM stage.sellers ORDER BY seller_id")
    )


def test_explain_and_show_are_allowed(conn):
    plan = rows(conn, "EXPLAIN SELECT count(*) FROM stage.purchases")
    assert plan and any("purchases" in str(r) for r in plan)
    tables = rows(conn, "SHOW TABLES")
    names = {r[2] for r in tables if r[0] == "shop"}
    assert {"customers", "sellers", "products", "purchases", "daily_sales"} <= names
