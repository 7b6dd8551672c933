-- Upgrade schema version 3 to version 4. Adds a column.

-- A completed run's output is its last top-level step's output, byte for byte: the writer keeps
-- it once, in that step's row, and names the step here, leaving runs.output_blob NULL (~1 KB
-- less per run at ~1 KB outputs). Readers take COALESCE(output_blob, that step's output_blob).
-- NULL: the output is in output_blob (a run of version 3 or before, or an output of its own).
ALTER TABLE runs ADD COLUMN output_step_run_id TEXT;
