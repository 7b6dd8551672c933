-- Upgrade schema version 5 to version 6, as SQLite's v5_to_v6.sql: short ids (the end of a run
-- id) become an index lookup. SQLite keeps the tails in a table filled in steps; here an index
-- on the last 8 characters does it, `idx_runs_id_tail` of migrate.rs's LATE_INDEXES: built in
-- the migration's transaction while the tables are small, else afterwards with CREATE INDEX
-- CONCURRENTLY, so no writer waits on it. Readers find runs by tail with or without it.
SELECT 1;
