#!/usr/bin/env bash
# The demo: a throwaway cluster in a temporary folder on a free port (TimescaleDB
# preloaded when installed), a realistic dataset, a real backfill end to end, and a
# readable summary of what moved. Does all set-up first; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="--sudo"; fi
log=$(mktemp)
cargo pgrx install --release --pg-config "$(command -v pg_config)" $SUDO >"$log" 2>&1 || { cat "$log"; exit 1; }
rm -f "$log"
cargo run --quiet --release -p backfill_ext_client_tests --bin demo -- "$@"
