//! `SqliteSink`: the SQLite store as the core's writer drives it. Each batch is one IMMEDIATE
//! transaction; a step that starts and ends within one batch becomes one INSERT. SQLite's
//! auto-checkpoint is off on the writer's connection (it would run inside a commit, fsyncs
//! included, and stall the run waiting on that barrier): `checkpoint` runs a PASSIVE one after
//! the barriers were answered, and `close` a TRUNCATE one before closing the connection.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use flujo_trace_core::{Row, Sink, SinkError};
use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use crate::backend::{
    insert_run, insert_step, update_run_end, update_step_end, SqliteBackend, StepClose, StepRow,
};
use crate::backfill;

/// Commits between two checkpoints of the WAL, whatever its size.
const COMMITS_PER_CHECKPOINT: u32 = 64;
/// A WAL larger than this is checkpointed after the next commit, and is cut back to this size
/// when SQLite starts it over (`journal_size_limit`).
pub(crate) const WAL_CHECKPOINT_BYTES: u64 = 4 * 1024 * 1024;
/// The pause between two backfill steps of an idle writer, and of one that keeps up (see
/// `SATURATED_BATCH_ROWS`): other writers get the lock in between.
///
/// Longer than the longest sleep of SQLite's busy handler between two tries for the lock
/// (100 ms): a shorter pause let another connection waiting for the lock miss every gap, and time
/// out, while the writer filled a 1,000,000-run database step after step.
const BACKFILL_PAUSE: Duration = Duration::from_millis(150);
/// The pause between two steps filling `run_tails`, which spend most of their time reading
/// outside any transaction: other writers get the lock then.
const TAILS_PAUSE: Duration = Duration::from_millis(20);
/// The least time between two backfill (and indexing) steps of a busy writer, which indexes
/// only once many rows wait (`backfill::due_while_busy`); an idle one catches up at once.
const BUSY_BACKFILL_PAUSE: Duration = Duration::from_millis(1000);
/// A batch this large means rows arrive faster than the writer commits them (at the default
/// 5 ms flush interval a writer keeping up writes a few dozen): it indexes only once
/// `backfill::BUSY_LAG_RUNS` or `BUSY_LAG_STEPS` rows wait.
const SATURATED_BATCH_ROWS: usize = 256;
/// The busy timeout of the last writes and the checkpoint at exit: exit never waits long on a
/// lock held by another process.
const EXIT_BUSY_TIMEOUT: Duration = Duration::from_millis(500);

/// The writer's side of a SQLite database: the one connection that writes.
pub(crate) struct SqliteSink {
    backend: SqliteBackend,
    busy_timeout: Duration,
    /// The size cap of the database file, to explain a "full" database.
    max_db_bytes: Option<u64>,
    /// The `-wal` file beside the database, whose size decides checkpoints.
    wal_path: PathBuf,
    /// Commits since the last checkpoint (see `checkpoint`).
    commits_since_checkpoint: u32,
    /// Whether `run_tails` is still to be filled for runs before the upgrade, or rows recorded
    /// since are still to be indexed (`backfill.rs`).
    backfilling: bool,
    /// Whether the database indexes rows in the background (schema 7): every commit leaves
    /// work for [`SqliteSink::backfill`].
    indexes: bool,
    /// Rows in the last batch written (see [`SATURATED_BATCH_ROWS`]).
    last_batch_rows: usize,
    /// Whether the backfill under way is `run_tails`'s (see [`TAILS_PAUSE`]).
    tails: bool,
    /// When the last backfill step ran.
    backfilled_at: Instant,
    /// When a saturated writer last checked whether it should index (`backfill::due_while_busy`).
    busy_checked_at: Instant,
}

impl SqliteSink {
    pub(crate) fn new(
        backend: SqliteBackend,
        busy_timeout: Duration,
        max_db_bytes: Option<u64>,
    ) -> SqliteSink {
        let mut wal_path = backend.path().as_os_str().to_owned();
        wal_path.push("-wal");
        SqliteSink {
            backend,
            busy_timeout,
            max_db_bytes,
            wal_path: PathBuf::from(wal_path),
            commits_since_checkpoint: 0,
            backfilling: false,
            indexes: false,
            tails: false,
            last_batch_rows: 0,
            backfilled_at: Instant::now(),
            busy_checked_at: Instant::now(),
        }
    }

