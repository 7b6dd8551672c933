-- Upgrade schema version 1 to version 2, as SQLite's v1_to_v2.sql: only adds columns and indexes.
ALTER TABLE runs ADD COLUMN input_blob TEXT;
ALTER TABLE runs ADD COLUMN error_blob TEXT;
ALTER TABLE runs ADD COLUMN output_blob TEXT;
ALTER TABLE runs ADD COLUMN total_tokens BIGINT;
ALTER TABLE runs ADD COLUMN duration_ms BIGINT;
ALTER TABLE runs ADD COLUMN n_steps BIGINT;
ALTER TABLE runs ADD COLUMN writer_host TEXT COLLATE "C";
ALTER TABLE runs ADD COLUMN writer_pid BIGINT;
ALTER TABLE runs ADD COLUMN writer_pid_start BIGINT;

ALTER TABLE steps ADD COLUMN parent_step_run_id TEXT COLLATE "C";
ALTER TABLE steps ADD COLUMN step_kind TEXT COLLATE "C";
ALTER TABLE steps ADD COLUMN attempts BIGINT;
ALTER TABLE steps ADD COLUMN fallback_taken BOOLEAN;

CREATE INDEX idx_runs_start_time ON runs(start_time);
CREATE INDEX idx_runs_status_start_time ON runs(status, start_time);
CREATE INDEX idx_runs_pipeline_name_start_time ON runs(pipeline_name, start_time);
CREATE INDEX idx_steps_run_id_step_run_id ON steps(run_id, step_run_id);
