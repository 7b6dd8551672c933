//! What the writer fills in after an upgrade, in short steps: `run_tails` (schema version 6)
//! for the runs recorded before it. Step `k` of [`STEPS`] takes the runs whose tail falls in
//! the `k`-th of 256 ranges of tails (by their first two hexadecimal digits): it finds them by a
//! read of the ids outside any write transaction, then adds them in one short IMMEDIATE
//! transaction (each only if the run still exists), so other writers wait at most one short
//! write, and each step's rows land on a few neighbouring pages of `run_tails` (steps along the
//! run ids would scatter every step over the whole table and write it to the WAL again each
//! time). `flujo_backfill.after` is the next step's number; the triggers of version 6 cover
//! every run inserted or deleted meanwhile.

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

/// Steps of a backfill: one per range of tails.
pub(crate) const STEPS: u32 = 256;

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

/// The tails step `k` takes: `[lower, upper)`, `None` for no bound. Every text falls in exactly
/// one range.
fn range(k: u32) -> (Option<String>, Option<String>) {
    let bound = |k: u32| (k > 0 && k < STEPS).then(|| format!("{k:02x}"));
    (bound(k), bound(k + 1))
}

/// One step: adds the tails of the next range. Returns whether more is to do.
pub(crate) fn step(conn: &mut Connection) -> rusqlite::Result<bool> {
    let Some((after, done)) = conn
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
    tx.commit()?;
    Ok(next < STEPS)
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
}
