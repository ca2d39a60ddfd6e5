-- backfill_ext 0.1.0 -> 0.2.0 (ALTER EXTENSION backfill_ext UPDATE)
\echo Use "ALTER EXTENSION backfill_ext UPDATE" to load this file. \quit

-- pg_dump keeps the run history and the policy holds with the database's data
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.policy_hold', '');
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.run', '');
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.run_chunk', '');
SELECT pg_catalog.pg_extension_config_dump('_backfill_ext.run_id_seq', '');
