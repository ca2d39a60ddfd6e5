//! The run's `lock_timeout` and `work_mem`: resolved and checked while preparing,
//! then set for each transaction the run works in, with JIT compilation off (see
//! `apply`). Validating leaves the caller's values alone (`backfill_plan`,
//! `backfill_check_config` and `schedule_backfill` validate in the caller's
//! transaction).

use crate::config::{Config, DEFAULT_LOCK_TIMEOUT};
use crate::error::{BackfillError, Code};
use crate::spi::{self, col, execute, p, query_one, raise};
use crate::sql;

/// The config's `lock_timeout`, or when unset the session's where it has one (a
/// role's or database's setting for jobs), else the default.
pub fn resolve_lock_timeout(configured: Option<String>) -> String {
    configured.unwrap_or_else(|| {
        query_one(sql::settings::SESSION_LOCK_TIMEOUT, &[p(DEFAULT_LOCK_TIMEOUT)], |r| {
            col::<String>(r, 1)
        })
        .flatten()
        .unwrap_or_else(|| DEFAULT_LOCK_TIMEOUT.into())
    })
}

/// An interval in seconds.
pub fn seconds(interval: &str) -> f64 {
    query_one(sql::settings::INTERVAL_SECONDS, &[p(interval)], |r| col::<f64>(r, 1).unwrap_or(0.0))
        .unwrap_or(0.0)
}

/// Checks the config's `work_mem` and `lock_timeout` without leaving them set.
pub fn validate(cfg: &Config) {
    let saved: Vec<(&str, String)> = ["lock_timeout", "work_mem", "jit"]
        .into_iter()
        .map(|name| {
            (
                name,
                query_one(sql::settings::CURRENT_SETTING, &[p(name)], |r| col::<String>(r, 1))
                    .flatten()
                    .unwrap_or_default(),
            )
        })
        .collect();
    apply(cfg);
    for (name, value) in saved {
        execute(sql::settings::SET_LOCAL, &[p(name), p(value)]);
    }
}

/// Sets the run's `work_mem` and `lock_timeout` for the current transaction; raises
/// 22023 naming the key whose value PostgreSQL refuses. Turns JIT compilation off for
/// the transaction: the planner cannot tell how many rows a compressed chunk holds, so
/// a chunk step's statements cost enough to be compiled, and the compile (with, in
/// each worker, the load of the JIT library) takes longer than it saves (measured on
/// an outage replay with a key: 2.49 s with JIT, 2.14 s without).
pub fn apply(cfg: &Config) {
    execute(sql::settings::SET_LOCAL, &[p("jit"), p("off")]);
    let lock_timeout = cfg.lock_timeout_or_default();
    let mut settings = vec![("lock_timeout", lock_timeout, "an interval such as \"30 seconds\"")];
    if let Some(wm) = &cfg.work_mem {
        settings.push(("work_mem", wm, "a size such as \"256MB\""));
    }
    for (name, value, example) in settings {
        let r = spi::in_subtransaction(std::panic::AssertUnwindSafe(|| {
            if name == "lock_timeout" {
                // the setting takes milliseconds; the config, an interval
                execute(sql::settings::SET_LOCK_TIMEOUT, &[p(value)])
            } else {
                execute(sql::settings::SET_LOCAL, &[p(name), p(value)])
            }
        }));
        if let Err(e) = r {
            raise(
                BackfillError::new(
                    Code::InvalidParameterValue,
                    format!("config key \"{name}\" is not valid: \"{value}\""),
                )
                .detail(spi::caught_message(&e))
                .hint(format!("give {example}")),
            );
        }
    }
}

/// For a step that sorts or hashes a chunk's rows to join them (a merge, new segments
/// taken one per key): unless the config sets `work_mem`, its sorts and hashes may use
/// `maintenance_work_mem`, the memory a rewrite already budgets its rows in and
/// compression sorts in, so that they do not spill to temporary files. A move sorted
/// for compressed batches keeps the run's `work_mem`: a sort of that kind, alone, is
/// faster as an external merge of small sorted runs than as one sort in memory (5.2
/// million rows by device and time: 1.4-1.8 s at 4 MB, 2.6 s at 64 MB).
pub fn apply_sort_work_mem(cfg: &Config) {
    if cfg.work_mem.is_none() {
        execute(sql::settings::RAISE_WORK_MEM_TO_MAINTENANCE, &[]);
    }
}

