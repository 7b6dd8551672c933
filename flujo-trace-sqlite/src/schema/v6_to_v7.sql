-- Upgrade schema version 6 to version 7. Adds four tables (one FTS5), triggers on deletes and on
-- a changed run id; no column changes.
--
-- What is new is kept off the write path: the writer indexes the rows it recorded in the
-- background, in batches (`backfill.rs`, from `flujo_backfill.after`, the rowid up to which it
-- has indexed; rows it found not ended are noted and indexed once they have), and triggers act
-- only on deletes. Readers read the index up to `after`, the few rows after it and the noted
-- rows directly. Triggers on every insert made each commit write the new tables' pages too
-- (with one run in twenty failing, the writer's throughput fell by half here), and a trigger on
-- the writer's updates makes SQLite keep a statement journal for each of them (a tenth).

-- `flujo lens stats`: one row per ended run, in start-time order, with only what stats count,
-- and the run's rowid in `runs` (what `after` counts). Reading it is a range of its primary key,
-- some 110 bytes a run, where `runs` holds about a kilobyte a run (its input, context and error
-- inline). Runs still running (or crashed) are not in it: the indexer notes them in
-- `run_stats_pending` and adds each once it has ended; stats read those from `runs`.
CREATE TABLE IF NOT EXISTS run_stats (
    start_time TEXT NOT NULL,
    run_id TEXT NOT NULL,
    run_rowid INTEGER NOT NULL,
    pipeline_name TEXT NOT NULL,
    pipeline_version TEXT NOT NULL,
    status TEXT NOT NULL,
    duration_ms INTEGER,
    total_tokens INTEGER,
    total_cost REAL,
    PRIMARY KEY (start_time, run_id)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS run_stats_pending (
    run_rowid INTEGER PRIMARY KEY
);

CREATE TRIGGER IF NOT EXISTS run_stats_delete AFTER DELETE ON runs BEGIN
    DELETE FROM run_stats WHERE start_time = old.start_time AND run_id = old.run_id;
    DELETE FROM run_stats_pending WHERE run_rowid = old.rowid;
END;

-- `flujo lens search --in error`: every step's error text in an FTS5 index of trigrams (any
-- substring of 3 characters or more, case folded for every script), its rowid the step's rowid,
-- so matches come newest first in the order steps were recorded. It is contentless (the text
-- stays in `steps` only: readers join it there) and deletes by rowid; a query of 1 or 2 characters, below the trigrams, reads the indexed rowids
-- and their steps' errors, not every step.
CREATE VIRTUAL TABLE IF NOT EXISTS error_search USING fts5(
    error, tokenize = 'trigram', content = '', contentless_delete = 1
);

-- the steps the indexer found not ended: indexed once they have (an error is recorded with
-- the step's end)
CREATE TABLE IF NOT EXISTS error_search_pending (
    step_rowid INTEGER PRIMARY KEY
);

CREATE TRIGGER IF NOT EXISTS error_search_delete AFTER DELETE ON steps BEGIN
    DELETE FROM error_search WHERE rowid = old.rowid;
    DELETE FROM error_search_pending WHERE step_rowid = old.rowid;
END;

-- A run whose id is changed (never by flujo's writer; by a tool that rewrites ids) keeps its
-- short id: version 6 kept run_tails on insert and delete only.
CREATE TRIGGER IF NOT EXISTS run_tails_update AFTER UPDATE OF run_id ON runs BEGIN
    DELETE FROM run_tails WHERE tail = substr(old.run_id, -8) AND run_id = old.run_id;
    INSERT OR IGNORE INTO run_tails (tail, run_id) VALUES (substr(new.run_id, -8), new.run_id);
END;

-- The writer's indexing of this version: `after` is the rowid (of `runs`, of `steps`) up to
-- which rows are indexed, `done` 1 once it has caught up with the rows before the upgrade.
INSERT OR IGNORE INTO flujo_backfill (name, after, done)
VALUES ('run_stats', '0', NOT EXISTS (SELECT 1 FROM runs));
INSERT OR IGNORE INTO flujo_backfill (name, after, done)
VALUES ('error_search', '0', NOT EXISTS (SELECT 1 FROM steps));
