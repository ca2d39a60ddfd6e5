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

GRANT USAGE ON SCHEMA _backfill_ext TO PUBLIC;
GRANT SELECT, INSERT, DELETE ON _backfill_ext.policy_hold TO PUBLIC;
