-- Upgrade schema version 5 to version 6, as SQLite's v5_to_v6.sql: an index on the last 8
-- characters of the run id, so a short id (the end of the id) is an index lookup.
CREATE INDEX IF NOT EXISTS idx_runs_id_tail ON runs ((right(run_id, 8)));
