-- Upgrade schema version 3 to version 4, as SQLite's v3_to_v4.sql: the step whose row holds a
-- run's output. This store keeps every run's output in runs.output_blob (TOAST compresses it),
-- so its writer leaves the column NULL; it is there so both stores have the same columns.
ALTER TABLE runs ADD COLUMN output_step_run_id TEXT COLLATE "C";
