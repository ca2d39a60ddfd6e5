#!/usr/bin/env bash
# Makes the local base image the image test builds the project's Dockerfile on, as
# the test machine cannot pull one: Debian bookworm from Debian's packages
# (debootstrap), PostgreSQL 15 in Debian's layout (as in timescale/timescaledb-ha,
# where the Dockerfile's runtime stage adds the extension's files), and, where this
# machine has a full TimescaleDB for PostgreSQL 15 installed, that TimescaleDB's
# installed files copied in. Its command starts PostgreSQL with TimescaleDB preloaded.
# Does nothing when the image exists. Usage: base-image.sh IMAGE_NAME
set -euo pipefail
image="$1"
docker=/usr/bin/docker
# made again when this script or the machine's TimescaleDB for PostgreSQL 15 changed
stamp=$(cat "$0" /usr/lib/postgresql/15/lib/timescaledb*.so 2>/dev/null | md5sum | cut -c1-16)
if [ "$("$docker" image inspect -f '{{index .Config.Labels "backfill_ext.stamp"}}' "$image" 2>/dev/null)" = "$stamp" ]; then exit 0; fi
# the image this one replaces, removed once the new one has its name
old=$("$docker" image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
. "$(dirname "$0")/../../scripts/versions.sh"
root=$(mktemp -d /tmp/backfill_ext_base.XXXXXX)
chmod 755 "$root"   # the image's / (mktemp makes it 0700)
trap 'rm -rf --one-file-system "$root"' EXIT
echo "==> debootstrap: Debian bookworm with PostgreSQL $PG15_DEB_VERSION into $root"
debootstrap --variant=minbase --include=ca-certificates bookworm "$root" http://deb.debian.org/debian >"$root.log" 2>&1 \
  || { tail -20 "$root.log"; exit 1; }
cp /etc/apt/sources.list.d/debian.sources "$root/etc/apt/sources.list.d/" 2>/dev/null || true
cat >"$root/usr/sbin/policy-rc.d" <<'POLICY'
#!/bin/sh
exit 101
POLICY
chmod +x "$root/usr/sbin/policy-rc.d"
mount --bind /proc "$root/proc"
# never remove anything below a mount that is still there
trap 'umount "$root/proc" 2>/dev/null || true; mountpoint -q "$root/proc" || rm -rf --one-file-system "$root"' EXIT
chroot "$root" sh -c "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  postgresql-15=$PG15_DEB_VERSION postgresql-client-15=$PG15_DEB_VERSION libpq5=$PG15_DEB_VERSION \
  && apt-get clean && rm -rf /var/lib/apt/lists/*" >>"$root.log" 2>&1 || { tail -20 "$root.log"; exit 1; }
umount "$root/proc"
# TimescaleDB, as installed on this machine for PostgreSQL 15 (its libraries and SQL)
if ls /usr/lib/postgresql/15/lib/timescaledb-tsl-*.so >/dev/null 2>&1; then
  cp -a /usr/lib/postgresql/15/lib/timescaledb*.so "$root/usr/lib/postgresql/15/lib/"
  cp -a /usr/share/postgresql/15/extension/timescaledb* "$root/usr/share/postgresql/15/extension/"
fi
rm -f "$root"/usr/lib/postgresql/15/lib/backfill_ext* "$root"/usr/share/postgresql/15/extension/backfill_ext*
cat >"$root/usr/local/bin/start-postgres" <<'START'
#!/bin/sh
# initdb on first start, then PostgreSQL in the foreground, TimescaleDB preloaded
set -e
data=/var/lib/postgresql/data
if [ ! -s "$data/PG_VERSION" ]; then
  mkdir -p "$data" && chown postgres "$data"
  runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  preload=""
  if ls /usr/lib/postgresql/15/lib/timescaledb-tsl-*.so >/dev/null 2>&1; then preload=timescaledb; fi
  printf "shared_preload_libraries = '%s'\ntimescaledb.telemetry_level = off\nlisten_addresses = ''\n" "$preload" >>"$data/postgresql.conf"
fi
exec runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -D "$data" -k /tmp
START
chmod +x "$root/usr/local/bin/start-postgres"
rm -rf "$root/var/lib/postgresql/15" "$root/etc/postgresql"
echo "==> importing $image"
tar -C "$root" -c . | "$docker" import -c 'CMD ["/usr/local/bin/start-postgres"]' -c "LABEL backfill_ext.stamp=$stamp" - "$image" >/dev/null
rm -f "$root.log"
if [ -n "$old" ]; then "$docker" rmi "$old" >/dev/null 2>&1 || true; fi
