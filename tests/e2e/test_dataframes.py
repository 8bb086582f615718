"""pandas and polars read query results through the ADBC driver."""

from __future__ import annotations

import datetime as dt
import warnings
from decimal import Decimal

import pandas as pd
import polars as pl
import pyarrow as pa

from e2e_util import assert_same_rows, duck_rows

CATEGORY_REVENUE = """
SELECT p.category, sum(pu.quantity * pu.unit_price) AS revenue, count(*) AS orders
FROM stage.purchases pu JOIN stage.products p ON pu.product_id = p.product_id
GROUP BY p.category ORDER BY revenue DESC, p.category
"""


def test_cursor_fetch_df(conn, duck):
    with conn.cursor() as cur:
        cur.execute(CATEGORY_REVENUE)
        df = cur.fetch_df()
    assert isinstance(df, pd.DataFrame)
    assert list(df.columns) == ["category", "revenue", "orders"]
    reference = duck_rows(duck, CATEGORY_REVENUE)
    assert len(df) == len(reference) >= 5
    got = list(df.itertuples(index=False, name=None))
    assert all(isinstance(r[1], Decimal) for r in got)
    assert_same_rows(got, reference)


def test_pandas_read_sql(conn, duck):
    sql = "SELECT dt, orders, units, revenue, buyers FROM analytics.daily_sales ORDER BY dt"
    with warnings.catch_warnings():
        # pandas warns for DB-API connections other than SQLAlchemy's; ADBC is supported.
        warnings.simplefilter("ignore", UserWarning)
        df = pd.read_sql(sql, conn)
    assert list(df.columns) == ["dt", "orders", "units", "revenue", "buyers"]
    assert len(df) == 90
    assert df["orders"].sum() == duck_rows(duck, "SELECT count(*) FROM stage.purchases")[0][0]
    (first_day,) = duck_rows(duck, "SELECT min(dt) FROM stage.purchases")[0]
    assert pd.Timestamp(df["dt"].iloc[0]).date() == first_day
    total = sum(Decimal(str(v)) for v in df["revenue"])
    (ref_total,) = duck_rows(duck, "SELECT sum(quantity * unit_price) FROM stage.purchases")[0]
    assert total == ref_total


def test_pandas_string_and_timestamp_columns(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT customer_id, name, city, created_at FROM stage.customers ORDER BY customer_id")
        df = cur.fetch_df()
    assert df["customer_id"].is_monotonic_increasing
    assert df["name"].map(type).eq(str).all()
    ts = df["created_at"]
    assert isinstance(ts.dtype, pd.DatetimeTZDtype), ts.dtype
    assert str(ts.dt.tz) in ("UTC", "+00:00")


def test_polars_read_database(conn, duck):
    df = pl.read_database(CATEGORY_REVENUE, conn)
    assert isinstance(df, pl.DataFrame)
    assert df.columns == ["category", "revenue", "orders"]
    assert df.schema["category"] == pl.String
    assert isinstance(df.schema["revenue"], pl.Decimal)
    assert_same_rows(df.rows(), duck_rows(duck, CATEGORY_REVENUE))


def test_polars_read_database_with_parameters(conn, duck):
    sql = "SELECT count(*) AS n FROM stage.purchases WHERE dt = ? AND quantity >= ?"
    params = [dt.date(2026, 9, 12), 2]
    df = pl.read_database(sql, conn, execute_options={"parameters": params})
    assert df.rows() == duck_rows(duck, sql, params)
    assert df.item() > 0


def test_polars_from_arrow_full_table(conn, duck):
    with conn.cursor() as cur:
        cur.execute("SELECT * FROM stage.purchases")
        table = cur.fetch_arrow_table()
    df = pl.from_arrow(table)
    assert df.height == duck_rows(duck, "SELECT count(*) FROM stage.purchases")[0][0]
    assert df.schema["purchased_at"] == pl.Datetime("us", "UTC")
    assert df.schema["dt"] == pl.Date
    assert df.schema["unit_price"] == pl.Decimal(12, 2)
    per_day = df.group_by("dt").agg(pl.len().alias("n")).sort("dt")
    reference = duck_rows(duck, "SELECT dt, count(*) FROM stage.purchases GROUP BY dt ORDER BY dt")
    assert per_day.rows() == reference


def test_no_view_types_anywhere(conn):
    """Strings arrive as string/large_string (not string_view), decimals as decimal128."""
    with conn.cursor() as cur:
        cur.execute(
            """SELECT c.name, c.email, upper(c.city) AS city, concat(c.country, '-', p.category) AS k,
                      pu.unit_price, pu.quantity * pu.unit_price AS line, s.rating
               FROM stage.purchases pu
               JOIN stage.customers c ON pu.customer_id = c.customer_id
               JOIN stage.products p ON pu.product_id = p.product_id
               JOIN stage.sellers s ON pu.seller_id = s.seller_id
               LIMIT 50"""
        )
        table = cur.fetch_arrow_table()
    assert table.num_rows == 50
    for f in table.schema:
        assert not pa.types.is_string_view(f.type) and not pa.types.is_binary_view(f.type), f
    for name in ("name", "email", "city", "k"):
        assert table.schema.field(name).type in (pa.string(), pa.large_string()), table.schema
    for name in ("unit_price", "line", "rating"):
        assert pa.types.is_decimal128(table.schema.field(name).type), table.schema
    assert table.schema.field("unit_price").type == pa.decimal128(12, 2)
    assert table.schema.field("rating").type == pa.decimal128(3, 2)
