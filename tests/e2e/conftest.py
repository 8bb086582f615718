"""Fixtures of the end-to-end suite: a real `shop-analytics` process on a temporary demo lake.

Environment:
    SHOP_BIN               the binary (default: the first that exists of
                           $CARGO_TARGET_DIR/debug/shop-analytics,
                           ~/.cache/shop-analytics/target/debug/shop-analytics (scripts/test.sh),
                           <repo>/target/debug/shop-analytics)
    SHOP_E2E_SCALE         demo scale (default 0.02, ~21k purchases)
    SHOP_E2E_START_TIMEOUT seconds to wait for the ready file (default 120)

Every server started here binds its REST/JSON gateway to a free port (SHOP_HTTP_LISTEN=
127.0.0.1:0) unless the caller's `env` says otherwise, so that servers running side by side do
not compete for the default 127.0.0.1:8000.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flightsql
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import shoplake  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SCALE = os.environ.get("SHOP_E2E_SCALE", "0.02")
START_TIMEOUT = float(os.environ.get("SHOP_E2E_START_TIMEOUT", "120"))
AUTH_USER = "alice"
AUTH_PASSWORD = "s3cret-pw"
# Per-call deadlines, so that a hung server fails the suite instead of hanging it.
RPC_TIMEOUTS = {
    adbc_driver_flightsql.DatabaseOptions.TIMEOUT_QUERY.value: "60",
    adbc_driver_flightsql.DatabaseOptions.TIMEOUT_FETCH.value: "60",
    adbc_driver_flightsql.DatabaseOptions.TIMEOUT_UPDATE.value: "60",
}


def shop_bin() -> Path:
    explicit = os.environ.get("SHOP_BIN")
    if explicit:
        return Path(explicit)
    candidates = []
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "debug" / "shop-analytics")
    # scripts/test.sh builds outside the clone by default
    candidates.append(Path.home() / ".cache" / "shop-analytics" / "target" / "debug" / "shop-analytics")
    candidates.append(REPO / "target" / "debug" / "shop-analytics")
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


@dataclass
class ShopServer:
    """A running `shop-analytics` process."""

    name: str
    proc: subprocess.Popen
    addr: str
    log: Path
    lake: Path
    extra: dict = field(default_factory=dict)
    # The REST/JSON gateway's address, only when start_server was asked for it (http=True).
    http_addr: str = ""

    @property
    def uri(self) -> str:
        return f"grpc://{self.addr}"

    @property
    def http_url(self) -> str:
        assert self.http_addr, f"{self.name} was started without http=True"
        return f"http://{self.http_addr}"

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def assert_alive(self) -> None:
        code = self.proc.poll()
        assert code is None, f"{self.name} exited with {code}:\n{self.log_tail()}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)


def _clean_env(extra: dict[str, str]) -> dict[str, str]:
    # SHOP_* variables of the caller's shell must not change the server under test.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.setdefault("RUST_BACKTRACE", "1")
    env["SHOP_LOG"] = os.environ.get("SHOP_E2E_LOG", "info")
    env.update(extra)
    return env


# The REST gateway of every server under test binds a free port, not the default 8000.
DEFAULT_SERVER_ENV = {"SHOP_HTTP_LISTEN": "127.0.0.1:0"}


def _ready_addr(path: Path) -> str:
    return path.read_text().strip() if path.is_file() else ""


def _check_addr(name: str, what: str, addr: str) -> None:
    host, _, port = addr.rpartition(":")
    assert host == "127.0.0.1" and port.isdigit() and int(port) > 0, (
        f"{what} of {name} holds {addr!r}, expected 127.0.0.1:PORT"
    )


def start_server(
    name: str,
    args: list[str],
    workdir: Path,
    lake: Path,
    env: dict[str, str] | None = None,
    http: bool = False,
) -> ShopServer:
    """Starts `shop-analytics ARGS --lake LAKE --listen 127.0.0.1:0 --ready-file …` and waits for
    its ready file. `env` is added to (and may override) DEFAULT_SERVER_ENV. With `http=True`
    the REST gateway's ready file (SHOP_HTTP_READY_FILE) is awaited too, and its address is
    `server.http_addr`."""
    binary = shop_bin()
    if not binary.is_file():
        pytest.fail(
            f"the shop-analytics binary is not at {binary}: build it with `cargo build` "
            "or point SHOP_BIN at it",
            pytrace=False,
        )
    ready = workdir / f"{name}.ready"
    http_ready = workdir / f"{name}-http.ready"
    log = workdir / f"{name}.log"
    ready.unlink(missing_ok=True)
    http_ready.unlink(missing_ok=True)
    server_env = {**DEFAULT_SERVER_ENV, **(env or {})}
    if http:
        server_env["SHOP_HTTP_READY_FILE"] = str(http_ready)
    cmd = [
        str(binary),
        *args,
        "--lake",
        str(lake),
        "--listen",
        "127.0.0.1:0",
        "--ready-file",
        str(ready),
    ]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_clean_env(server_env),
            cwd=workdir,
        )
    server = ShopServer(name=name, proc=proc, addr="", log=log, lake=lake)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        server.addr = server.addr or _ready_addr(ready)
        if http:
            server.http_addr = server.http_addr or _ready_addr(http_ready)
        if server.addr and (server.http_addr or not http):
            break
        if proc.poll() is not None:
            pytest.fail(
                f"{name} ({' '.join(cmd)}) exited with {proc.returncode} before it was ready:\n"
                f"{server.log_tail()}",
                pytrace=False,
            )
        if time.monotonic() > deadline:
            server.stop()
            missing = "ready file" if not server.addr else "HTTP ready file"
            pytest.fail(
                f"{name} wrote no {missing} within {START_TIMEOUT:.0f}s:\n{server.log_tail()}",
                pytrace=False,
            )
        time.sleep(0.1)
    _check_addr(name, "ready file", server.addr)
    if http:
        _check_addr(name, "HTTP ready file", server.http_addr)
        assert server.http_addr != server.addr, f"{name}: gRPC and REST on one address"
    return server


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shop-e2e")


@pytest.fixture(scope="session")
def lake(workdir) -> Path:
    path = workdir / "lake"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def server(workdir, lake):
    """`shop-analytics quickstart` on an empty temporary lake (generates the demo shop)."""
    srv = start_server("quickstart", ["quickstart", "--scale", SCALE], workdir, lake, http=True)
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def auth_server(server, workdir, lake):
    """`shop-analytics serve` on the same lake with authentication on."""
    srv = start_server(
        "serve-auth",
        ["serve"],
        workdir,
        lake,
        env={"SHOP_AUTH_USERS": f"{AUTH_USER}:{AUTH_PASSWORD},bob:other-pw"},
    )
    srv.extra.update(user=AUTH_USER, password=AUTH_PASSWORD)
    yield srv
    srv.stop()


@contextlib.contextmanager
def open_connections():
    """Yields `connect(uri, db_kwargs)` for ADBC Flight SQL connections with per-call deadlines;
    every connection it opened is closed on exit."""
    opened = []

    def _connect(uri: str, db_kwargs: dict | None = None):
        conn = flightsql.connect(
            uri, db_kwargs={**RPC_TIMEOUTS, **(db_kwargs or {})}, autocommit=True
        )
        opened.append(conn)
        return conn

    try:
        yield _connect
    finally:
        for c in opened:
            try:
                c.close()
            except Exception:
                pass


@pytest.fixture(scope="session")
def connect(server):
    """Factory of ADBC Flight SQL connections to the quickstart server (closed at the end)."""
    with open_connections() as _connect:
        yield lambda uri=None, db_kwargs=None: _connect(uri or server.uri, db_kwargs)


@pytest.fixture(scope="session")
def conn(connect):
    """One shared ADBC connection to the quickstart server."""
    return connect()


@pytest.fixture(scope="session")
def duck(server, lake):
    """DuckDB over the same Parquet files, as views stage.* and analytics.*."""
    con = shoplake.duckdb_over(lake)
    yield con
    con.close()


@pytest.fixture(autouse=True)
def _server_still_running(request):
    """Fails the test that killed the server, with its log."""
    yield
    for name in ("server", "auth_server"):
        if name in request.fixturenames:
            request.getfixturevalue(name).assert_alive()
