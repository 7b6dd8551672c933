//! What the writer fills in after an upgrade, in short steps, for the rows recorded before it:
//! `run_tails` (schema version 6), then `run_stats` and `error_search` (version 7). The triggers
//! of each version cover every row written meanwhile; `flujo_backfill` holds each one's progress
//! (`after`) and whether it is `done`, and readers use a table only once it is.
//!
//! `run_tails`: step `k` of [`STEPS`] takes the runs whose tail falls in the `k`-th of 256
//! ranges of tails (by their first two hexadecimal digits): it finds them by a read of the ids
//! outside any write transaction, then adds them in one short IMMEDIATE transaction (each only
//! if the run still exists), so other writers wait at most one short write, and each step's rows
//! land on a few neighbouring pages of `run_tails` (steps along the run ids would scatter every
//! step over the whole table and write it to the WAL again each time).
//!
//! `run_stats` and `error_search` go along the rowids of `runs` and `steps` (the order rows were
//! recorded, so nearly start-time order: each step's rows land next to each other in
//! `run_stats`), [`RUNS_PER_STEP`] and [`STEPS_PER_STEP`] rowids a step: each step reads its
//! range once outside any transaction (so its pages are in the cache), then copies it in one
//! short IMMEDIATE transaction.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// Steps of a backfill: one per range of tails.
pub(crate) const STEPS: u32 = 256;

/// Runs of `runs` a `run_stats` step copies (by rowid).
pub(crate) const RUNS_PER_STEP: i64 = 5_000;
/// Rows of `steps` an `error_search` step reads (by rowid): some 30 MB of steps at ~1.5 KB a
/// step, of which the errors (one step in twenty or so) are copied.
pub(crate) const STEPS_PER_STEP: i64 = 20_000;

/// Whether backfilling or indexing is still to do (false on a database without the table:
/// before v6).
pub(crate) fn pending(conn: &Connection) -> bool {
    pending_work(conn).is_ok_and(|work| !work.is_empty())
}

/// The backfills with something to do, with their progress (`after`) and whether they caught up
/// once (`done`): `run_tails` until done; `run_stats` and `error_search` (schema 7) whenever
/// their table has rows past `after`, which they index in the background for good.
fn pending_work(conn: &Connection) -> rusqlite::Result<Vec<(String, String, bool)>> {
    let mut stmt = conn.prepare_cached("SELECT name, after, done FROM flujo_backfill")?;
    let rows: Vec<(String, String, i64)> = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut work = Vec::new();
    for (name, after, done) in rows {
        let due = match name.as_str() {
            "run_tails" => done == 0,
            "run_stats" | "error_search" => {
                let table = if name == "run_stats" { "runs" } else { "steps" };
                done == 0
                    || after.parse::<i64>().unwrap_or(0) < last_rowid(conn, table)?
                    || pending_ended(conn, &name)?
            }
            _ => false,
        };
        if due {
            work.push((name, after, done != 0));
        }
    }
    Ok(work)
}

/// Whether `run_tails` is still being filled (its steps read outside the lock for long: a short
/// pause between them is enough for other writers).
pub(crate) fn tails_pending(conn: &Connection) -> bool {
    pending_work(conn).is_ok_and(|work| work.iter().any(|(name, _, _)| name == "run_tails"))
}

/// Rows past `after` beyond which a saturated writer indexes (one that keeps up always does):
/// until then a burst of writes is not slowed by its indexing, and readers read at most about
/// these many rows directly.
pub(crate) const BUSY_LAG_RUNS: i64 = 100_000;
pub(crate) const BUSY_LAG_STEPS: i64 = 1_000_000;

/// Whether a busy writer should take a step now: a backfill after an upgrade is not done, or
/// the rows past the index have grown beyond [`BUSY_LAG_RUNS`] or [`BUSY_LAG_STEPS`].
pub(crate) fn due_while_busy(conn: &Connection) -> bool {
    let Ok(work) = pending_work(conn) else {
        return false;
    };
    work.iter().any(|(name, after, done)| {
        let after: i64 = after.parse().unwrap_or(0);
        let lag = |table: &str| last_rowid(conn, table).map_or(0, |last| last - after);
        !done
            || (name == "run_stats" && lag("runs") > BUSY_LAG_RUNS)
            || (name == "error_search" && lag("steps") > BUSY_LAG_STEPS)
    })
}

