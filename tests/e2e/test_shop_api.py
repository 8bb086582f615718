"""The shop API through the user's eyes: sellers and purchases over REST and gRPC, with the real
PostgreSQL and Kafka (tansu) of `scripts/services.sh up`.

The flow: `generate postgres` fills a fresh database with customers and sellers, a small
catalogue CSV goes into the lake with `ingest products`, the Kafka ingest worker
(`ingest kafka`) lands the topic in stage.purchases, and `serve --pg-url … --kafka-brokers …
--topic …` serves Flight SQL, the gRPC services and the REST gateway. A purchase created over
either API must be on the topic exactly once (also when retried with its idempotency key), then
in Flight SQL exactly once, then readable with GetPurchase / ListPurchases; a refused request
must publish nothing and write nothing.

The gRPC calls go through the example client `client-examples/grpc/python/shop_client.py`, with
stubs made by its `generate.sh`, so the example is tested too.

Needs SHOP_TEST_PG_URL and SHOP_TEST_KAFKA_BROKERS (skips without them, fails under
SHOP_REQUIRE_SERVICES=1 or CI=true).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import adbc_driver_flightsql.dbapi as flightsql
import confluent_kafka
import grpc
import psycopg
import pytest

from conftest import REPO, RPC_TIMEOUTS, _clean_env, shop_bin, start_server
from e2e_util import rows, service_env

EXAMPLE = REPO / "client-examples" / "grpc" / "python"
UTC = dt.timezone.utc
FLUSH_INTERVAL_MS = 500
# Bounds of the waits for eventually consistent reads. The first event also waits for the
# worker to join its group (tansu: about half the 6 s session timeout).
FIRST_VISIBLE_S = 60.0
HTTP_TIMEOUT_S = 30.0
CATALOGUE = [
    # product_id, seller (index into the generated sellers), name, category, price
    (101, 0, "Espresso cup", "kitchen", "12.50"),
    (102, 1, "Green tea, 100 g", "food", "4.99"),
    (103, 2, "Desk lamp", "home", "89.00"),
    (104, 0, "Notebook A5", "office", "3.20"),
    (105, 3, "Ceramic teapot", "kitchen", "34.90"),
]
# Every field is in the JSON, also when it is the default, except a message field that is not
# set (extras of a purchase created without).
PURCHASE_FIELDS = {
    "purchase_id", "customer_id", "product_id", "seller_id", "quantity", "unit_price",
    "currency", "purchased_at",
}
SELLER_FIELDS = {
    "seller_id", "name", "email", "city", "country", "rating", "commission_rate",
    "is_verified", "created_at", "updated_at",
}
PRODUCT_FIELDS = {"product_id", "seller_id", "name", "category", "price", "created_at"}


# ------------------------------------------------------------------------------------ helpers
def shop_cli(*args: str, timeout: float = 180) -> str:
    out = subprocess.run(
        [str(shop_bin()), *args], env=_clean_env({}), capture_output=True, text=True,
        timeout=timeout, stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, f"shop-analytics {' '.join(args)} failed:\n{out.stderr}"
    return out.stderr


# No proxy for loopback, whatever the environment says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def rest(base: str, method: str, path: str, body=None, *, query=None, headers=None, raw=None):
    """One HTTP call; returns (status, parsed JSON body or text)."""
    url = base + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(url, data=data, method=method)
    if body is not None and raw is None:
        request.add_header("Content-Type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with _OPENER.open(request, timeout=HTTP_TIMEOUT_S) as reply:
            status, payload = reply.status, reply.read()
    except urllib.error.HTTPError as e:
        status, payload = e.code, e.read()
    try:
        return status, json.loads(payload) if payload else None
    except ValueError:
        return status, payload.decode(errors="replace")


def parse_time(text: str) -> dt.datetime:
    """RFC 3339 with up to 9 decimals ('Z' or an offset) as an aware datetime (µs)."""
    head, dot, tail = text.partition(".")
    if dot:
        digits = len(tail) - len(tail.lstrip("0123456789"))
        text = f"{head}.{tail[:digits][:6]:0<6}{tail[digits:]}"
    at = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert at.tzinfo is not None, f"{text!r} has no time zone"
    return at


def rfc3339(at: dt.datetime) -> str:
    return at.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def normalised(message: dict) -> dict:
    """A JSON message with times as datetimes, so that two spellings of one time compare equal."""
    out = {}
    for key, value in message.items():
        if isinstance(value, str) and (key.endswith("_at") or key.endswith("_time")) and value:
            out[key] = parse_time(value)
        else:
            out[key] = value
    return out


def wait_until(what: str, check, within: float, every: float = 0.2):
    """Polls `check()` until it returns something truthy; fails after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        got = check()
        if got:
            return got
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: not within {within:.0f}s (last: {got!r})")
        time.sleep(every)


def grpc_health(channel, service: str) -> int:
    """grpc.health.v1.Health/Check by hand: request field 1 = service, reply field 1 = status."""
    encoded = service.encode()
    call = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    reply = call(b"\x0a" + bytes([len(encoded)]) + encoded, timeout=10)
    assert reply[:1] == b"\x08", reply
    return reply[1]


