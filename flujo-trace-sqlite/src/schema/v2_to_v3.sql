-- Upgrade schema version 2 to version 3. Adds a column, drops an index of our own.

-- the PID namespace of the process that wrote the run (the inode of /proc/self/ns/pid): two
-- containers with one host name have the same pids for different processes, so a reader judges
-- a run crashed only when it shares the writer's namespace (NULL: written by schema v2)
ALTER TABLE runs ADD COLUMN writer_pid_ns INTEGER;

-- A run's steps are read in execution order through the FSD's idx_steps_run_id, whose entries
-- are (run_id, rowid): the writer inserts each step when it starts, so rowid order is start
-- order. The (run_id, step_run_id) index of version 2 said the same thing a second time, at some
-- 80 bytes per step.
DROP INDEX IF EXISTS idx_steps_run_id_step_run_id;
