"""Kafka → lake through the user's eyes: an event produced now is returned by a Flight SQL query
within the flush interval plus a few seconds, and bad events are queryable with their reasons.

Needs the broker of `scripts/services.sh up` (SHOP_TEST_KAFKA_BROKERS).
"""

from __future__ import annotations

import subprocess
import time
import uuid

import adbc_driver_flightsql.dbapi as flightsql
import pytest

from conftest import RPC_TIMEOUTS, _clean_env, shop_bin, start_server
from e2e_util import rows, service_env

FLUSH_INTERVAL_S = 1.0
# What "a few seconds" may add: group join (tansu: ~half the 6 s session timeout) is excluded
# by waiting for the first event; this is the query and file-listing slack.
SLACK_S = 4.0


def shop(*args: str) -> str:
    out = subprocess.run(
        [str(shop_bin()), *args], env=_clean_env({}), capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, f"shop-analytics {' '.join(args)} failed:\n{out.stderr}"
    return out.stderr


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    brokers = service_env("SHOP_TEST_KAFKA_BROKERS", "Kafka")
    topic = f"e2e_{uuid.uuid4().hex[:10]}"
    workdir = tmp_path_factory.mktemp("kafka-e2e")
    lake = workdir / "lake"
    lake.mkdir()
    # Create the topic before the worker subscribes.
    shop("generate", "kafka", "--kafka-brokers", brokers, "--topic", topic, "--count", "0")
    log = open(workdir / "worker.log", "wb")
    worker = subprocess.Popen(
        [
            str(shop_bin()), "ingest", "kafka", "--kafka-brokers", brokers, "--topic", topic,
            "--group", f"{topic}-g", "--flush-interval-ms", str(int(FLUSH_INTERVAL_S * 1000)),
            "--session-timeout-ms", "6000", "--lake", str(lake),
        ],
        stdout=log, stderr=subprocess.STDOUT, env=_clean_env({}),
    )
    server = start_server("serve-kafka", ["serve", "--catalog-refresh-ms", "200"], workdir, lake)
    yield brokers, topic, server, worker
    server.stop()
    worker.terminate()
    worker.wait(timeout=30)
    log.close()


def count(server, table: str) -> int:
    with flightsql.connect(server.uri, db_kwargs=RPC_TIMEOUTS) as conn:
        try:
            return rows(conn, f"SELECT count(*) FROM {table}")[0][0]
        except Exception as e:  # the table appears with its first file
            if "not found" in str(e).lower():
                return 0
            raise


def wait_for(server, table: str, expected: int, within: float) -> float:
    start = time.monotonic()
    while True:
        n = count(server, table)
        if n >= expected:
            return time.monotonic() - start
        assert time.monotonic() - start < within, f"{table} has {n} of {expected} rows after {within}s"
        time.sleep(0.1)


def test_an_event_is_queryable_within_the_flush_interval_plus_seconds(pipeline):
    brokers, topic, server, worker = pipeline
    # The first event also waits for the worker to join the group.
    shop("generate", "kafka", "--kafka-brokers", brokers, "--topic", topic, "--count", "1",
         "--seed", "1")
    wait_for(server, "stage.purchases", 1, within=60)
    latencies = []
    for i in range(3):
        before = count(server, "stage.purchases")
        shop("generate", "kafka", "--kafka-brokers", brokers, "--topic", topic, "--count", "1",
             "--seed", str(100 + i))
        latencies.append(wait_for(server, "stage.purchases", before + 1, within=30))
    assert worker.poll() is None
    print(f"produce → visible in Flight SQL: {', '.join(f'{x:.2f}s' for x in latencies)}")
    assert max(latencies) <= FLUSH_INTERVAL_S + SLACK_S, latencies


def test_dead_letters_are_queryable_with_their_reasons(pipeline):
    brokers, topic, server, _ = pipeline
    shop("generate", "kafka", "--kafka-brokers", brokers, "--topic", topic, "--count", "40",
         "--poison-rate", "1.0", "--seed", "7")
    wait_for(server, "stage.purchases_rejected", 40, within=30)
    with flightsql.connect(server.uri, db_kwargs=RPC_TIMEOUTS) as conn:
        reasons = rows(
            conn,
            "SELECT reason, \"offset\", payload FROM stage.purchases_rejected ORDER BY \"partition\", \"offset\"",
        )
    assert len(reasons) == 40
    text = " ".join(r[0] for r in reasons)
    for expected in ("not a JSON purchase event", "quantity", "currency", "no payload"):
        assert expected in text, text