class Topic:
    """Reads the purchases topic directly, as a plain consumer without a group."""

    def __init__(self, brokers: str, name: str):
        self.brokers, self.name = brokers, name

    def _consumer(self):
        return confluent_kafka.Consumer({
            "bootstrap.servers": self.brokers,
            "group.id": f"e2e-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        })

    def _ranges(self, consumer) -> dict[int, tuple[int, int]]:
        meta = consumer.list_topics(self.name, timeout=10).topics[self.name]
        assert meta.error is None, meta.error
        ranges = {}
        for p in meta.partitions:
            tp = confluent_kafka.TopicPartition(self.name, p)
            ranges[p] = consumer.get_watermark_offsets(tp, timeout=10, cached=False)
        return ranges

    def size(self) -> int:
        """How many messages the topic holds (the sum of the partitions' watermark ranges)."""
        consumer = self._consumer()
        try:
            return sum(high - low for low, high in self._ranges(consumer).values())
        finally:
            consumer.close()

    def messages(self, within: float = 30.0) -> list[tuple[str | None, dict | bytes]]:
        """Every message up to the current end: (key, JSON value)."""
        consumer = self._consumer()
        try:
            ranges = {p: r for p, r in self._ranges(consumer).items() if r[1] > r[0]}
            consumer.assign([
                confluent_kafka.TopicPartition(self.name, p, low) for p, (low, _) in ranges.items()
            ])
            got, deadline = [], time.monotonic() + within
            while ranges:
                assert time.monotonic() < deadline, f"topic {self.name}: unread ends {ranges}"
                m = consumer.poll(0.5)
                if m is None:
                    continue
                assert not m.error(), m.error()
                key = m.key().decode() if m.key() is not None else None
                try:
                    value = json.loads(m.value())
                except ValueError:
                    value = m.value()
                got.append((key, value))
                if m.partition() in ranges and m.offset() >= ranges[m.partition()][1] - 1:
                    del ranges[m.partition()]
            return got
        finally:
            consumer.close()

    def count(self, purchase_id: str) -> int:
        """Messages that carry `purchase_id` (as key or in the event)."""
        return sum(
            1 for key, value in self.messages()
            if key == purchase_id or (isinstance(value, dict) and value.get("purchase_id") == purchase_id)
        )


@dataclass
class Shop:
    pg_url: str
    topic: Topic
    lake: Path
    server: object
    worker: subprocess.Popen
    client: object  # shop_client.ShopClient
    shop_client: object  # the example module
    stubs: Path
    sellers: list[int]
    customers: list[int]
    inactive_customer: int
    products: dict[int, dict] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.server.http_url

    def rest(self, method, path, body=None, **kw):
        return rest(self.url, method, path, body, **kw)

    def pg(self, sql: str, params=None) -> list[tuple]:
        with psycopg.connect(self.pg_url) as conn:
            return [tuple(r) for r in conn.execute(sql, params).fetchall()]

    def flight(self, sql: str, params=None) -> list[tuple]:
        with flightsql.connect(self.server.uri, db_kwargs=RPC_TIMEOUTS, autocommit=True) as conn:
            return rows(conn, sql, params)


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def stubs(tmp_path_factory) -> Path:
    """The example's generate.sh, run as its README says, into a temporary folder."""
    out = tmp_path_factory.mktemp("grpc-stubs")
    done = subprocess.run(
        ["bash", str(EXAMPLE / "generate.sh"), str(out)],
        env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, f"generate.sh failed:\n{done.stdout}{done.stderr}"
    for service in ("product", "purchase", "seller"):
        assert (out / "shop" / "v1" / f"{service}_service_pb2_grpc.py").is_file(), service
    return out


@pytest.fixture(scope="module")
def shop_client_module():
    sys.path.insert(0, str(EXAMPLE))
    try:
        import shop_client
    finally:
        sys.path.remove(str(EXAMPLE))
    return shop_client


@pytest.fixture(scope="module")
def pg_url():
    admin = service_env("SHOP_TEST_PG_URL", "PostgreSQL")
    name = f"shop_api_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield admin.rsplit("/", 1)[0] + "/" + name
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def shop(pg_url, stubs, shop_client_module, tmp_path_factory):
    brokers = service_env("SHOP_TEST_KAFKA_BROKERS", "Kafka")
    topic = f"e2e_shop_{uuid.uuid4().hex[:10]}"
    workdir = tmp_path_factory.mktemp("shop-api")
    lake = workdir / "lake"

    shop_cli("generate", "postgres", "--pg-url", pg_url, "--customers", "60", "--sellers", "6")
    with psycopg.connect(pg_url) as conn:
        sellers = [r[0] for r in conn.execute("SELECT seller_id FROM sellers ORDER BY 1")]
        active = [r[0] for r in conn.execute(
            "SELECT customer_id FROM customers WHERE is_active ORDER BY 1")]
        # customers[0..6] each have their own purchases below; the last one becomes inactive.
        assert len(sellers) == 6 and len(active) >= 8, (sellers, active)
        inactive = active.pop()
        conn.execute("UPDATE customers SET is_active = false WHERE customer_id = %s", (inactive,))

    csv = workdir / "catalogue.csv"
    csv.write_text(
        "product_id,seller_id,name,category,price\n"
        + "".join(
            f'{pid},{sellers[s]},"{name}",{cat},{price}\n' for pid, s, name, cat, price in CATALOGUE
        )
    )
    shop_cli("ingest", "products", str(csv), "--lake", str(lake))
    products = {
        pid: {"product_id": str(pid), "seller_id": str(sellers[s]), "name": name, "category": cat,
              "price": price}
        for pid, s, name, cat, price in CATALOGUE
    }

    # The topic exists before the worker subscribes.
    shop_cli("generate", "kafka", "--kafka-brokers", brokers, "--topic", topic, "--count", "0")
    log = open(workdir / "worker.log", "wb")
    worker = subprocess.Popen(
        [
            str(shop_bin()), "ingest", "kafka", "--kafka-brokers", brokers, "--topic", topic,
            "--group", f"{topic}-lake", "--flush-interval-ms", str(FLUSH_INTERVAL_MS),
            "--session-timeout-ms", "6000", "--lake", str(lake),
        ],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=_clean_env({}),
    )
    server = client = None
    try:
        server = start_server(
            "serve-shop-api",
            [
                "serve", "--pg-url", pg_url, "--kafka-brokers", brokers, "--topic", topic,
                "--catalog-refresh-ms", "200",
            ],
            workdir,
            lake,
            http=True,
        )
        client = shop_client_module.ShopClient(server.addr, stubs_dir=stubs, timeout=30)
        yield Shop(
            pg_url=pg_url, topic=Topic(brokers, topic), lake=lake, server=server, worker=worker,
            client=client, shop_client=shop_client_module, stubs=stubs, sellers=sellers,
            customers=active, inactive_customer=inactive, products=products,
        )
    finally:
        if client is not None:
            client.close()
        if server is not None:
            server.stop()
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=15)
        log.close()


@pytest.fixture(autouse=True)
def _shop_processes_still_running(request):
    yield
    if "shop" in request.fixturenames:
        shop = request.getfixturevalue("shop")
        shop.server.assert_alive()
        code = shop.worker.poll()
        assert code is None, f"the Kafka ingest worker exited with {code}"


# ------------------------------------------------------------------------------------ basics
def test_health_reflection_openapi_and_healthz(shop):
    for service in ("shop.v1.ProductService", "shop.v1.PurchaseService", "shop.v1.SellerService"):
        assert grpc_health(shop.client.channel, service) == 1, service  # SERVING
    status, body = shop.rest("GET", "/healthz")
    assert (status, body) == (200, {"status": "SERVING"})
    status, doc = shop.rest("GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1"), doc.get("openapi")
    paths = doc["paths"]
    for path, methods in {
        "/v1/products": {"get"}, "/v1/products/{product_id}": {"get"},
        "/v1/purchases": {"get", "post"}, "/v1/purchases/{purchase_id}": {"get"},
        "/v1/sellers": {"get", "post"}, "/v1/sellers/{seller_id}": {"get", "patch"},
    }.items():
        assert path in paths, sorted(paths)
        assert methods <= set(paths[path]), (path, sorted(paths[path]))


def openapi_errors(doc: dict, schema: dict, value, where: str = "$") -> list[str]:
    """Where `value` breaks the OpenAPI schema (types, properties, additionalProperties,
    items, date-time)."""
    if "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    kinds = schema.get("type", [])
    kinds = [kinds] if isinstance(kinds, str) else kinds
    kind = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer",
            float: "number", type(None): "null"}[type(value)]
    if kinds and kind not in kinds and not (kind == "integer" and "number" in kinds):
        return [f"{where}: {kind} {value!r}, the schema says {kinds}"]
    errors = []
    if schema.get("format") == "date-time" and isinstance(value, str):
        try:
            parse_time(value)
        except (ValueError, AssertionError) as e:
            errors.append(f"{where}: {value!r} is not a date-time ({e})")
    if isinstance(value, dict) and "properties" in schema:
        for key, item in value.items():
            if key in schema["properties"]:
                errors += openapi_errors(doc, schema["properties"][key], item, f"{where}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}.{key}: not in the schema")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += openapi_errors(doc, schema["items"], item, f"{where}[{i}]")
    return errors


def assert_documented(doc: dict, method: str, route: str, status: int, body) -> None:
    """`body` is what /openapi.json says `method route` answers with `status`."""
    responses = doc["paths"][route][method.lower()]["responses"]
    assert str(status) in responses, f"{method} {route}: {status} is not documented"
    schema = responses[str(status)]["content"]["application/json"]["schema"]
    errors = openapi_errors(doc, schema, body)
    assert not errors, f"{method} {route} {status}:\n" + "\n".join(errors)


def test_products_over_rest_and_grpc(shop):
    status, body = shop.rest("GET", "/v1/products", query={"page_size": 2})
    assert status == 200, body
    seen = [p["product_id"] for p in body["products"]]
    while body["next_page_token"]:
        status, body = shop.rest(
            "GET", "/v1/products", query={"page_size": 2, "page_token": body["next_page_token"]})
        assert status == 200, body
        seen += [p["product_id"] for p in body["products"]]
    assert seen == [str(pid) for pid in sorted(shop.products)]

    status, body = shop.rest("GET", "/v1/products", query={"category": "kitchen", "max_price": "20"})
    assert status == 200, body
    assert [p["product_id"] for p in body["products"]] == ["101"]
    got = body["products"][0]
    assert set(got) == PRODUCT_FIELDS, got
    assert {k: got[k] for k in shop.products[101]} == shop.products[101]

    status, body = shop.rest("GET", "/v1/products/103")
    assert status == 200, body
    product = shop.client.get_product(103)
    assert normalised(shop.shop_client.to_json(product)) == normalised(body["product"])
    assert [p.product_id for p in shop.client.list_products(page_size=1, category="kitchen")] == [101, 105]


# ------------------------------------------------------------------------------------ sellers
def test_sellers_over_rest_and_grpc(shop):
    status, body = shop.rest("POST", "/v1/sellers", {
        "name": "Ännchens Bücher", "email": "post@buecher.example.de", "city": "Köln",
        "country": "DE", "rating": "4.5", "commission_rate": "0.15", "is_verified": True,
    })
    assert status == 201, body
    rest_seller = body["seller"]
    assert set(rest_seller) == SELLER_FIELDS, rest_seller
    rest_id = rest_seller["seller_id"]
    assert isinstance(rest_id, str) and int(rest_id) > max(shop.sellers), rest_seller
    assert {k: rest_seller[k] for k in ("name", "city", "country", "rating", "commission_rate")} == {
        "name": "Ännchens Bücher", "city": "Köln", "country": "DE", "rating": "4.50",
        "commission_rate": "0.1500",
    }
    assert rest_seller["is_verified"] is True
    assert rest_seller["created_at"] == rest_seller["updated_at"]

    grpc_seller = shop.client.create_seller("Tiny Tea Traders", "GB")
    assert grpc_seller.seller_id > int(rest_id)
    # The defaults: no e-mail, city or rating; commission 0.1; not verified.
    assert (grpc_seller.email, grpc_seller.city, grpc_seller.rating, grpc_seller.commission_rate,
            grpc_seller.is_verified) == ("", "", "", "0.1000", False)

    # PostgreSQL holds what the API said.
    assert shop.pg(
        "SELECT name, email::text, city, country, rating::text, commission_rate::text, is_verified "
        "FROM sellers WHERE seller_id IN (%s, %s) ORDER BY seller_id",
        (int(rest_id), grpc_seller.seller_id),
    ) == [
        ("Ännchens Bücher", "post@buecher.example.de", "Köln", "DE", "4.50", "0.1500", True),
        ("Tiny Tea Traders", None, None, "GB", None, "0.1000", False),
    ]

    # PATCH changes only what is given; "" clears a rating.
    status, body = shop.rest("PATCH", f"/v1/sellers/{rest_id}", {"city": "Berlin", "rating": ""})
    assert status == 200, body
    patched = body["seller"]
    assert (patched["city"], patched["rating"]) == ("Berlin", "")
    unchanged = SELLER_FIELDS - {"city", "rating", "updated_at"}
    assert {k: patched[k] for k in unchanged} == {k: rest_seller[k] for k in unchanged}
    assert parse_time(patched["updated_at"]) > parse_time(rest_seller["updated_at"])

    updated = shop.client.update_seller(grpc_seller.seller_id, is_verified=True, email="hi@tea.example")
    assert (updated.name, updated.email, updated.is_verified) == ("Tiny Tea Traders", "hi@tea.example", True)
    assert shop.pg(
        "SELECT city, rating, email::text, is_verified FROM sellers WHERE seller_id IN (%s, %s) "
        "ORDER BY seller_id", (int(rest_id), grpc_seller.seller_id),
    ) == [("Berlin", None, "post@buecher.example.de", True), (None, None, "hi@tea.example", True)]

    # Read back both ways.
    status, body = shop.rest("GET", f"/v1/sellers/{grpc_seller.seller_id}")
    assert status == 200, body
    assert normalised(body["seller"]) == normalised(shop.shop_client.to_json(updated))
    assert normalised(shop.shop_client.to_json(shop.client.get_seller(int(rest_id)))) == normalised(patched)

    # Listing: every page, each seller once, in seller_id order, filtered by country.
    expected = [str(r[0]) for r in shop.pg("SELECT seller_id FROM sellers WHERE country = 'DE' ORDER BY 1")]
    assert rest_id in expected
    got, token = [], ""
    for _ in range(len(expected) + 2):
        status, body = shop.rest(
            "GET", "/v1/sellers", query={"country": "DE", "page_size": 1, "page_token": token})
        assert status == 200, body
        got += [s["seller_id"] for s in body["sellers"]]
        assert all(s["country"] == "DE" for s in body["sellers"])
        token = body["next_page_token"]
        if not token:
            break
    assert got == expected
    every = [s.seller_id for s in shop.client.list_sellers(page_size=3)]
    assert every == [r[0] for r in shop.pg("SELECT seller_id FROM sellers ORDER BY 1")]


# ------------------------------------------------------------------------------------ purchases
@dataclass
class Created:
    """The purchases the `purchases` fixture made: name → REST-style JSON of the purchase."""

    purchases: dict[str, dict]
    replays: dict[str, dict]
    list_customer: int
    list_times: list[dt.datetime]
    default_time_window: tuple[dt.datetime, dt.datetime]
    keyed_time: dt.datetime


@pytest.fixture(scope="module")
def purchases(shop) -> Created:
    c1, c2, c3 = shop.customers[:3]
    to_json = shop.shop_client.to_json
    made: dict[str, dict] = {}
    replays: dict[str, dict] = {}
    base = dt.datetime.now(UTC).replace(microsecond=0) - dt.timedelta(hours=1)

    # gRPC, through the example client (which always sends an idempotency key).
    key_a = f"e2e-a-{uuid.uuid4()}"
    keyed_time = base - dt.timedelta(hours=3) + dt.timedelta(microseconds=250)
    extras = {"coupon": "WINTER10", "channel": "app", "gift": True}
    first = shop.client.create_purchase(
        c1, 101, 2, idempotency_key=key_a, purchased_at=keyed_time, extras=extras)
    assert first.replayed is False
    again = shop.client.create_purchase(
        c1, 101, 2, idempotency_key=key_a, purchased_at=keyed_time, extras=extras)
    assert again.replayed is True
    made["grpc_keyed"], replays["grpc_keyed"] = to_json(first.purchase), to_json(again.purchase)

    # gRPC without a key: defaults for price, currency and time.
    before = dt.datetime.now(UTC)
    reply = shop.client.call("CreatePurchase", {"customer_id": c1, "product_id": 102, "quantity": 1})
    after = dt.datetime.now(UTC)
    assert reply.replayed is False
    made["grpc_unkeyed"] = to_json(reply.purchase)

    # REST with the Idempotency-Key header (ids as a string and as a number).
    key_c = f"e2e-c-{uuid.uuid4()}"
    body_c = {"customer_id": str(c2), "product_id": 103, "quantity": "3", "unit_price": "80.5",
              "currency": "USD", "purchased_at": rfc3339(base - dt.timedelta(hours=2))}
    status, created = shop.rest("POST", "/v1/purchases", body_c, headers={"Idempotency-Key": key_c})
    assert status == 201 and created["replayed"] is False, (status, created)
    status, replay = shop.rest("POST", "/v1/purchases", body_c, headers={"Idempotency-Key": key_c})
    assert status == 200 and replay["replayed"] is True, (status, replay)
    made["rest_header_key"], replays["rest_header_key"] = created["purchase"], replay["purchase"]

    # REST with the key in the body; the retry sends it as the header instead.
    key_d = f"e2e-d-{uuid.uuid4()}"
    body_d = {"customer_id": c2, "product_id": 104, "quantity": 1}
    status, created = shop.rest("POST", "/v1/purchases", {**body_d, "idempotency_key": key_d})
    assert status == 201 and created["replayed"] is False, (status, created)
    status, replay = shop.rest("POST", "/v1/purchases", body_d, headers={"Idempotency-Key": key_d})
    assert status == 200 and replay["replayed"] is True, (status, replay)
    made["rest_body_key"], replays["rest_body_key"] = created["purchase"], replay["purchase"]

    # Three purchases of one customer an hour apart, for ListPurchases.
    times = [base - dt.timedelta(hours=h) for h in (3, 2, 1)]
    for i, at in enumerate(times):
        status, created = shop.rest(
            "POST", "/v1/purchases",
            {"customer_id": c3, "product_id": 105, "quantity": i + 1, "purchased_at": rfc3339(at)},
            headers={"Idempotency-Key": f"e2e-list-{i}-{uuid.uuid4()}"},
        )
        assert status == 201, (status, created)
        made[f"list_{i}"] = created["purchase"]

    # Three purchases at the same instant (paging must not lose or repeat one of them).
    tie = rfc3339(base - dt.timedelta(minutes=30))
    for i in range(3):
        status, created = shop.rest(
            "POST", "/v1/purchases",
            {"customer_id": shop.customers[6], "product_id": 102, "quantity": 1, "purchased_at": tie},
            headers={"Idempotency-Key": f"e2e-tie-{i}-{uuid.uuid4()}"},
        )
        assert status == 201, (status, created)
        made[f"tie_{i}"] = created["purchase"]
    return Created(made, replays, c3, times, (before, after), keyed_time)


def test_created_purchases_follow_the_rules(shop, purchases):
    made = purchases.purchases
    for name, p in made.items():
        assert set(p) - {"extras"} == PURCHASE_FIELDS, (name, p)
        assert str(uuid.UUID(p["purchase_id"])) == p["purchase_id"], (name, p["purchase_id"])
        assert isinstance(p["customer_id"], str) and isinstance(p["product_id"], str), (name, p)
        # The seller is the product's, whatever the client sent.
        assert p["seller_id"] == shop.products[int(p["product_id"])]["seller_id"], (name, p)
    assert len({p["purchase_id"] for p in made.values()}) == len(made)
    # A replay answers the first request's purchase, field for field.
    for name, replay in purchases.replays.items():
        assert replay == made[name], name

    a = made["grpc_keyed"]
    assert (a["quantity"], a["unit_price"], a["currency"]) == (2, "12.50", "EUR")
    assert a["extras"] == {"coupon": "WINTER10", "channel": "app", "gift": True}
    assert parse_time(a["purchased_at"]) == purchases.keyed_time
    b = made["grpc_unkeyed"]
    assert (b["unit_price"], b["currency"]) == ("4.99", "EUR")
    lo, hi = purchases.default_time_window
    assert lo - dt.timedelta(seconds=1) <= parse_time(b["purchased_at"]) <= hi + dt.timedelta(seconds=1)
    c = made["rest_header_key"]
    assert (c["quantity"], c["unit_price"], c["currency"]) == (3, "80.50", "USD")
    assert [parse_time(made[f"list_{i}"]["purchased_at"]) for i in range(3)] == purchases.list_times


def test_a_key_reused_for_other_fields_is_refused_over_grpc(shop, purchases):
    key = f"e2e-reuse-{uuid.uuid4()}"
    customer = shop.customers[3]
    shop.client.create_purchase(customer, 101, 1, idempotency_key=key)
    with pytest.raises(grpc.RpcError) as info:
        shop.client.create_purchase(customer, 101, 5, idempotency_key=key)
    assert info.value.code() == grpc.StatusCode.ALREADY_EXISTS, info.value.details()
    assert "idempotency_key" in info.value.details()
    for request, code, named in [
        ({"customer_id": customer, "product_id": 101, "quantity": 0}, grpc.StatusCode.INVALID_ARGUMENT, "quantity"),
        ({"customer_id": customer, "product_id": 999_999, "quantity": 1}, grpc.StatusCode.NOT_FOUND, "product_id"),
        ({"customer_id": 999_999, "product_id": 101, "quantity": 1}, grpc.StatusCode.NOT_FOUND, "customer_id"),
        ({"customer_id": shop.inactive_customer, "product_id": 101, "quantity": 1},
         grpc.StatusCode.FAILED_PRECONDITION, "customer_id"),
    ]:
        with pytest.raises(grpc.RpcError) as info:
            shop.client.call("CreatePurchase", request)
        assert info.value.code() == code, (request, info.value.code(), info.value.details())
        assert named in info.value.details(), info.value.details()


def test_every_purchase_is_on_the_topic_once_as_the_documented_event(shop, purchases):
    events: dict[str, list[tuple[str | None, dict]]] = {}
    for key, value in shop.topic.messages():
        assert isinstance(value, dict), f"not a JSON event: {value!r}"
        events.setdefault(value["purchase_id"], []).append((key, value))
    for name, p in purchases.purchases.items():
        copies = events.get(p["purchase_id"], [])
        assert len(copies) == 1, f"{name}: {len(copies)} messages for {p['purchase_id']}"
        key, event = copies[0]
        assert key == p["purchase_id"], (name, key)
        assert event["schema_version"] == 1
        assert set(event) - {"extras"} == {"schema_version", *PURCHASE_FIELDS}, (name, sorted(event))
        assert (event["customer_id"], event["product_id"], event["seller_id"]) == (
            int(p["customer_id"]), int(p["product_id"]), int(p["seller_id"])), name
        assert (event["quantity"], event["unit_price"], event["currency"]) == (
            p["quantity"], p["unit_price"], p["currency"]), name
        assert parse_time(event["purchased_at"]) == parse_time(p["purchased_at"]), name
        assert event.get("extras") == p.get("extras"), name


def wait_in_flight_sql(shop, ids: list[str], within: float = FIRST_VISIBLE_S) -> None:
    """Waits until Flight SQL returns every purchase of `ids` from stage.purchases."""
    in_list = ", ".join(f"'{i}'" for i in ids)

    def landed():
        try:
            got = shop.flight(f"SELECT purchase_id FROM stage.purchases WHERE purchase_id IN ({in_list})")
        except Exception as e:  # the table appears with its first file
            if "not found" in str(e).lower():
                return None
            raise
        return got if len({r[0] for r in got}) == len(ids) else None

    wait_until(f"{ids} in stage.purchases (Flight SQL)", landed, within=within)


def test_purchases_reach_flight_sql_exactly_once(shop, purchases):
    made = purchases.purchases
    ids = sorted(p["purchase_id"] for p in made.values())
    in_list = ", ".join(f"'{i}'" for i in ids)
    wait_in_flight_sql(shop, ids)
    got = shop.flight(
        "SELECT purchase_id, customer_id, product_id, seller_id, quantity, unit_price, currency, "
        f"purchased_at, extras FROM stage.purchases WHERE purchase_id IN ({in_list}) ORDER BY purchase_id"
    )
    assert [r[0] for r in got] == ids, "a purchase is in stage.purchases more than once"
    by_id = {p["purchase_id"]: p for p in made.values()}
    for pid, customer, product, seller, quantity, price, currency, at, extras in got:
        p = by_id[pid]
        assert (customer, product, seller) == (int(p["customer_id"]), int(p["product_id"]), int(p["seller_id"]))
        assert (quantity, price, currency) == (p["quantity"], Decimal(p["unit_price"]), p["currency"])
        assert at == parse_time(p["purchased_at"]), pid
        assert (json.loads(extras) if extras is not None else None) == p.get("extras"), pid
    # With a bound parameter too, and no copy among the dead letters.
    one = made["grpc_keyed"]["purchase_id"]
    assert shop.flight("SELECT count(*) FROM stage.purchases WHERE purchase_id = ?", (one,)) == [(1,)]
    try:
        rejected = shop.flight("SELECT reason FROM stage.purchases_rejected")
    except Exception as e:
        assert "not found" in str(e).lower(), e
        rejected = []
    assert rejected == [], rejected


def _get_purchase_when_landed(shop, purchase_id: str, within: float = FIRST_VISIBLE_S) -> dict:
    def fetch():
        status, body = shop.rest("GET", f"/v1/purchases/{purchase_id}")
        if status == 404:
            assert body["code"] == "NOT_FOUND" and purchase_id in body["message"], body
            return None
        assert status == 200, (status, body)
        return body

    return wait_until(f"GET /v1/purchases/{purchase_id}", fetch, within=within)


def test_get_and_list_purchases_over_rest_and_grpc(shop, purchases):
    made = purchases.purchases
    for name, p in made.items():
        body = _get_purchase_when_landed(shop, p["purchase_id"])
        assert normalised(body["purchase"]) == normalised(p), name
    grpc_got = shop.client.get_purchase(made["rest_header_key"]["purchase_id"])
    assert normalised(shop.shop_client.to_json(grpc_got)) == normalised(made["rest_header_key"])

    customer, times = purchases.list_customer, purchases.list_times
    listed = [made[f"list_{i}"]["purchase_id"] for i in range(3)]

    def page_through(**query) -> list[str]:
        ids, token = [], ""
        for _ in range(10):
            status, body = shop.rest(
                "GET", "/v1/purchases",
                query={"customer_id": customer, **query, "page_size": 1, "page_token": token})
            assert status == 200, (query, body)
            ids += [p["purchase_id"] for p in body["purchases"]]
            token = body["next_page_token"]
            if not token:
                return ids
        pytest.fail(f"more than 10 pages for {query}")

    assert page_through() == listed  # oldest first
    ties = sorted(made[f"tie_{i}"]["purchase_id"] for i in range(3))
    assert page_through(customer_id=shop.customers[6]) == ties  # same time: by purchase_id
    # from_time is inclusive, to_time exclusive.
    assert page_through(from_time=rfc3339(times[1]), to_time=rfc3339(times[2])) == listed[1:2]
    assert page_through(from_time=rfc3339(times[1] + dt.timedelta(microseconds=1))) == listed[2:]
    assert page_through(to_time=rfc3339(times[0])) == []
    status, body = shop.rest("GET", "/v1/purchases", query={
        "customer_id": customer, "from_time": rfc3339(times[0]), "to_time": rfc3339(times[2]),
        "page_size": 10})
    assert status == 200, body
    assert [normalised(p) for p in body["purchases"]] == [normalised(made[f"list_{i}"]) for i in range(2)]
    assert body["next_page_token"] == ""

    # The example client's pager over gRPC, and a token of another customer refused.
    c1 = shop.customers[0]
    assert [p.purchase_id for p in shop.client.list_purchases(c1, page_size=1)] == [
        made["grpc_keyed"]["purchase_id"], made["grpc_unkeyed"]["purchase_id"]]
    status, body = shop.rest("GET", "/v1/purchases", query={"customer_id": customer, "page_size": 1})
    status, body = shop.rest("GET", "/v1/purchases", query={
        "customer_id": c1, "page_size": 1, "page_token": body["next_page_token"]})
    assert status == 400 and "page_token" in body["message"], body


def test_concurrent_retries_of_one_key_publish_once(shop, purchases):
    key = f"e2e-race-{uuid.uuid4()}"
    body = {"customer_id": shop.customers[4], "product_id": 102, "quantity": 7}
    results: list = []

    def post():
        results.append(shop.rest("POST", "/v1/purchases", body, headers={"Idempotency-Key": key}))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=HTTP_TIMEOUT_S + 5)
    assert len(results) == 6, results
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 5 + [201], results
    ids = {reply["purchase"]["purchase_id"] for _, reply in results}
    assert len(ids) == 1, ids
    purchase_id = ids.pop()
    assert shop.topic.count(purchase_id) == 1
    wait_in_flight_sql(shop, [purchase_id])
    assert shop.flight(
        "SELECT count(*) FROM stage.purchases WHERE purchase_id = ?", (purchase_id,)) == [(1,)]


