#!/usr/bin/env bash
# Idempotent set-up for a Debian bookworm machine: PostgreSQL 15.18, headers, clang,
# pg_cron, sudo, cargo-pgrx 0.18.1 and `cargo pgrx init`. Safe to run again.
set -euo pipefail

PG_VERSION="15.18-0+deb12u1"
PGRX_VERSION="0.18.1"
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
    pkg_ok "$p" "$PG_VERSION" || want+=("$p=$PG_VERSION")
  done
  for p in postgresql-15-cron clang libclang-dev pkg-config sudo build-essential libssl-dev; do
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

install_pgrx() {
  export PATH="$HOME/.cargo/bin:$PATH"
  if ! cargo pgrx --version 2>/dev/null | grep -q " $PGRX_VERSION\$"; then
    echo "==> installing cargo-pgrx $PGRX_VERSION"
    cargo install cargo-pgrx --version "=$PGRX_VERSION" --locked
  fi
  if [ ! -f "${PGRX_HOME:-$HOME/.pgrx}/config.toml" ] || ! grep -q 'pg15' "${PGRX_HOME:-$HOME/.pgrx}/config.toml"; then
    echo "==> cargo pgrx init --pg15 /usr/bin/pg_config"
    cargo pgrx init --pg15 /usr/bin/pg_config
  fi
}

need_root
install_packages
install_pgrx
# the pgrx test runner installs into the system PostgreSQL and runs it as postgres
chmod o+rx "$HOME" 2>/dev/null || true
echo "==> set-up complete: $(pg_config --version), $(cargo pgrx --version)"
