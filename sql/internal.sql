-- Internal state of backfill_ext, kept apart from the user-facing schema.
CREATE SCHEMA _backfill_ext;
COMMENT ON SCHEMA _backfill_ext IS 'backfill_ext internal state; not for direct use';

-- A compression policy schedule pushed out by a run, with the schedule it had
-- before. Written in the transaction that pushes the policy, removed in the one that
-- puts it back: a run that was interrupted leaves its row, and the next run restores
-- the original schedule recorded here.
CREATE TABLE _backfill_ext.policy_hold (
    job_id              integer PRIMARY KEY,
    hypertable          regclass NOT NULL,
    original_next_start timestamptz,
    original_scheduled  boolean NOT NULL DEFAULT true,
    held_at             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ON _backfill_ext.policy_hold (hypertable);

-- Only the extension writes its state, as the tables' owner (the library's
-- spi::state); other roles may read what the policies below show them.
GRANT USAGE ON SCHEMA _backfill_ext TO PUBLIC;
GRANT SELECT ON _backfill_ext.policy_hold TO PUBLIC;
-- a role sees only holds on hypertables it owns (or whose owner it is a member of)
ALTER TABLE _backfill_ext.policy_hold ENABLE ROW LEVEL SECURITY;
CREATE POLICY owner_only ON _backfill_ext.policy_hold FOR SELECT
    USING (pg_catalog.pg_has_role((SELECT c.relowner FROM pg_catalog.pg_class c WHERE c.oid = hypertable), 'USAGE'));

-- Run history: one row per run, however it was started, updated (and committed)
-- after every chunk so another session can watch a run live. A run that found
-- another run working on its destination is recorded as 'skipped'.
CREATE TABLE _backfill_ext.run (
    id                  bigserial PRIMARY KEY,
    job_id              integer,
    started             timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished            timestamptz,
    status              text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed', 'skipped')),
    staging             text NOT NULL,
    destination         text NOT NULL,
    destination_oid     oid,
    pid                 integer NOT NULL DEFAULT pg_backend_pid(),
    rows_moved          bigint NOT NULL DEFAULT 0,
    conflicts           bigint NOT NULL DEFAULT 0,
    chunks_decompressed integer NOT NULL DEFAULT 0,
    chunks_recompressed integer NOT NULL DEFAULT 0,
    new_chunks          integer NOT NULL DEFAULT 0,
    stopped_early       boolean NOT NULL DEFAULT false,
    sqlstate            text,
    error               text,
    run_by              name NOT NULL DEFAULT current_user
);
CREATE INDEX ON _backfill_ext.run (destination_oid, started DESC);
CREATE INDEX ON _backfill_ext.run (started);

-- One row per chunk a run finished, committed with the chunk.
CREATE TABLE _backfill_ext.run_chunk (
    run_id        bigint NOT NULL REFERENCES _backfill_ext.run (id) ON DELETE CASCADE,
    chunk         text NOT NULL,
    range_start   text,
    range_end     text,
    rows_moved    bigint NOT NULL,
    conflicts     bigint NOT NULL,
    decompressed  boolean NOT NULL,
    recompressed  boolean NOT NULL,
    decompress_ms double precision NOT NULL,
    insert_ms     double precision NOT NULL,
    recompress_ms double precision NOT NULL,
    strategy      text NOT NULL DEFAULT 'decompress',
    finished      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX ON _backfill_ext.run_chunk (run_id);

-- One row per continuous aggregate a run brought up to date (or could not), with the
-- time range: written as 'refreshing' before the refresh (which commits on its own)
-- and marked 'refreshed' after it.
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

GRANT SELECT ON _backfill_ext.run, _backfill_ext.run_chunk, _backfill_ext.run_refresh TO PUBLIC;
REVOKE ALL ON SEQUENCE _backfill_ext.run_id_seq FROM PUBLIC;
-- a role sees the runs it made, and the runs on destinations it owns
ALTER TABLE _backfill_ext.run ENABLE ROW LEVEL SECURITY;
CREATE POLICY runner_or_owner ON _backfill_ext.run FOR SELECT
    USING (pg_catalog.pg_has_role(run_by, 'USAGE')
           OR EXISTS (SELECT 1 FROM pg_catalog.pg_class c
                      WHERE c.oid = destination_oid AND pg_catalog.pg_has_role(c.relowner, 'USAGE')));
ALTER TABLE _backfill_ext.run_chunk ENABLE ROW LEVEL SECURITY;
CREATE POLICY of_visible_runs ON _backfill_ext.run_chunk FOR SELECT
    USING (EXISTS (SELECT 1 FROM _backfill_ext.run r WHERE r.id = run_id));
ALTER TABLE _backfill_ext.run_refresh ENABLE ROW LEVEL SECURITY;
CREATE POLICY of_visible_runs ON _backfill_ext.run_refresh FOR SELECT
    USING (EXISTS (SELECT 1 FROM _backfill_ext.run r WHERE r.id = run_id));

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

-- pg_dump keeps the run history and the policy holds with the database's data
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.policy_hold', '');
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.run', '');
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.run_chunk', '');
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.run_refresh', '');
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.run_id_seq', '');
