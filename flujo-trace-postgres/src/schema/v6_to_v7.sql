-- Upgrade schema version 6 to version 7, as SQLite's v6_to_v7.sql: `flujo lens stats` and
-- `flujo lens search`. SQLite keeps a table of ended runs and an FTS5 index of errors, filled in
-- steps; here two indexes do it, built in the migration's transaction (other writers'
-- statements wait on the lock meanwhile; they hold their rows, none is lost).

-- stats: a window of runs by start time, with every column stats count in the index itself, so
-- a window is an index-only scan once the table is vacuumed (autovacuum does it)
CREATE INDEX IF NOT EXISTS idx_runs_stats ON runs (start_time)
    INCLUDE (pipeline_name, pipeline_version, status, duration_ms, total_tokens, total_cost);

-- search in errors: a trigram index of pg_trgm where the extension can be created (it is a
-- trusted extension: a database owner may create it); where it cannot, a partial index of the
-- steps that have an error, so a search reads only those. The lens asks which one exists.
DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'pg_trgm is not available (%): errors are searched by a scan of the steps that have one', SQLERRM;
    END;
    IF EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        EXECUTE 'CREATE INDEX IF NOT EXISTS idx_steps_error_trgm ON steps '
            'USING gin (lower(error_blob) gin_trgm_ops) WHERE error_blob IS NOT NULL';
    ELSE
        EXECUTE 'CREATE INDEX IF NOT EXISTS idx_steps_error ON steps (step_run_id) '
            'WHERE error_blob IS NOT NULL';
    END IF;
END
$$;
