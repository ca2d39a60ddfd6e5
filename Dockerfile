# A PostgreSQL image with backfill_ext added: the base image (by default the current
# timescale/timescaledb-ha image for PostgreSQL 17) plus only the extension's files.
#
#   docker build -t my-timescaledb-backfill .
#   docker build --build-arg PG_MAJOR=16 --build-arg BASE_IMAGE=timescale/timescaledb-ha:pg16 -t … .
#   # a package made by scripts/package.sh instead of building from source:
#   docker build --build-arg PACKAGE_FROM=prebuilt \
#                --build-arg PACKAGE=dist/backfill_ext-0.2.0-pg17-linux-x86_64-gnu.tar.gz -t … .
#
# Needs BuildKit (DOCKER_BUILDKIT=1, or docker buildx), which builds only the stages
# the image uses. The builder stage is FROM the runtime image, so the extension is
# compiled against the same libc and the same PostgreSQL headers it runs with.

ARG BASE_IMAGE=timescale/timescaledb-ha:pg17
ARG PACKAGE_FROM=source

# --- from source: Rust, cargo-pgrx (the version Cargo.toml pins) and cargo pgrx package
FROM ${BASE_IMAGE} AS package-source
ARG PG_MAJOR=17
USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates curl build-essential clang libclang-dev pkg-config libssl-dev \
      postgresql-server-dev-${PG_MAJOR} \
 && rm -rf /var/lib/apt/lists/*
RUN curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0
ENV PATH=/root/.cargo/bin:$PATH
WORKDIR /src
COPY Cargo.toml Cargo.lock backfill_ext.control ./
COPY .cargo .cargo
COPY src src
COPY sql sql
COPY tests tests
RUN PGRX_VERSION=$(sed -n 's/^pgrx = "=\(.*\)"$/\1/p' Cargo.toml) \
 && cargo install cargo-pgrx --version "=${PGRX_VERSION}" --locked \
 && cargo pgrx init --pg${PG_MAJOR} /usr/lib/postgresql/${PG_MAJOR}/bin/pg_config \
 && cargo pgrx package --pg-config /usr/lib/postgresql/${PG_MAJOR}/bin/pg_config --out-dir /out

# --- prebuilt: a package made by scripts/package.sh (its paths are Debian's, like the base's)
FROM ${BASE_IMAGE} AS package-prebuilt
ARG PACKAGE
USER root
COPY ${PACKAGE} /tmp/backfill_ext.tar.gz
RUN mkdir -p /out && tar -xzf /tmp/backfill_ext.tar.gz -C /out

FROM package-${PACKAGE_FROM} AS package

# --- the image: the base, plus the extension's library, control file and SQL scripts
FROM ${BASE_IMAGE}
ARG PG_MAJOR=17
COPY --from=package /out/usr/lib/postgresql/${PG_MAJOR}/lib/backfill_ext.so /usr/lib/postgresql/${PG_MAJOR}/lib/
COPY --from=package /out/usr/share/postgresql/${PG_MAJOR}/extension/ /usr/share/postgresql/${PG_MAJOR}/extension/
