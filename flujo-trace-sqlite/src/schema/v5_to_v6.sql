-- Upgrade schema version 5 to version 6. Adds an index.

-- Short ids: `flujo lens list` shows each run by the end of its id (the last 8 to 12
-- characters, the random tail of a UUID v7, where the start is the time and shared by a burst),
-- and every command that takes RUN finds a run by it. This index makes that an index lookup:
-- `substr(run_id, -8) = ?` or `IN (...)`, then the longer suffix compared on the few rows found.
CREATE INDEX IF NOT EXISTS idx_runs_id_tail ON runs (substr(run_id, -8));