# Once Flight SQL returns a purchase, the API (same server, same catalogue) must too.
API_AFTER_FLIGHT_S = 10.0


def test_a_purchase_made_after_earlier_reads_is_found_by_get_and_list(shop, purchases):
    """GetPurchase / ListPurchases must see files that the ingest writes after the API has
    already read stage.purchases, not only those there at its first read."""
    # The API has read stage.purchases before (the earlier purchases are found).
    first = purchases.purchases["grpc_keyed"]
    assert _get_purchase_when_landed(shop, first["purchase_id"])["purchase"]["purchase_id"] == first["purchase_id"]
    customer = shop.customers[1]
    status, body = shop.rest("POST", P, {"customer_id": customer, "product_id": 101, "quantity": 4},
                             headers={"Idempotency-Key": f"e2e-later-{uuid.uuid4()}"})
    assert status == 201, body
    later = body["purchase"]
    wait_in_flight_sql(shop, [later["purchase_id"]])
    got = _get_purchase_when_landed(shop, later["purchase_id"], within=API_AFTER_FLIGHT_S)
    assert normalised(got["purchase"]) == normalised(later)
    grpc_got = shop.client.get_purchase(later["purchase_id"])
    assert grpc_got.purchase_id == later["purchase_id"]
    status, body = shop.rest("GET", P, query={"customer_id": customer, "page_size": 100})
    assert status == 200, body
    assert later["purchase_id"] in [p["purchase_id"] for p in body["purchases"]], body


