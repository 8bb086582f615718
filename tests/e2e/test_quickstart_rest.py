"""Command #1 serves the shop API's reads over REST too: the README's
`curl localhost:8000/v1/products/42` answers from the demo catalogue, and the same product is
what Flight SQL returns."""

from __future__ import annotations

import json
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql

from conftest import RPC_TIMEOUTS


def _get(url: str) -> tuple[int, dict]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=30) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_readme_product_lookup_answers_from_the_demo_catalogue(server):
    status, body = _get(f"{server.http_url}/v1/products/42")
    assert status == 200, body
    product = body["product"]
    with flightsql.connect(server.uri, db_kwargs=RPC_TIMEOUTS) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT seller_id, name, category, CAST(price AS VARCHAR) FROM products "
            "WHERE product_id = 42"
        )
        seller_id, name, category, price = cur.fetchone()
    assert product["product_id"] == "42"
    assert (int(product["seller_id"]), product["name"], product["category"]) == (
        seller_id,
        name,
        category,
    )
    assert product["price"] == price


def test_writes_without_backends_say_what_is_missing(server):
    request = urllib.request.Request(
        f"{server.http_url}/v1/sellers",
        data=json.dumps({"name": "n", "country": "DE"}).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        opener.open(request, timeout=30)
        raise AssertionError("creating a seller without PostgreSQL succeeded")
    except urllib.error.HTTPError as e:
        body = json.loads(e.read())
        assert e.code == 412 and body["code"] == "FAILED_PRECONDITION", body
        assert "--pg-url" in body["message"], body
