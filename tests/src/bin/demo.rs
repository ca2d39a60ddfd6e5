//! The demo: a throwaway cluster, a month of readings from 20 devices in a
//! hypertable with compressed daily chunks, a batch of late rows in a staging table,
//! and the backfill job run by TimescaleDB's scheduler through `add_job`, exactly as
//! users type it. Prints what moved. Without TimescaleDB, a partitioned table and CALL.

use backfill_ext_client_tests::config::{event_config, literal};
use backfill_ext_client_tests::fixtures::{state, timescale_dataset, Dataset, State, START};
use backfill_ext_client_tests::{scalar, wait_for_job_run, Client, Cluster, Options};
use serde_json::json;
use std::time::{Duration, Instant};

fn main() {
    let cl = Cluster::start(Options { timescale: true, ..Default::default() });
    println!("backfill_ext demo: throwaway cluster in {} on port {}", cl.dir.display(), cl.port);
    if cl.timescale {
        timescale_demo(&cl);
    } else {
        println!("(no full TimescaleDB is installed: showing a partitioned table instead)\n");
        plain_demo(&cl);
    }
}

/// (chunk, day, rows in the chunk, staging rows for it, status)
/// A chunk: name, first day, rows, staged rows, status.
type ChunkRow = (String, String, i64, i64, i32);

fn chunk_table(c: &mut Client) -> Vec<ChunkRow> {
    c.query(
        "SELECT chunk_name::text, to_char(range_start, 'YYYY-MM-DD'),
                (SELECT count(*) FROM event_data e WHERE e.time >= c.range_start AND e.time < \
                c.range_end),
                (SELECT count(*) FROM backfill_event_data s WHERE s.time >= c.range_start AND \
                s.time < c.range_end),
                _timescaledb_functions.chunk_status(format('%I.%I', chunk_schema, \
                chunk_name)::regclass)
         FROM timescaledb_information.chunks c WHERE hypertable_name = 'event_data' ORDER BY \
         range_start",
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
    .collect()
}

fn status_text(s: Option<i32>) -> &'static str {
    match s {
        None => "-",
        Some(1) => "compressed",
        Some(0) => "uncompressed",
        Some(s) if s & 8 != 0 => "PARTIAL",
        Some(_) => "other",
    }
}

fn timescale_demo(cl: &Cluster) {
    let mut c = cl.create_db("demo");
    let version: String =
        scalar(&mut c, "SELECT extversion::text FROM pg_extension WHERE extname = 'timescaledb'");
    let d = Dataset { days: 30, devices: 20, step_minutes: 1, ..Default::default() };
    let t = Instant::now();
    timescale_dataset(&mut c, &d);
    println!(
        "TimescaleDB {version}: hypertable event_data, {} days x {} devices at 1-minute \
         resolution, daily chunks, all compressed ({:.1} s)",
        d.days,
        d.devices,
        t.elapsed().as_secs_f64()
    );
    stage_demo_rows(&mut c);
    let before: State = state(&mut c, "event_data", "backfill_event_data");
    let expected = expected_rows(&mut c);
    let chunks_before = chunk_table(&mut c);
    println!("staging table backfill_event_data: {} late rows\n", before.staging_rows);
    run_job(&mut c);
    let after = state(&mut c, "event_data", "backfill_event_data");
    let chunks_after = chunk_table(&mut c);
    let untouched = print_chunks(&chunks_before, &chunks_after);
    println!("({untouched} chunks without late rows were not touched)\n");
    println!(
        "rows in event_data:   {} -> {} (+{})",
        before.dest_rows,
        after.dest_rows,
        after.dest_rows - before.dest_rows
    );
    println!("rows in staging:      {} -> {}", before.staging_rows, after.staging_rows);
    report_rows(&expected, after.dest_rows - before.dest_rows);
    let partial = after.chunks.iter().filter(|(_, s)| *s & 8 != 0).count();
    println!("partial chunks:       {partial}");
    println!(
        "compression policy:   next_start {} before, {} after (pinned ahead for the demo; pushed \
         out during the run)",
        before.policies[0].0, after.policies[0].0
    );
}

/// Late rows: a device that was offline uploads days 10-12; corrections for a few hours
/// already stored (duplicates of existing keys); and a day of rows from after the last
/// chunk.
fn stage_demo_rows(c: &mut Client) {
    c.batch_execute(&format!(
        "INSERT INTO backfill_event_data (time, device_id, value)
           SELECT t, 21, 20 + random() FROM generate_series(timestamptz '{START}' + interval '10 \
           days',
               timestamptz '{START}' + interval '13 days' - interval '1 minute', interval '1 \
               minute') t;
         INSERT INTO backfill_event_data (time, device_id, value, note)
           SELECT time, device_id, value, 'resent' FROM event_data
           WHERE time >= timestamptz '{START}' + interval '20 days' AND time < timestamptz \
           '{START}' + interval '20 days 3 hours';
         INSERT INTO backfill_event_data (time, device_id, value)
           SELECT t, 1, 1 FROM generate_series(timestamptz '{START}' + interval '30 days',
               timestamptz '{START}' + interval '31 days' - interval '1 minute', interval '1 \
               minute') t;"
    ))
    .unwrap();
}

