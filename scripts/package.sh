#!/usr/bin/env bash
# Release packages: for each supported PostgreSQL major (or one, --pg N), an optimised
# build (cargo pgrx package) laid out as on Debian and Ubuntu, the layout of the
# PostgreSQL packages that timescale/timescaledb-ha and most images use:
#   usr/lib/postgresql/<major>/lib/backfill_ext.so
#   usr/share/postgresql/<major>/extension/backfill_ext.control, backfill_ext--*.sql
# in dist/backfill_ext-<version>-pg<major>-linux-<arch>-gnu.tar.gz. Unpack it over /
# on such a system (tar -xzf FILE -C /), or copy its two folders' files into
# $(pg_config --pkglibdir) and $(pg_config --sharedir)/extension of any other layout.
# Does the project's set-up first; prints the paths of the packages it made.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/versions.sh
majors=$(majors_from_args "$@") || exit 2
bash scripts/setup.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
arch=$(uname -m)
mkdir -p dist
for m in $majors; do
  pgc=$(pg_config_for "$m")
  out="target/package/pg$m"
  rm -rf "$out"
  log=$(mktemp)
  cargo pgrx package --pg-config "$pgc" --out-dir "$out" >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
  rm -f "$log"
  stage="target/package/stage-pg$m"
  rm -rf "$stage"
  mkdir -p "$stage/usr/lib/postgresql/$m/lib" "$stage/usr/share/postgresql/$m/extension"
  find "$out" -name 'backfill_ext.so' -exec install -m 755 {} "$stage/usr/lib/postgresql/$m/lib/" \;
  find "$out" \( -name 'backfill_ext.control' -o -name 'backfill_ext--*.sql' \) -exec install -m 644 {} "$stage/usr/share/postgresql/$m/extension/" \;
  [ -f "$stage/usr/lib/postgresql/$m/lib/backfill_ext.so" ] && [ -f "$stage/usr/share/postgresql/$m/extension/backfill_ext--$version.sql" ] \
    || { echo "package.sh: cargo pgrx package made no library or install script for PostgreSQL $m" >&2; exit 1; }
  tarball="dist/backfill_ext-$version-pg$m-linux-$arch-gnu.tar.gz"
  tar -C "$stage" --owner=0 --group=0 --sort=name -czf "$tarball" usr
  echo "$tarball"
done
