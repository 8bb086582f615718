"""The lake is open: engines that are not ours read its Delta tables and agree with Flight SQL.

Every Delta table of the quickstart lake (found by its ``_delta_log/`` folder) is read with the
Python ``deltalake`` package (delta-rs' own reader, a different build from ours), with
``polars.read_delta`` and with DuckDB's ``delta_scan`` (DuckDB 1.5.5 and its delta extension, in a
virtualenv of their own); the row count and a checksum of every column must equal what the server
returns for ``SELECT *`` of the same table, also after ``shop-analytics maintain`` compacted and
vacuumed a copy of the lake.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import polars as pl
import pyarrow as pa
import pytest
from deltalake import DeltaTable

import delta_checksums
from conftest import REPO, shop_bin, start_server
from e2e_util import arrow


def _delta_tables(lake: Path) -> list[tuple[str, str, Path]]:
    found = []
    for log in sorted(Path(lake).glob("*/*/_delta_log")):
        table_dir = log.parent
        found.append((table_dir.parent.name, table_dir.name, table_dir))
    return found


def checksums(table: pa.Table) -> dict[str, tuple[int, str]]:
    return delta_checksums.checksums({n: table.column(n).to_pylist() for n in table.column_names})


def duckdb_delta_extension() -> tuple[str, str]:
    """(python, extension): DuckDB 1.5.5 and its delta extension, in the virtualenv that
    scripts/test.sh makes (the end-to-end virtualenv pins another DuckDB). The extension is loaded
    by file path: installing it would need the network."""
    venv = Path(os.environ.get("SHOP_DUCKDB_DELTA_VENV", REPO / ".venv-duckdb-delta"))
    python = venv / "bin" / "python"
    found = sorted(venv.glob("lib/python3*/site-packages/duckdb_extension_delta/extensions/*/delta.duckdb_extension"))
    if not python.is_file() or not found:
        pytest.fail(
            f"no DuckDB with the delta extension in {venv}: scripts/test.sh installs "
            "tests/e2e/requirements-duckdb-delta.txt there",
            pytrace=False,
        )
    return str(python), str(found[-1])


def by_duckdb(table_dir: Path, version: int) -> dict[str, tuple[int, str]]:
    python, extension = duckdb_delta_extension()
    out = subprocess.run(
        [python, str(Path(__file__).parent / "delta_checksums.py"), extension, str(table_dir), str(version)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return {k: tuple(v) for k, v in json.loads(out.stdout).items()}


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

        assert by_duckdb(path, version) == expected, f"DuckDB's delta_scan differs on {schema}.{table}"


def _parquet_files(table_dir: Path) -> int:
    return sum(1 for p in table_dir.rglob("*.parquet") if "_delta_log" not in p.parts)


def test_after_maintain_every_reader_still_agrees(server, lake, workdir, connect):
    """`maintain` with no retention on a copy of the lake: small files are compacted and the
    files no version reads are deleted, and Flight SQL, deltalake and polars still return the
    same rows as before."""
    copy = workdir / "lake-maintained"
    shutil.copytree(lake, copy)
    tables = _delta_tables(copy)
    before = {
        (schema, table): checksums(DeltaTable(str(path)).to_pyarrow_table())
        for schema, table, path in tables
    }
    runs = copy / "system" / "refresh_runs"
    files_before = _parquet_files(runs)
    version_before = DeltaTable(str(runs)).version()

    # Under an hour of retention is refused while writers may run.
    refused = subprocess.run(
        [str(shop_bin()), "maintain", "--lake", str(copy), "--retention-hours", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "--no-concurrent-writers" in refused.stderr, refused.stderr
    out = subprocess.run(
        [
            str(shop_bin()),
            "maintain",
            "--lake",
            str(copy),
            "--retention-hours",
            "0",
            "--no-concurrent-writers",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert "system/refresh_runs:" in out.stdout, out.stdout
    # The run history is many one-row files: compacted into one, the rest deleted.
    assert files_before > 2
    assert _parquet_files(runs) == 1, out.stdout
    # maintain wrote a checkpoint of the compacted version (writers checkpoint every 10 commits).
    last = json.loads((runs / "_delta_log" / "_last_checkpoint").read_text())
    assert last["version"] > version_before, (last, version_before)

    srv = start_server("serve-maintained", ["serve"], workdir, copy, env={"SHOP_REFRESH_SCHEDULE": "off"})
    try:
        served_conn = connect(srv.uri)
        for schema, table, path in tables:
            expected = before[(schema, table)]
            served = arrow(served_conn, f'SELECT * FROM shop.{schema}."{table}"')
            assert checksums(served) == expected, f"Flight SQL differs on {schema}.{table}"
            assert checksums(DeltaTable(str(path)).to_pyarrow_table()) == expected, (schema, table)
            assert checksums(pl.read_delta(str(path)).to_arrow()) == expected, (schema, table)
            version = DeltaTable(str(path)).version()
            assert by_duckdb(path, version) == expected, (schema, table)
    finally:
        srv.stop()


def test_serve_maintains_the_tables_on_its_schedule(server, lake, workdir):
    """`serve` with a maintenance schedule of every minute compacts the run history of a copy
    of the lake within about a minute, without a restart (the replaced files stay on disk for
    the default retention of 7 days)."""
    copy = workdir / "lake-scheduled"
    shutil.copytree(lake, copy)
    runs = copy / "system" / "refresh_runs"
    assert len(DeltaTable(str(runs)).file_uris()) > 2
    expected = checksums(DeltaTable(str(runs)).to_pyarrow_table())
    srv = start_server(
        "serve-scheduled",
        ["serve"],
        workdir,
        copy,
        env={
            "SHOP_REFRESH_SCHEDULE": "off",
            "SHOP_MAINTAIN_SCHEDULE": "* * * * *",
        },
    )
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if len(DeltaTable(str(runs)).file_uris()) == 1:
                break
            time.sleep(1)
        else:
            raise AssertionError(
                f"not maintained within 90 s: {len(DeltaTable(str(runs)).file_uris())} live "
                f"files\n{srv.log_tail()}"
            )
        assert checksums(DeltaTable(str(runs)).to_pyarrow_table()) == expected
    finally:
        srv.stop()
