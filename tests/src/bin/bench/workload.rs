//! The benchmark's workloads (what staging holds, which hypertable it goes into) and
//! methods (the ways of moving it), and the SQL each method runs.

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Workload {
    /// A new device every 10 minutes across all days, and 1,000 exact duplicates.
    Sparse,
    /// Corrected values for every existing row of the first 5 days.
    Dense,
    /// Both, and rows that create new chunks.
    Mixed,
    /// Every day of as many *new* devices as the hypertable has (no conflicts), into a
    /// hypertable with a unique key (`key`) or without one.
    Bulk { key: bool },
    /// The 6 hours missing from every day, for every device, into existing segments.
    Outage { key: bool },
}

pub const ALL: [Workload; 7] = [
    Workload::Sparse,
    Workload::Dense,
    Workload::Mixed,
    Workload::Bulk { key: true },
    Workload::Bulk { key: false },
    Workload::Outage { key: true },
    Workload::Outage { key: false },
];

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Sparse => "sparse",
            Workload::Dense => "dense upsert",
            Workload::Mixed => "mixed",
            Workload::Bulk { key: true } => "bulk history, unique key",
            Workload::Bulk { key: false } => "bulk history, no key",
            Workload::Outage { key: true } => "outage replay, unique key",
            Workload::Outage { key: false } => "outage replay, no key",
        }
    }

    /// The name `--workloads` selects it by.
    pub fn family(self) -> &'static str {
        match self {
            Workload::Sparse => "sparse",
            Workload::Dense => "dense",
            Workload::Mixed => "mixed",
            Workload::Bulk { .. } => "bulk",
            Workload::Outage { .. } => "outage",
        }
    }

    pub fn staging(self) -> &'static str {
        match self {
            Workload::Sparse => "stage_sparse",
            Workload::Dense => "stage_dense",
            Workload::Mixed => "stage_mixed",
            Workload::Bulk { key: true } => "stage_bulk_k",
            Workload::Bulk { key: false } => "stage_bulk_n",
            Workload::Outage { key: true } => "stage_outage_k",
            Workload::Outage { key: false } => "stage_outage_n",
        }
    }

    /// The hypertable it goes into: `ev` (every minute, keyed), or for bulk history and
    /// outage replays `evk` (keyed) or `evn` (no key), both missing 06:00-12:00 each day.
    pub fn dest(self) -> &'static str {
        match self {
            Workload::Bulk { key: true } | Workload::Outage { key: true } => "evk",
            Workload::Bulk { key: false } | Workload::Outage { key: false } => "evn",
            _ => "ev",
        }
    }

    pub fn keyed(self) -> bool {
        self.dest() != "evn"
    }

    pub fn action(self) -> &'static str {
        match self {
            Workload::Dense | Workload::Mixed => "UPDATE",
            _ => "NOTHING",
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Method {
    Backfill,
    /// backfill_ext with `"workers": 1`, its backend's memory followed chunk by chunk.
    Session,
    Insert,
    NoLimit,
    Decompress,
    DirectCompress,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Backfill => "backfill_ext",
            Method::Session => "backfill_ext, workers 1",
            Method::Insert => "(a) insert + recompress",
            Method::NoLimit => "(b) (a) without limit",
            Method::Decompress => "(c) decompress/insert/compress",
            Method::DirectCompress => "(d) direct compress INSERT (sorted)",
        }
    }

    pub fn is_backfill(self) -> bool {
        matches!(self, Method::Backfill | Method::Session)
    }

    /// The methods measured for a workload: TimescaleDB's direct compression only where
    /// the hypertable allows it (no unique key), (b) only on the original three.
    pub fn for_workload(w: Workload, session: bool) -> Vec<Method> {
        let mut out = vec![Method::Insert];
        if matches!(w, Workload::Sparse | Workload::Dense | Workload::Mixed) {
            out.push(Method::NoLimit);
        }
        out.push(Method::Decompress);
        if !w.keyed() {
            out.push(Method::DirectCompress);
        }
        out.push(Method::Backfill);
        if session {
            out.push(Method::Session);
        }
        out
    }
}

/// The SQL a method runs for a workload.
pub fn statements(m: Method, w: Workload, config: &str) -> Vec<String> {
    let (st, ev) = (w.staging(), w.dest());
    let on_conflict = match (w.keyed(), w.action()) {
        (false, _) => String::new(),
        (true, "NOTHING") => "ON CONFLICT (device_id, time) DO NOTHING".to_string(),
        _ => "ON CONFLICT (device_id, time) DO UPDATE SET value = excluded.value".to_string(),
    };
    let recompress_partial = format!(
        "SELECT count(compress_chunk(c)) FROM show_chunks('{ev}') c \
         WHERE _timescaledb_functions.chunk_status(c) & 1 = 1 \
           AND _timescaledb_functions.chunk_status(c) & 10 <> 0"
    );
    let source = if w.keyed() {
        format!("SELECT DISTINCT ON (device_id, time) * FROM {st}")
    } else {
        format!("SELECT * FROM {st}")
    };
    let insert = format!("INSERT INTO {ev} {source} {on_conflict}");
    match m {
        Method::Backfill | Method::Session => vec![backfill_call(w, config, m == Method::Session)],
        Method::Insert => vec![insert, recompress_partial, format!("TRUNCATE {st}")],
        Method::NoLimit => vec![
            "SET timescaledb.max_tuples_decompressed_per_dml_transaction = 0".into(),
            insert,
            recompress_partial,
            format!("TRUNCATE {st}"),
        ],
        Method::Decompress => vec![
            format!(
                "CREATE TEMP TABLE affected AS SELECT format('%I.%I', ch.chunk_schema, \
                 ch.chunk_name)::regclass AS c FROM timescaledb_information.chunks ch \
                 WHERE ch.hypertable_name = '{ev}' AND ch.is_compressed \
                   AND EXISTS (SELECT 1 FROM {st} s WHERE s.time >= ch.range_start \
                                AND s.time < ch.range_end)"
            ),
            "SELECT count(decompress_chunk(c)) FROM affected".into(),
            insert,
            "SELECT count(compress_chunk(c)) FROM affected".into(),
            format!("TRUNCATE {st}"),
        ],
        Method::DirectCompress => vec![
            "SET timescaledb.enable_direct_compress_insert = on".into(),
            format!("INSERT INTO {ev} SELECT * FROM {st} ORDER BY device_id, time"),
            "RESET timescaledb.enable_direct_compress_insert".into(),
            format!("TRUNCATE {st}"),
        ],
    }
}

