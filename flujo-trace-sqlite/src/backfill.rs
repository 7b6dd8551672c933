//! What the writer fills in after an upgrade, in short steps: `run_tails` (schema version 6)
//! for the runs recorded before it. Each step is one IMMEDIATE transaction of at most
//! [`STEP_RUNS`] runs, walking `runs`' primary key from where the last step stopped
//! (`flujo_backfill.after`), so other writers wait at most one step for the lock; the triggers
//! of version 6 cover every run inserted or deleted meanwhile.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// Runs added to `run_tails` per step (a few milliseconds of the write lock).
pub(crate) const STEP_RUNS: i64 = 5_000;

/// Whether backfilling is still to do (false on a database without the table: before v6).
pub(crate) fn pending(conn: &Connection) -> bool {
    conn.query_row(
        "SELECT done FROM flujo_backfill WHERE name = 'run_tails'",
        [],
        |row| row.get::<_, i64>(0),
    )
    .optional()
    .ok()
    .flatten()
    .is_some_and(|done| done == 0)
}

/// One step: adds the next [`STEP_RUNS`] runs' tails. Returns whether more is to do.
pub(crate) fn step(conn: &mut Connection) -> rusqlite::Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let Some((after, done)) = tx
        .query_row(
            "SELECT after, done FROM flujo_backfill WHERE name = 'run_tails'",
            [],
            |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
        )
        .optional()?
    else {
        return Ok(false);
    };
    if done != 0 {
        return Ok(false);
    }
    let last: Option<String> = tx.query_row(
        "SELECT max(run_id) FROM (SELECT run_id FROM runs WHERE run_id > ?1 ORDER BY run_id \
         LIMIT ?2)",
        rusqlite::params![after, STEP_RUNS],
        |row| row.get(0),
    )?;
    let more = match &last {
        Some(last) => {
            tx.execute(
                "INSERT OR IGNORE INTO run_tails (tail, run_id) SELECT substr(run_id, -8), run_id \
                 FROM runs WHERE run_id > ?1 AND run_id <= ?2",
                rusqlite::params![after, last],
            )?;
            tx.execute(
                "UPDATE flujo_backfill SET after = ?1 WHERE name = 'run_tails'",
                [last],
            )?;
            true
        }
        None => {
            tx.execute(
                "UPDATE flujo_backfill SET done = 1 WHERE name = 'run_tails'",
                [],
            )?;
            false
        }
    };
    tx.commit()?;
    Ok(more)
}
