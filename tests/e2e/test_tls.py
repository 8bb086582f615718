"""TLS (--tls-cert / --tls-key) together with authentication (SHOP_AUTH_USERS).

Generates a throw-away CA and a server certificate for 127.0.0.1 / localhost with the `openssl`
CLI, fills a fresh demo lake with `shop-analytics generate demo`, and starts
`shop-analytics serve --tls-cert … --tls-key …` on it with authentication on. The REST/JSON
gateway of that server runs on its own free port with the same certificate and credentials.
This module needs neither the quickstart server nor its lake.
"""

from __future__ import annotations

import base64
import http.client
import json
import re
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager.dbapi as dbapi
import pytest

import shoplake
from conftest import DEFAULT_SERVER_ENV, _clean_env, open_connections, shop_bin, start_server
from e2e_util import duck_rows, grpc_code, rows

TLS_SCALE = "0.01"
USER = "alice"
PASSWORD = "secret"
COUNT = "SELECT count(*) FROM customers"
REFERENCE_COUNT = "SELECT count(*) FROM stage.customers"
TLS_ROOT_CERTS = adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value
# Deadline of every openssl / generate run, so that a hung command fails the test.
CMD_TIMEOUT = 120


def _run(cmd: list[str], cwd: Path, timeout: float = CMD_TIMEOUT, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _openssl(args: list, cwd: Path) -> None:
    done = _run(["openssl", *args], cwd)
    assert done.returncode == 0, f"openssl {' '.join(map(str, args))} failed:\n{done.stderr}"


def _make_ca(dir: Path, name: str) -> tuple[Path, Path]:
    """A self-signed CA: (certificate, key)."""
    cert, key = dir / f"{name}.pem", dir / f"{name}.key"
    _openssl(
        [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
        dir,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """CA, server certificate (SAN IP:127.0.0.1, DNS:localhost) and key, and a second CA that
    signed nothing; all PEM."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is not installed")
    dir = tmp_path_factory.mktemp("shop-tls-certs")
    version = _run(["openssl", "version"], dir)
    assert version.returncode == 0, version.stderr
    ca_cert, ca_key = _make_ca(dir, "shop-test-ca")
    other_ca, _ = _make_ca(dir, "other-ca")
    key, csr, cert = dir / "server.key", dir / "server.csr", dir / "server.pem"
    _openssl(
        [
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost",
        ],
        dir,
    )
    ext = dir / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
    )
    _openssl(
        [
            "x509", "-req", "-in", csr, "-CA", ca_cert, "-CAkey", ca_key, "-set_serial", "1001",
            "-days", "2", "-extfile", ext, "-out", cert,
        ],
        dir,
    )
    _openssl(["verify", "-CAfile", ca_cert, cert], dir)
    return {"ca": ca_cert, "other_ca": other_ca, "cert": cert, "key": key, "dir": dir}


@pytest.fixture(scope="module")
def tls_lake(tmp_path_factory) -> Path:
    """A fresh demo lake (`generate demo --scale 0.01`)."""
    workdir = tmp_path_factory.mktemp("shop-tls")
    lake = workdir / "lake"
    done = _run(
        [shop_bin(), "generate", "demo", "--lake", lake, "--scale", TLS_SCALE],
        workdir,
        env=_clean_env({}),
    )
    assert done.returncode == 0, f"generate demo failed ({done.returncode}):\n{done.stderr}"
    return lake


@pytest.fixture(scope="module")
def tls_server(tls_files, tls_lake):
    """`serve` with TLS and authentication on the fresh demo lake."""
    srv = start_server(
        "serve-tls",
        ["serve", "--tls-cert", str(tls_files["cert"]), "--tls-key", str(tls_files["key"])],
        tls_lake.parent,
        tls_lake,
        env={"SHOP_AUTH_USERS": f"{USER}:{PASSWORD}"},
        http=True,
    )
    srv.extra.update(port=srv.addr.rpartition(":")[2])
    yield srv
    srv.stop()


@pytest.fixture(autouse=True)
def _tls_server_still_running(request):
    """A refused client must not take the server down."""
    yield
    if "tls_server" in request.fixturenames:
        request.getfixturevalue("tls_server").assert_alive()


@pytest.fixture(scope="module")
def tls_connect():
    """Factory of ADBC connections with per-call deadlines (closed at the end)."""
    with open_connections() as connect:
        yield connect


@pytest.fixture(scope="module")
def expected_count(tls_lake) -> list[tuple]:
    """count(*) of stage.customers read by DuckDB straight from the lake's Parquet files."""
    con = shoplake.duckdb_over(tls_lake)
    try:
        got = duck_rows(con, REFERENCE_COUNT)
    finally:
        con.close()
    assert got[0][0] > 0, "the demo lake has no customers"
    return got


def _trusting(tls_files, **extra) -> dict:
    return {TLS_ROOT_CERTS: tls_files["ca"].read_text(), **extra}


def _query_fails(tls_connect, uri: str, db_kwargs: dict) -> dbapi.Error:
    with pytest.raises(dbapi.Error) as info:
        c = tls_connect(uri, db_kwargs)
        rows(c, COUNT)
    return info.value


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_tls_with_trusted_ca_and_password(tls_server, tls_files, tls_connect, expected_count, host):
    c = tls_connect(
        f"grpc+tls://{host}:{tls_server.extra['port']}",
        _trusting(tls_files, username=USER, password=PASSWORD),
    )
    assert rows(c, COUNT) == expected_count
    # The same connection keeps working (bearer token over the TLS channel).
    assert rows(c, REFERENCE_COUNT) == expected_count


def test_plaintext_client_is_refused(tls_server, tls_connect):
    err = _query_fails(
        tls_connect, f"grpc://{tls_server.addr}", {"username": USER, "password": PASSWORD}
    )
    assert grpc_code(err) == "Unavailable", str(err)


@pytest.mark.parametrize("roots", ["system", "other_ca"])
def test_untrusted_certificate_is_refused(tls_server, tls_files, tls_connect, roots):
    kwargs = {"username": USER, "password": PASSWORD}
    if roots == "other_ca":
        kwargs[TLS_ROOT_CERTS] = tls_files["other_ca"].read_text()
    err = _query_fails(tls_connect, f"grpc+tls://{tls_server.addr}", kwargs)
    assert re.search(r"certificate|x509|tls", str(err), re.IGNORECASE), str(err)
    assert grpc_code(err) != "Unauthenticated", str(err)


def test_wrong_password_over_tls_is_unauthenticated(tls_server, tls_files, tls_connect):
    err = _query_fails(
        tls_connect,
        f"grpc+tls://{tls_server.addr}",
        _trusting(tls_files, username=USER, password="WrongPw-5531"),
    )
    assert grpc_code(err) == "Unauthenticated", str(err)
    assert "WrongPw-5531" not in str(err), "the server echoes the password"


def _https_get(
    tls_files, url: str, headers: dict | None = None, alpn: list[str] | None = None
) -> tuple[int, dict, dict]:
    """GET over HTTPS trusting the test CA, no proxy: (status, headers, JSON body). `alpn` is
    what the client offers (urllib offers nothing by default)."""
    context = ssl.create_default_context(cafile=str(tls_files["ca"]))
    if alpn:
        context.set_alpn_protocols(alpn)
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with opener.open(request, timeout=CMD_TIMEOUT) as reply:
            return reply.status, dict(reply.headers), json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def test_rest_gateway_has_the_same_tls_and_authentication(tls_server, tls_files):
    base = f"https://{tls_server.http_addr}"
    assert tls_server.http_addr != tls_server.addr
    status, _, body = _https_get(tls_files, f"{base}/healthz")
    assert (status, body) == (200, {"status": "SERVING"})
    # Clients that offer only HTTP/1.1 in ALPN (requests/urllib3, curl --http1.1) negotiate it.
    for offered in (["http/1.1"], ["h2", "http/1.1"]):
        status, _, body = _https_get(tls_files, f"{base}/healthz", alpn=offered)
        assert (status, body) == (200, {"status": "SERVING"}), offered
    status, headers, body = _https_get(tls_files, f"{base}/v1/products?page_size=1")
    assert status == 401 and body["code"] == "UNAUTHENTICATED", body
    assert headers.get("www-authenticate", headers.get("WWW-Authenticate", "")).startswith("Basic")
    wrong = base64.b64encode(f"{USER}:WrongPw-77".encode()).decode()
    status, _, body = _https_get(
        tls_files, f"{base}/v1/products?page_size=1", {"Authorization": f"Basic {wrong}"}
    )
    assert status == 401 and "WrongPw-77" not in json.dumps(body), body
    right = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    status, _, body = _https_get(
        tls_files, f"{base}/v1/products?page_size=1", {"Authorization": f"Basic {right}"}
    )
    assert status == 200 and len(body["products"]) == 1, body
    # Plain HTTP to the TLS port gets no answer.
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            f"http://{tls_server.http_addr}/healthz", timeout=CMD_TIMEOUT
        )


@pytest.mark.parametrize("missing", ["cert", "key"])
def test_missing_tls_file_stops_serve(tls_files, tls_lake, missing):
    files = {"cert": tls_files["cert"], "key": tls_files["key"]}
    files[missing] = tls_files["dir"] / f"no-such-{missing}.pem"
    ready = tls_files["dir"] / f"missing-{missing}.ready"
    try:
        done = _run(
            [
                shop_bin(), "serve", "--lake", tls_lake, "--listen", "127.0.0.1:0",
                "--ready-file", ready, "--tls-cert", files["cert"], "--tls-key", files["key"],
            ],
            tls_files["dir"],
            timeout=60,
            env=_clean_env({**DEFAULT_SERVER_ENV, "SHOP_AUTH_USERS": f"{USER}:{PASSWORD}"}),
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"serve with a missing TLS {missing} file still runs after 60 s")
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"serve exited with 0:\n{output}"
    assert str(files[missing]) in output, f"the message does not name the file:\n{output}"
    assert not ready.exists(), "serve wrote a ready file although it cannot serve"


@pytest.mark.parametrize("broken", ["cert", "key"])
def test_a_tls_file_that_is_not_pem_is_named(tls_files, tls_lake, broken):
    files = {"cert": tls_files["cert"], "key": tls_files["key"]}
    garbage = tls_files["dir"] / f"garbage-{broken}.pem"
    garbage.write_text("this is not a PEM file\n")
    files[broken] = garbage
    ready = tls_files["dir"] / f"garbage-{broken}.ready"
    done = _run(
        [
            shop_bin(), "serve", "--lake", tls_lake, "--listen", "127.0.0.1:0",
            "--ready-file", ready, "--tls-cert", files["cert"], "--tls-key", files["key"],
        ],
        tls_files["dir"],
        timeout=60,
        env=_clean_env(DEFAULT_SERVER_ENV),
    )
    output = done.stdout + done.stderr
    assert done.returncode != 0, f"serve exited with 0:\n{output}"
    assert str(garbage) in output and "PEM" in output, f"unclear message:\n{output}"
    # The cause is printed once, not repeated by the error chain.
    assert output.count("does not hold a PEM") == 1, output
    assert not ready.exists()


def test_a_stalled_tls_handshake_is_closed(tls_server):
    """A client that sends the first byte of a handshake and stops loses its connection at the
    handshake time limit (10 s), not at the 300 s idle limit."""
    host, _, port = tls_server.addr.rpartition(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"\x16")  # the first byte of a TLS record: a handshake
        sock.settimeout(40)
        try:
            closed = sock.recv(1024) == b""
        except ConnectionResetError:
            closed = True
        except TimeoutError:
            closed = False
    assert closed, "the server kept a stalled TLS handshake open for 40 s"
