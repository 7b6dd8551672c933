-- Upgrade schema version 5 to version 6, as SQLite's v5_to_v6.sql: short ids (the end of a run
-- id) become an index lookup. SQLite keeps the tails in a table filled in steps; here an index
-- on the last 8 characters does it: built in the migration's transaction, during which other
-- writers' statements wait on the lock (they hold their rows; none is lost).
CREATE INDEX IF NOT EXISTS idx_runs_id_tail ON runs ((right(run_id, 8)));
