-- Upgrade schema version 1 (FSD-08 section 5.2) to version 2. Only adds columns and indexes:
-- nothing of version 1 is renamed or removed.
ALTER TABLE runs ADD COLUMN input_blob TEXT;
ALTER TABLE runs ADD COLUMN error_blob TEXT;
-- the run's final output, JSON text (only when completed)
ALTER TABLE runs ADD COLUMN output_blob TEXT;
ALTER TABLE runs ADD COLUMN total_tokens INTEGER;
ALTER TABLE runs ADD COLUMN duration_ms INTEGER;
ALTER TABLE runs ADD COLUMN n_steps INTEGER;
-- the process that wrote the run, so a run left `running` by a dead process reads as crashed
ALTER TABLE runs ADD COLUMN writer_host TEXT;
ALTER TABLE runs ADD COLUMN writer_pid INTEGER;
ALTER TABLE runs ADD COLUMN writer_pid_start INTEGER;

ALTER TABLE steps ADD COLUMN parent_step_run_id TEXT;
ALTER TABLE steps ADD COLUMN step_kind TEXT;
ALTER TABLE steps ADD COLUMN attempts INTEGER;
-- 1 when the step's fallback produced its output, 0 when not, NULL when not recorded
ALTER TABLE steps ADD COLUMN fallback_taken INTEGER;

-- newest-first listing, plain and filtered, never scans or sorts
CREATE INDEX IF NOT EXISTS idx_runs_start_time ON runs(start_time);
CREATE INDEX IF NOT EXISTS idx_runs_status_start_time ON runs(status, start_time);
CREATE INDEX IF NOT EXISTS idx_runs_pipeline_name_start_time ON runs(pipeline_name, start_time);
-- a run's steps in execution order (step_run_id is a UUID v7, so it sorts by start)
CREATE INDEX IF NOT EXISTS idx_steps_run_id_step_run_id ON steps(run_id, step_run_id);
