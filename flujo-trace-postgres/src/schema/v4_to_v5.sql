-- Upgrade schema version 4 to version 5, as SQLite's v4_to_v5.sql: the run span's OpenTelemetry
-- trace id, recorded with the run's end when an OpenTelemetry layer exported the run.
ALTER TABLE runs ADD COLUMN trace_id TEXT COLLATE "C";
