#!/usr/bin/env bash
# README command #2: install what the tests need, start the real services on loopback, run every
# test (Rust unit + integration + service smoke tests, Python end-to-end tests), stop the services.
#
#   bash scripts/test.sh
#
# Environment:
#   CARGO_TARGET_DIR   build directory (default: ~/.cache/shop-analytics/target, outside the clone,
#                      so fresh clones reuse earlier builds)
#   SHOP_SKIP_SERVICES=1  run only what needs no external service (local development)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shop-analytics/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
VENV="${SHOP_VENV:-$ROOT/.venv}"
started=$(date +%s)

step() { printf '\n==> %s (%ss)\n' "$*" "$(($(date +%s) - started))"; }

step "system packages"
missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
command -v make >/dev/null || missing+=(make)
command -v cc >/dev/null || missing+=(gcc)
if ((${#missing[@]})); then
  echo "installing: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

step "python environment ($VENV)"
if [[ ! -x "$VENV/bin/python" ]]; then
  python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install -q --disable-pip-version-check \
  -r tests/e2e/requirements.txt -r tests/compose/requirements.txt
# DuckDB with its delta extension, an outside reader of the lake, needs a DuckDB of its own.
DUCKDB_DELTA_VENV="${SHOP_DUCKDB_DELTA_VENV:-$ROOT/.venv-duckdb-delta}"
if [[ ! -x "$DUCKDB_DELTA_VENV/bin/python" ]]; then
  python3 -m venv "$DUCKDB_DELTA_VENV"
fi
"$DUCKDB_DELTA_VENV/bin/pip" install -q --disable-pip-version-check \
  -r tests/e2e/requirements-duckdb-delta.txt
export SHOP_DUCKDB_DELTA_VENV="$DUCKDB_DELTA_VENV"

services_up=0
cleanup() {
  if ((services_up)); then
    step "stopping services"
    bash scripts/services.sh down || true
  fi
}
trap cleanup EXIT

if [[ "${SHOP_SKIP_SERVICES:-0}" != 1 ]]; then
  step "starting PostgreSQL, Kafka (tansu), S3 (s3s-fs) and ClickHouse"
  services_up=1
  bash scripts/services.sh up
  # shellcheck disable=SC1090
  source <(bash scripts/services.sh env)
  # Tests that need a service fail loudly instead of skipping when it is missing.
  export SHOP_REQUIRE_SERVICES=1
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo build (all targets, so that the tests and the binary share one feature set)"
cargo build --workspace --all-targets --locked

step "cargo test"
cargo test --workspace --locked

step "python end-to-end tests (ADBC, pandas, polars, raw Flight) and the compose file checks"
export SHOP_BIN="$CARGO_TARGET_DIR/debug/shop-analytics"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/e2e tests/compose

step "all tests passed"
