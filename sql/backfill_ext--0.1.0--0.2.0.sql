-- backfill_ext 0.1.0 -> 0.2.0 (ALTER EXTENSION backfill_ext UPDATE)
\echo Use "ALTER EXTENSION backfill_ext UPDATE" to load this file. \quit

-- pg_dump keeps the run history and the policy holds with the database's data
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.policy_hold', '');
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.run', '');
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.run_chunk', '');
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.run_id_seq', '');

-- a run that found another run working on its destination is recorded as 'skipped'
ALTER TABLE _backfill_ext.run DROP CONSTRAINT run_status_check;
ALTER TABLE _backfill_ext.run ADD CONSTRAINT run_status_check CHECK (status IN ('running', 'succeeded', 'failed', 'skipped'));

CREATE OR REPLACE VIEW @extschema@.backfill_status WITH (security_invoker = true) AS
SELECT DISTINCT ON (destination) destination, staging, run_id, job_id, status, started, finished, duration, rows_moved,
       conflicts, chunks_decompressed, chunks_recompressed, new_chunks, stopped_early,
       (SELECT count(*) FROM _backfill_ext.run_chunk c WHERE c.run_id = r.run_id) AS chunks_done,
       sqlstate, error
FROM @extschema@.backfill_runs r
WHERE status <> 'skipped'
ORDER BY destination, started DESC, run_id DESC;
COMMENT ON VIEW @extschema@.backfill_status IS 'The latest backfill run per destination (runs skipped because another was working on it are left out)';

-- Only the extension writes its state, as the tables' owner (the library's
-- spi::state): no role keeps a privilege to write it, and the policies only show.
REVOKE INSERT, UPDATE, DELETE ON _backfill_ext.policy_hold, _backfill_ext.run, _backfill_ext.run_chunk FROM PUBLIC;
REVOKE ALL ON SEQUENCE _backfill_ext.run_id_seq FROM PUBLIC;
DROP POLICY owner_only ON _backfill_ext.policy_hold;
CREATE POLICY owner_only ON _backfill_ext.policy_hold FOR SELECT
    USING (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = hypertable), 'USAGE'));
DROP POLICY runner_or_owner ON _backfill_ext.run;
CREATE POLICY runner_or_owner ON _backfill_ext.run FOR SELECT
    USING (pg_catalog.pg_has_role(run_by, 'USAGE')
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                      WHERE c.oid = destination_oid AND pg_catalog.pg_has_role(c.relowner, 'USAGE')));
DROP POLICY of_visible_runs ON _backfill_ext.run_chunk;
CREATE POLICY of_visible_runs ON _backfill_ext.run_chunk FOR SELECT
    USING (EXISTS (SELECT 1 FROM _backfill_ext.run r WHERE r.id = run_id));

-- continuous aggregates a run brought up to date
CREATE TABLE _backfill_ext.run_refresh (
    run_id               bigint NOT NULL REFERENCES _backfill_ext.run (id) ON DELETE CASCADE,
    continuous_aggregate text NOT NULL,
    range_start          text,
    range_end            text,
    status               text NOT NULL CHECK (status IN ('refreshing', 'refreshed', 'not refreshed', 'failed')),
    note                 text,
    refresh_ms           double precision,
    finished             timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON _backfill_ext.run_refresh (run_id);
GRANT SELECT ON _backfill_ext.run_refresh TO PUBLIC;
ALTER TABLE _backfill_ext.run_refresh ENABLE ROW LEVEL SECURITY;
CREATE POLICY of_visible_runs ON _backfill_ext.run_refresh FOR SELECT
    USING (EXISTS (SELECT 1 FROM _backfill_ext.run r WHERE r.id = run_id));
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.run_refresh', '');

CREATE VIEW @extschema@.backfill_run_refreshes WITH (security_invoker = true) AS
SELECT run_id, continuous_aggregate, range_start, range_end, status, note, round(refresh_ms::numeric, 1) AS refresh_ms, finished
FROM _backfill_ext.run_refresh;
COMMENT ON VIEW @extschema@.backfill_run_refreshes IS 'The continuous aggregates each backfill run brought up to date, and the time range';
GRANT SELECT ON @extschema@.backfill_run_refreshes TO PUBLIC;

-- A chunk transaction a run hands to a background worker (config key `workers`):
-- what to do, written by the run before it starts the worker; what happened, written
-- by the worker in the transaction that moves the rows (or, on an error, after it
-- rolled back). The run reads and deletes it once the worker has stopped.
CREATE TABLE _backfill_ext.run_task (
    run_id   bigint NOT NULL REFERENCES _backfill_ext.run (id) ON DELETE CASCADE,
    task     integer NOT NULL,
    work     jsonb NOT NULL,
    status   text NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'done', 'failed')),
    results  jsonb,
    sqlstate text,
    error    text,
    detail   text,
    hint     text,
    PRIMARY KEY (run_id, task)
);
-- no role but the owner reads or writes tasks: a worker reads its own through the
-- extension, only while its run is running
ALTER TABLE _backfill_ext.run_task ENABLE ROW LEVEL SECURITY;

-- The staging rows of a task's chunks, where the run routed them (`tids`: the row ids
-- of chunk number `idx`, in slices): written by the run with its task, read by the
-- worker into its own temporary route table. Gone with the task.
CREATE TABLE _backfill_ext.run_task_rows (
    run_id bigint NOT NULL,
    task   integer NOT NULL,
    idx    integer NOT NULL,
    tids   tid[] NOT NULL,
    FOREIGN KEY (run_id, task) REFERENCES _backfill_ext.run_task (run_id, task) ON DELETE CASCADE
);
CREATE INDEX ON _backfill_ext.run_task_rows (run_id, task);
-- the ids as they are, never compressed: compressing a slice of 8,192 ids took longer
-- (about half a millisecond) than writing it, for a row that lives one task
ALTER TABLE _backfill_ext.run_task_rows ALTER COLUMN tids SET STORAGE EXTERNAL;
-- as the tasks: no role but the owner reads or writes them
ALTER TABLE _backfill_ext.run_task_rows ENABLE ROW LEVEL SECURITY;

-- the dry run of a job's config: its conflict action and other keys decide the plan
CREATE FUNCTION @extschema@.backfill_plan(config jsonb)
RETURNS TABLE (chunk text, range_start text, range_end text, compressed boolean, staging_rows bigint, action text)
LANGUAGE c AS 'MODULE_PATHNAME', 'backfill_plan_of_config_wrapper';
COMMENT ON FUNCTION @extschema@.backfill_plan(jsonb) IS 'What a backfill run with this config would do, chunk by chunk; changes nothing';
