-- Upgrade schema version 2 to version 3, as SQLite's v2_to_v3.sql: the writer's PID namespace,
-- and the (run_id, step_run_id) index dropped (steps are read in (run_id, seq) order).
ALTER TABLE runs ADD COLUMN writer_pid_ns BIGINT;
DROP INDEX IF EXISTS idx_steps_run_id_step_run_id;
