#!/usr/bin/env bash
# The benchmark: backfill_ext against TimescaleDB's own DML (see tests/src/bin/bench.rs).
#   bash bench/run.sh                      # default size: 30 days x 50 devices, median of 3 runs
#   bash bench/run.sh --days 90 --devices 200 --runs 5
# Needs a full TimescaleDB for PostgreSQL 15; does the project's own set-up first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="--sudo"; fi
log=$(mktemp)
cargo pgrx install --release --pg-config "$(command -v pg_config)" $SUDO >"$log" 2>&1 || { cat "$log"; exit 1; }
rm -f "$log"
exec cargo run --quiet --release -p backfill_ext_client_tests --bin bench -- "$@"