/// Whether a run the indexer found not ended has ended since.
const RUN_STATS_ENDED: &str = "SELECT EXISTS (SELECT 1 FROM runs r WHERE r.rowid IN \
     (SELECT run_rowid FROM run_stats_pending) AND r.end_time IS NOT NULL)";
/// Whether a step the indexer found not ended has ended since.
const ERROR_SEARCH_ENDED: &str = "SELECT EXISTS (SELECT 1 FROM steps s WHERE s.rowid IN \
     (SELECT step_rowid FROM error_search_pending) AND s.end_time IS NOT NULL)";

/// Whether a run (a step) the indexer found not ended has ended since.
fn pending_ended(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    let sql = match name {
        "run_stats" => RUN_STATS_ENDED,
        "error_search" => ERROR_SEARCH_ENDED,
        _ => return Ok(false),
    };
    conn.prepare_cached(sql)?.query_row([], |row| row.get(0))
}

/// What the `run_stats` indexer does besides copying its range: notes the range's runs still
/// running, and adds the noted runs that have ended since (forgetting them there). The noted
/// rows are read as `rowid IN (SELECT ...)`, a probe per noted row: written as a join, SQLite
/// chose to scan `runs` (and `steps`) and probe the small table, some 30 s a step with the
/// write lock held at 1,000,000 runs (tested by `the_noted_rows_are_probed_not_scanned`).
const RUN_STATS_PENDING: [&str; 3] = [
    "INSERT OR IGNORE INTO run_stats_pending (run_rowid) \
     SELECT rowid FROM runs WHERE rowid > ?1 AND rowid <= ?2 AND end_time IS NULL",
    "INSERT OR IGNORE INTO run_stats (start_time, run_id, run_rowid, pipeline_name, \
     pipeline_version, status, duration_ms, total_tokens, total_cost) \
     SELECT r.start_time, r.run_id, r.rowid, r.pipeline_name, r.pipeline_version, r.status, \
     r.duration_ms, r.total_tokens, r.total_cost \
     FROM runs r WHERE r.rowid IN (SELECT run_rowid FROM run_stats_pending) \
     AND r.end_time IS NOT NULL AND ?1 <= ?2",
    "DELETE FROM run_stats_pending WHERE ?1 <= ?2 AND run_rowid IN (SELECT r.rowid FROM runs r \
     WHERE r.rowid IN (SELECT run_rowid FROM run_stats_pending) AND r.end_time IS NOT NULL)",
];

/// The same for `error_search`: the range's steps not ended are noted, the noted steps that
/// have ended are indexed (their error, if any) and forgotten.
const ERROR_SEARCH_PENDING: [&str; 3] = [
    "INSERT OR IGNORE INTO error_search_pending (step_rowid) \
     SELECT rowid FROM steps WHERE rowid > ?1 AND rowid <= ?2 AND end_time IS NULL",
    "INSERT INTO error_search (rowid, error) \
     SELECT s.rowid, s.error_blob FROM steps s \
     WHERE s.rowid IN (SELECT step_rowid FROM error_search_pending) \
     AND s.end_time IS NOT NULL AND s.error_blob IS NOT NULL AND ?1 <= ?2",
    "DELETE FROM error_search_pending WHERE ?1 <= ?2 AND step_rowid IN (SELECT s.rowid \
     FROM steps s WHERE s.rowid IN (SELECT step_rowid FROM error_search_pending) \
     AND s.end_time IS NOT NULL)",
];

fn last_rowid(conn: &Connection, table: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached(&format!("SELECT coalesce(max(rowid), 0) FROM {table}"))?
        .query_row([], |row| row.get(0))
}

