-- Upgrade schema version 4 to version 5. Adds a column.

-- The run span's OpenTelemetry trace id (32 lowercase hex digits), recorded with the run's end
-- when an OpenTelemetry layer exported the run: `flujo lens show` prints it, a link from the
-- terminal to the trace in a tracing backend. NULL: not exported, still running, or a run of
-- version 4 or before.
ALTER TABLE runs ADD COLUMN trace_id TEXT;
