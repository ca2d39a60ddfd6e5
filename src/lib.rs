//! backfill_ext: moves late-arriving rows from a staging table into a TimescaleDB
//! hypertable whose old chunks are compressed, one chunk per transaction.
//!
//! Pure modules (no Postgres needed to test): `config`, `columns`, `plan`,
//! `route_slices` (routed row ids in bounded slices), `timescale` (the TimescaleDB
//! model: time kinds, status bits, chunks, capabilities), `sql` (every statement's
//! text), `ident`, `error`. The SPI layer: `spi` (queries; `spi::tx`,
//! the transaction; `spi::hooks`, the test hooks), `catalog`, `history`, `jobs`, `run`
//! (one run, phase by phase) and `strategy` (how a chunk takes its rows). SQL entry
//! points: `api`. Data flows one way: `api` → `run` → `strategy` → `sql`.

use pgrx::prelude::*;

mod columns;
mod config;
mod error;
mod ident;
mod plan;
mod route_slices;
mod sql;
mod timescale;

mod api;
mod catalog;
mod history;
mod jobs;
mod run;
mod spi;
mod step;
mod strategy;

::pgrx::pg_module_magic!();

/// Registers the test hooks' settings (`spi::hooks`). Only builds with the cargo
/// feature `test_hooks` have it; a production build has no `_PG_init`.
#[cfg(feature = "test_hooks")]
#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    spi::register_test_hooks();
}

extension_sql_file!("../sql/internal.sql", name = "internal", bootstrap);
extension_sql_file!("../sql/views.sql", name = "views", finalize);

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
mod tests {
    include!("pg_tests.rs");
}

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
