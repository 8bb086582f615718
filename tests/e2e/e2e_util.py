"""Helpers shared by the end-to-end tests."""

from __future__ import annotations

import os
import re
from decimal import Decimal

import adbc_driver_manager.dbapi as dbapi
import pyarrow as pa
import pytest


def arrow(conn, sql: str, params=None) -> pa.Table:
    """Runs `sql` on a fresh cursor and returns the whole result."""
    with conn.cursor() as cur:
        cur.execute(sql, params)
        return cur.fetch_arrow_table()


def rows(conn, sql: str, params=None) -> list[tuple]:
    """Runs `sql` and returns its rows as tuples of Python values."""
    return table_rows(arrow(conn, sql, params))


def table_rows(table: pa.Table) -> list[tuple]:
    cols = [c.to_pylist() for c in table.columns]
    return list(zip(*cols)) if cols else []


def duck_rows(duck, sql: str, params=None) -> list[tuple]:
    return [tuple(r) for r in duck.execute(sql, params or []).fetchall()]


def norm_rows(rs: list[tuple]) -> list[tuple]:
    out = []
    for r in rs:
        vals = []
        for v in r:
            if isinstance(v, Decimal):
                # Compare decimals by value, whatever the scale each engine chose.
                vals.append(("dec", v.quantize(Decimal("0.0001"))))
            else:
                vals.append(v)
        out.append(tuple(vals))
    return out


def assert_same_rows(flight: list[tuple], duck: list[tuple], what: str = "") -> None:
    assert len(flight) == len(duck), f"{what}: {len(flight)} rows from Flight SQL, {len(duck)} from DuckDB"
    f, d = norm_rows(flight), norm_rows(duck)
    for i, (a, b) in enumerate(zip(f, d)):
        assert a == b, f"{what}: row {i} differs\n  flight: {flight[i]}\n  duckdb: {duck[i]}"


def query_error(conn, sql: str, params=None) -> dbapi.Error:
    """Runs `sql`, which must fail, on a fresh cursor (fetching any result) and returns the error."""
    with pytest.raises(dbapi.Error) as info:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            cur.fetch_arrow_table()
    return info.value


GRPC_CODES = {
    "OK", "Canceled", "Unknown", "InvalidArgument", "DeadlineExceeded", "NotFound",
    "AlreadyExists", "PermissionDenied", "ResourceExhausted", "FailedPrecondition", "Aborted",
    "OutOfRange", "Unimplemented", "Internal", "Unavailable", "DataLoss", "Unauthenticated",
}


def grpc_code(err: Exception) -> str | None:
    """The gRPC status name that the Flight SQL driver appends to its messages:
    "[FlightSQL] <server message> (<Code>; <call>)"."""
    found = [c for c in re.findall(r"\((\w+); ", str(err)) if c in GRPC_CODES]
    return found[-1] if found else None


def service_env(var: str, service: str) -> str:
    """The address of a test service from `var`; skips when unset, unless services are required
    (SHOP_REQUIRE_SERVICES=1 or CI=true), then fails."""
    value = os.environ.get(var)
    if not value:
        if os.environ.get("SHOP_REQUIRE_SERVICES") == "1" or os.environ.get("CI") == "true":
            pytest.fail(f"{var} is not set: run scripts/services.sh up", pytrace=False)
        pytest.skip(f"{service} is not configured ({var})")
    return value