    /// A PASSIVE checkpoint when the WAL has grown past [`WAL_CHECKPOINT_BYTES`] or every
    /// [`COMMITS_PER_CHECKPOINT`] commits. It never blocks on readers or other writers
    /// (PASSIVE); what it cannot copy now is copied by a later one. Once SQLite starts the WAL
    /// over, it cuts the file back to `journal_size_limit`.
    fn checkpoint_when_due(&mut self) {
        if self.commits_since_checkpoint == 0 {
            return;
        }
        let wal_bytes = std::fs::metadata(&self.wal_path).map_or(0, |m| m.len());
        // SQLite starts a checkpointed WAL over from its first byte without shrinking the file
        // below `journal_size_limit`, so a file of exactly that size holds no more than that
        // since the last checkpoint: only a larger one has grown past it (a `<` here made every
        // commit after the first cut-back a checkpoint, three fsyncs each)
        if self.commits_since_checkpoint < COMMITS_PER_CHECKPOINT
            && wal_bytes <= WAL_CHECKPOINT_BYTES
        {
            return;
        }
        self.commits_since_checkpoint = 0;
        // a failure here loses nothing: the rows are committed in the WAL either way
        let _ = self
            .backend
            .conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }

    /// One backfill step, if any is due; a failure (a lock held too long) is tried again later.
    fn backfill(&mut self) {
        if self.backfilling {
            self.backfilled_at = Instant::now();
            if let Ok(more) = backfill::step(&mut self.backend.conn) {
                self.backfilling = more;
                self.tails = more && backfill::tails_pending(&self.backend.conn);
                // its commits grow the WAL like any other: checkpoint as after a batch
                self.commits_since_checkpoint += 1;
                self.checkpoint_when_due();
            }
        }
    }

    /// After a batch's commit: one more commit toward the next checkpoint, and (schema 7) rows
    /// for the background indexing.
    fn committed(&mut self) {
        self.commits_since_checkpoint += 1;
        self.backfilling |= self.indexes;
    }

    /// What a storage failure means to the user.
    fn describe(&self, error: &rusqlite::Error) -> String {
        match (error.sqlite_error_code(), self.max_db_bytes) {
            (Some(ErrorCode::DiskFull), Some(max_db_bytes)) => format!(
                "{error} (the file may not grow past the {max_db_bytes} bytes of \
                 with_max_db_bytes, or the disk is full: free space, e.g. with flujo lens prune)"
            ),
            (Some(ErrorCode::DiskFull), None) => format!(
                "{error} (the disk holding it is full: free space there, delete old runs with \
                 flujo lens prune, or point FLUJO_STATE_URI elsewhere)"
            ),
            _ => error.to_string(),
        }
    }
}

impl Sink for SqliteSink {
    fn open(&mut self) {
        self.backfilling = backfill::pending(&self.backend.conn);
        self.indexes = self.backend.schema_version >= 7;
        self.tails = backfill::tails_pending(&self.backend.conn);
        // checkpoints happen after barriers are answered, in `checkpoint`
        let _ = self
            .backend
            .conn
            .pragma_update(None, "wal_autocheckpoint", 0);
        let limit = i64::try_from(WAL_CHECKPOINT_BYTES).unwrap_or(i64::MAX);
        let _ =
            self.backend
                .conn
                .pragma_update_and_check(None, "journal_size_limit", limit, |row| {
                    row.get::<_, i64>(0)
                });
    }

    fn write_batch(&mut self, rows: &[Row]) -> Result<u64, SinkError> {
        self.last_batch_rows = rows.len();
        match write_batch(&mut self.backend.conn, rows) {
            Ok(missing) => {
                self.committed();
                Ok(missing)
            }
            Err(error) => Err(SinkError {
                row_rejected: error.sqlite_error_code() == Some(ErrorCode::ConstraintViolation),
                message: self.describe(&error),
            }),
        }
    }

