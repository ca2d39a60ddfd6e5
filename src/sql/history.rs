//! The run history's statements (`_backfill_ext.run`, `_backfill_ext.run_chunk`).
