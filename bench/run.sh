#!/usr/bin/env bash
# The benchmark: backfill_ext against TimescaleDB's own DML (see tests/src/bin/bench.rs).
#   bash bench/run.sh                      # default size: 30 days x 50 devices, median of 3 runs
#   bash bench/run.sh --days 90 --devices 200 --runs 5
# Needs a full TimescaleDB for PostgreSQL 15; does the project's own set-up first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-release.sh
export PATH="$HOME/.cargo/bin:$PATH"
exec cargo run --quiet --release -p backfill_ext_client_tests --bin bench -- "$@"
