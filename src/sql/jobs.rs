//! Scheduling with TimescaleDB's job API, and finding the jobs a backfill made.
