-- User-facing views over the run history (in the extension's schema).
CREATE VIEW backfill_runs WITH (security_invoker = true) AS
SELECT id AS run_id, job_id, started, finished, status, staging, destination, rows_moved, conflicts,
       chunks_decompressed, chunks_recompressed, new_chunks, stopped_early, sqlstate, error, run_by,
       coalesce(finished, clock_timestamp()) - started AS duration
FROM _backfill_ext.run;
COMMENT ON VIEW backfill_runs IS 'Every backfill run, newest last; kept for history_retention (default 30 days)';

CREATE VIEW backfill_run_chunks WITH (security_invoker = true) AS
SELECT run_id, chunk, range_start, range_end, rows_moved, conflicts, strategy, decompressed, recompressed,
       round(decompress_ms::numeric, 1) AS decompress_ms, round(insert_ms::numeric, 1) AS insert_ms,
       round(recompress_ms::numeric, 1) AS recompress_ms, finished
FROM _backfill_ext.run_chunk;
COMMENT ON VIEW backfill_run_chunks IS 'What each backfill run did to each chunk';

CREATE VIEW backfill_status WITH (security_invoker = true) AS
SELECT DISTINCT ON (destination) destination, staging, run_id, job_id, status, started, finished, duration, rows_moved,
       conflicts, chunks_decompressed, chunks_recompressed, new_chunks, stopped_early,
       (SELECT count(*) FROM _backfill_ext.run_chunk c WHERE c.run_id = r.run_id) AS chunks_done,
       sqlstate, error
FROM backfill_runs r
WHERE status <> 'skipped'
ORDER BY destination, started DESC, run_id DESC;
COMMENT ON VIEW backfill_status IS 'The latest backfill run per destination (runs skipped because another was working on it are left out)';
CREATE VIEW backfill_run_refreshes WITH (security_invoker = true) AS
SELECT run_id, continuous_aggregate, range_start, range_end, status, note, round(refresh_ms::numeric, 1) AS refresh_ms, finished
FROM _backfill_ext.run_refresh;
COMMENT ON VIEW backfill_run_refreshes IS 'The continuous aggregates each backfill run brought up to date, and the time range';

GRANT SELECT ON backfill_runs, backfill_run_chunks, backfill_status, backfill_run_refreshes TO PUBLIC;
