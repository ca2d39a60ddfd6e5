#!/usr/bin/env bash
# Set-up (scripts/setup.sh), then an optimised build of backfill_ext installed into one
# PostgreSQL major (--pg N; 17 by default). Prints that major's pg_config; quiet
# unless something fails. Used by the demo and the benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/versions.sh
major=$(pg_arg "$@")
pgc=$(pg_config_for "${major:-17}")
bash scripts/setup.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="--sudo"; fi
log=$(mktemp)
cargo pgrx install --release --pg-config "$pgc" $SUDO >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
rm -f "$log"
echo "$pgc"
