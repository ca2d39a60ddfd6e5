//! The end state every method must reach for a workload: the rows the hypertable must
//! hold, staging empty, and every chunk that was compressed compressed again, none with
//! rows beside its batches.

use crate::workload::Workload;
use backfill_ext_client_tests::{scalar, Client, Cluster};

/// What every method must end with.
pub struct Expect {
    rows: i64,
    corrected: i64,
    /// A checksum of every row, where the workload's rows are all new (bulk, outage).
    digest: Option<String>,
    /// End of the dataset's chunks: every chunk before it was compressed at the start.
    end: String,
}

/// A checksum of a table's rows, in any order: their count and the sum of 60 bits of
/// each row's md5 (a multiset hash; a string of every row would pass PostgreSQL's 1 GB
/// limit at 10x).
fn digest_sql(table: &str) -> String {
    format!(
        "SELECT count(*)::text || ':' || sum(('x' || substr(md5(ROW(time, device_id, \
         value)::text), 1, 15))::bit(60)::int8)::text FROM {table}"
    )
}

pub fn expectations(cl: &Cluster, w: Workload, days: i64) -> Expect {
    let mut c = cl.connect("base");
    let (st, ev) = (w.staging(), w.dest());
    let rows: i64 = scalar(
        &mut c,
        &format!(
            "SELECT (SELECT count(*) FROM {ev}) + (SELECT count(*) FROM (SELECT DISTINCT \
             device_id, time FROM {st} s WHERE NOT EXISTS (SELECT 1 FROM {ev} e \
             WHERE e.device_id = s.device_id AND e.time = s.time)) x)"
        ),
    );
    let corrected: i64 = if w.action() == "UPDATE" {
        scalar(&mut c, &format!("SELECT count(*) FROM {st} WHERE value >= 1000"))
    } else {
        0
    };
    let digest = matches!(w, Workload::Bulk { .. } | Workload::Outage { .. }).then(|| {
        let both = format!("(SELECT * FROM {ev} UNION ALL SELECT * FROM {st}) AS b");
        scalar::<String>(&mut c, &digest_sql(&both))
    });
    Expect {
        rows,
        corrected,
        digest,
        end: format!("2024-01-01 00:00:00+00'::timestamptz + interval '{days} days"),
    }
}

pub fn check(c: &mut Client, w: Workload, e: &Expect) -> Result<(), String> {
    let ev = w.dest();
    let rows: i64 = scalar(c, &format!("SELECT count(*) FROM {ev}"));
    if rows != e.rows {
        return Err(format!("{rows} rows, want {}", e.rows));
    }
    let left: i64 = scalar(c, &format!("SELECT count(*) FROM {}", w.staging()));
    if left != 0 {
        return Err(format!("{left} rows left in staging"));
    }
    if let Some(want) = &e.digest {
        if &scalar::<String>(c, &digest_sql(ev)) != want {
            return Err("the rows differ from the dataset's and staging's".into());
        }
    }
    // rows beside the batches (8), or batches out of order (2) where nothing could have
    // written compressed batches directly (TimescaleDB marks those chunks unordered)
    let mask = if w.keyed() { 8 | 2 } else { 8 };
    let partial: i64 = scalar(
        c,
        &format!(
            "SELECT count(*) FROM show_chunks('{ev}') ch \
             WHERE _timescaledb_functions.chunk_status(ch) & 1 = 1 \
               AND _timescaledb_functions.chunk_status(ch) & {mask} <> 0"
        ),
    );
    if partial != 0 {
        return Err(format!("{partial} partially compressed chunks"));
    }
    let decompressed: i64 = scalar(
        c,
        &format!(
            "SELECT count(*) FROM timescaledb_information.chunks WHERE hypertable_name = '{ev}' \
             AND NOT is_compressed AND range_end <= '{}'",
            e.end
        ),
    );
    if decompressed != 0 {
        return Err(format!("{decompressed} old chunks left decompressed"));
    }
    if e.corrected > 0 {
        let got: i64 = scalar(c, &format!("SELECT count(*) FROM {ev} WHERE value >= 1000"));
        if got != e.corrected {
            return Err(format!("{got} corrected values, want {}", e.corrected));
        }
    }
    Ok(())
}
