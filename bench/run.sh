#!/usr/bin/env bash
# The benchmark: backfill_ext against TimescaleDB's own DML (see tests/src/bin/bench/).
#   bash bench/run.sh                      # default size: 30 days x 50 devices, median of 3 runs, PostgreSQL 17
#   bash bench/run.sh --pg 15 --days 90 --devices 200 --runs 5
#   bash bench/run.sh --scale 10                   # 10x the default: 30 days x 500 devices
#   bash bench/run.sh --config '"strategy": "decompress"'   # extra config keys for backfill_ext's runs
#   bash bench/run.sh --workloads bulk,outage      # some of sparse,dense,mixed,bulk,outage
#   bash bench/run.sh --session-memory             # also "workers": 1, its memory per chunk
# Needs a full TimescaleDB for that PostgreSQL major (exits 2 without one); does the
# project's own set-up first.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/versions.sh
pgc=$(bash scripts/install-release.sh "$@")
export PATH="$HOME/.cargo/bin:$PATH"
mapfile -t rest < <(args_without_pg "$@")
PG_CONFIG="$pgc" exec cargo run --quiet --release -p backfill_ext_client_tests --bin bench -- "${rest[@]+"${rest[@]}"}"