/// Turns TimescaleDB's direct compression of inserted rows on or off for the rest of
/// the transaction (`strategy::direct`). `presorted`: the rows come sorted as
/// TimescaleDB sorts a batch (`CompressOrder::complete`), so it is told not to sort
/// them again while it is on (and back to its default after).
pub fn direct_compress_insert(on: bool, presorted: bool) {
    let value = if on { "on" } else { "off" };
    execute(sql::settings::SET_LOCAL, &[p("timescaledb.enable_direct_compress_insert"), p(value)]);
    if presorted {
        let sort = if on { "off" } else { "on" };
        let name = "timescaledb.enable_direct_compress_insert_sort_batches";
        execute(sql::settings::SET_LOCAL, &[p(name), p(sort)]);
    }
}

/// Sets the short `lock_timeout` a chunk rewrite waits for its lock with (a second,
/// or the run's if shorter); `apply` puts the run's back.
pub fn apply_rewrite_lock_timeout(cfg: &Config) {
    execute(sql::settings::SET_REWRITE_LOCK_TIMEOUT, &[p(cfg.lock_timeout_or_default())]);
}

/// Runs `f` with indexes built without parallel workers: a rewrite's index build is
/// one sort in `maintenance_work_mem` (a parallel build splits it among its workers and
/// spills to temporary files), and the run's chunk transactions are its parallelism.
pub fn with_serial_index_build(f: impl FnOnce()) {
    with_setting(sql::settings::SERIAL_INDEX_BUILD, "max_parallel_maintenance_workers", f);
}

/// Runs `f` with hash joins only (no merge join, no nested loop): a join of the rows a
/// step took with a compressed chunk's rows is cheapest as a hash of the rows taken,
/// probed by the chunk's rows as they are decompressed. The planner cannot tell how
/// many rows a compressed chunk holds: it sorted every one of them for a merge join
/// (measured: 4 ms against 18 ms for 1,144 rows taken and a chunk of 72,000), or, for
/// 180,000 rows and a chunk of 540,000, looked each row up in the chunk, decompressing
/// a batch each time (three times the whole run's time). A join a hash cannot do
/// (keys compared with `IS NOT DISTINCT FROM`) still runs as the planner chooses.
pub fn hash_joins_only<T>(f: impl FnOnce() -> T) -> T {
    with_setting(sql::settings::WITHOUT_MERGE_JOIN, "enable_mergejoin", || {
        with_setting(sql::settings::WITHOUT_NESTED_LOOP, "enable_nestloop", f)
    })
}

/// Runs `f` after `set` (a statement that sets `name` for the transaction and returns
/// the value it replaced), then puts the value back.
fn with_setting<T>(set: &str, name: &str, f: impl FnOnce() -> T) -> T {
    let saved =
        query_one(set, &[], |r| col::<String>(r, 1)).flatten().expect("a setting has a value");
    let v = f();
    execute(sql::settings::SET_LOCAL, &[p(name), p(saved)]);
    v
}

/// Makes TimescaleDB's compression of the current transaction's chunks read them by a
/// sequential scan, never through an index (a rewrite leaves the indexes that check
/// nothing unbuilt until compression truncates them); returns the caller's setting,
/// for `restore_compression_indexscan`, or None where TimescaleDB has no such setting.
pub fn compression_without_indexscan() -> Option<String> {
    query_one(sql::settings::COMPRESSION_WITHOUT_INDEXSCAN, &[], |r| col::<String>(r, 1)).flatten()
}

pub fn restore_compression_indexscan(saved: &str) {
    execute(sql::settings::SET_LOCAL, &[p("timescaledb.enable_compression_indexscan"), p(saved)]);
}
