#!/usr/bin/env bash
# Runs every test on every supported PostgreSQL major (15-18), or on one:
#   bash scripts/test.sh            # every major
#   bash scripts/test.sh --pg 17    # one major
#   bash scripts/test.sh --timescaledb-minimum
#                                   # and the client tests once more on TimescaleDB's
#                                   # declared minimum (scripts/versions.sh), built
#                                   # beside the default on one major
#   bash scripts/test.sh --soak 1000  # 1000 differential cases per test instead of 80
#                                   # (four tests a major; BACKFILL_DIFF_SEED=N moves
#                                   # the seeds)
# BACKFILL_TIMESCALEDB_SOURCES names a folder of TimescaleDB's release source archives
# (scripts/setup.sh).
# First the formatting check (cargo fmt, rustfmt.toml). For each major: unit tests and #[pg_test]s (cargo pgrx test), then the client tests
# over libpq (plain PostgreSQL, pg_cron where installed, and the TimescaleDB tier where
# a full TimescaleDB is installed for that major), against a build with the cargo
# feature test_hooks (the backfill_ext.debug_* settings the crash, reliability and
# TimescaleDB tests use; releases never have it). A test whose requirement is missing
# is reported by the runner as ignored and counted here as skipped, never as passed.
# Does all set-up first; safe to run again. Exits non-zero when a test failed, when a
# tier did not run at all on a major, or when the TimescaleDB tier was skipped on a
# major that has TimescaleDB installed.
set -uo pipefail
cd "$(dirname "$0")/.."
. scripts/versions.sh
majors=$(majors_from_args "$@") || exit 2
minimum=""; prev=""
for a in "$@"; do
  [ "$a" = --timescaledb-minimum ] && minimum="$TIMESCALEDB_MINIMUM"
  # --soak N: N differential cases per test (four tests a major) instead of 80
  if [ "$prev" = --soak ]; then export BACKFILL_DIFF_CASES="$a"; fi
  prev="$a"
done
bash scripts/setup.sh ${minimum:+--timescaledb-minimum} || exit 1
export PATH="$HOME/.cargo/bin:$PATH"

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="--sudo"; fi
work=$(mktemp -d /tmp/backfill_ext_test.XXXXXX)
chmod 755 "$work"
trap 'rm -rf "$work"' EXIT

# counts of one log's "test result:" lines: "passed failed ignored"
counts() {
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) s += $i } }
       END { printf "%d %d %d\n", p, f, s }' "$1"
}

# a Docker engine for the image test: started here where docker.io is installed
docker_reason=""
if ! /usr/bin/docker info >/dev/null 2>&1; then
  if command -v dockerd >/dev/null; then
    (dockerd --storage-driver=vfs >/tmp/backfill_ext_dockerd.log 2>&1 &)
    for _ in $(seq 1 30); do /usr/bin/docker info >/dev/null 2>&1 && break; sleep 1; done
  fi
fi
if /usr/bin/docker info >/dev/null 2>&1; then export BACKFILL_DOCKER=1; else
  export BACKFILL_DOCKER=0
  docker_reason="no Docker engine could be started (see /tmp/backfill_ext_dockerd.log)"
  echo "NOTE: $docker_reason; the image test will be skipped"
fi

# a full run's builds, clusters and image need some 10 GB; without them the failures
# further down read "No space left on device" and hide the cause
free_gb=$(df -Pk . /tmp | awk 'NR > 1 { kb = (min == "" || $4 < min) ? $4 : min; min = kb } END { print int(min / 1048576) }')
if [ "$free_gb" -lt 10 ]; then
  echo "WARNING: only ${free_gb} GB free (here or in /tmp); a run on every major needs about 10 GB"
fi

status=0
problems=()
# the code as rustfmt.toml formats it (tests/tests/layout.rs measures that code)
echo "==> cargo fmt --all -- --check"
if ! cargo fmt --all -- --check; then
  status=1; problems+=("the code is not formatted: run cargo fmt --all")
