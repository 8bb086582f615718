"""The server reads exactly the live files of the lake: those its Delta logs name, and commits
made by another Delta writer (the ``deltalake`` package) as soon as they land.

Runs `shop-analytics serve` on a copy of the demo lake, so that changing files here never
disturbs the other tests.
"""

from __future__ import annotations

import datetime
import os
import shutil
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import write_deltalake

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

    # Data files that no commit names (an export or a flush that died before its commit).
    customers = shoplake.table_files(copy, "stage", "customers")
    decoy(customers[0], copy / "stage" / "customers" / "part-dead.parquet")
    days = sorted((copy / "stage" / "purchases").glob("dt=*"))
    files = [sorted(d.glob("*.parquet"))[0] for d in days[-4:]]
    decoy(files[0], days[-1] / "part-dead.parquet")
    # Hidden and rejected files, inside and beside the partitions.
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


def test_files_no_commit_names_and_hidden_files_are_ignored(lake_copy, copy_conn, duck):
    _, decoys = lake_copy
    # Sums read the data (a count(*) would be answered from the Delta log's statistics).
    for table, column in (("customers", "customer_id"), ("purchases", "quantity")):
        sql = f"SELECT count(*), sum({column}) FROM stage.{table}"
        got, expected = rows(copy_conn, sql)[0], duck_rows(duck, sql)[0]
        assert got == expected, (
            f"stage.{table}: {got} (count, sum) where the live files hold {expected}: the server "
            f"reads some of the decoy files (rows each): {decoys}"
        )
    tables = rows(
        copy_conn, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'stage'"
    )
    assert sorted(r[0] for r in tables) == ["customers", "products", "purchases", "sellers"]


def _live(lake_copy, table):
    """The live rows of a stage table, read by hand from the files its log names."""
    return pa.concat_tables(pq.read_table(f) for f in shoplake.table_files(lake_copy, "stage", table))


def test_a_commit_by_another_delta_writer_is_visible(lake_copy, copy_conn):
    lake_copy, _ = lake_copy
    day = sorted((lake_copy / "stage" / "purchases").glob("dt=*"))[-1]
    some = pq.read_table(sorted(day.glob("*.parquet"))[0])
    n = some.num_rows
    sql = "SELECT count(*) FROM stage.purchases WHERE dt = DATE '2030-01-01'"
    assert rows(copy_conn, sql) == [(0,)]
    extra = some.append_column(
        pa.field("dt", pa.date32(), nullable=False),
        pa.array([datetime.date(2030, 1, 1)] * n, pa.date32()),
    )
    write_deltalake(str(lake_copy / "stage" / "purchases"), extra, mode="append")
    _wait_for(copy_conn, sql, [(n,)])


def test_an_overwrite_by_another_delta_writer_replaces_the_snapshot(lake_copy, copy_conn):
    lake_copy, _ = lake_copy
    old = _live(lake_copy, "sellers")
    keep = old.slice(0, 3)
    assert old.num_rows > 3
    write_deltalake(str(lake_copy / "stage" / "sellers"), keep, mode="overwrite")
    _wait_for(copy_conn, "SELECT count(*) FROM stage.sellers", [(3,)])
    ids = sorted(r[0] for r in rows(copy_conn, "SELECT seller_id FROM stage.sellers"))
    assert ids == sorted(keep.column("seller_id").to_pylist())