    /// A backfill step when one is due (every [`BACKFILL_PAUSE`] of a writer that keeps up; a
    /// saturated one checks at most once a second and indexes only once many rows wait), then
    /// [`SqliteSink::checkpoint_when_due`].
    fn checkpoint(&mut self) {
        // a writer that keeps up (small batches) indexes as when idle; one that is saturated
        // (a burst: rows pile up while it commits) only once many rows wait
        let saturated = self.last_batch_rows >= SATURATED_BATCH_ROWS;
        let due = if !self.backfilling {
            false
        } else if !saturated {
            self.backfilled_at.elapsed() >= BACKFILL_PAUSE
        } else if self.backfilled_at.elapsed() >= BUSY_BACKFILL_PAUSE
            && self.busy_checked_at.elapsed() >= BUSY_BACKFILL_PAUSE
        {
            // the check reads `flujo_backfill` and the tables' last rowids: once a second, not
            // after every batch of a burst
            self.busy_checked_at = Instant::now();
            backfill::due_while_busy(&self.backend.conn)
        } else {
            false
        };
        if due {
            self.backfill();
        }
        self.checkpoint_when_due();
    }

    /// While a table is being filled after an upgrade, or recent rows are to be indexed: a step
    /// every [`BACKFILL_PAUSE`] of idleness (none once caught up).
    fn heartbeat_interval(&self) -> Option<Duration> {
        let pause = if self.tails {
            TAILS_PAUSE
        } else {
            BACKFILL_PAUSE
        };
        self.backfilling.then_some(pause)
    }

    fn heartbeat(&mut self) {
        self.backfill();
    }

    fn ending(&mut self) {
        let busy = self.busy_timeout.min(EXIT_BUSY_TIMEOUT);
        let _ = self.backend.conn.busy_timeout(busy);
    }

    /// Copies the WAL into the database file and empties it (TRUNCATE), waiting at most
    /// [`EXIT_BUSY_TIMEOUT`] on other processes; closing the connection afterwards removes the
    /// `-wal` file when no other connection is open. So `flujo_ops.db` alone holds every run.
    fn close(mut self) {
        let _ = self.backend.conn.busy_timeout(EXIT_BUSY_TIMEOUT);
        // index what the last batches recorded (a few steps at most: the writer keeps up while
        // it runs); what is left is indexed by the next writer, and read directly meanwhile
        for _ in 0..8 {
            match backfill::step(&mut self.backend.conn) {
                Ok(true) => {}
                _ => break,
            }
        }
        let _ = self
            .backend
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        // closing the last connection also removes the `-wal` and `-shm` files
        drop(self.backend);
    }
}

/// Writes `batch` in one IMMEDIATE transaction. A step that starts and ends in the batch is
/// inserted once, complete. Returns the number of ends whose row was missing (their start was
/// not recorded).
fn write_batch(conn: &mut Connection, batch: &[Row]) -> rusqlite::Result<u64> {
    // the position of each step's end in the batch, and which ends were merged into their start
    let mut ends: HashMap<&str, (usize, &StepClose), BuildHasherDefault<IdHasher>> =
        HashMap::default();
    for (i, row) in batch.iter().enumerate() {
        if let Row::StepEnd(close) = row {
            ends.insert(&close.step_run_id, (i, close));
        }
    }
    let mut merged = vec![false; if ends.is_empty() { 0 } else { batch.len() }];
    let mut missing = 0;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for (i, row) in batch.iter().enumerate() {
        match row {
            Row::RunStart(run) => insert_run(&tx, run)?,
            Row::StepStart(start) => match ends.get(start.step_run_id.as_str()) {
                Some(&(end, close)) => {
                    insert_step(&tx, &StepRow::from_start_and_close(start, close))?;
                    merged[end] = true;
                }
                None => insert_step(&tx, &StepRow::from_record(start))?,
            },
            Row::StepEnd(close) => {
                if !merged[i] && update_step_end(&tx, close)? == 0 {
                    missing += 1;
                }
            }
            Row::RunEnd { run_id, end } => {
                if update_run_end(&tx, run_id, end)? == 0 {
                    missing += 1;
                }
            }
        }
    }
    tx.commit()?;
    Ok(missing)
}

