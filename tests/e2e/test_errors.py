"""Errors: bad SQL, unknown tables, every kind of write or file access, and staying up after them."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from e2e_util import duck_rows, grpc_code, query_error, rows

READ_ONLY = r"read-only|not allowed"

# (SQL, word the message must contain (regex), accepted gRPC codes)
FORBIDDEN = [
    ("INSERT INTO stage.customers (customer_id, name) VALUES (1, 'x')", r"INSERT"),
    ("INSERT INTO stage.purchases SELECT * FROM stage.purchases", r"INSERT"),
    ("UPDATE stage.customers SET name = 'x' WHERE customer_id = 1", r"UPDATE"),
    ("DELETE FROM stage.customers WHERE customer_id = 1", r"DELETE"),
    ("DELETE FROM stage.purchases", r"DELETE"),
    ("CREATE TABLE stage.evil AS SELECT * FROM stage.customers", r"CREATE TABLE"),
    ("CREATE TABLE evil (x INT)", r"CREATE TABLE"),
    ("CREATE VIEW stage.v AS SELECT 1 AS x", r"CREATE VIEW"),
    ("CREATE OR REPLACE VIEW stage.customers AS SELECT 1 AS x", r"CREATE (OR REPLACE )?VIEW"),
    (
        "CREATE EXTERNAL TABLE pw (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'",
        r"CREATE EXTERNAL TABLE",
    ),
    ("CREATE SCHEMA shop.scratch", r"CREATE SCHEMA"),
    ("DROP TABLE stage.purchases", r"DROP"),
    ("DROP VIEW IF EXISTS stage.v", r"DROP"),
    ("DROP SCHEMA stage CASCADE", r"DROP"),
    ("ALTER TABLE stage.customers ADD COLUMN x INT", r"ALTER"),
    ("CREATE INDEX idx ON stage.customers (customer_id)", r"CREATE INDEX"),
    ("TRUNCATE TABLE stage.purchases", r"TRUNCATE"),
    ("COPY (SELECT * FROM stage.customers) TO '/tmp/shop-e2e-stolen.csv'", r"COPY"),
    ("COPY stage.customers TO '/tmp/shop-e2e-stolen.parquet' STORED AS PARQUET", r"COPY"),
    ("SET datafusion.execution.batch_size = 1", r"SET"),
    ("RESET datafusion.execution.batch_size", r"RESET"),
    ("EXPLAIN ANALYZE INSERT INTO stage.customers (customer_id) VALUES (1)", r"INSERT"),
    ("SELECT * FROM '/etc/passwd'", r"file path or URL"),
    ("SELECT * FROM 'stage/customers/x.parquet'", r"file path or URL"),
    ('SELECT * FROM "/etc/hostname"', r"file path or URL"),
    ("SELECT * FROM 'http://127.0.0.1:9/x.parquet'", r"file path or URL"),
    ('SELECT * FROM "s3://bucket/x.parquet"', r"file path or URL"),
    (
        "SELECT * FROM stage.customers WHERE customer_id IN (SELECT * FROM '/tmp/ids.csv')",
        r"file path or URL",
    ),
]
MULTI = [
    "SELECT 1; SELECT 2",
    "SELECT count(*) FROM stage.purchases; DROP TABLE stage.purchases",
]


def _id(sql: str) -> str:
    return re.sub(r"\W+", "_", sql)[:60]


@pytest.mark.parametrize("sql,word", FORBIDDEN, ids=[_id(s) for s, _ in FORBIDDEN])
def test_forbidden_statement(conn, sql, word):
    err = query_error(conn, sql)
    msg = str(err)
    assert re.search(word, msg, re.IGNORECASE), f"{word!r} not in: {msg}"
    assert re.search(READ_ONLY, msg, re.IGNORECASE), f"no read-only explanation in: {msg}"
    assert grpc_code(err) in ("PermissionDenied", "InvalidArgument"), msg


@pytest.mark.parametrize("sql", MULTI, ids=["two_selects", "select_then_drop"])
def test_one_statement_per_request(conn, sql):
    err = query_error(conn, sql)
    assert re.search(r"one statement", str(err), re.IGNORECASE), str(err)
    assert grpc_code(err) in ("InvalidArgument", "PermissionDenied"), str(err)


def test_nothing_was_written(conn, lake, duck):
    """After all the refused statements, the lake and the tables are as they were."""
    names = {p.name for p in lake.rglob("*")}
    assert "evil" not in names and "scratch" not in names and "v" not in names
    assert not list(lake.glob("**/shop-e2e-stolen*"))
    assert not Path("/tmp/shop-e2e-stolen.csv").exists()
    assert not Path("/tmp/shop-e2e-stolen.parquet").exists()
    for table in ("customers", "purchases"):
        sql = f"SELECT count(*) FROM stage.{table}"
        assert rows(conn, sql) == duck_rows(duck, sql)


def test_file_reading_table_functions_fail(conn):
    for sql in (
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM read_parquet('/etc/passwd')",
    ):
        err = query_error(conn, sql)
        assert "root:" not in str(err)


def test_syntax_error(conn):
    err = query_error(conn, "SELEC count(*) FROM stage.purchases")
    assert grpc_code(err) == "InvalidArgument", str(err)
    assert re.search(r"syntax|parser|expected", str(err), re.IGNORECASE), str(err)


def test_unknown_table(conn):
    err = query_error(conn, "SELECT * FROM stage.no_such_table")
    assert grpc_code(err) == "NotFound", str(err)
    assert "no_such_table" in str(err) and "not found" in str(err).lower(), str(err)


def test_unknown_schema(conn):
    err = query_error(conn, "SELECT * FROM nowhere.purchases")
    assert grpc_code(err) == "NotFound", str(err)
    assert "nowhere" in str(err), str(err)


def test_unknown_column(conn):
    err = query_error(conn, "SELECT no_such_column FROM stage.purchases")
    assert grpc_code(err) == "InvalidArgument", str(err)
    assert "no_such_column" in str(err), str(err)


def test_type_error(conn):
    err = query_error(conn, "SELECT customer_id + 'abc' FROM stage.customers")
    assert grpc_code(err) == "InvalidArgument", str(err)


def test_division_by_zero_at_run_time(conn):
    err = query_error(conn, "SELECT quantity / (quantity - quantity) FROM stage.purchases")
    assert grpc_code(err) in ("InvalidArgument", "OutOfRange"), str(err)
    assert "zero" in str(err).lower(), str(err)


def test_empty_statement(conn):
    err = query_error(conn, "   ")
    assert grpc_code(err) == "InvalidArgument", str(err)


def test_server_survives_hundreds_of_bad_requests(server, connect, duck):
    bad = [sql for sql, _ in FORBIDDEN] + MULTI + [
        "SELEC 1",
        "SELECT * FROM stage.no_such_table",
        "SELECT no_such_column FROM stage.customers",
        "SELECT (",
        "   ",
        "SELECT 1 FROM stage.purchases WHERE quantity = 'x' + 1",
        "\x00\x01 binary garbage \xff",
        "SELECT " + "(" * 500 + "1" + ")" * 500,
        "SELECT '" + "x" * 100_000,
    ]
    conn = connect()
    for i in range(300):
        sql = bad[i % len(bad)]
        try:
            query_error(conn, sql)
        except pytest.fail.Exception:
            raise AssertionError(f"bad request {sql[:80]!r} did not fail") from None
        server.assert_alive()
    sql = "SELECT count(*), sum(quantity * unit_price) FROM stage.purchases"
    assert rows(conn, sql) == duck_rows(duck, sql)
    # and a brand-new connection works too
    assert rows(connect(), sql) == duck_rows(duck, sql)


def test_concurrent_clients(connect, duck):
    sql = """SELECT p.category, count(*) FROM stage.purchases pu
             JOIN stage.products p ON pu.product_id = p.product_id
             GROUP BY p.category ORDER BY p.category"""
    expected = duck_rows(duck, sql)
    conns = [connect() for _ in range(4)]
    errors: list[BaseException] = []

    def work(c):
        try:
            for _ in range(5):
                assert rows(c, sql) == expected
                try:
                    query_error(c, "DROP TABLE stage.purchases")
                except BaseException as e:  # noqa: BLE001
                    errors.append(e)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(c,)) for c in conns]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a client hung"
    assert not errors, errors[:3]
