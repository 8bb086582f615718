"""Reading the lake's Parquet files directly, for an independent reference engine (DuckDB).

The lake layout (see lake/src/layout.rs): every table is a Delta table,

    <lake>/<schema>/<table>/_delta_log/               the log names the live files
    <lake>/<schema>/<table>/[dt=YYYY-MM-DD/]*.parquet

Names starting with ``_`` or ``.`` are never tables. A table's live files are found here by
replaying its log by hand (JSON commits, and the last checkpoint when there is one), so this
reference does not share delta-rs' reading of it.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import duckdb
import pyarrow.parquet as pq

SCHEMAS = ("stage", "analytics")


def _hidden(rel: Path) -> bool:
    return any(part.startswith(("_", ".")) for part in rel.parts)


def delta_files(table_dir: Path) -> list[Path]:
    """The live data files of the Delta table in ``table_dir``: a replay of its log."""
    log = table_dir / "_delta_log"
    live: set[str] = set()
    start = -1
    last = log / "_last_checkpoint"
    if last.is_file():
        start = json.loads(last.read_text())["version"]
        for part in sorted(log.glob(f"{start:020d}.checkpoint*.parquet")):
            adds = pq.read_table(part, columns=["add"]).column("add").to_pylist()
            live.update(a["path"] for a in adds if a)
    for commit in sorted(log.glob("*.json")):
        if int(commit.stem) <= start:
            continue
        for line in commit.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if "add" in action:
                live.add(action["add"]["path"])
            elif "remove" in action:
                live.discard(action["remove"]["path"])
    return sorted(table_dir / unquote(p) for p in live)


def delta_transactions(table_dir: Path) -> dict[str, int]:
    """Application transactions of the Delta table in ``table_dir`` (app id → version): a replay
    of its log's ``txn`` actions."""
    log = table_dir / "_delta_log"
    txns: dict[str, int] = {}
    start = -1
    last = log / "_last_checkpoint"
    if last.is_file():
        start = json.loads(last.read_text())["version"]
        for part in sorted(log.glob(f"{start:020d}.checkpoint*.parquet")):
            for t in pq.read_table(part, columns=["txn"]).column("txn").to_pylist():
                if t:
                    txns[t["appId"]] = t["version"]
    for commit in sorted(log.glob("*.json")):
        if int(commit.stem) <= start:
            continue
        for line in commit.read_text().splitlines():
            action = json.loads(line) if line.strip() else {}
            if "txn" in action:
                txns[action["txn"]["appId"]] = action["txn"]["version"]
    return txns


def table_files(lake: Path, schema: str, table: str) -> list[Path]:
    """The live Parquet files of a table, from its Delta log (none when it has no log)."""
    table_dir = Path(lake) / schema / table
    if (table_dir / "_delta_log").is_dir():
        return delta_files(table_dir)
    return []


def tables(lake: Path) -> dict[str, list[str]]:
    """schema → table names found on disk."""
    out: dict[str, list[str]] = {}
    for schema in SCHEMAS:
        root = Path(lake) / schema
        if not root.is_dir():
            continue
        out[schema] = sorted(
            d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(("_", "."))
        )
    return out


def _partition_keys(table_dir: Path, files: list[Path]) -> list[str]:
    keys: list[str] = []
    for part in files[0].relative_to(table_dir).parts[:-1]:
        if "=" in part:
            keys.append(part.split("=", 1)[0])
    return keys


def _sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def register(con: duckdb.DuckDBPyConnection, lake: Path) -> dict[str, list[Path]]:
    """Creates DuckDB views ``stage.<t>`` and ``analytics.<t>`` over the live files of every table.

    Hive partition folders (``dt=...``) become columns unless the files already hold the column;
    ``dt`` is read as a DATE. Returns the files of each ``schema.table``.
    """
    registered: dict[str, list[Path]] = {}
    for schema, names in tables(lake).items():
        con.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        for table in names:
            table_dir = Path(lake) / schema / table
            files = table_files(lake, schema, table)
            if not files:
                continue
            file_columns = set(pq.read_schema(files[0]).names)
            keys = [k for k in _partition_keys(table_dir, files) if k not in file_columns]
            listing = "[" + ", ".join(_sql_str(str(f)) for f in files) + "]"
            if keys:
                types = ", ".join(
                    f"{_sql_str(k)}: {'DATE' if k == 'dt' else 'VARCHAR'}" for k in keys
                )
                source = (
                    f"read_parquet({listing}, hive_partitioning = true, "
                    f"hive_types = {{{types}}})"
                )
            else:
                source = f"read_parquet({listing}, hive_partitioning = false)"
            con.execute(f"CREATE OR REPLACE VIEW {schema}.{table} AS SELECT * FROM {source}")
            registered[f"{schema}.{table}"] = files
    return registered


def duckdb_over(lake: Path) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB with the lake's tables as views, in UTC."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    register(con, lake)
    return con
