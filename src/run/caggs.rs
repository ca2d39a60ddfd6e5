//! Continuous aggregates brought up to date after a run. TimescaleDB records that old
//! chunks changed, but a continuous aggregate's refresh policy usually covers only
//! recent buckets, so backfilled history would not reach it. After its last chunk
//! (the destination released, the policy put back), a run refreshes each continuous
//! aggregate on the destination, parents before the aggregates built on them, for the
//! whole buckets that hold the range it changed (the first to the last staging time).
//!
//! `refresh_continuous_aggregate` commits on its own and runs only where the call may
//! commit: a procedure called by `CALL` outside a transaction block, or by a
//! scheduler. Called inside a transaction block, the run records the refreshes it
//! could not make, with the `CALL` that makes them.

use crate::ident::{quote_qualified, QualifiedName};
use crate::spi::{self, col, p, query, query_one, Session};
use crate::sql;
use crate::sql::cron::quote_literal;
use crate::step::ms;
use crate::step::Prepared;
use pgrx::notice;
use std::time::Instant;

/// A continuous aggregate and the window a run refreshes.
pub struct Refresh {
    pub name: QualifiedName,
    /// `[lo, hi)` as text of the time column's type; None where the buckets could not be read.
    pub window: Option<(String, String)>,
    /// Whether the current role owns it (refreshing takes ownership).
    pub owned: bool,
}

/// The continuous aggregates on the destination (parents first) and the windows that
/// cover `span` (the first and last time the run changes) in whole buckets. None, at
/// the cost of one index lookup, where no view reads the destination.
pub fn plan(prep: &Prepared, span: &(String, String)) -> Vec<Refresh> {
    let (Some(ts), Some(ht)) = (&prep.ts, &prep.ht) else { return vec![] };
    if !crate::catalog::any_view_reads(prep.dest.oid) {
        return vec![];
    }
    let (bucket_info, hypertable_info) = query_one(sql::caggs::FUNCTIONS, &[], |r| {
        (col::<bool>(r, 1).unwrap_or(false), col::<bool>(r, 2).unwrap_or(false))
    })
    .unwrap_or((false, false));
    if !bucket_info {
        return vec![];
    }
    let mat_id = if hypertable_info {
        sql::caggs::MatId::HypertableInfo
    } else {
        sql::caggs::MatId::TableName
    };
    let rows = query(
        &sql::caggs::list(mat_id),
        &[p(&prep.dest.name.schema), p(&prep.dest.name.name)],
        |r| {
            let buckets: Vec<Option<String>> = (5..=8).map(|i| col::<String>(r, i)).collect();
            (
                QualifiedName::new(
                    col::<String>(r, 2).unwrap_or_default(),
                    col::<String>(r, 3).unwrap_or_default(),
                ),
                col::<bool>(r, 4).unwrap_or(false),
                buckets,
            )
        },
    );
    let window_sql = sql::caggs::window(&ts.func("time_bucket"), ht.kind);
    rows.into_iter()
        .map(|(name, owned, b)| {
            let window = b[0].as_ref().and_then(|_| {
                let mut params = b.clone();
                params.extend([p(&span.0), p(&span.1)]);
                query_one(&window_sql, &params, |r| {
                    Some((col::<String>(r, 1)?, col::<String>(r, 2)?))
                })
                .flatten()
            });
            Refresh { name, window, owned }
        })
        .collect()
}

/// Refreshes each continuous aggregate of `refreshes`, recording each in run `run_id`'s
/// history; each refresh commits.
pub fn refresh_all(session: &Session, prep: &Prepared, run_id: i64, refreshes: &[Refresh]) {
    let (Some(ts), Some(ht)) = (&prep.ts, &prep.ht) else { return };
    let call = sql::caggs::refresh(&ts.func("refresh_continuous_aggregate"), &ht.time_type);
    for r in refreshes {
        // the name as the history shows it, and as SQL takes it
        let (label, quoted) = (r.name.to_string(), quote_qualified(&r.name.schema, &r.name.name));
        let Some((lo, hi)) = &r.window else {
            not_refreshed(
                session,
                run_id,
                &label,
                "",
                "",
                "its buckets could not be read from this TimescaleDB".into(),
            );
            continue;
        };
        if let Some(why) = cannot_refresh(session, r) {
            let call_text = format!(
                "CALL {}({}, {}, {})",
                ts.func("refresh_continuous_aggregate"),
                quote_literal(&quoted),
                quote_literal(lo),
                quote_literal(hi)
            );
            not_refreshed(
                session,
                run_id,
                &label,
                lo,
                hi,
                format!("{why}; to refresh it: {call_text}"),
            );
            continue;
        }
        crate::history::refresh(run_id, &label, lo, hi, None);
        session.commit();
        let t = Instant::now();
        spi::call_nonatomic(&call, &[p(&quoted), p(lo), p(hi)]);
        session.after_commit();
        crate::history::refreshed(run_id, &label, ms(t));
        session.commit();
        notice!(
            "backfill_ext: continuous aggregate {label} refreshed for [{lo}, {hi}) in {:.0} ms",
            ms(t)
        );
    }
}

/// Why a refresh cannot run here, if it cannot.
fn cannot_refresh(session: &Session, r: &Refresh) -> Option<String> {
    if !r.owned {
        return Some(format!("role \"{}\" does not own it", crate::catalog::current_user()));
    }
    if !session.nonatomic() {
        return Some(
            "the backfill was called inside a transaction block, where a refresh cannot run".into(),
        );
    }
    None
}

fn not_refreshed(session: &Session, run_id: i64, name: &str, lo: &str, hi: &str, why: String) {
    notice!("backfill_ext: continuous aggregate {name} was not refreshed: {why}");
    crate::history::refresh(run_id, name, lo, hi, Some(&why));
    session.commit();
}
