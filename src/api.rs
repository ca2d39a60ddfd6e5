//! The SQL entry points. Each is short: read the arguments into a `Config`, hand it
//! to `run`. The procedures are C-language procedures so that they can COMMIT.

use crate::config::{parse_target_text, Config, ConflictAction, ConflictTarget};
use crate::error::{BackfillError, Code};
use crate::spi::{self, Session};
use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::JsonB;

/// `CALL backfill_on_schedule(job_id, config)`: the procedure `add_job` schedules.
#[pg_extern(sql = "
CREATE PROCEDURE backfill_on_schedule(job_id integer, config jsonb)
LANGUAGE c AS '@MODULE_PATHNAME@', '@FUNCTION_NAME@';
COMMENT ON PROCEDURE backfill_on_schedule(integer, jsonb) IS
'Moves rows from config->>''staging_table'' into config->>''destination_hypertable'', one chunk per transaction: decompress, move, recompress. Schedule it with add_job.';
")]
fn backfill_on_schedule(job_id: Option<i32>, config: Option<JsonB>, fcinfo: pg_sys::FunctionCallInfo) {
    let cfg = spi::check(Config::from_json(config.as_ref().map(|j| &j.0)));
    let session = unsafe { Session::open(fcinfo) };
    crate::run::run(&session, job_id, cfg);
    session.close();
}

/// `CALL decompress_backfill(...)`: the old script's signature and meaning.
#[allow(clippy::too_many_arguments)]
#[pg_extern(sql = "
CREATE PROCEDURE decompress_backfill(
    staging_table regclass,
    destination_hypertable regclass,
    on_conflict_action text DEFAULT 'NOTHING',
    delete_from_staging boolean DEFAULT true,
    compression_job_push_interval interval DEFAULT '1 day',
    on_conflict_update_columns text[] DEFAULT '{}',
    skip_empty_ranges boolean DEFAULT false,
    on_conflict_target text DEFAULT '')
LANGUAGE c AS '@MODULE_PATHNAME@', '@FUNCTION_NAME@';
COMMENT ON PROCEDURE decompress_backfill(regclass, regclass, text, boolean, interval, text[], boolean, text) IS
'Moves the rows of staging_table into destination_hypertable, one chunk per transaction: decompress, move, recompress.';
")]
fn decompress_backfill(
    staging_table: Option<pg_sys::Oid>,
    destination_hypertable: Option<pg_sys::Oid>,
    on_conflict_action: Option<String>,
    delete_from_staging: Option<bool>,
    compression_job_push_interval: Option<Interval>,
    on_conflict_update_columns: Option<Vec<Option<String>>>,
    skip_empty_ranges: Option<bool>,
    on_conflict_target: Option<String>,
    fcinfo: pg_sys::FunctionCallInfo,
) {
    let null = |name: &str| -> ! {
        spi::raise(BackfillError::new(Code::NullValueNotAllowed, format!("argument {name} of decompress_backfill is NULL")).hint("give a table"))
    };
    let staging = staging_table.unwrap_or_else(|| null("staging_table"));
    let dest = destination_hypertable.unwrap_or_else(|| null("destination_hypertable"));
    let action_text = on_conflict_action.unwrap_or_else(|| "NOTHING".into());
    let on_conflict = ConflictAction::parse(&action_text).unwrap_or_else(|| {
        spi::raise(
            BackfillError::new(Code::InvalidParameterValue, format!("on_conflict_action must be NOTHING, UPDATE or RESTRICT, not \"{action_text}\""))
                .hint("NOTHING keeps existing rows, UPDATE overwrites them, RESTRICT stops at the first conflict"),
        )
    });
    let update_columns: Vec<String> = on_conflict_update_columns
        .unwrap_or_default()
        .into_iter()
        .flatten()
        .filter(|c| !c.trim().is_empty())
        .map(|c| crate::config::column_name(&c))
        .collect();
    let conflict_target = spi::check(parse_target_text(&on_conflict_target.unwrap_or_default()));
    let cfg = Config {
        staging_table: crate::catalog::regclass_text(staging.to_u32()),
        destination: crate::catalog::regclass_text(dest.to_u32()),
        on_conflict,
        // the old script took UPDATE with no columns to mean "every column"
        update_columns,
        conflict_target: if conflict_target == ConflictTarget::Default { ConflictTarget::Default } else { conflict_target },
        delete_from_staging: delete_from_staging.unwrap_or(true),
        push_interval: compression_job_push_interval.map(|i| i.to_iso_string()).unwrap_or_else(|| crate::config::DEFAULT_PUSH_INTERVAL.into()),
        skip_empty_ranges: skip_empty_ranges.unwrap_or(false),
        work_mem: None,
    };
    spi::check(cfg.check_combinations());
    let session = unsafe { Session::open(fcinfo) };
    crate::run::run(&session, None, cfg);
    session.close();
}
