-- Upgrade schema version 2 to version 3. Only adds columns.
-- the PID namespace of the process that wrote the run (the inode of /proc/self/ns/pid): two
-- containers with one host name have the same pids for different processes, so a reader judges
-- a run crashed only when it shares the writer's namespace (NULL: written by schema v2)
ALTER TABLE runs ADD COLUMN writer_pid_ns INTEGER;
