-- Upgrade schema version 5 to version 6. Adds two tables and two triggers; no column changes.

-- Short ids: `flujo lens list` shows each run by the end of its id (the last 8 to 12
-- characters, the random tail of a UUID v7, where the start is the time and shared by a burst),
-- and every command that takes RUN finds a run by it. `run_tails` holds each run's last 8
-- characters with its id, so that is one primary-key probe. An index on
-- `substr(run_id, -8)` would do the same, but building it reads every run in one statement
-- under the write lock (11 s at 1,000,000 runs here, longer than other writers wait): the
-- triggers keep the table up to date from now on, and the writer fills it for the runs before
-- in short transactions while idle (`flujo_backfill`), so no writer waits long on the upgrade.
CREATE TABLE IF NOT EXISTS run_tails (
    tail TEXT NOT NULL,
    run_id TEXT NOT NULL,
    PRIMARY KEY (tail, run_id)
) WITHOUT ROWID;

CREATE TRIGGER IF NOT EXISTS run_tails_insert AFTER INSERT ON runs BEGIN
    INSERT OR IGNORE INTO run_tails (tail, run_id) VALUES (substr(new.run_id, -8), new.run_id);
END;

CREATE TRIGGER IF NOT EXISTS run_tails_delete AFTER DELETE ON runs BEGIN
    DELETE FROM run_tails WHERE tail = substr(old.run_id, -8) AND run_id = old.run_id;
END;

-- Work the writer does after an upgrade, in steps (`backfill.rs`): `after` is the number of the
-- next step (one per range of tails), `done` 1 once every run before the upgrade is in.
-- Readers use `run_tails` only once `done` is 1 (before, they scan the ids).
CREATE TABLE IF NOT EXISTS flujo_backfill (
    name TEXT PRIMARY KEY,
    after TEXT NOT NULL,
    done INTEGER NOT NULL
);

INSERT OR IGNORE INTO flujo_backfill (name, after, done)
VALUES ('run_tails', '0', NOT EXISTS (SELECT 1 FROM runs));