def test_rest_answers_are_what_openapi_json_describes(shop, purchases):
    status, doc = shop.rest("GET", "/openapi.json")
    assert status == 200
    made = purchases.purchases
    seller = shop.sellers[0]
    calls = [
        ("GET", "/v1/products", "/v1/products", {"page_size": 2}),
        ("GET", "/v1/products/101", "/v1/products/{product_id}", None),
        ("GET", "/v1/sellers", "/v1/sellers", {"page_size": 2}),
        ("GET", f"/v1/sellers/{seller}", "/v1/sellers/{seller_id}", None),
        ("GET", f"/v1/purchases/{made['grpc_keyed']['purchase_id']}", "/v1/purchases/{purchase_id}", None),
        ("GET", "/v1/purchases", "/v1/purchases", {"customer_id": purchases.list_customer, "page_size": 2}),
        ("GET", "/v1/sellers/0", "/v1/sellers/{seller_id}", None),
        ("GET", "/v1/products/999999", "/v1/products/{product_id}", None),
    ]
    for method, path, route, query in calls:
        status, body = shop.rest(method, path, query=query)
        assert_documented(doc, method, route, status, body)
    status, body = shop.rest("POST", "/v1/sellers", {"name": "Documented GmbH", "country": "AT"})
    assert_documented(doc, "POST", "/v1/sellers", status, body)
    status, body = shop.rest("PATCH", f"/v1/sellers/{body['seller']['seller_id']}", {"city": "Graz"})
    assert_documented(doc, "PATCH", "/v1/sellers/{seller_id}", status, body)
    body = {"customer_id": shop.customers[1], "product_id": 105, "quantity": 1}
    key = {"Idempotency-Key": f"e2e-doc-{uuid.uuid4()}"}
    for expected in (201, 200):
        status, answer = shop.rest("POST", "/v1/purchases", body, headers=key)
        assert status == expected, answer
        assert_documented(doc, "POST", "/v1/purchases", status, answer)
    status, answer = shop.rest("POST", "/v1/purchases", {**body, "quantity": 2}, headers=key)
    assert status == 409, answer
    assert_documented(doc, "POST", "/v1/purchases", status, answer)


