"""Flight SQL commands for a plain `pyarrow.flight.FlightClient`, without a protobuf library.

A Flight SQL command is a protobuf message packed in `google.protobuf.Any` and sent as the
command of a FlightDescriptor. The few messages used here only have string, bool and repeated
string fields, so they are encoded by hand.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.flight as fl

PREFIX = "type.googleapis.com/arrow.flight.protocol.sql."


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _len_field(number: int, data: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(data)) + data


def _bool_field(number: int, value: bool) -> bytes:
    return _varint(number << 3) + _varint(1 if value else 0)


def _str_fields(fields: dict[int, str | None]) -> bytes:
    return b"".join(_len_field(n, v.encode()) for n, v in fields.items() if v is not None)


def pack_any(message: str, payload: bytes) -> bytes:
    return _len_field(1, (PREFIX + message).encode()) + _len_field(2, payload)


def statement_query(sql: str) -> bytes:
    return pack_any("CommandStatementQuery", _str_fields({1: sql}))


def statement_update(sql: str) -> bytes:
    return pack_any("CommandStatementUpdate", _str_fields({1: sql}))


def get_catalogs() -> bytes:
    return pack_any("CommandGetCatalogs", b"")


def get_db_schemas(catalog: str | None = None, pattern: str | None = None) -> bytes:
    return pack_any("CommandGetDbSchemas", _str_fields({1: catalog, 2: pattern}))


def get_tables(
    catalog: str | None = None,
    schema_pattern: str | None = None,
    table_pattern: str | None = None,
    include_schema: bool = False,
) -> bytes:
    payload = _str_fields({1: catalog, 2: schema_pattern, 3: table_pattern})
    if include_schema:
        payload += _bool_field(5, True)
    return pack_any("CommandGetTables", payload)


def fetch(client: fl.FlightClient, command: bytes, options=None) -> tuple[fl.FlightInfo, pa.Table]:
    """GetFlightInfo for `command`, then DoGet of every endpoint on the same server."""
    info = client.get_flight_info(fl.FlightDescriptor.for_command(command), options)
    tables = [client.do_get(ep.ticket, options).read_all() for ep in info.endpoints]
    if not tables:
        return info, info.schema.empty_table()
    return info, pa.concat_tables(tables)
