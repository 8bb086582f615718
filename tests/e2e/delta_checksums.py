"""Per-column checksums of a table, the same for every reader: only the standard library, so that
the DuckDB reader can use it from its own virtualenv (DuckDB 1.5.5 with its delta extension)."""

from __future__ import annotations

import hashlib
from decimal import Decimal


def cell(v) -> str:
    """One cell as text that every reader spells the same way."""
    if v is None:
        return "NULL"
    if isinstance(v, Decimal):
        return format(v.normalize(), "f")
    if isinstance(v, float):
        return repr(round(v, 9))
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).hex()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


def checksums(columns: dict[str, list]) -> dict[str, tuple[int, str]]:
    """Per column: (rows, sha256 of the sorted cell texts): equal for equal multisets of values,
    whatever the row order or the types each reader chose."""
    out = {}
    for name, values in columns.items():
        cells = sorted(cell(v) for v in values)
        out[name] = (len(cells), hashlib.sha256("\x1f".join(cells).encode()).hexdigest())
    return out


if __name__ == "__main__":
    # python delta_checksums.py EXTENSION TABLE_DIR VERSION: the table at that version through
    # DuckDB's delta_scan, as JSON checksums.
    import json
    import sys

    import duckdb

    extension, table_dir, version = sys.argv[1], sys.argv[2], int(sys.argv[3])
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"LOAD '{extension}'")
    path = table_dir.replace("'", "''")
    result = con.execute(f"SELECT * FROM delta_scan('{path}', version => {version})")
    names = [d[0] for d in result.description]
    rows = result.fetchall()
    columns = {name: [row[i] for row in rows] for i, name in enumerate(names)}
    print(json.dumps(checksums(columns)))
