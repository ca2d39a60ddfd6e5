#!/usr/bin/env bash
# The demo: a throwaway cluster in a temporary folder on a free port (TimescaleDB
# preloaded when installed), a realistic dataset, a real backfill end to end, and a
# readable summary of what moved. Does all set-up first; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-release.sh
export PATH="$HOME/.cargo/bin:$PATH"
exec cargo run --quiet --release -p backfill_ext_client_tests --bin demo -- "$@"
