#!/usr/bin/env bash
# Installs the previous release's install script (backfill_ext--$PREVIOUS_VERSION.sql,
# see scripts/versions.sh) into a PostgreSQL's extension folder, next to the current
# version, so the upgrade test can CREATE EXTENSION ... VERSION '<previous>' and then
# ALTER EXTENSION ... UPDATE with the current library, as a user's database would.
# The script is generated from the release's git revision (cargo pgrx schema) once and
# cached under target/. Usage: scripts/previous-release.sh PG_CONFIG
# Exits 3 when this clone lacks the release's revision (the upgrade test is then
# skipped, with the reason), 1 when anything else fails.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/versions.sh
pgc="$1"
file="backfill_ext--$PREVIOUS_VERSION.sql"
dest="$("$pgc" --sharedir)/extension/$file"
cache="$PWD/target/previous-release/$file"
[ -f "$dest" ] && cmp -s "$dest" "$cache" 2>/dev/null && exit 0
export PATH="$HOME/.cargo/bin:$PATH"
if [ ! -f "$cache" ]; then
  if ! git cat-file -e "$PREVIOUS_REVISION^{commit}" 2>/dev/null; then
    echo "previous-release.sh: revision $PREVIOUS_REVISION ($PREVIOUS_VERSION) is not in this clone" >&2
    exit 3
  fi
  src="$PWD/target/previous-release/src"
  rm -rf "$src"; mkdir -p "$src"
  git archive "$PREVIOUS_REVISION" | tar -x -C "$src"
  # 0.1.0 was built for PostgreSQL 15 only; its SQL is the same for every major
  (cd "$src" && CARGO_TARGET_DIR="$PWD/../target" cargo pgrx schema pg15 --out "$cache.partial" >"$src/../schema.log" 2>&1) \
    || { cat "$PWD/target/previous-release/schema.log" >&2; exit 1; }
  mv "$cache.partial" "$cache"
fi
install -m 644 "$cache" "$dest"