/// One step: of `run_tails` while it is not done, else of whichever of `run_stats` and
/// `error_search` is furthest behind. Returns whether more is to do.
pub(crate) fn step(conn: &mut Connection) -> rusqlite::Result<bool> {
    let work = pending_work(conn)?;
    if let Some((_, after, _)) = work.iter().find(|(name, _, _)| name == "run_tails") {
        tails_step(conn, after)?;
        return Ok(pending(conn));
    }
    // one transaction per call (the writer pauses between calls, so other writers get the
    // lock): the table furthest behind first
    let behind = |(name, after, _): &&(String, String, bool)| {
        let table = if name == "run_stats" { "runs" } else { "steps" };
        let last = last_rowid(conn, table).unwrap_or(0).max(1);
        after.parse::<i64>().unwrap_or(0) as f64 / last as f64
    };
    let next = work
        .iter()
        .filter(|(name, _, _)| name == "run_stats" || name == "error_search")
        .min_by(|a, b| behind(a).total_cmp(&behind(b)));
    match next {
        Some((name, after, _)) if name == "run_stats" => {
            rowid_step(conn, name, after, &RUN_STATS)?;
        }
        Some((name, after, _)) => rowid_step(conn, name, after, &ERROR_SEARCH)?,
        None => {}
    }
    Ok(pending(conn))
}

/// A backfill along the rowids of a table: the range to read, and the copy of it.
struct ByRowid {
    table: &'static str,
    per_step: i64,
    /// Reads rows `(?1, ?2]` outside the transaction (what warms the cache).
    read: &'static str,
    /// Copies rows `(?1, ?2]` inside it.
    copy: &'static str,
}

const RUN_STATS: ByRowid = ByRowid {
    table: "runs",
    per_step: RUNS_PER_STEP,
    read: "SELECT count(end_time), max(length(pipeline_name)) FROM runs \
           WHERE rowid > ?1 AND rowid <= ?2",
    copy: "INSERT OR IGNORE INTO run_stats (start_time, run_id, run_rowid, pipeline_name, \
           pipeline_version, status, duration_ms, total_tokens, total_cost) \
           SELECT start_time, run_id, rowid, pipeline_name, pipeline_version, status, \
           duration_ms, total_tokens, total_cost FROM runs \
           WHERE rowid > ?1 AND rowid <= ?2 AND end_time IS NOT NULL",
};

const ERROR_SEARCH: ByRowid = ByRowid {
    table: "steps",
    per_step: STEPS_PER_STEP,
    read: "SELECT count(error_blob), max(length(error_blob)) FROM steps \
           WHERE rowid > ?1 AND rowid <= ?2",
    copy: "INSERT INTO error_search (rowid, error) \
           SELECT rowid, error_blob FROM steps \
           WHERE rowid > ?1 AND rowid <= ?2 AND error_blob IS NOT NULL",
};

