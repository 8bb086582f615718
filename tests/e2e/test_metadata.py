"""Connecting, and the catalog as ADBC clients see it (GetObjects, GetTableSchema, GetInfo)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from e2e_util import rows

UTC_US = pa.timestamp("us", tz="UTC")

# The demo tables, column by column, as the product spec defines them.
EXPECTED = {
    ("stage", "customers"): [
        ("customer_id", pa.int64()),
        ("name", pa.string()),
        ("email", pa.string()),
        ("city", pa.string()),
        ("country", pa.string()),
        ("is_active", pa.bool_()),
        ("created_at", UTC_US),
        ("updated_at", UTC_US),
    ],
    ("stage", "sellers"): [
        ("seller_id", pa.int64()),
        ("name", pa.string()),
        ("country", pa.string()),
        ("rating", pa.decimal128(3, 2)),
        ("created_at", UTC_US),
        ("updated_at", UTC_US),
    ],
    ("stage", "products"): [
        ("product_id", pa.int64()),
        ("seller_id", pa.int64()),
        ("name", pa.string()),
        ("category", pa.string()),
        ("price", pa.decimal128(12, 2)),
        ("created_at", UTC_US),
    ],
    ("stage", "purchases"): [
        ("purchase_id", pa.string()),
        ("customer_id", pa.int64()),
        ("product_id", pa.int64()),
        ("seller_id", pa.int64()),
        ("quantity", pa.int32()),
        ("unit_price", pa.decimal128(12, 2)),
        ("currency", pa.string()),
        ("purchased_at", UTC_US),
        ("extras", pa.string()),
        ("dt", pa.date32()),
    ],
    ("analytics", "daily_sales"): [
        ("dt", pa.date32()),
        ("currency", pa.string()),
        ("orders", pa.int64()),
        ("units", pa.int64()),
        ("revenue", None),  # a decimal128 with scale 2; precision is the server's choice
        ("buyers", pa.int64()),
    ],
}


AGGREGATES = ["daily_category_sales", "daily_product_sales", "daily_sales", "daily_seller_sales"]


def assert_type(table: str, name: str, actual: pa.DataType, expected: pa.DataType | None) -> None:
    if expected is None:
        assert pa.types.is_decimal128(actual) and actual.scale == 2, f"{table}.{name}: {actual}"
    elif pa.types.is_timestamp(expected):
        assert pa.types.is_timestamp(actual), f"{table}.{name}: {actual}"
        assert actual.unit == "us", f"{table}.{name}: {actual}"
        assert actual.tz in ("UTC", "+00:00", "Etc/UTC"), f"{table}.{name}: {actual}"
    elif expected == pa.string():
        # Plain strings: never string_view, which many clients cannot read.
        assert actual in (pa.string(), pa.large_string()), f"{table}.{name}: {actual}"
    else:
        assert actual == expected, f"{table}.{name}: {actual}, expected {expected}"


def test_connect_and_select_one(conn):
    assert rows(conn, "SELECT 1 AS one") == [(1,)]


def test_get_info_names_the_server(conn):
    info = conn.adbc_get_info()
    assert info["vendor_name"] == "shop-analytics", info


def test_get_objects_lists_catalog_schemas_tables_and_columns(conn):
    objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    assert "shop" in catalogs, f"catalogs: {sorted(catalogs)}"
    schemas = {s["db_schema_name"]: s for s in catalogs["shop"]["catalog_db_schemas"] or []}
    assert {"stage", "analytics"} <= set(schemas), f"schemas: {sorted(schemas)}"

    stage_tables = {t["table_name"]: t for t in schemas["stage"]["db_schema_tables"] or []}
    analytics_tables = {t["table_name"]: t for t in schemas["analytics"]["db_schema_tables"] or []}
    assert sorted(stage_tables) == ["customers", "products", "purchases", "sellers"]
    assert sorted(analytics_tables) == AGGREGATES
    system_tables = {t["table_name"] for t in schemas["system"]["db_schema_tables"] or []}
    assert system_tables == {"refresh_runs"}, system_tables

    for (schema, table), columns in EXPECTED.items():
        found = (stage_tables if schema == "stage" else analytics_tables)[table]
        assert found["table_type"] == "TABLE", found["table_type"]
        cols = sorted(found["table_columns"] or [], key=lambda c: c["ordinal_position"])
        assert [c["column_name"] for c in cols] == [name for name, _ in columns], (
            f"{schema}.{table}"
        )
        assert [c["ordinal_position"] for c in cols] == list(range(1, len(columns) + 1))


def test_get_objects_filters(conn):
    objects = (
        conn.adbc_get_objects(
            depth="tables", catalog_filter="shop", db_schema_filter="analytics"
        )
        .read_all()
        .to_pylist()
    )
    assert [c["catalog_name"] for c in objects] == ["shop"]
    schemas = objects[0]["catalog_db_schemas"]
    assert [s["db_schema_name"] for s in schemas] == ["analytics"]
    assert sorted(t["table_name"] for t in schemas[0]["db_schema_tables"]) == AGGREGATES

    objects = (
        conn.adbc_get_objects(depth="columns", table_name_filter="purch%", column_name_filter="%price")
        .read_all()
        .to_pylist()
    )
    found = [
        (s["db_schema_name"], t["table_name"], [c["column_name"] for c in t["table_columns"]])
        for c in objects
        if c["catalog_name"] == "shop"
        for s in c["catalog_db_schemas"]
        for t in s["db_schema_tables"] or []
    ]
    assert found == [("stage", "purchases", ["unit_price"])]


@pytest.mark.parametrize("schema,table", list(EXPECTED), ids=[f"{s}.{t}" for s, t in EXPECTED])
def test_get_table_schema(conn, schema, table):
    got = conn.adbc_get_table_schema(table, catalog_filter="shop", db_schema_filter=schema)
    expected = EXPECTED[(schema, table)]
    assert got.names == [name for name, _ in expected]
    for name, ty in expected:
        assert_type(f"{schema}.{table}", name, got.field(name).type, ty)


def test_key_columns_are_not_nullable(conn):
    for schema, table, key in [
        ("stage", "customers", "customer_id"),
        ("stage", "sellers", "seller_id"),
        ("stage", "products", "product_id"),
    ]:
        got = conn.adbc_get_table_schema(table, catalog_filter="shop", db_schema_filter=schema)
        assert not got.field(key).nullable, f"{schema}.{table}.{key} is nullable"


@pytest.mark.parametrize("schema,table", list(EXPECTED), ids=[f"{s}.{t}" for s, t in EXPECTED])
def test_query_result_types_match_the_table_schema(conn, schema, table):
    with conn.cursor() as cur:
        cur.execute(f"SELECT * FROM shop.{schema}.{table} LIMIT 3")
        result = cur.fetch_arrow_table()
    assert result.num_rows == 3
    expected = EXPECTED[(schema, table)]
    assert result.schema.names == [name for name, _ in expected]
    for name, ty in expected:
        assert_type(f"{schema}.{table}", name, result.schema.field(name).type, ty)


def test_table_types(conn):
    assert "TABLE" in conn.adbc_get_table_types()


def test_unqualified_names_use_shop_stage(conn):
    assert rows(conn, "SELECT count(*) FROM purchases") == rows(
        conn, "SELECT count(*) FROM shop.stage.purchases"
    )
