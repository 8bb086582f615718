"""The newcomer's PostgreSQL flow: fill PostgreSQL, export it, query it over Flight SQL.

Needs the PostgreSQL of `scripts/services.sh up` (SHOP_TEST_PG_URL). Rows that Flight SQL
returns are compared with the rows psycopg reads from PostgreSQL itself.
"""

from __future__ import annotations

import subprocess
import time
import uuid

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from conftest import RPC_TIMEOUTS, _clean_env, shop_bin, start_server
from e2e_util import rows, service_env

psycopg = pytest.importorskip("psycopg")


@pytest.fixture(scope="module")
def pg_url():
    admin = service_env("SHOP_TEST_PG_URL", "PostgreSQL")
    name = f"shop_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def shop(*args: str) -> str:
    out = subprocess.run(
        [str(shop_bin()), *args],
        env=_clean_env({}),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, f"shop-analytics {' '.join(args)} failed:\n{out.stderr}"
    return out.stderr


@pytest.fixture(scope="module")
def exported(pg_url, tmp_path_factory):
    """A lake with stage.customers / stage.sellers exported from a generated PostgreSQL."""
    workdir = tmp_path_factory.mktemp("pg-e2e")
    lake = workdir / "lake"
    shop("generate", "postgres", "--pg-url", pg_url, "--customers", "3000", "--sellers", "40")
    shop("ingest", "postgres", "--pg-url", pg_url, "--lake", str(lake))
    server = start_server("serve-pg", ["serve", "--catalog-refresh-ms", "200"], workdir, lake)
    yield pg_url, lake, server
    server.stop()


def pg_rows(url: str, sql: str) -> list[tuple]:
    with psycopg.connect(url) as conn:
        return [tuple(r) for r in conn.execute(sql).fetchall()]


def flight_rows(server, sql: str) -> list[tuple]:
    with flightsql.connect(server.uri, db_kwargs=RPC_TIMEOUTS) as conn:
        return rows(conn, sql)


CUSTOMER_COLUMNS = (
    "customer_id, name, email, phone, city, country, birth_date, loyalty_points, "
    "lifetime_value, is_active, marketing_opt_in, created_at, updated_at"
)


def test_customers_and_sellers_equal_postgres(exported):
    url, _, server = exported
    sql = f"SELECT {CUSTOMER_COLUMNS} FROM customers ORDER BY customer_id"
    expected = pg_rows(url, sql)
    got = flight_rows(server, sql.replace("FROM customers", "FROM stage.customers"))
    assert len(got) == 3000
    # psycopg and pyarrow both give Decimal, date, tz-aware datetime (UTC), bool and None.
    assert got == expected
    sellers = "SELECT * FROM sellers ORDER BY seller_id"
    assert flight_rows(server, sellers.replace("FROM sellers", "FROM stage.sellers")) == pg_rows(
        url, sellers
    )


def test_types_reach_the_client_as_declared(exported):
    _, _, server = exported
    with flightsql.connect(server.uri, db_kwargs=RPC_TIMEOUTS) as conn, conn.cursor() as cur:
        cur.execute("SELECT * FROM stage.customers LIMIT 1")
        schema = cur.fetch_arrow_table().schema
    types = {f.name: str(f.type) for f in schema}
    assert types["customer_id"] == "int64"
    assert types["lifetime_value"] == "decimal128(12, 2)"
    assert types["birth_date"] == "date32[day]"
    assert types["updated_at"] == "timestamp[us, tz=UTC]"
    assert types["is_active"] == "bool"
    assert not schema.field("customer_id").nullable
    assert schema.field("email").nullable


def test_an_incremental_export_shows_changes_to_a_running_server(exported):
    url, lake, server = exported
    with psycopg.connect(url) as conn:
        conn.execute("UPDATE customers SET city = 'Zürich' WHERE customer_id <= 10")
        conn.execute("DELETE FROM customers WHERE customer_id BETWEEN 11 AND 15")
        conn.execute(
            "INSERT INTO customers (customer_id, name, country) VALUES (900001, 'Ada Ünal', 'CH')"
        )
    out = shop("ingest", "postgres", "--pg-url", url, "--lake", str(lake), "--mode", "incremental")
    assert "incremental export" in out, out
    sql = f"SELECT {CUSTOMER_COLUMNS} FROM customers ORDER BY customer_id"
    expected = pg_rows(url, sql)
    deadline = time.monotonic() + 15
    while True:
        got = flight_rows(server, sql.replace("FROM customers", "FROM stage.customers"))
        if got == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert got == expected
    assert [r for r in got if r[0] == 900001][0][1] == "Ada Ünal"