# ------------------------------------------------------------------------------------ validation
@dataclass
class Ctx:
    customer: int
    inactive: int
    product: int
    seller: int
    used_key: str

    @property
    def purchase(self) -> dict:
        return {"customer_id": self.customer, "product_id": self.product, "quantity": 1}


def _now_plus(minutes: int) -> str:
    return rfc3339(dt.datetime.now(UTC) + dt.timedelta(minutes=minutes))


# (id, method, path, body (a function of Ctx, or bytes), headers, status, code, what the message names)
P, S = "/v1/purchases", "/v1/sellers"
CASES = [
    ("customer_id-zero", "POST", P, lambda c: {**c.purchase, "customer_id": 0}, {}, 400, "INVALID_ARGUMENT", "customer_id"),
    ("customer_id-negative", "POST", P, lambda c: {**c.purchase, "customer_id": -3}, {}, 400, "INVALID_ARGUMENT", "customer_id"),
    ("customer_id-missing", "POST", P, lambda c: {"product_id": c.product, "quantity": 1}, {}, 400, "INVALID_ARGUMENT", "customer_id"),
    ("customer_id-not-a-number", "POST", P, lambda c: {**c.purchase, "customer_id": "abc"}, {}, 400, "INVALID_ARGUMENT", "customer_id"),
    ("product_id-zero", "POST", P, lambda c: {**c.purchase, "product_id": 0}, {}, 400, "INVALID_ARGUMENT", "product_id"),
    ("quantity-zero", "POST", P, lambda c: {**c.purchase, "quantity": 0}, {}, 400, "INVALID_ARGUMENT", "quantity"),
    ("quantity-missing", "POST", P, lambda c: {"customer_id": c.customer, "product_id": c.product}, {}, 400, "INVALID_ARGUMENT", "quantity"),
    ("quantity-too-many", "POST", P, lambda c: {**c.purchase, "quantity": 1_000_001}, {}, 400, "INVALID_ARGUMENT", "quantity"),
    ("quantity-fraction", "POST", P, lambda c: {**c.purchase, "quantity": 1.5}, {}, 400, "INVALID_ARGUMENT", "quantity"),
    ("unit_price-negative", "POST", P, lambda c: {**c.purchase, "unit_price": "-1"}, {}, 400, "INVALID_ARGUMENT", "unit_price"),
    ("unit_price-3-decimals", "POST", P, lambda c: {**c.purchase, "unit_price": "1.999"}, {}, 400, "INVALID_ARGUMENT", "unit_price"),
    ("unit_price-word", "POST", P, lambda c: {**c.purchase, "unit_price": "ten"}, {}, 400, "INVALID_ARGUMENT", "unit_price"),
    ("unit_price-11-digits", "POST", P, lambda c: {**c.purchase, "unit_price": "12345678901"}, {}, 400, "INVALID_ARGUMENT", "unit_price"),
    ("currency-word", "POST", P, lambda c: {**c.purchase, "currency": "euro"}, {}, 400, "INVALID_ARGUMENT", "currency"),
    ("currency-lower-case", "POST", P, lambda c: {**c.purchase, "currency": "eur"}, {}, 400, "INVALID_ARGUMENT", "currency"),
    ("purchased_at-1999", "POST", P, lambda c: {**c.purchase, "purchased_at": "1999-12-31T23:59:59Z"}, {}, 400, "INVALID_ARGUMENT", "purchased_at"),
    ("purchased_at-future", "POST", P, lambda c: {**c.purchase, "purchased_at": _now_plus(10)}, {}, 400, "INVALID_ARGUMENT", "purchased_at"),
    ("purchased_at-not-a-time", "POST", P, lambda c: {**c.purchase, "purchased_at": "yesterday"}, {}, 400, "INVALID_ARGUMENT", "purchased_at"),
    ("extras-too-big", "POST", P, lambda c: {**c.purchase, "extras": {"blob": "x" * 17_000}}, {}, 400, "INVALID_ARGUMENT", "extras"),
    ("extras-not-an-object", "POST", P, lambda c: {**c.purchase, "extras": "coupon"}, {}, 400, "INVALID_ARGUMENT", "extras"),
    ("idempotency_key-too-long", "POST", P, lambda c: {**c.purchase, "idempotency_key": "k" * 201}, {}, 400, "INVALID_ARGUMENT", "idempotency_key"),
    ("idempotency_key-tab", "POST", P, lambda c: {**c.purchase, "idempotency_key": "tab\there"}, {}, 400, "INVALID_ARGUMENT", "idempotency_key"),
    ("idempotency-key-header-differs", "POST", P, lambda c: {**c.purchase, "idempotency_key": "one"}, {"Idempotency-Key": "two"}, 400, "INVALID_ARGUMENT", "idempotency_key"),
    ("purchase-unknown-field", "POST", P, lambda c: {**c.purchase, "coupon": "WINTER10"}, {}, 400, "INVALID_ARGUMENT", "coupon"),
    ("purchase-body-not-json", "POST", P, b"{customer_id: 1", {"Content-Type": "application/json"}, 400, "INVALID_ARGUMENT", "JSON"),
    ("purchase-body-an-array", "POST", P, b"[1, 2]", {"Content-Type": "application/json"}, 400, "INVALID_ARGUMENT", "JSON object"),
    ("purchase-body-not-json-type", "POST", P, b"customer_id=1", {"Content-Type": "application/x-www-form-urlencoded"}, 415, "INVALID_ARGUMENT", "Content-Type"),
    ("product-unknown", "POST", P, lambda c: {**c.purchase, "product_id": 999_999}, {}, 404, "NOT_FOUND", "product_id"),
    ("customer-unknown", "POST", P, lambda c: {**c.purchase, "customer_id": 999_999}, {}, 404, "NOT_FOUND", "customer_id"),
    ("customer-inactive", "POST", P, lambda c: {**c.purchase, "customer_id": c.inactive}, {}, 412, "FAILED_PRECONDITION", "customer_id"),
    ("key-reused-other-fields", "POST", P, lambda c: {**c.purchase, "quantity": 2, "idempotency_key": c.used_key}, {}, 409, "ALREADY_EXISTS", "idempotency_key"),
    ("get-purchase-not-a-uuid", "GET", P + "/not-a-uuid", None, {}, 400, "INVALID_ARGUMENT", "purchase_id"),
    ("get-purchase-unknown", "GET", P + "/0b7e5d2c-1a2b-4c3d-8e9f-001122334455", None, {}, 404, "NOT_FOUND", "0b7e5d2c-1a2b-4c3d-8e9f-001122334455"),
    ("list-purchases-customer_id-missing", "GET", P + "?page_size=5", None, {}, 400, "INVALID_ARGUMENT", "customer_id"),
    ("list-purchases-page_size", "GET", P + "?customer_id=1&page_size=1001", None, {}, 400, "INVALID_ARGUMENT", "page_size"),
    ("list-purchases-from_time-not-a-time", "GET", P + "?customer_id=1&from_time=monday", None, {}, 400, "INVALID_ARGUMENT", "from_time"),
    ("list-purchases-range-reversed", "GET", P + "?customer_id=1&from_time=2026-11-02T00:00:00Z&to_time=2026-11-01T00:00:00Z", None, {}, 400, "INVALID_ARGUMENT", "from_time"),
    ("list-purchases-page_token", "GET", P + "?customer_id=1&page_token=bm9wZQ", None, {}, 400, "INVALID_ARGUMENT", "page_token"),
    ("list-purchases-unknown-parameter", "GET", P + "?customer_id=1&colour=red", None, {}, 400, "INVALID_ARGUMENT", "colour"),
    ("list-purchases-repeated-parameter", "GET", P + "?customer_id=1&customer_id=2", None, {}, 400, "INVALID_ARGUMENT", "customer_id"),
    ("seller-name-empty", "POST", S, lambda c: {"name": "", "country": "DE"}, {}, 400, "INVALID_ARGUMENT", "name"),
    ("seller-name-blank", "POST", S, lambda c: {"name": "   ", "country": "DE"}, {}, 400, "INVALID_ARGUMENT", "name"),
    ("seller-name-missing", "POST", S, lambda c: {"country": "DE"}, {}, 400, "INVALID_ARGUMENT", "name"),
    ("seller-name-201-chars", "POST", S, lambda c: {"name": "x" * 201, "country": "DE"}, {}, 400, "INVALID_ARGUMENT", "name"),
    ("seller-email-no-at", "POST", S, lambda c: {"name": "A", "country": "DE", "email": "no-at-sign"}, {}, 400, "INVALID_ARGUMENT", "email"),
    ("seller-email-two-ats", "POST", S, lambda c: {"name": "A", "country": "DE", "email": "a@b@c"}, {}, 400, "INVALID_ARGUMENT", "email"),
    ("seller-email-space", "POST", S, lambda c: {"name": "A", "country": "DE", "email": "a b@c.de"}, {}, 400, "INVALID_ARGUMENT", "email"),
    ("seller-city-201-chars", "POST", S, lambda c: {"name": "A", "country": "DE", "city": "y" * 201}, {}, 400, "INVALID_ARGUMENT", "city"),
    ("seller-country-lower-case", "POST", S, lambda c: {"name": "A", "country": "de"}, {}, 400, "INVALID_ARGUMENT", "country"),
    ("seller-country-alpha-3", "POST", S, lambda c: {"name": "A", "country": "DEU"}, {}, 400, "INVALID_ARGUMENT", "country"),
    ("seller-country-missing", "POST", S, lambda c: {"name": "A"}, {}, 400, "INVALID_ARGUMENT", "country"),
    ("seller-rating-above-5", "POST", S, lambda c: {"name": "A", "country": "DE", "rating": "5.01"}, {}, 400, "INVALID_ARGUMENT", "rating"),
    ("seller-rating-3-decimals", "POST", S, lambda c: {"name": "A", "country": "DE", "rating": "4.555"}, {}, 400, "INVALID_ARGUMENT", "rating"),
    ("seller-rating-negative", "POST", S, lambda c: {"name": "A", "country": "DE", "rating": "-1"}, {}, 400, "INVALID_ARGUMENT", "rating"),
    ("seller-commission_rate-above-1", "POST", S, lambda c: {"name": "A", "country": "DE", "commission_rate": "1.5"}, {}, 400, "INVALID_ARGUMENT", "commission_rate"),
    ("seller-commission_rate-5-decimals", "POST", S, lambda c: {"name": "A", "country": "DE", "commission_rate": "0.12345"}, {}, 400, "INVALID_ARGUMENT", "commission_rate"),
    ("seller-is_verified-not-a-bool", "POST", S, lambda c: {"name": "A", "country": "DE", "is_verified": "yes"}, {}, 400, "INVALID_ARGUMENT", "is_verified"),
    ("seller-unknown-field", "POST", S, lambda c: {"name": "A", "country": "DE", "phone": "+49 30 1234"}, {}, 400, "INVALID_ARGUMENT", "phone"),
    ("seller-seller_id-in-create", "POST", S, lambda c: {"name": "A", "country": "DE", "seller_id": 5}, {}, 400, "INVALID_ARGUMENT", "seller_id"),
    ("update-nothing", "PATCH", "/v1/sellers/{seller}", lambda c: {}, {}, 400, "INVALID_ARGUMENT", "at least one"),
    ("update-country", "PATCH", "/v1/sellers/{seller}", lambda c: {"country": "xx"}, {}, 400, "INVALID_ARGUMENT", "country"),
    ("update-name-blank", "PATCH", "/v1/sellers/{seller}", lambda c: {"name": " ", "city": "Ulm"}, {}, 400, "INVALID_ARGUMENT", "name"),
    ("update-clear-commission_rate", "PATCH", "/v1/sellers/{seller}", lambda c: {"commission_rate": ""}, {}, 400, "INVALID_ARGUMENT", "commission_rate"),
    ("update-seller_id-differs", "PATCH", "/v1/sellers/{seller}", lambda c: {"seller_id": c.seller + 1, "city": "Ulm"}, {}, 400, "INVALID_ARGUMENT", "seller_id"),
    ("update-path-not-a-number", "PATCH", "/v1/sellers/abc", lambda c: {"city": "Ulm"}, {}, 400, "INVALID_ARGUMENT", "seller_id"),
    ("update-path-zero", "PATCH", "/v1/sellers/0", lambda c: {"city": "Ulm"}, {}, 400, "INVALID_ARGUMENT", "seller_id"),
    ("update-unknown-seller", "PATCH", "/v1/sellers/999999", lambda c: {"city": "Ulm"}, {}, 404, "NOT_FOUND", "seller_id"),
    ("get-seller-zero", "GET", "/v1/sellers/0", None, {}, 400, "INVALID_ARGUMENT", "seller_id"),
    ("get-seller-unknown", "GET", "/v1/sellers/999999", None, {}, 404, "NOT_FOUND", "seller_id"),
    ("list-sellers-country", "GET", "/v1/sellers?country=de", None, {}, 400, "INVALID_ARGUMENT", "country"),
    ("list-sellers-page_size", "GET", "/v1/sellers?page_size=-1", None, {}, 400, "INVALID_ARGUMENT", "page_size"),
    ("list-sellers-page_token", "GET", "/v1/sellers?page_token=garbage", None, {}, 400, "INVALID_ARGUMENT", "page_token"),
    ("get-product-zero", "GET", "/v1/products/0", None, {}, 400, "INVALID_ARGUMENT", "product_id"),
    ("get-product-unknown", "GET", "/v1/products/999999", None, {}, 404, "NOT_FOUND", "product_id"),
    ("list-products-min_price", "GET", "/v1/products?min_price=cheap", None, {}, 400, "INVALID_ARGUMENT", "min_price"),
    ("list-products-min-above-max", "GET", "/v1/products?min_price=50&max_price=10", None, {}, 400, "INVALID_ARGUMENT", "min_price"),
    ("list-products-seller_id", "GET", "/v1/products?seller_id=-2", None, {}, 400, "INVALID_ARGUMENT", "seller_id"),
    ("unknown-route", "GET", "/v1/customers", None, {}, 404, "NOT_FOUND", "route"),
    ("method-not-allowed", "DELETE", "/v1/sellers/{seller}", None, {}, 405, "UNIMPLEMENTED", "method"),
]