/// One step of a backfill along rowids: rows `(after, after + per_step]`, `done` once it has
/// reached the largest rowid (it goes on with the rows inserted after, for good: rows whose end
/// or error is recorded by a later update are the triggers' work).
fn rowid_step(
    conn: &mut Connection,
    name: &str,
    after: &str,
    backfill: &ByRowid,
) -> rusqlite::Result<()> {
    let after: i64 = after.parse().unwrap_or(0);
    let last = last_rowid(conn, backfill.table)?;
    let upper = after.saturating_add(backfill.per_step).min(last).max(after);
    if upper > after {
        conn.prepare_cached(backfill.read)?
            .query_row([after, upper], |_| Ok(()))?;
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if upper > after {
        tx.prepare_cached(backfill.copy)?.execute([after, upper])?;
    }
    let pending = if name == "run_stats" {
        RUN_STATS_PENDING
    } else {
        ERROR_SEARCH_PENDING
    };
    for sql in pending {
        tx.prepare_cached(sql)?.execute([after, upper])?;
    }
    // `done` once caught up with the rows before the upgrade: it stays so
    tx.execute(
        "UPDATE flujo_backfill SET after = ?1, done = max(done, ?2) WHERE name = ?3",
        rusqlite::params![upper.to_string(), i64::from(upper >= last), name],
    )?;
    tx.commit()
}

/// How far a backfill along rowids is: `after` over the table's largest rowid (1 when done).
pub(crate) fn progress(conn: &Connection, name: &str) -> rusqlite::Result<Option<f64>> {
    let Some((after, done)) = conn
        .query_row(
            "SELECT after, done FROM flujo_backfill WHERE name = ?1",
            [name],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
        )
        .optional()?
    else {
        return Ok(None);
    };
    if done != 0 {
        return Ok(Some(1.0));
    }
    let table = match name {
        "run_stats" => "runs",
        "error_search" => "steps",
        _ => return Ok(Some(after.parse::<f64>().unwrap_or(0.0) / f64::from(STEPS))),
    };
    let last: i64 = conn.query_row(
        &format!("SELECT coalesce(max(rowid), 0) FROM {table}"),
        [],
        |row| row.get(0),
    )?;
    let after: i64 = after.parse().unwrap_or(0);
    Ok(Some(if last == 0 {
        1.0
    } else {
        (after as f64 / last as f64).min(1.0)
    }))
}

/// The tails step `k` takes: `[lower, upper)`, `None` for no bound. Every text falls in exactly
/// one range.
fn range(k: u32) -> (Option<String>, Option<String>) {
    let bound = |k: u32| (k > 0 && k < STEPS).then(|| format!("{k:02x}"));
    (bound(k), bound(k + 1))
}

/// One step of `run_tails`: adds the tails of the next range.
fn tails_step(conn: &mut Connection, after: &str) -> rusqlite::Result<()> {
    let k: u32 = after.parse().unwrap_or(0).min(STEPS);
    let ids: Vec<String> = if k < STEPS {
        let (lower, upper) = range(k);
        let mut stmt = conn.prepare_cached(
            "SELECT run_id FROM runs WHERE (?1 IS NULL OR substr(run_id, -8) >= ?1) \
             AND (?2 IS NULL OR substr(run_id, -8) < ?2)",
        )?;
        let ids = stmt
            .query_map(rusqlite::params![lower, upper], |row| row.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        ids
    } else {
        Vec::new()
    };
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO run_tails (tail, run_id) SELECT substr(?1, -8), ?1 \
             WHERE EXISTS (SELECT 1 FROM runs WHERE run_id = ?1)",
        )?;
        for id in &ids {
            insert.execute([id])?;
        }
    }
    let next = k + 1;
    tx.execute(
        "UPDATE flujo_backfill SET after = ?1, done = ?2 WHERE name = 'run_tails'",
        rusqlite::params![next.to_string(), i64::from(next >= STEPS)],
    )?;
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ranges_cover_every_tail_once() {
        let tails = [
            "", "00000000", "00ffffff", "01000000", "7fab0012", "ff000000", "zzzz", "ÿ",
        ];
        for tail in tails {
            let holding: Vec<u32> = (0..STEPS)
                .filter(|&k| {
                    let (lower, upper) = range(k);
                    lower.as_deref().is_none_or(|l| tail >= l)
                        && upper.as_deref().is_none_or(|u| tail < u)
                })
                .collect();
            assert_eq!(holding.len(), 1, "{tail:?} in {holding:?}");
        }
        assert_eq!(range(0), (None, Some("01".into())));
        assert_eq!(range(255), (Some("ff".into()), None));
    }

    /// The plan of `sql` with every parameter 1.
    fn plan(conn: &Connection, sql: &str) -> String {
        let parameters = conn.prepare(sql).unwrap().parameter_count();
        let params = vec![rusqlite::types::Value::Integer(1); parameters];
        crate::test_support::plan(conn, sql, &params)
    }

    #[test]
    fn the_noted_rows_are_probed_not_scanned() {
        let dir = tempfile::tempdir().unwrap();
        let backend = crate::backend::SqliteBackend::open(dir.path().join("flujo_ops.db")).unwrap();
        let conn = &backend.conn;
        let noted = RUN_STATS_PENDING[1..]
            .iter()
            .chain(&ERROR_SEARCH_PENDING[1..])
            .copied()
            .chain([RUN_STATS_ENDED, ERROR_SEARCH_ENDED]);
        for sql in noted {
            let plan = plan(conn, sql);
            assert!(
                !plan.contains("SCAN r") && !plan.contains("SCAN s"),
                "{sql}\n{plan}"
            );
            assert!(
                plan.contains("USING INTEGER PRIMARY KEY (rowid=?)"),
                "{sql}\n{plan}"
            );
        }
        assert!(!pending_ended(conn, "run_stats").unwrap());
        assert!(!pending_ended(conn, "error_search").unwrap());
    }
}
