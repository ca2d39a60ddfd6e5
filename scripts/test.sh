#!/usr/bin/env bash
# Runs every test: unit tests and #[pg_test]s (cargo pgrx test), then the client
# tests over libpq (plain PostgreSQL, then the TimescaleDB tier when a full
# TimescaleDB is installed). Does all set-up first; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="--sudo"; fi

results=$(mktemp)
trap 'rm -f "$results"' EXIT

echo "==> unit tests and #[pg_test]s"
pgdata=$(mktemp -d /tmp/backfill_ext_pgrx.XXXXXX)
chown postgres "$pgdata" 2>/dev/null || true
trap 'rm -rf "$pgdata" "$results"' EXIT
cargo pgrx test pg15 --runas postgres --pgdata "$pgdata" 2>&1 | tee -a "$results"

echo "==> installing backfill_ext into $(pg_config --sharedir)"
cargo pgrx install --pg-config "$(command -v pg_config)" $SUDO

tsl=$(ls "$(pg_config --pkglibdir)"/timescaledb-tsl-*.so 2>/dev/null | head -1 || true)
if [ -n "$tsl" ]; then
  echo "==> client tests: plain PostgreSQL, pg_cron, and the TimescaleDB tier ($(basename "$tsl" .so))"
else
  echo "SKIPPED: TimescaleDB tier: no full TimescaleDB (timescaledb-tsl with compression and add_job) is installed in $(pg_config --pkglibdir)"
  echo "==> client tests: plain PostgreSQL and pg_cron"
fi
# every client test binary; the TimescaleDB cases return at once when it is not installed
cargo test -p backfill_ext_client_tests --no-fail-fast -- --test-threads=2 2>&1 | tee -a "$results"

# one closing line for every tier together
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "total: %d passed, %d failed\n", p, f }' "$results"
