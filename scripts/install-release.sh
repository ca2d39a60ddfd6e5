#!/usr/bin/env bash
# Set-up (scripts/setup.sh), then an optimised build of backfill_ext installed into the
# system PostgreSQL. Used by the demo and the benchmark; quiet unless something fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="--sudo"; fi
log=$(mktemp)
cargo pgrx install --release --pg-config "$(command -v pg_config)" $SUDO >"$log" 2>&1 || { cat "$log"; exit 1; }
rm -f "$log"
