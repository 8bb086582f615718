"""Bound parameters: `?` and `$n` placeholders, many parameters, several rows of parameters."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import adbc_driver_manager.dbapi as dbapi
import pyarrow as pa
import pytest

from e2e_util import assert_same_rows, duck_rows, grpc_code, query_error, rows

MANY_QMARK = """
SELECT count(*) AS orders, sum(pu.quantity * pu.unit_price) AS revenue,
       count(DISTINCT pu.customer_id) AS buyers
FROM stage.purchases pu
JOIN stage.products p ON pu.product_id = p.product_id
JOIN stage.customers c ON pu.customer_id = c.customer_id
WHERE p.category IN (?, ?, ?)
  AND pu.quantity BETWEEN ? AND ?
  AND pu.dt >= ? AND pu.dt <= ?
  AND c.country IN (?, ?, ?, ?)
  AND pu.unit_price > ?
"""
MANY_DOLLAR = """
SELECT count(*) AS orders, sum(pu.quantity * pu.unit_price) AS revenue,
       count(DISTINCT pu.customer_id) AS buyers
FROM stage.purchases pu
JOIN stage.products p ON pu.product_id = p.product_id
JOIN stage.customers c ON pu.customer_id = c.customer_id
WHERE p.category IN ($1, $2, $3)
  AND pu.quantity BETWEEN $4 AND $5
  AND pu.dt >= $6 AND pu.dt <= $7
  AND c.country IN ($8, $9, $10, $11)
  AND pu.unit_price > $12
"""
MANY_PARAMS = (
    "books",
    "electronics",
    "clothing",
    1,
    3,
    dt.date(2026, 8, 1),
    dt.date(2026, 9, 30),
    "DE",
    "FR",
    "GB",
    "NL",
    Decimal("5.00"),
)


@pytest.fixture(scope="module")
def busy_customers(duck) -> list[int]:
    """Customers with purchases, most active first."""
    ids = duck_rows(
        duck,
        """SELECT customer_id FROM stage.purchases GROUP BY customer_id
           ORDER BY count(*) DESC, customer_id LIMIT 8""",
    )
    assert len(ids) == 8
    return [r[0] for r in ids]


def test_question_mark(conn, duck, busy_customers):
    sql = "SELECT count(*), sum(quantity) FROM stage.purchases WHERE customer_id = ?"
    for cid in busy_customers[:3]:
        got = rows(conn, sql, (cid,))
        assert_same_rows(got, duck_rows(duck, sql, [cid]), f"customer {cid}")
        assert got[0][0] > 0


def test_dollar_placeholders_with_dates_and_reuse(conn, duck):
    sql = """SELECT dt, count(*), sum(quantity * unit_price) FROM stage.purchases
             WHERE dt BETWEEN $1 AND $2 AND (quantity >= $3 OR $3 IS NULL)
             GROUP BY dt ORDER BY dt"""
    params = (dt.date(2026, 9, 1), dt.date(2026, 9, 7), 2)
    got = rows(conn, sql, params)
    assert len(got) == 7
    assert_same_rows(got, duck_rows(duck, sql, list(params)))


def test_string_parameters_are_values_not_sql(conn, duck):
    sql = "SELECT count(*) FROM stage.customers WHERE city = ?"
    munich = rows(conn, sql, ("München",))
    assert_same_rows(munich, duck_rows(duck, sql, ["München"]))
    assert munich[0][0] > 0
    assert rows(conn, sql, ("x' OR '1'='1",)) == [(0,)]
    assert rows(conn, sql, ("'; DROP TABLE stage.customers; --",)) == [(0,)]


def test_decimal_parameter(conn, duck):
    sql = "SELECT count(*), sum(unit_price) FROM stage.purchases WHERE unit_price >= ?"
    got = rows(conn, sql, (Decimal("49.99"),))
    assert_same_rows(got, duck_rows(duck, sql, [Decimal("49.99")]))
    assert got[0][0] > 0


@pytest.mark.parametrize("sql", [MANY_QMARK, MANY_DOLLAR], ids=["qmark", "dollar"])
def test_twelve_parameters_of_mixed_types(conn, duck, sql):
    got = rows(conn, sql, MANY_PARAMS)
    reference = duck_rows(duck, MANY_QMARK, list(MANY_PARAMS))
    assert reference[0][0] > 0, "the reference selects nothing: pick other parameter values"
    assert_same_rows(got, reference)


def test_prepared_statement_reused_with_new_values(conn, duck, busy_customers):
    """One cursor, one SQL text, several executions: the driver prepares once and rebinds."""
    sql = """SELECT customer_id, count(*), sum(quantity * unit_price)
             FROM stage.purchases WHERE customer_id = ? GROUP BY customer_id"""
    with conn.cursor() as cur:
        for cid in busy_customers:
            cur.execute(sql, (cid,))
            got = [tuple(r) for r in cur.fetchall()]
            assert_same_rows(got, duck_rows(duck, sql, [cid]), f"customer {cid}")


def test_many_rows_of_parameters_in_one_execute(conn, duck, busy_customers):
    """An Arrow batch of N parameter rows runs the query once per row (executemany-like)."""
    sql = """SELECT customer_id, count(*) AS n, sum(quantity) AS units
             FROM stage.purchases WHERE customer_id = ? GROUP BY customer_id"""
    batch = pa.record_batch([pa.array(busy_customers, pa.int64())], names=["0"])
    with conn.cursor() as cur:
        cur.execute(sql, batch)
        got = [tuple(r) for r in cur.fetchall()]
    expected = [duck_rows(duck, sql, [cid])[0] for cid in busy_customers]
    # One result per parameter row, in the order of the rows.
    assert got == expected


def test_many_rows_of_twelve_parameters(conn, duck):
    """Several parameter rows with 12 columns of mixed types, as an Arrow table."""
    variants = [
        MANY_PARAMS,
        ("toys", "home", "garden", 1, 1, dt.date(2026, 7, 1), dt.date(2026, 9, 30),
         "ES", "IT", "PL", "SE", Decimal("0.00")),
        ("beauty", "grocery", "sports", 2, 10, dt.date(2026, 9, 1), dt.date(2026, 9, 30),
         "DE", "DE", "DE", "DE", Decimal("1.00")),
    ]
    columns = list(zip(*variants))
    table = pa.table({str(i): list(col) for i, col in enumerate(columns)})
    got = rows(conn, MANY_QMARK, table)
    expected = [duck_rows(duck, MANY_QMARK, list(v))[0] for v in variants]
    assert len(got) == len(variants)
    assert_same_rows(got, expected)


def test_missing_parameter_values_are_an_error(conn):
    err = query_error(
        conn,
        "SELECT count(*) FROM stage.purchases WHERE customer_id = ? AND quantity = ?",
        (1,),
    )
    assert "parameter" in str(err).lower(), str(err)
    assert grpc_code(err) == "InvalidArgument", str(err)


def test_executemany_of_an_insert_is_refused(conn):
    with conn.cursor() as cur:
        with pytest.raises(dbapi.Error) as info:
            cur.executemany(
                "INSERT INTO stage.customers (customer_id, name) VALUES (?, ?)",
                [(900001, "x"), (900002, "y")],
            )
    assert "read-only" in str(info.value), str(info.value)
    assert rows(conn, "SELECT count(*) FROM stage.customers WHERE customer_id > 900000") == [(0,)]