/// Schedules the backfill with `add_job` and waits for TimescaleDB's scheduler to run it;
/// exits with the job's errors if it failed.
fn run_job(c: &mut Client) {
    let config = literal(&event_config(json!({})));
    let sql = format!("SELECT add_job('backfill_on_schedule', '10 days', {config}, NOW())");
    println!("psql> {sql}");
    let job: i32 = scalar(c, &sql);
    let t = Instant::now();
    let (ok, failed) = wait_for_job_run(c, job, Duration::from_secs(600));
    println!(
        "job {job} ran on TimescaleDB's scheduler: {ok} success, {failed} failures ({:.1} s)\n",
        t.elapsed().as_secs_f64()
    );
    if failed > 0 {
        for r in c
            .query(
                "SELECT coalesce(err_message, '') FROM timescaledb_information.job_errors \
            WHERE job_id = $1",
                &[&job],
            )
            .unwrap()
        {
            println!("job error: {}", r.get::<_, String>(0));
        }
        std::process::exit(1);
    }
}

/// Prints the chunks a run touched, before and after; returns how many it did not touch.
fn print_chunks(before: &[ChunkRow], after: &[ChunkRow]) -> usize {
    println!(
        "{:<20} {:<11} {:>8} {:>10} {:>10} {:>8}  {:<13} {:<13}",
        "chunk", "day", "staged", "rows", "after", "added", "status before", "status after"
    );
    let mut untouched = 0;
    for (name, day, rows, _, st) in after {
        let prev = before.iter().find(|x| &x.0 == name);
        // a new chunk: all its rows came from staging
        let (staged, rows_before, st_before) =
            prev.map(|p| (p.3, p.2, Some(p.4))).unwrap_or((*rows, 0, None));
        if staged == 0 && prev.is_some() {
            untouched += 1;
            continue;
        }
        println!(
            "{:<20} {:<11} {:>8} {:>10} {:>10} {:>8}  {:<13} {:<13}",
            name,
            day,
            staged,
            rows_before,
            rows,
            rows - rows_before,
            status_text(st_before),
            status_text(Some(*st))
        );
    }
    untouched
}

fn plain_demo(cl: &Cluster) {
    let mut c = cl.create_db("demo");
    c.batch_execute(
        "CREATE TABLE event_data (time timestamptz NOT NULL, device_id int NOT NULL, value float8, \
         PRIMARY KEY (device_id, time))
           PARTITION BY RANGE (time);
         CREATE TABLE event_data_2024_01 PARTITION OF event_data FOR VALUES FROM ('2024-01-01') TO \
         ('2024-02-01');
         CREATE TABLE event_data_2024_02 PARTITION OF event_data FOR VALUES FROM ('2024-02-01') TO \
         ('2024-03-01');
         INSERT INTO event_data SELECT t, d, random() FROM \
         generate_series('2024-01-01'::timestamptz, '2024-02-29', '1 minute') t, \
         generate_series(1, 5) d;
         CREATE TABLE backfill_event_data (LIKE event_data);
         INSERT INTO backfill_event_data SELECT t, 6, 1 FROM \
         generate_series('2024-01-10'::timestamptz, '2024-02-10', '10 minutes') t;
         INSERT INTO backfill_event_data SELECT time, device_id, value FROM event_data WHERE \
         device_id = 1 LIMIT 500;",
    )
    .unwrap();
    let staged: i64 = scalar(&mut c, "SELECT count(*) FROM backfill_event_data");
    let before: i64 = scalar(&mut c, "SELECT count(*) FROM event_data");
    let expected = expected_rows(&mut c);
    let sql = "CALL backfill_on_schedule(NULL, \
        '{\"staging_table\":\"backfill_event_data\",\"destination_hypertable\":\"event_data\"}')";
    println!("psql> {sql}");
    c.batch_execute(sql).unwrap();
    let after: i64 = scalar(&mut c, "SELECT count(*) FROM event_data");
    let left: i64 = scalar(&mut c, "SELECT count(*) FROM backfill_event_data");
    println!("rows in event_data: {before} -> {after} (+{})", after - before);
    println!("rows in staging:    {staged} -> {left}");
    report_rows(&expected, after - before);
}

/// What the staged rows should do, counted before the run: (rows whose key is new,
/// rows whose key is already stored, which DO NOTHING keeps as stored).
fn expected_rows(c: &mut Client) -> (i64, i64) {
    let row = c
        .query_one(
            "SELECT count(DISTINCT (s.time, s.device_id)) FILTER (WHERE NOT EXISTS (SELECT 1 FROM \
             event_data e WHERE e.time = s.time AND e.device_id = s.device_id)),
                    count(*) FILTER (WHERE EXISTS (SELECT 1 FROM event_data e WHERE e.time = \
                    s.time AND e.device_id = s.device_id))
             FROM backfill_event_data s",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// The rows added against what was expected; any difference is a lost or doubled row.
fn report_rows(&(new_keys, stored): &(i64, i64), added: i64) {
    println!("already stored, kept: {stored}");
    println!("new keys staged:      {new_keys}, rows added: {added}");
    println!("lost or doubled:      {}", (new_keys - added).abs());
    if new_keys != added {
        eprintln!("demo: {new_keys} new rows were staged but {added} were added");
        std::process::exit(1);
    }
}
