// #[pg_test]s: catalog lookups and planning inside a rolled-back transaction.
