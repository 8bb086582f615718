"""The catalogue flow: product files into stage.products, rejected rows queryable with reasons."""

from __future__ import annotations

import subprocess
from decimal import Decimal

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from conftest import RPC_TIMEOUTS, _clean_env, shop_bin, start_server
from e2e_util import rows


def shop(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(shop_bin()), *args], env=_clean_env({}), capture_output=True, text=True, timeout=120
    )


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("products-e2e")
    lake = workdir / "lake"
    csv = workdir / "catalogue.csv"
    csv.write_text(
        "product_id,seller_id,name,category,price\n"
        "1,10,Mug,kitchen,12.50\n"
        "2,10,Tea,food,-3\n"
        "3,11,Lamp,home,99.99\n"
    )
    jsonl = workdir / "more.jsonl"
    jsonl.write_text('{"product_id": 4, "seller_id": 11, "name": "Desk", "category": "office", "price": "250"}\n')

    refused = shop("ingest", "products", "--lake", str(lake), str(csv), str(jsonl))
    assert refused.returncode == 1
    assert "catalogue.csv:3: price must be ≥ 0, got -3" in refused.stderr, refused.stderr
    assert not (lake / "stage").exists(), "a refused load writes nothing"

    done = shop("ingest", "products", "--lake", str(lake), "--max-rejected", "1", str(csv), str(jsonl))
    assert done.returncode == 0, done.stderr
    server = start_server("serve-products", ["serve", "--refresh-schedule", "off"], workdir, lake)
    conn = flightsql.connect(server.uri, db_kwargs=RPC_TIMEOUTS)
    yield conn
    conn.close()
    server.stop()


def test_valid_rows_are_served(loaded):
    got = rows(loaded, "SELECT product_id, seller_id, name, category, price FROM stage.products ORDER BY product_id")
    assert got == [
        (1, 10, "Mug", "kitchen", Decimal("12.50")),
        (3, 11, "Lamp", "home", Decimal("99.99")),
        (4, 11, "Desk", "office", Decimal("250.00")),
    ]


def test_rejected_rows_are_served_with_their_reason(loaded):
    got = rows(loaded, 'SELECT file, "row", reason, record FROM stage.products_rejected')
    assert len(got) == 1
    file, row, reason, record = got[0]
    assert file.endswith("catalogue.csv") and row == 3
    assert reason == "price must be ≥ 0, got -3"
    assert '"name":"Tea"' in record
