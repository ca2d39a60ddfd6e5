//! Datasets shared by the client tests, the demo and the benchmark.

use crate::{scalar, Client};

/// What a TimescaleDB dataset looks like.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub days: i32,
    pub devices: i32,
    /// Minutes between readings.
    pub step_minutes: i32,
    /// The time column's type: timestamptz, timestamp, date is not used here.
    pub time_type: &'static str,
    /// Hash partitions on device_id (0: none).
    pub space_partitions: i32,
    /// Which of TimescaleDB's APIs sets the hypertable up.
    pub api: Api,
}

/// The ways users set up a hypertable with compressed chunks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `create_hypertable`, `ALTER TABLE … SET (timescaledb.compress, …)`,
    /// `compress_chunk`, `add_compression_policy` (every 2.x).
    Compression,
    /// `create_hypertable`, `ALTER TABLE … SET (timescaledb.enable_columnstore, …)`,
    /// `CALL convert_to_columnstore`, `CALL add_columnstore_policy` (2.18+).
    Columnstore,
    /// `CREATE TABLE … WITH (tsdb.hypertable, tsdb.columnstore, …)`, `CALL
    /// convert_to_columnstore`, `CALL add_columnstore_policy` (2.21+).
    CreateTableWith,
}

impl Default for Dataset {
    fn default() -> Self {
        Dataset {
            days: 5,
            devices: 5,
            step_minutes: 10,
            time_type: "timestamptz",
            space_partitions: 0,
            api: Api::Compression,
        }
    }
}

pub const START: &str = "2024-01-01 00:00:00+00";

/// Creates hypertable `event_data` (1-day chunks, segmented by device_id, every chunk
/// compressed, a compression policy whose next start is pinned) and an empty staging
/// table `backfill_event_data` with the same columns.
pub fn timescale_dataset(c: &mut Client, d: &Dataset) {
    let tt = d.time_type;
    let columns = format!(
        "time {tt} NOT NULL, device_id int NOT NULL, value double precision, \
        note text, PRIMARY KEY (device_id, time)"
    );
    match d.api {
        Api::Compression | Api::Columnstore => c
            .batch_execute(&format!(
                "CREATE TABLE event_data ({columns});
                 SELECT create_hypertable('event_data', 'time', chunk_time_interval => interval '1 \
                 day');"
            ))
            .unwrap(),
        Api::CreateTableWith => c
            .batch_execute(&format!(
                "CREATE TABLE event_data ({columns})
                   WITH (tsdb.hypertable, tsdb.partition_column = 'time', tsdb.chunk_interval = '1 \
                   day',
                         tsdb.columnstore, tsdb.segmentby = 'device_id', tsdb.orderby = 'time');"
            ))
            .unwrap(),
    }
    if d.space_partitions > 0 {
        c.batch_execute(&format!(
            "SELECT add_dimension('event_data', 'device_id', number_partitions => {})",
            d.space_partitions
        ))
        .unwrap();
    }
    match d.api {
        Api::Compression => c
            .batch_execute(
                "ALTER TABLE event_data SET (timescaledb.compress, timescaledb.compress_segmentby \
                 = 'device_id',
                                             timescaledb.compress_orderby = 'time');",
            )
            .unwrap(),
        Api::Columnstore => c
            .batch_execute(
                "ALTER TABLE event_data SET (timescaledb.enable_columnstore, timescaledb.segmentby \
                 = 'device_id',
                                             timescaledb.orderby = 'time');",
            )
            .unwrap(),
        Api::CreateTableWith => {}
    }
    c.batch_execute(&format!(
        "INSERT INTO event_data (time, device_id, value)
           SELECT t::{tt}, dev, round((dev * 1000 + extract(epoch FROM t) / 60)::numeric % 997, 2)
           FROM generate_series(timestamptz '{START}', timestamptz '{START}' + interval '{} days' \
           - interval '1 minute',
                                interval '{} minutes') t,
                generate_series(1, {}) dev;
         CREATE TABLE backfill_event_data (LIKE event_data);",
        d.days, d.step_minutes, d.devices
    ))
    .unwrap();
    compress_all(c, d.api);
}

/// Compresses every chunk of `event_data` with the API the dataset was set up with, and
/// adds a compression policy that does not run during a test.
fn compress_all(c: &mut Client, api: Api) {
    match api {
        Api::Compression => {
            c.batch_execute("SELECT count(compress_chunk(ch)) FROM show_chunks('event_data') ch")
                .unwrap();
            add_pinned_policy(c, "event_data");
        }
        Api::Columnstore | Api::CreateTableWith => {
            let chunks: Vec<String> = c
                .query("SELECT ch::text FROM show_chunks('event_data') ch", &[])
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
            for ch in chunks {
                c.execute("CALL convert_to_columnstore($1::text::regclass)", &[&ch]).unwrap();
            }
            // CREATE TABLE … WITH (tsdb.columnstore) may add a policy of its own (2.22+)
            c.batch_execute(
                "CALL add_columnstore_policy('event_data', after => interval '7 days', \
                if_not_exists => true)",
            )
            .unwrap();
            c.batch_execute(
                "SELECT alter_job(job_id, next_start => '2099-01-01 00:00:00+00') FROM \
                 timescaledb_information.jobs
                 WHERE hypertable_name = 'event_data' AND proc_name = 'policy_compression'",
            )
            .unwrap();
        }
    }
}

