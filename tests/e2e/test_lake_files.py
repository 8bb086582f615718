"""The server reads exactly the live files of the lake: manifests, hidden names, new data.

Runs `shop-analytics serve` on a copy of the demo lake, so that changing files here never
disturbs the other tests.
"""

from __future__ import annotations

import json
import os
import shutil
import time

import pyarrow.parquet as pq
import pytest

import shoplake
from conftest import start_server
from e2e_util import duck_rows, rows

REFRESH_DEADLINE = 20.0


@pytest.fixture(scope="module")
def lake_copy(server, lake, workdir):
    """A copy of the demo lake with decoy files that no reader may see, placed before the
    server starts: (path of the copy, {decoy: rows})."""
    copy = workdir / "lake-copy"
    shutil.copytree(lake, copy)
    decoys = {}

    def decoy(src, dst):
        _atomic_copy(src, dst)
        decoys[str(dst.relative_to(copy))] = pq.read_metadata(dst).num_rows

    # A snapshot folder that no manifest names (an export that died midway).
    customers = shoplake.table_files(copy, "stage", "customers")
    decoy(customers[0], copy / "stage" / "customers" / "snapshot-dead" / "part-0.parquet")
    # Hidden and rejected files of the append table, inside and beside its partitions.
    days = sorted((copy / "stage" / "purchases").glob("dt=*"))
    files = [sorted(d.glob("*.parquet"))[0] for d in days[-4:]]
    decoy(files[0], days[-1] / ".upload-in-flight.parquet")
    decoy(files[1], days[-1] / "_rejected.parquet")
    decoy(files[2], copy / "stage" / "purchases" / "_rejected" / days[-1].name / "x.parquet")
    decoy(files[3], copy / "stage" / "purchases" / ".tmp" / days[-2].name / "x.parquet")
    # A folder that is not a table.
    decoy(files[0], copy / "stage" / "_scratch" / "x.parquet")
    return copy, decoys


@pytest.fixture(scope="module")
def copy_server(lake_copy, workdir):
    srv = start_server(
        "serve-copy", ["serve"], workdir, lake_copy[0], env={"SHOP_CATALOG_REFRESH_MS": "200"}
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def copy_conn(copy_server, connect):
    return connect(copy_server.uri)


def _atomic_copy(src, dst):
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.parent / f".{dst.name}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _wait_for(conn, sql, expected):
    deadline = time.monotonic() + REFRESH_DEADLINE
    got = None
    while time.monotonic() < deadline:
        got = rows(conn, sql)
        if got == expected:
            return
        time.sleep(0.2)
    raise AssertionError(f"{sql}: still {got} after {REFRESH_DEADLINE}s, expected {expected}")


def test_files_outside_the_manifest_and_hidden_files_are_ignored(lake_copy, copy_conn, duck):
    _, decoys = lake_copy
    for table in ("customers", "purchases"):
        sql = f"SELECT count(*) FROM stage.{table}"
        got, expected = rows(copy_conn, sql)[0][0], duck_rows(duck, sql)[0][0]
        assert got == expected, (
            f"stage.{table} has {got - expected} rows too many: the server reads some of the "
            f"decoy files (rows each): {decoys}"
        )
    tables = rows(
        copy_conn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'stage'"
    )
    assert sorted(r[0] for r in tables) == ["customers", "products", "purchases", "sellers"]


def test_new_partition_becomes_visible(lake_copy, copy_conn):
    lake_copy, _ = lake_copy
    src_day = sorted((lake_copy / "stage" / "purchases").glob("dt=*"))[-1]
    src = sorted(src_day.glob("*.parquet"))[0]
    n = pq.read_metadata(src).num_rows
    assert rows(copy_conn, "SELECT count(*) FROM stage.purchases WHERE dt = DATE '2030-01-01'") == [(0,)]
    _atomic_copy(src, lake_copy / "stage" / "purchases" / "dt=2030-01-01" / "extra-00000.parquet")
    _wait_for(copy_conn, "SELECT count(*) FROM stage.purchases WHERE dt = DATE '2030-01-01'", [(n,)])


def test_new_snapshot_replaces_the_old_one(lake_copy, copy_conn):
    lake_copy, _ = lake_copy
    table_dir = lake_copy / "stage" / "sellers"
    manifest_path = table_dir / "_manifest.json"
    manifest = json.loads(manifest_path.read_text())
    old = pq.read_table(shoplake.table_files(lake_copy, "stage", "sellers")[0])
    keep = old.slice(0, 3)
    assert old.num_rows > 3
    new_dir = table_dir / "snapshot-e2e-new"
    new_dir.mkdir()
    pq.write_table(keep, new_dir / "part-0.parquet")
    manifest["version"] = manifest.get("version", 1) + 1
    manifest["snapshot_id"] = "snapshot-e2e-new"
    manifest["files"] = [
        {
            "path": "snapshot-e2e-new/part-0.parquet",
            "size": (new_dir / "part-0.parquet").stat().st_size,
            "rows": keep.num_rows,
        }
    ]
    tmp = table_dir / "_manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp, manifest_path)
    _wait_for(copy_conn, "SELECT count(*) FROM stage.sellers", [(3,)])
    ids = sorted(r[0] for r in rows(copy_conn, "SELECT seller_id FROM stage.sellers"))
    assert ids == sorted(keep.column("seller_id").to_pylist())