fn backfill_call(w: Workload, config: &str, session: bool) -> String {
    let mut keys = vec![
        format!("\"staging_table\": \"{}\"", w.staging()),
        format!("\"destination_hypertable\": \"{}\"", w.dest()),
        format!("\"on_conflict_action\": \"{}\"", w.action()),
    ];
    if session {
        keys.push("\"workers\": 1".into());
    }
    if !config.is_empty() {
        keys.push(config.to_string());
    }
    format!("CALL backfill_on_schedule(NULL, '{{{}}}')", keys.join(", "))
}

/// The template's tables: `ev` (every minute) with a staging table for each of the
/// original workloads, `evk`/`evn` (each day's 06:00-12:00 missing, one keyed, one
/// not) with the bulk history and outage replay staging tables.
pub fn template_sql(days: i64, devices: i64) -> String {
    let span = format!(
        "generate_series(timestamptz '2024-01-01', timestamptz '2024-01-01' + interval \
         '{days} days' - interval '1 minute', interval '1 minute') t"
    );
    let value = "(d * 7 + extract(epoch FROM t)::bigint / 60) % 100";
    let outage = "extract(hour FROM t AT TIME ZONE 'UTC') BETWEEN 6 AND 11";
    let mut sql = format!(
        "CREATE EXTENSION timescaledb; CREATE EXTENSION backfill_ext;
         {}
         INSERT INTO ev SELECT t, d, {value} FROM {span}, generate_series(1, {devices}) d;
         {}",
        hypertable("ev", true),
        original_staging(days, devices)
    );
    for (ht, key) in [("evk", true), ("evn", false)] {
        let sfx = if key { "k" } else { "n" };
        sql += &format!(
            "{}
             INSERT INTO {ht} SELECT t, d, {value} FROM {span}, generate_series(1, {devices}) d
               WHERE NOT ({outage});
             CREATE TABLE stage_bulk_{sfx} (LIKE {ht});
             INSERT INTO stage_bulk_{sfx} SELECT t, d, {value} FROM {span},
               generate_series({devices} + 1, 2 * {devices}) d;
             CREATE TABLE stage_outage_{sfx} (LIKE {ht});
             INSERT INTO stage_outage_{sfx} SELECT t, d, {value} FROM {span},
               generate_series(1, {devices}) d WHERE {outage};",
            hypertable(ht, key)
        );
    }
    sql + "SELECT count(compress_chunk(c)) FROM (SELECT show_chunks('ev') UNION ALL \
           SELECT show_chunks('evk') UNION ALL SELECT show_chunks('evn')) AS x(c);
           SELECT add_compression_policy(h::regclass, interval '7 days')
             FROM unnest('{ev,evk,evn}'::text[]) h;"
}

fn hypertable(name: &str, key: bool) -> String {
    let key = if key { ", PRIMARY KEY (device_id, time)" } else { "" };
    format!(
        "CREATE TABLE {name} (time timestamptz NOT NULL, device_id int NOT NULL, \
         value double precision NOT NULL{key});
         SELECT create_hypertable('{name}', 'time', chunk_time_interval => interval '1 day');
         ALTER TABLE {name} SET (timescaledb.compress, timescaledb.compress_segmentby = \
         'device_id', timescaledb.compress_orderby = 'time');"
    )
}

fn original_staging(days: i64, devices: i64) -> String {
    let (new_dev, days_after) = (devices + 1, days + 2);
    format!(
        "CREATE TABLE stage_sparse (LIKE ev);
         INSERT INTO stage_sparse SELECT t, {new_dev}, 1
           FROM generate_series(timestamptz '2024-01-01', timestamptz '2024-01-01' + interval \
           '{days} days' - interval '1 minute', interval '10 minutes') t;
         INSERT INTO stage_sparse SELECT time, device_id, value FROM ev
           WHERE device_id = (extract(epoch FROM time)::bigint / 60) % {devices} + 1
           ORDER BY time DESC LIMIT 1000;
         CREATE TABLE stage_dense (LIKE ev);
         INSERT INTO stage_dense SELECT time, device_id, value + 1000 FROM ev
           WHERE time < timestamptz '2024-01-06';
         CREATE TABLE stage_mixed (LIKE ev);
         INSERT INTO stage_mixed SELECT * FROM stage_sparse UNION ALL SELECT * FROM stage_dense;
         INSERT INTO stage_mixed SELECT t, d, 2
           FROM generate_series(timestamptz '2024-01-01' + interval '{days} days', timestamptz \
           '2024-01-01' + interval '{days_after} days' - interval '1 minute', \
           interval '1 minute') t, generate_series(1, 3) d;"
    )
}
