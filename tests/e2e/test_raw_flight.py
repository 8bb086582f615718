"""The server through plain Arrow Flight (pyarrow.flight), with hand-packed Flight SQL commands."""

from __future__ import annotations


import pyarrow as pa
import pyarrow.flight as fl
import pytest

import flightsql_raw as raw
from e2e_util import assert_same_rows, duck_rows, rows, table_rows


@pytest.fixture(scope="module")
def client(server):
    c = fl.FlightClient(server.uri)
    yield c
    c.close()


def test_statement_query(client, duck):
    sql = """SELECT p.category, count(*) AS orders, sum(pu.quantity * pu.unit_price) AS revenue
             FROM stage.purchases pu JOIN stage.products p ON pu.product_id = p.product_id
             GROUP BY p.category ORDER BY p.category"""
    info, table = raw.fetch(client, raw.statement_query(sql))
    assert info.schema.names == ["category", "orders", "revenue"]
    assert table.schema.field("category").type in (pa.string(), pa.large_string())
    assert pa.types.is_decimal128(table.schema.field("revenue").type)
    assert_same_rows(table_rows(table), duck_rows(duck, sql))


def test_flight_info_schema_matches_data(client):
    info, table = raw.fetch(client, raw.statement_query("SELECT * FROM stage.sellers"))
    assert info.schema.equals(table.schema, check_metadata=False), (info.schema, table.schema)
    assert table.num_rows > 0


def test_get_catalogs(client):
    _, table = raw.fetch(client, raw.get_catalogs())
    assert "shop" in table.column("catalog_name").to_pylist()


def test_get_db_schemas(client):
    _, table = raw.fetch(client, raw.get_db_schemas(catalog="shop"))
    pairs = set(zip(table.column("catalog_name").to_pylist(), table.column("db_schema_name").to_pylist()))
    assert {("shop", "stage"), ("shop", "analytics")} <= pairs
    _, table = raw.fetch(client, raw.get_db_schemas(catalog="shop", pattern="ana%"))
    assert table.column("db_schema_name").to_pylist() == ["analytics"]


def test_get_tables_with_schema(client):
    _, table = raw.fetch(
        client,
        raw.get_tables(catalog="shop", schema_pattern="stage", table_pattern="purchases", include_schema=True),
    )
    assert table.column("table_name").to_pylist() == ["purchases"]
    assert table.column("db_schema_name").to_pylist() == ["stage"]
    schema = pa.ipc.read_schema(pa.py_buffer(table.column("table_schema")[0].as_py()))
    assert schema.names == [
        "purchase_id", "customer_id", "product_id", "seller_id", "quantity",
        "unit_price", "currency", "purchased_at", "extras", "dt",
    ]
    assert schema.field("unit_price").type == pa.decimal128(12, 2)
    assert schema.field("dt").type == pa.date32()


def test_statement_update_is_refused(client, conn):
    descriptor = fl.FlightDescriptor.for_command(raw.statement_update("DELETE FROM stage.purchases"))
    (before,) = rows(conn, "SELECT count(*) FROM stage.purchases")[0]
    with pytest.raises((fl.FlightError, pa.ArrowException)) as info:
        writer, reader = client.do_put(descriptor, pa.schema([]))
        writer.done_writing()
        reader.read()
        writer.close()
    assert "read-only" in str(info.value) or "not allowed" in str(info.value), str(info.value)
    (after,) = rows(conn, "SELECT count(*) FROM stage.purchases")[0]
    assert before == after > 0


def test_forbidden_statement_query(client):
    with pytest.raises((fl.FlightError, pa.ArrowException)) as info:
        raw.fetch(client, raw.statement_query("DROP TABLE stage.purchases"))
    assert "read-only" in str(info.value), str(info.value)
    assert isinstance(info.value, fl.FlightUnauthorizedError), type(info.value)


def test_unknown_command_is_an_error(client):
    with pytest.raises((fl.FlightError, pa.ArrowException)):
        client.get_flight_info(fl.FlightDescriptor.for_command(b"not a protobuf Any"))
    # and the server still answers
    _, table = raw.fetch(client, raw.get_catalogs())
    assert table.num_rows >= 1
