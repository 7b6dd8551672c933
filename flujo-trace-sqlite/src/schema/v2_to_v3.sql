-- Upgrade schema version 2 to version 3.
-- A run's steps are read in execution order through the FSD's idx_steps_run_id, whose entries
-- are (run_id, rowid): the writer inserts each step when it starts, so rowid order is start
-- order. The (run_id, step_run_id) index of version 2 said the same thing a second time, at some
-- 80 bytes per step.
DROP INDEX IF EXISTS idx_steps_run_id_step_run_id;