@pytest.fixture(scope="module")
def ctx(shop, purchases) -> Ctx:
    customer = shop.customers[5]
    key = f"e2e-used-{uuid.uuid4()}"
    before = _written_state(shop)
    status, body = shop.rest(
        "POST", P, {"customer_id": customer, "product_id": 101, "quantity": 1, "idempotency_key": key})
    assert status == 201, body
    # The state that the refused requests must leave alone does see a purchase.
    after = _written_state(shop)
    assert after["topic messages"] == before["topic messages"] + 1, (before, after)
    assert after["purchase_requests"][0][0] == before["purchase_requests"][0][0] + 1
    return Ctx(customer=customer, inactive=shop.inactive_customer, product=101,
               seller=shop.sellers[0], used_key=key)


def _written_state(shop) -> dict:
    """What a refused request must leave as it was: the topic, sellers and recorded keys."""
    return {
        "topic messages": shop.topic.size(),
        "sellers": shop.pg("SELECT * FROM sellers ORDER BY seller_id"),
        "purchase_requests": shop.pg("SELECT count(*) FROM purchase_requests"),
    }


@pytest.mark.parametrize(
    "method, path, body, headers, status, code, named", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_refused_requests_name_the_problem_and_write_nothing(shop, ctx, method, path, body, headers, status, code, named):
    before = _written_state(shop)
    path = path.format(seller=ctx.seller)
    if isinstance(body, bytes):
        got_status, got = shop.rest(method, path, raw=body, headers=headers)
    else:
        got_status, got = shop.rest(method, path, None if body is None else body(ctx), headers=headers)
    assert got_status == status, got
    assert isinstance(got, dict) and set(got) == {"code", "message"}, got
    assert got["code"] == code, got
    assert named in got["message"], got
    assert _written_state(shop) == before


def test_a_refused_request_does_not_use_up_its_key(shop, ctx):
    key = f"e2e-refused-{uuid.uuid4()}"
    status, body = shop.rest("POST", P, {**ctx.purchase, "product_id": 999_999}, headers={"Idempotency-Key": key})
    assert status == 404, body
    status, body = shop.rest("POST", P, ctx.purchase, headers={"Idempotency-Key": key})
    assert status == 201 and body["replayed"] is False, body
    assert shop.topic.count(body["purchase"]["purchase_id"]) == 1


def test_values_on_the_limits_are_accepted(shop, ctx):
    cases = {
        "most": {**ctx.purchase, "quantity": 1_000_000, "unit_price": "9999999999.99",
                 "currency": "JPY", "purchased_at": "2000-01-01T00:00:00Z"},
        "least": {**ctx.purchase, "quantity": 1, "unit_price": "0", "purchased_at": _now_plus(4),
                  "extras": {"note": "x" * 16_000}},
    }
    made = {}
    for name, body in cases.items():
        status, answer = shop.rest("POST", P, body, headers={"Idempotency-Key": f"e2e-limit-{name}-{uuid.uuid4()}"})
        assert status == 201, (name, answer)
        made[name] = answer["purchase"]
    assert (made["most"]["quantity"], made["most"]["unit_price"]) == (1_000_000, "9999999999.99")
    assert made["least"]["unit_price"] == "0.00"
    ids = [p["purchase_id"] for p in made.values()]
    wait_in_flight_sql(shop, ids)
    got = dict(shop.flight(
        "SELECT purchase_id, unit_price FROM stage.purchases WHERE purchase_id IN "
        f"('{ids[0]}', '{ids[1]}')"))
    assert got == {ids[0]: Decimal("9999999999.99"), ids[1]: Decimal("0.00")}

    # Sellers: lengths count characters, not bytes.
    status, body = shop.rest("POST", S, {
        "name": "ü" * 200, "city": "ß" * 200, "country": "CH", "rating": "5", "commission_rate": "1",
    })
    assert status == 201, body
    seller = body["seller"]
    assert (seller["name"], seller["rating"], seller["commission_rate"]) == ("ü" * 200, "5.00", "1.0000")
    status, body = shop.rest("PATCH", f"/v1/sellers/{seller['seller_id']}", {"rating": "0", "commission_rate": "0"})
    assert status == 200 and (body["seller"]["rating"], body["seller"]["commission_rate"]) == ("0.00", "0.0000"), body


# ------------------------------------------------------------------------------------ the example
def test_the_example_cli_answers_like_rest(shop, purchases):
    """`python shop_client.py GetSeller '{...}'` prints what GET /v1/sellers/{id} returns."""
    seller = shop.sellers[1]
    done = subprocess.run(
        [sys.executable, str(EXAMPLE / "shop_client.py"), "--target", shop.server.addr,
         "--stubs", str(shop.stubs), "GetSeller", json.dumps({"seller_id": seller})],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    status, body = shop.rest("GET", f"/v1/sellers/{seller}")
    assert status == 200, body
    assert normalised(json.loads(done.stdout)["seller"]) == normalised(body["seller"])

    failed = subprocess.run(
        [sys.executable, str(EXAMPLE / "shop_client.py"), "--target", shop.server.addr,
         "--stubs", str(shop.stubs), "shop.v1.PurchaseService/CreatePurchase",
         json.dumps({"customer_id": shop.customers[0], "product_id": 101, "quantity": 0})],
        capture_output=True, text=True, timeout=60,
    )
    assert failed.returncode == 1, failed.stdout
    error = json.loads(failed.stderr)
    assert error["code"] == "INVALID_ARGUMENT" and error["message"].startswith("quantity"), error


def test_without_postgres_and_kafka_the_calls_that_need_them_answer_412(shop, tmp_path):
    server = start_server("serve-no-backends", ["serve", "--catalog-refresh-ms", "200"], tmp_path, shop.lake, http=True)
    try:
        status, body = rest(server.http_url, "GET", "/v1/products/101")
        assert status == 200 and body["product"]["name"] == "Espresso cup", body
        for method, path, request, named in [
            ("POST", P, {"customer_id": shop.customers[0], "product_id": 101, "quantity": 1}, "Kafka"),
            ("POST", S, {"name": "A", "country": "DE"}, "PostgreSQL"),
            ("GET", "/v1/sellers/1", None, "PostgreSQL"),
        ]:
            status, body = rest(server.http_url, method, path, request)
            assert status == 412 and body["code"] == "FAILED_PRECONDITION", (path, status, body)
            assert named in body["message"], body
        server.assert_alive()
    finally:
        server.stop()
