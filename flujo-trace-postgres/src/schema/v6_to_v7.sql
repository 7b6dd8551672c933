-- Upgrade schema version 6 to version 7, as SQLite's v6_to_v7.sql: `flujo lens stats` and
-- `flujo lens search`. SQLite keeps a table of ended runs and an FTS5 index of errors, filled in
-- steps; here indexes do it (`idx_runs_stats`, and `idx_steps_error_trgm` or `idx_steps_error`,
-- in migrate.rs's LATE_INDEXES): built in the migration's transaction while the tables are
-- small, else afterwards with CREATE INDEX CONCURRENTLY, so no writer waits on them. Readers
-- answer the same without them (a scan), and say so.

-- search in errors: pg_trgm where the extension can be created (it is a trusted extension: a
-- database owner may create it); where it cannot, a partial index of the steps that have an
-- error. The lens asks which one exists.
DO $$
BEGIN
    BEGIN
        CREATE EXTENSION IF NOT EXISTS pg_trgm;
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'pg_trgm is not available (%): errors are searched by a scan of the steps that have one', SQLERRM;
    END;
END
$$;