fi
for m in $majors; do
  pgc=$(pg_config_for "$m")
  tsl=""; pkg=""; prev_ok=0
  log_pg="$work/pg$m-pgrx.log"; log_client="$work/pg$m-client.log"
  : >"$log_pg"; : >"$log_client"
  echo "==> PostgreSQL $m ($("$pgc" --version)): unit tests and #[pg_test]s"
  pgdata="$work/pgdata$m"; mkdir -p "$pgdata"; chown postgres "$pgdata" 2>/dev/null || true
  cargo pgrx test "pg$m" --runas postgres --pgdata "$pgdata" 2>&1 | tee "$log_pg" || status=1

  echo "==> PostgreSQL $m: installing backfill_ext (with its test hooks) into $("$pgc" --sharedir)"
  if cargo pgrx install --pg-config "$pgc" --features test_hooks $SUDO >"$work/install$m.log" 2>&1; then
    # a release package, without the test hooks, for the package test (and the image test on 15)
    pkg=$(bash scripts/package.sh --pg "$m" | tail -1) || { pkg=""; status=1; problems+=("PostgreSQL $m: scripts/package.sh failed"); }
    # the previous release's install script, for the upgrade test (skipped, with the reason, without it)
    prev_ok=1
    bash scripts/previous-release.sh "$pgc"; rc=$?
    if [ $rc = 3 ]; then prev_ok=0; echo "NOTE: this clone lacks the previous release's revision; the upgrade test will be skipped"
    elif [ $rc != 0 ]; then prev_ok=0; status=1; problems+=("PostgreSQL $m: the previous release's install script could not be built (scripts/previous-release.sh)"); fi
    tsl=$(ls "$("$pgc" --pkglibdir)"/timescaledb-tsl-*.so 2>/dev/null | head -1)
    ts_name="not installed"
    [ -z "$tsl" ] || ts_name=$(sed -n "s/^default_version = '\(.*\)'/\1/p" "$("$pgc" --sharedir)/extension/timescaledb.control")
    echo "==> PostgreSQL $m: client tests (TimescaleDB: $ts_name)"
    BACKFILL_PACKAGE="${pkg:+$PWD/$pkg}" PG_CONFIG="$pgc" cargo test -p backfill_ext_client_tests --no-fail-fast -- --test-threads=2 2>&1 | tee "$log_client" || status=1
    if [ -n "$minimum" ] && [ "$m" = "$TIMESCALEDB_MINIMUM_MAJOR" ]; then
      echo "==> PostgreSQL $m: client tests on TimescaleDB $minimum (the declared minimum)"
      log_min="$work/pg$m-minimum.log"
      BACKFILL_TIMESCALEDB_VERSION="$minimum" BACKFILL_PACKAGE="${pkg:+$PWD/$pkg}" PG_CONFIG="$pgc" \
        cargo test -p backfill_ext_client_tests --no-fail-fast -- --test-threads=2 2>&1 | tee "$log_min" || status=1
      read -r pm fm sm < <(counts "$log_min")
      echo "pg$m+timescaledb-$minimum $pm $fm $sm" >>"$work/summary"
      grep -h ' \.\.\. ignored' "$log_min" | sed -E "s/^test ([^ ]+) \.\.\. ignored(, )?(.*)$/pg$m+timescaledb-$minimum\t\3\t\1/" >>"$work/skipped"
      [ "$pm" -gt 0 ] || problems+=("PostgreSQL $m: no client test ran on TimescaleDB $minimum")
      if grep -q ' \.\.\. ignored.*timescaledb-tsl' "$log_min"; then
        problems+=("PostgreSQL $m: the TimescaleDB tier was skipped on TimescaleDB $minimum")
      fi
    fi
  else
    cat "$work/install$m.log"; status=1
    problems+=("PostgreSQL $m: the extension did not install, so no client test ran")
  fi

  read -r p1 f1 s1 < <(counts "$log_pg")
  read -r p2 f2 s2 < <(counts "$log_client")
  echo "pg$m $((p1 + p2)) $((f1 + f2)) $((s1 + s2))" >>"$work/summary"
  grep -h ' \.\.\. ignored' "$log_pg" "$log_client" | sed -E "s/^test ([^ ]+) \.\.\. ignored(, )?(.*)$/pg$m\t\3\t\1/" >>"$work/skipped"
  [ "$p1" -gt 0 ] || problems+=("PostgreSQL $m: no unit test or #[pg_test] ran")
  [ "$p2" -gt 0 ] || problems+=("PostgreSQL $m: no client test ran")
  # a client test skipped for want of something this major has
  ignored=$(grep -h ' \.\.\. ignored' "$log_client")
  skipped_for() { grep -q "$1" <<<"$ignored"; }
  if [ -n "$tsl" ] && skipped_for "timescaledb-tsl"; then
    problems+=("PostgreSQL $m: TimescaleDB is installed but the TimescaleDB tier was skipped")
  fi
  if [ -n "$pkg" ] && skipped_for "no release package"; then
    problems+=("PostgreSQL $m: a release package was built but the package test was skipped")
  fi
  if [ "$m" = 15 ] && [ "$BACKFILL_DOCKER" = 1 ] && [ -n "$tsl" ] && skipped_for "Docker"; then
    problems+=("PostgreSQL $m: Docker is running but the image test was skipped")
  fi
  if [ "$prev_ok" = 1 ] && skipped_for "previous release"; then
    problems+=("PostgreSQL $m: the previous release is installed but the upgrade test was skipped")
  fi
done

echo
echo "==> summary"
while read -r major p f s; do
  echo "$major: $p passed, $f failed, $s skipped"
done <"$work/summary"
if [ -s "$work/skipped" ]; then
  echo "skipped, by reason:"
  awk -F'\t' '{ n[$1 "\t" $2]++ } END { for (k in n) { split(k, a, "\t"); printf "  %s: %d tests: %s\n", a[1], n[k], (a[2] == "" ? "no reason given" : a[2]) } }' "$work/skipped" | sort
fi
for p in "${problems[@]+"${problems[@]}"}"; do echo "PROBLEM: $p"; status=1; done
awk '{ p += $2; f += $3; s += $4 } END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' "$work/summary"
exit $status
