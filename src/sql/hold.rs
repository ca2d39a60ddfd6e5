//! The destination's advisory lock and the compression policy hold
//! (`_backfill_ext.policy_hold`).
