"""The lake is open: engines that are not ours read its Delta tables and agree with Flight SQL.

Every Delta table of the quickstart lake (found by its ``_delta_log/`` folder) is read with the
Python ``deltalake`` package (delta-rs' own reader, a different build from ours) and with
``polars.read_delta``; the row count and a checksum of every column must equal what the server
returns for ``SELECT *`` of the same table.
"""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

from e2e_util import arrow


def _delta_tables(lake: Path) -> list[tuple[str, str, Path]]:
    found = []
    for log in sorted(Path(lake).glob("*/*/_delta_log")):
        table_dir = log.parent
        found.append((table_dir.parent.name, table_dir.name, table_dir))
    return found


def _value(v):
    """One cell as text that every reader spells the same way."""
    if v is None:
        return "NULL"
    if isinstance(v, Decimal):
        return format(v.normalize(), "f")
    if isinstance(v, float):
        return repr(round(v, 9))
    if isinstance(v, bytes):
        return v.hex()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def checksums(table: pa.Table) -> dict[str, tuple[int, str]]:
    """Per column: (rows, sha256 of the sorted cell texts): equal for equal multisets of values,
    whatever the row order or the Arrow type each reader chose."""
    out = {}
    for name in table.column_names:
        cells = sorted(_value(v) for v in table.column(name).to_pylist())
        digest = hashlib.sha256("\x1f".join(cells).encode()).hexdigest()
        out[name] = (len(cells), digest)
    return out


@pytest.fixture(scope="module")
def delta_tables(server, lake):
    tables = _delta_tables(lake)
    names = {f"{schema}.{table}" for schema, table, _ in tables}
    # The quickstart refreshes the aggregates and records the run: those are Delta tables.
    assert {"analytics.daily_sales", "system.refresh_runs"} <= names, names
    return tables


def served_at_one_version(conn, schema: str, table: str, path: Path) -> tuple[int, pa.Table]:
    """What the server returns for the table, and the Delta version it returned: a version
    that did not change while the query ran (the scheduler may commit runs meanwhile)."""
    for _ in range(20):
        before = DeltaTable(str(path)).version()
        served = arrow(conn, f'SELECT * FROM shop.{schema}."{table}"')
        if DeltaTable(str(path)).version() == before:
            return before, served
        time.sleep(0.2)
    raise AssertionError(f"{schema}.{table} kept changing")


def test_deltalake_and_polars_agree_with_flight_sql(conn, delta_tables):
    for schema, table, path in delta_tables:
        version, served = served_at_one_version(conn, schema, table, path)
        assert served.num_rows > 0, f"{schema}.{table} is empty"
        expected = checksums(served)

        by_deltalake = DeltaTable(str(path), version=version).to_pyarrow_table()
        assert sorted(by_deltalake.column_names) == sorted(served.column_names), (schema, table)
        assert checksums(by_deltalake) == expected, f"deltalake differs on {schema}.{table}"

        by_polars = pl.read_delta(str(path), version=version).to_arrow()
        assert checksums(by_polars) == expected, f"polars differs on {schema}.{table}"