/// SQL for the plainest set-up, for psql (the README's examples, the image test):
/// hypertable `event_data` in 1-day chunks from 2024-01-01, segmented by device_id,
/// `devices` readings of `value` every `step_minutes` for `days` days, every chunk
/// compressed, and an empty staging table `backfill_event_data`.
pub fn event_data_sql(days: i32, devices: i32, step_minutes: i32, value: i32) -> String {
    format!(
        "CREATE TABLE event_data (time timestamptz NOT NULL, device_id int NOT NULL, value float8, \
         PRIMARY KEY (device_id, time));
         SELECT create_hypertable('event_data', 'time', chunk_time_interval => interval '1 day');
         ALTER TABLE event_data SET (timescaledb.compress, timescaledb.compress_segmentby = \
         'device_id');
         INSERT INTO event_data SELECT t, d, {value} FROM \
         generate_series('2024-01-01'::timestamptz, '2024-01-01'::timestamptz + interval '{days} \
         days' - interval '1 minute', interval '{step_minutes} minutes') t, generate_series(1, \
         {devices}) d;
         SELECT count(compress_chunk(c)) FROM show_chunks('event_data') c;
         CREATE TABLE backfill_event_data (LIKE event_data);"
    )
}

/// Adds a compression policy whose schedule is pinned far ahead, so it never runs
/// during a test and its `next_start` is a known value to compare with.
pub fn add_pinned_policy(c: &mut Client, table: &str) -> i32 {
    let job: i32 =
        scalar(c, &format!("SELECT add_compression_policy('{table}', interval '7 days')"));
    c.batch_execute(&format!("SELECT alter_job({job}, next_start => '2099-01-01 00:00:00+00')"))
        .unwrap();
    job
}

/// The state a backfill promises things about.
#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub dest_rows: i64,
    pub staging_rows: i64,
    /// (chunk, status) for every chunk, by name.
    pub chunks: Vec<(String, i32)>,
    /// (next_start, scheduled) of each compression policy.
    pub policies: Vec<(String, bool)>,
}

pub fn state(c: &mut Client, dest: &str, staging: &str) -> State {
    let dest_rows: i64 = scalar(c, &format!("SELECT count(*) FROM {dest}"));
    let staging_rows: i64 = scalar(c, &format!("SELECT count(*) FROM {staging}"));
    let chunks = c
        .query(
            "SELECT chunk_name::text, _timescaledb_functions.chunk_status(format('%I.%I', \
             chunk_schema, chunk_name)::regclass)
             FROM timescaledb_information.chunks WHERE hypertable_name = $1 ORDER BY chunk_name",
            &[&dest],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let policies = c
        .query(
            "SELECT coalesce(next_start::text, 'null'), scheduled FROM timescaledb_information.jobs
             WHERE hypertable_name = $1 AND proc_name = 'policy_compression' ORDER BY job_id",
            &[&dest],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    State { dest_rows, staging_rows, chunks, policies }
}

/// Chunks that are not fully compressed (status other than exactly 1), by name.
pub fn not_fully_compressed(s: &State) -> Vec<(String, i32)> {
    s.chunks.iter().filter(|(_, st)| *st != 1).cloned().collect()
}

/// Late rows: a new device every 10 minutes over days 2-3 (2 chunks), 30 exact
/// duplicates of existing rows, and rows before the first and after the last chunk.
pub fn stage_late_rows(c: &mut Client) -> i64 {
    c.batch_execute(&format!(
        "INSERT INTO backfill_event_data (time, device_id, value)
           SELECT t, 99, 1.5 FROM generate_series(timestamptz '{START}' + interval '1 day',
                                                  timestamptz '{START}' + interval '3 days' - \
                                                  interval '1 minute', interval '10 minutes') t;
         INSERT INTO backfill_event_data (time, device_id, value)
           SELECT time, device_id, value FROM event_data WHERE device_id = 2 ORDER BY time LIMIT 30;
         INSERT INTO backfill_event_data (time, device_id, value) VALUES
           (timestamptz '{START}' - interval '3 days', 1, 0), (timestamptz '{START}' + interval \
           '40 days', 1, 0);"
    ))
    .unwrap();
    288 + 2 // new rows; the 30 duplicates are kept once
}

/// Stages a corrected value (+1) for every row of the dataset from day `from_day` on
/// (the last day of the default dataset: one whole chunk); returns the rows staged.
pub fn stage_correction_from_day(c: &mut Client, from_day: i32) -> i64 {
    c.batch_execute(&format!(
        "INSERT INTO backfill_event_data (time, device_id, value)
           SELECT time, device_id, value + 1 FROM event_data WHERE time >= timestamptz '{START}' + \
           interval '{from_day} days'"
    ))
    .unwrap();
    scalar(c, "SELECT count(*) FROM backfill_event_data")
}

/// Every chunk that was fully compressed `before` is fully compressed `after`, and the
/// compression policies' `next_start` and `scheduled` are unchanged. `what` names the
/// case in failure messages.
pub fn assert_compressed_and_policy_as_before(before: &State, after: &State, what: &str) {
    for (chunk, st) in &before.chunks {
        if *st == 1 {
            let now = after.chunks.iter().find(|(n, _)| n == chunk).map(|(_, s)| *s);
            assert_eq!(
                now,
                Some(1),
                "chunk {chunk} was compressed before and is fully compressed after ({what})"
            );
        }
    }
    assert_eq!(
        after.policies, before.policies,
        "the compression policy's next_start and scheduled are as before ({what})"
    );
}
