#!/usr/bin/env bash
# The demo: a throwaway cluster in a temporary folder on a free port (TimescaleDB
# preloaded when installed), a realistic dataset, a real backfill end to end, and a
# readable summary of what moved. Does all set-up first; safe to run again.
#   bash scripts/demo.sh            # on PostgreSQL 17
#   bash scripts/demo.sh --pg 15    # on another major (15-18)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/versions.sh
pgc=$(bash scripts/install-release.sh "$@")
export PATH="$HOME/.cargo/bin:$PATH"
mapfile -t rest < <(args_without_pg "$@")
PG_CONFIG="$pgc" exec cargo run --quiet --release -p backfill_ext_client_tests --bin demo -- "${rest[@]+"${rest[@]}"}"