/// FxHash (rustc's hasher) for the batch's step ids: ids are ours, so no flooding to fear, and
/// SipHash showed in profiles.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
        }
        for &byte in chunks.remainder() {
            self.0 = (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(SEED);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::SqliteBackend;

    /// A writer on a new schema-7 database, opened as the layer opens it.
    fn sink(dir: &tempfile::TempDir) -> SqliteSink {
        let backend = SqliteBackend::open(dir.path().join("flujo_ops.db")).unwrap();
        let mut sink = SqliteSink::new(backend, Duration::from_secs(5), None);
        sink.open();
        sink
    }

    /// Ended runs with rowids `first..first + n`, written as a batch of that many rows would be.
    fn ended_runs(sink: &mut SqliteSink, first: i64, n: i64) {
        let conn = &sink.backend.conn;
        conn.execute(
            "WITH RECURSIVE i(k) AS (SELECT ?1 UNION ALL SELECT k + 1 FROM i WHERE k + 1 < ?1 + ?2) \
             INSERT INTO runs (rowid, run_id, pipeline_name, pipeline_version, status, start_time, \
             end_time) SELECT k, 'run-' || k, 'p', 'v1', 'completed', '2026-01-01T00:00:00Z', \
             '2026-01-01T00:00:01Z' FROM i",
            [first, n],
        )
        .unwrap();
        sink.last_batch_rows = usize::try_from(n).unwrap();
        sink.committed();
    }

    /// Up to which rowid of `runs` the stats index is filled.
    fn indexed(sink: &SqliteSink) -> i64 {
        sink.backend
            .conn
            .query_row(
                "SELECT CAST(after AS INTEGER) FROM flujo_backfill WHERE name = 'run_stats'",
                [],
                |row| row.get(0),
            )
            .unwrap()
    }

    /// Moves the writer's clocks back, as if its last indexing step and its last check were
    /// `ago` in the past.
    fn age(sink: &mut SqliteSink, ago: Duration) {
        sink.backfilled_at = Instant::now() - ago;
        sink.busy_checked_at = Instant::now() - ago;
    }

    #[test]
    fn a_saturated_writer_indexes_only_once_many_rows_wait_and_checks_once_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = sink(&dir);
        assert!(sink.indexes);

        // a burst: batches of 300 rows, the last indexing a while ago: nothing is indexed while
        // fewer than BUSY_LAG_RUNS runs wait, and the check is not made again within a second
        ended_runs(&mut sink, 1, 300);
        age(&mut sink, BUSY_BACKFILL_PAUSE * 2);
        sink.checkpoint();
        assert_eq!(
            indexed(&sink),
            0,
            "300 runs wait: a saturated writer goes on writing"
        );
        assert!(sink.busy_checked_at.elapsed() < BUSY_BACKFILL_PAUSE);

        // more than BUSY_LAG_RUNS runs wait (the rowids jump there), but the last check was
        // just now: not before a second has passed since it
        ended_runs(&mut sink, backfill::BUSY_LAG_RUNS + 1_000, 300);
        sink.backfilled_at = Instant::now() - BUSY_BACKFILL_PAUSE * 2;
        sink.checkpoint();
        assert_eq!(indexed(&sink), 0, "checked less than a second ago");

        // a second later it indexes one step, then not again within the second
        age(&mut sink, BUSY_BACKFILL_PAUSE * 2);
        sink.checkpoint();
        let after_one = indexed(&sink);
        assert!(
            after_one > 0 && after_one <= backfill::RUNS_PER_STEP,
            "one step of at most RUNS_PER_STEP runs, indexed up to {after_one}"
        );
        ended_runs(&mut sink, backfill::BUSY_LAG_RUNS + 2_000, 300);
        sink.checkpoint();
        assert_eq!(
            indexed(&sink),
            after_one,
            "one step a second while saturated"
        );

        // a writer that keeps up (small batches) indexes every BACKFILL_PAUSE, whatever waits
        ended_runs(&mut sink, backfill::BUSY_LAG_RUNS + 3_000, 10);
        sink.backfilled_at = Instant::now() - BACKFILL_PAUSE * 2;
        sink.checkpoint();
        assert!(indexed(&sink) > after_one, "a writer keeping up indexes");

        // and idle, it catches up with every run
        while sink.heartbeat_interval().is_some() {
            sink.heartbeat();
        }
        let last: i64 = sink
            .backend
            .conn
            .query_row("SELECT max(rowid) FROM runs", [], |row| row.get(0))
            .unwrap();
        assert_eq!(indexed(&sink), last);
        let stats: i64 = sink
            .backend
            .conn
            .query_row("SELECT count(*) FROM run_stats", [], |row| row.get(0))
            .unwrap();
        assert_eq!(stats, 910);
    }
}
