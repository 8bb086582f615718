"""Authentication (SHOP_AUTH_USERS): Basic credentials in the handshake, then a bearer token."""

from __future__ import annotations

import re

import adbc_driver_flightsql
import adbc_driver_manager.dbapi as dbapi
import pyarrow as pa
import pyarrow.flight as fl
import pytest

import flightsql_raw as raw
from e2e_util import duck_rows, grpc_code, rows

COUNT = "SELECT count(*) FROM stage.purchases"
AUTH_HEADER = adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value


def _query_fails(connect, uri, db_kwargs=None) -> dbapi.Error:
    with pytest.raises(dbapi.Error) as info:
        c = connect(uri, db_kwargs)
        rows(c, COUNT)
    return info.value


def test_no_credentials_is_unauthenticated(auth_server, connect):
    err = _query_fails(connect, auth_server.uri)
    assert grpc_code(err) == "Unauthenticated" or "unauthenticated" in str(err).lower(), str(err)
    assert re.search(r"authenticat", str(err), re.IGNORECASE), str(err)


def test_wrong_password_is_refused(auth_server, connect):
    err = _query_fails(
        connect, auth_server.uri, {"username": auth_server.extra["user"], "password": "WrongPw-9472"}
    )
    assert re.search(r"unauthenticated|invalid user name or password", str(err), re.IGNORECASE), str(err)
    assert "WrongPw-9472" not in str(err), "the server echoes the password"


def test_unknown_user_is_refused(auth_server, connect):
    err = _query_fails(connect, auth_server.uri, {"username": "mallory", "password": "s3cret-pw"})
    assert re.search(r"unauthenticated|invalid", str(err), re.IGNORECASE), str(err)


def test_right_password_works(auth_server, connect, duck):
    c = connect(
        auth_server.uri,
        {"username": auth_server.extra["user"], "password": auth_server.extra["password"]},
    )
    assert rows(c, COUNT) == duck_rows(duck, COUNT)
    # metadata calls are authenticated too
    objects = c.adbc_get_objects(depth="tables", catalog_filter="shop").read_all().to_pylist()
    assert objects and objects[0]["catalog_name"] == "shop"


def test_second_user_works(auth_server, connect, duck):
    c = connect(auth_server.uri, {"username": "bob", "password": "other-pw"})
    assert rows(c, COUNT) == duck_rows(duck, COUNT)


def test_handshake_token_with_raw_flight(auth_server, connect, duck):
    client = fl.FlightClient(auth_server.uri)
    try:
        with pytest.raises(fl.FlightUnauthenticatedError):
            raw.fetch(client, raw.statement_query(COUNT))
        with pytest.raises((fl.FlightUnauthenticatedError, fl.FlightUnauthorizedError)):
            client.authenticate_basic_token(auth_server.extra["user"], "wrong")
        name, value = client.authenticate_basic_token(
            auth_server.extra["user"], auth_server.extra["password"]
        )
        name = name.decode() if isinstance(name, bytes) else name
        value = value.decode() if isinstance(value, bytes) else value
        assert name.lower() == "authorization" and value.startswith("Bearer "), (name, value)
        options = fl.FlightCallOptions(headers=[(name.encode(), value.encode())])
        _, table = raw.fetch(client, raw.statement_query(COUNT), options)
        assert table.column(0).to_pylist() == [duck_rows(duck, COUNT)[0][0]]

        # The same token works for the ADBC driver as a ready-made authorization header.
        c = connect(auth_server.uri, {AUTH_HEADER: value})
        assert rows(c, COUNT) == duck_rows(duck, COUNT)

        forged = fl.FlightCallOptions(headers=[(b"authorization", b"Bearer not-a-real-token")])
        with pytest.raises(fl.FlightUnauthenticatedError):
            raw.fetch(client, raw.statement_query(COUNT), forged)
    finally:
        client.close()


def test_auth_off_on_the_quickstart_server(server):
    client = fl.FlightClient(server.uri)
    try:
        _, table = raw.fetch(client, raw.statement_query("SELECT 1 AS x"))
        assert table.column("x").to_pylist() == [1]
        assert table.schema.field("x").type == pa.int64()
    finally:
        client.close()
