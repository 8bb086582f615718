#!/usr/bin/env python3
"""Benchmark: `shop-analytics ingest kafka` against a plain rdkafka consumer that only counts the
messages (the limit), on the same topic of the same broker, in the same run.

    bash scripts/services.sh up
    cargo build --release && cargo build --release -p shop-ingest --example kafka_count
    python3 bench/kafka_ingest.py [--events 1000000] [--brokers 127.0.0.1:59092]

Both consumers join their own group and read the whole topic from the beginning. The rate is
measured from the first message to the last (group-join time excluded): the counter times it
itself; for the worker, the script watches the partitions' transaction versions in the Delta log
of stage.purchases (every 100 ms) and takes the span from the first commit seen to the one that
covers every message, counting only the messages written in that span. The worker flushes every 50 000 events per
partition (its default) or 2 s. Prints a Markdown table for docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
import sys
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "e2e"))
from shoplake import delta_transactions  # noqa: E402

TARGET = Path(os.environ.get("CARGO_TARGET_DIR", Path.home() / ".cache/shop-analytics/target"))
SHOP = Path(os.environ.get("SHOP_BIN", TARGET / "release/shop-analytics"))
COUNT = Path(os.environ.get("SHOP_COUNT_BIN", TARGET / "release/examples/kafka_count"))


def written(lake: Path, topic: str) -> int:
    """Messages committed to stage.purchases: the partitions' transaction versions + 1."""
    table = lake / "stage/purchases"
    if not (table / "_delta_log").is_dir():
        return 0
    try:
        txns = delta_transactions(table)
    except (json.JSONDecodeError, OSError):
        return 0  # a commit being written right now
    return sum(v + 1 for app, v in txns.items() if f"/{topic}/" in app)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--brokers", default=os.environ.get("SHOP_TEST_KAFKA_BROKERS", "127.0.0.1:59092"))
    args = ap.parse_args()
    for binary in (SHOP, COUNT):
        if not binary.is_file():
            raise SystemExit(f"missing {binary}: see the header of {__file__}")
    topic = f"bench_{uuid.uuid4().hex[:8]}"
    subprocess.run(
        [SHOP, "generate", "kafka", "--kafka-brokers", args.brokers, "--topic", topic,
         "--count", str(args.events), "--log-filter", "warn"],
        check=True,
    )

    raw = json.loads(
        subprocess.run(
            [COUNT, args.brokers, topic, f"{topic}-count", str(args.events)],
            check=True, capture_output=True, text=True,
        ).stdout
    )

    with tempfile.TemporaryDirectory() as tmp:
        lake = Path(tmp) / "lake"
        worker = subprocess.Popen(
            [SHOP, "ingest", "kafka", "--kafka-brokers", args.brokers, "--topic", topic,
             "--group", f"{topic}-ingest", "--session-timeout-ms", "6000", "--lake", str(lake),
             "--log-filter", "warn"],
        )
        first = None
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            n = written(lake, topic)
            now = time.monotonic()
            if n and first is None:
                first = (now, n)
            if n >= args.events:
                break
            time.sleep(0.1)
        worker.terminate()
        worker.wait(timeout=60)
        assert first is not None and n >= args.events, f"the worker wrote {n} of {args.events}"
        ingest_rate = (n - first[1]) / (now - first[0])
        files = sum(1 for _ in (lake / "stage/purchases").rglob("*.parquet"))
        size = sum(p.stat().st_size for p in (lake / "stage/purchases").rglob("*.parquet"))

    print(f"{args.events} purchase events ({raw['bytes'] / args.events:.0f} bytes each), 4 partitions, "
          f"tansu broker on loopback, {os.cpu_count()} cores:\n")
    print("| consumer | events/s | vs the counting consumer |")
    print("| --- | ---: | ---: |")
    print(f"| plain rdkafka consumer, counts only (the limit) | {raw['per_sec']:,.0f} | 1.00× |")
    print(f"| `shop-analytics ingest kafka` (decode, validate, Parquet, local lake) | "
          f"{ingest_rate:,.0f} | {ingest_rate / raw['per_sec']:.2f}× |")
    print(f"\nThe worker wrote {files} Parquet files, {size / 1e6:.1f} MB.")


if __name__ == "__main__":
    main()
