//! Pruning: deleting old runs with their steps in short transactions, and handing the freed pages
//! back to the file system. The open and the deletes are crate-private methods of `SqliteBackend`,
//! public only through `SqlitePruner` (`roles.rs`).
//!
//! Deleting is safe while pipelines write to the same database: runs are deleted in IMMEDIATE
//! transactions of at most [`RUNS_PER_TRANSACTION`] runs and [`ROWS_PER_TRANSACTION`] rows, each
//! followed by a pause as long as the transaction held the lock, so a writer waiting on its busy
//! timeout (5 s) gets in between two of them. Runs are
//! picked by walking `runs(status, start_time)`, `runs(pipeline_name, start_time)` or
//! `runs(start_time)` from the oldest, and steps through `steps(run_id)` (`EXPLAIN QUERY PLAN`
//! tests below).
//!
//! Freed pages go back to the file system with `PRAGMA incremental_vacuum` in steps of
//! [`VACUUM_PAGES_PER_STEP`] pages when the database has `auto_vacuum = INCREMENTAL` (every
//! database flujo creates); then the `-wal` file is checkpointed and truncated when no reader
//! holds it. A database without auto-vacuum keeps the freed pages inside the file for new rows:
//! the report says how many bytes, and only a full `VACUUM` (never run here) gives them back.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::backend::{SqliteBackend, WriterProcess};
use crate::migrate::{classify, DEFAULT_BUSY_TIMEOUT};
use crate::process::{writer_columns, writer_from_columns};
use crate::Error;
use flujo_trace_core::Liveness;

/// Runs looked at per transaction.
const RUNS_PER_TRANSACTION: usize = 500;
/// Rows (runs and steps) deleted per transaction at most: a run with more steps than this is
/// deleted over several transactions, steps first.
const ROWS_PER_TRANSACTION: usize = 20_000;
/// Pages handed back to the file system per `PRAGMA incremental_vacuum` (4 MiB of 4 KiB pages).
const VACUUM_PAGES_PER_STEP: i64 = 1_024;
/// How often a busy `wal_checkpoint(TRUNCATE)` is tried again, and how long apart.
const CHECKPOINT_ATTEMPTS: u32 = 20;
const CHECKPOINT_PAUSE: Duration = Duration::from_millis(50);
/// Bounds of the pause after each write transaction ([`yield_to_writers`]).
const MIN_PAUSE: Duration = Duration::from_millis(1);
const MAX_PAUSE: Duration = Duration::from_millis(250);

/// Which runs [`SqlitePruner::prune`](crate::SqlitePruner::prune) deletes: every condition narrows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneFilter {
    /// Runs that started before this time (RFC 3339 UTC, the stored fixed-width format).
    pub started_before: String,
    /// Runs with any of these statuses (`running`, `completed`, `failed`, `cancelled`,
    /// `crashed`). Empty: every run that is not `running` (so not `crashed` either): a run still
    /// going, or one whose process died, is kept unless asked for by name.
    pub statuses: Vec<String>,
    /// Runs of exactly this pipeline.
    pub pipeline_name: Option<String>,
}

/// How many runs and steps a prune would delete
/// ([`SqlitePruner::prune_count`](crate::SqlitePruner::prune_count)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneCounts {
    /// Matching runs.
    pub runs: u64,
    /// Steps of those runs.
    pub steps: u64,
    /// Size of the database file plus its `-wal` file now.
    pub bytes_on_disk: u64,
}

/// Where a running prune is, passed to its progress callback after each transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneProgress {
    /// Deleting: so many runs and steps deleted (committed) so far.
    Deleting {
        /// Runs deleted so far.
        runs: u64,
        /// Steps deleted so far.
        steps: u64,
    },
    /// Handing free pages back to the file system: so many pages left.
    Vacuuming {
        /// Free pages still inside the file.
        pages_left: u64,
    },
}

/// What a prune did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    /// Runs deleted.
    pub runs: u64,
    /// Steps deleted (of those runs).
    pub steps: u64,
    /// Size of the database file plus its `-wal` file before deleting.
    pub bytes_before: u64,
    /// Size of the database file plus its `-wal` file at the end.
    pub bytes_after: u64,
    /// Bytes of free pages left inside the database file, reused for new rows but not given back
    /// to the file system: all the space freed when the database has no auto-vacuum
    /// ([`PruneReport::gives_space_back`] false).
    pub reusable_bytes: u64,
    /// Whether the database hands free pages back to the file system (`auto_vacuum` is
    /// `INCREMENTAL` or `FULL`); false for databases created without it (older flujo versions,
    /// FSD-08's own DDL), which need a full `VACUUM` for that.
    pub gives_space_back: bool,
}

/// One candidate run of a batch, with what the `crashed` check needs.
struct Candidate {
    rowid: i64,
    run_id: String,
    start_time: String,
    status: String,
    writer: Option<WriterProcess>,
}

/// How a filter's statuses become SQL arms: the stored statuses to walk (`crashed` is stored as
/// `running`; `None`: one arm of every status but `running`), and whether each `running` row is
/// checked for a dead writer because exactly one of `running` and `crashed` was asked for.
struct StatusArms {
    stored: Option<Vec<String>>,
    recheck: bool,
}

impl StatusArms {
    fn of(statuses: &[String]) -> StatusArms {
        if statuses.is_empty() {
            return StatusArms {
                stored: None,
                recheck: false,
            };
        }
        let plan = crate::read::status_plan(statuses);
        StatusArms {
            stored: Some(plan.stored),
            recheck: plan.recheck,
        }
    }

    /// `None` for the one arm of "every status but running", else one arm per stored status.
    fn arms(&self) -> Vec<Option<&str>> {
        match &self.stored {
            None => vec![None],
            Some(stored) => stored.iter().map(|s| Some(s.as_str())).collect(),
        }
    }
}

impl SqliteBackend {
    /// Opens an existing database to delete runs from it ([`SqliteBackend::prune`]). Makes the
    /// same checks as [`SqliteBackend::open_read_only`] first, with the same errors (missing, not
    /// a flujo database, corrupt, too new), and never creates, migrates or repairs the file: an
    /// older schema version is pruned as it is. Sets a busy timeout of 5 s and `foreign_keys`.
    pub(crate) fn open_for_prune(path: impl AsRef<Path>) -> Result<SqliteBackend, Error> {
        let path = path.as_ref();
        let schema_version = SqliteBackend::open_read_only(path)?.stored_schema_version();
        let sqlite = |source| classify(path, source);
        // no SQLITE_OPEN_CREATE: a file removed since the check is an error, never re-created
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(sqlite)?;
        conn.busy_timeout(DEFAULT_BUSY_TIMEOUT).map_err(sqlite)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(sqlite)?;
        Ok(SqliteBackend {
            conn,
            path: path.to_path_buf(),
            schema_version,
        })
    }

    /// How many runs match `filter` and how many steps they have: what [`SqliteBackend::prune`]
    /// would delete now. Only reads; works on a read-only open too.
    pub(crate) fn prune_count(&self, filter: &PruneFilter) -> Result<PruneCounts, Error> {
        let read = |e| classify(&self.path, e);
        let arms = StatusArms::of(&filter.statuses);
        let mut steps_of = self
            .conn
            .prepare("SELECT count(*) FROM steps WHERE run_id = ?1")
            .map_err(read)?;
        let mut counts = PruneCounts {
            bytes_on_disk: bytes_on_disk(&self.path)?,
            ..PruneCounts::default()
        };
        let mut liveness = Liveness::default();
        for status in arms.arms() {
            let (sql, params) = candidates_query(self.schema_version, filter, status, None);
            let mut stmt = self.conn.prepare(&sql).map_err(read)?;
            let mut rows = stmt
                .query(rusqlite::params_from_iter(&params))
                .map_err(read)?;
            while let Some(row) = rows.next().map_err(read)? {
                let candidate = candidate_from_row(row).map_err(read)?;
                if !arms.recheck || wanted(&candidate, &filter.statuses, &mut liveness) {
                    counts.runs += 1;
                    let steps: i64 = steps_of
                        .query_row([&candidate.run_id], |row| row.get(0))
                        .map_err(read)?;
                    counts.steps += u64::try_from(steps).unwrap_or(0);
                }
            }
        }
        Ok(counts)
    }

    /// Deletes the runs matching `filter` with their steps, in short IMMEDIATE transactions so
    /// that pipelines writing meanwhile lose nothing, then hands the freed pages back to the file
    /// system when the database allows it and truncates the `-wal` file when no reader holds it.
    /// Calls `progress` after each transaction. Needs [`SqliteBackend::open_for_prune`].
    pub(crate) fn prune(
        &mut self,
        filter: &PruneFilter,
        progress: impl FnMut(PruneProgress),
    ) -> Result<PruneReport, Error> {
        self.prune_in_batches(filter, RUNS_PER_TRANSACTION, ROWS_PER_TRANSACTION, progress)
    }

    fn prune_in_batches(
        &mut self,
        filter: &PruneFilter,
        runs_per_transaction: usize,
        rows_per_transaction: usize,
        mut progress: impl FnMut(PruneProgress),
    ) -> Result<PruneReport, Error> {
        let path = self.path.clone();
        let sqlite = |e| classify(&path, e);
        let bytes_before = bytes_on_disk(&path)?;
        let arms = StatusArms::of(&filter.statuses);
        let (mut runs, mut steps) = (0u64, 0u64);
        let mut liveness = Liveness::default();
        for status in arms.arms() {
            // the last run looked at: (start_time, rowid); kept or half-deleted runs lie after it
            let mut cursor = (String::new(), i64::MIN);
            loop {
                let tx = self
                    .conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(sqlite)?;
                let locked = Instant::now();
                let (sql, params) = candidates_query(
                    self.schema_version,
                    filter,
                    status,
                    Some((&cursor, runs_per_transaction)),
                );
                let candidates = {
                    let mut stmt = tx.prepare(&sql).map_err(sqlite)?;
                    let rows = stmt
                        .query_map(rusqlite::params_from_iter(&params), candidate_from_row)
                        .map_err(sqlite)?;
                    rows.collect::<rusqlite::Result<Vec<Candidate>>>()
                        .map_err(sqlite)?
                };
                let exhausted = candidates.len() < runs_per_transaction;
                let mut budget = rows_per_transaction.max(1);
                let (mut tx_runs, mut tx_steps) = (0u64, 0u64);
                let mut full = false;
                {
                    let mut delete_steps = tx
                        .prepare(
                            "DELETE FROM steps WHERE rowid IN \
                             (SELECT rowid FROM steps WHERE run_id = ?1 LIMIT ?2)",
                        )
                        .map_err(sqlite)?;
                    let mut delete_run = tx
                        .prepare("DELETE FROM runs WHERE rowid = ?1")
                        .map_err(sqlite)?;
                    for candidate in &candidates {
                        if !arms.recheck || wanted(candidate, &filter.statuses, &mut liveness) {
                            let limit = i64::try_from(budget).unwrap_or(i64::MAX);
                            let deleted = delete_steps
                                .execute(rusqlite::params![candidate.run_id, limit])
                                .map_err(sqlite)?;
                            tx_steps += deleted as u64;
                            budget -= deleted;
                            if budget == 0 {
                                // this run may have more steps: the next transaction goes on
                                full = true;
                                break;
                            }
                            delete_run.execute([candidate.rowid]).map_err(sqlite)?;
                            tx_runs += 1;
                            budget -= 1;
                        }
                        cursor = (candidate.start_time.clone(), candidate.rowid);
                        if budget == 0 {
                            full = true;
                            break;
                        }
                    }
                }
                tx.commit().map_err(sqlite)?;
                yield_to_writers(locked.elapsed());
                runs += tx_runs;
                steps += tx_steps;
                progress(PruneProgress::Deleting { runs, steps });
                if exhausted && !full {
                    break;
                }
            }
        }
        let gives_space_back = self.give_space_back(&mut progress)?;
        self.checkpoint_and_truncate_wal()?;
        let page_size = self.pragma_i64("page_size")?;
        let free_pages = self.pragma_i64("freelist_count")?;
        Ok(PruneReport {
            runs,
            steps,
            bytes_before,
            bytes_after: bytes_on_disk(&path)?,
            reusable_bytes: u64::try_from(free_pages.saturating_mul(page_size)).unwrap_or(0),
            gives_space_back,
        })
    }

    /// Runs `PRAGMA incremental_vacuum` in steps until no free page is left, when the database
    /// has incremental auto-vacuum. Returns whether the database gives space back at all.
    fn give_space_back(&mut self, progress: &mut impl FnMut(PruneProgress)) -> Result<bool, Error> {
        let sqlite = |e| classify(&self.path, e);
        match self.pragma_i64("auto_vacuum")? {
            // FULL: every commit already shrank the file
            1 => return Ok(true),
            2 => {}
            _ => return Ok(false),
        }
        let mut free_pages = self.pragma_i64("freelist_count")?;
        while free_pages > 0 {
            progress(PruneProgress::Vacuuming {
                pages_left: u64::try_from(free_pages).unwrap_or(0),
            });
            // the statement frees one page per step: run it to its end (its own transaction)
            let sql = format!("PRAGMA incremental_vacuum({VACUUM_PAGES_PER_STEP})");
            let mut stmt = self.conn.prepare(&sql).map_err(sqlite)?;
            let locked = Instant::now();
            let mut rows = stmt.query([]).map_err(sqlite)?;
            while rows.next().map_err(sqlite)?.is_some() {}
            drop(rows);
            drop(stmt);
            yield_to_writers(locked.elapsed());
            let left = self.pragma_i64("freelist_count")?;
            if left >= free_pages {
                // a writer is filling free pages as fast: leave them to it
                break;
            }
            free_pages = left;
        }
        progress(PruneProgress::Vacuuming {
            pages_left: u64::try_from(free_pages).unwrap_or(0),
        });
        Ok(true)
    }

    /// Copies the `-wal` file into the database and truncates it, when no reader or writer is in
    /// the way: it never waits on the busy timeout (writers would wait behind it), it tries again
    /// a few times and otherwise leaves the `-wal` file to the next checkpoint.
    fn checkpoint_and_truncate_wal(&mut self) -> Result<(), Error> {
        let sqlite = |e| classify(&self.path, e);
        let journal_mode: String = self
            .conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .map_err(sqlite)?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Ok(());
        }
        self.conn.busy_timeout(Duration::ZERO).map_err(sqlite)?;
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            let busy = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| {
                    row.get::<_, i64>(0)
                });
            match busy {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DatabaseBusy) => {}
                Err(e) => break Err(sqlite(e)),
            }
            if attempts >= CHECKPOINT_ATTEMPTS {
                break Ok(());
            }
            std::thread::sleep(CHECKPOINT_PAUSE);
        };
        self.conn
            .busy_timeout(DEFAULT_BUSY_TIMEOUT)
            .map_err(sqlite)?;
        outcome
    }

    fn pragma_i64(&self, pragma: &str) -> Result<i64, Error> {
        self.conn
            .pragma_query_value(None, pragma, |row| row.get(0))
            .map_err(|e| classify(&self.path, e))
    }
}

/// Leaves the write lock free for as long as it was just held (at least 1 ms, at most 250 ms).
///
/// A writer waiting on its busy timeout sleeps and tries again (SQLite's busy handler, up to
/// 100 ms between tries); back-to-back transactions would find it asleep every time and starve
/// it past its timeout. With the lock free half the time, each of its tries has an even chance.
fn yield_to_writers(held: Duration) {
    std::thread::sleep(held.clamp(MIN_PAUSE, MAX_PAUSE));
}

/// The size of the database file plus its `-wal` file: what the database takes on disk.
fn bytes_on_disk(path: &Path) -> Result<u64, Error> {
    let len = |path: &Path| match std::fs::metadata(path) {
        Ok(metadata) => Ok(metadata.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    };
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    Ok(len(path)? + len(Path::new(&wal))?)
}

/// Whether a `running` candidate's derived status (`running` or `crashed`) was asked for.
fn wanted(candidate: &Candidate, statuses: &[String], liveness: &mut Liveness) -> bool {
    let status = liveness.derived_status(&candidate.status, candidate.writer.as_ref());
    statuses.iter().any(|s| s == status)
}

/// The candidates of one status arm (`None`: every status but `running`), oldest first in
/// `(start_time, rowid)` order, the order of the `runs` indexes; with `page`, only those after
/// the cursor and at most so many. Filter values are bound parameters, never SQL.
fn candidates_query(
    version: i64,
    filter: &PruneFilter,
    status: Option<&str>,
    page: Option<(&(String, i64), usize)>,
) -> (String, Vec<Value>) {
    let mut params: Vec<Value> = Vec::new();
    let bind = |value: Value, params: &mut Vec<Value>| {
        params.push(value);
        params.len()
    };
    let mut conditions = Vec::new();
    match status {
        Some(status) => {
            let n = bind(Value::Text(status.to_owned()), &mut params);
            conditions.push(format!("status = ?{n}"));
        }
        None => conditions.push("status <> 'running'".to_owned()),
    }
    if let Some(pipeline_name) = &filter.pipeline_name {
        let n = bind(Value::Text(pipeline_name.clone()), &mut params);
        conditions.push(format!("pipeline_name = ?{n}"));
    }
    let n = bind(Value::Text(filter.started_before.clone()), &mut params);
    conditions.push(format!("start_time < ?{n}"));
    let mut limit = String::new();
    if let Some(((start_time, rowid), max)) = page {
        let a = bind(Value::Text(start_time.clone()), &mut params);
        let b = bind(Value::Integer(*rowid), &mut params);
        conditions.push(format!("(start_time, rowid) > (?{a}, ?{b})"));
        let n = bind(
            Value::Integer(i64::try_from(max).unwrap_or(i64::MAX)),
            &mut params,
        );
        limit = format!(" ORDER BY start_time, rowid LIMIT ?{n}");
    }
    let writer = writer_columns(version);
    let sql = format!(
        "SELECT rowid, run_id, start_time, status, {writer} FROM runs WHERE {}{limit}",
        conditions.join(" AND ")
    );
    (sql, params)
}

fn candidate_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Candidate> {
    Ok(Candidate {
        rowid: row.get(0)?,
        run_id: row.get(1)?,
        start_time: row.get(2)?,
        status: row.get(3)?,
        writer: writer_from_columns(row, 4)?,
    })
}

#[cfg(test)]
mod tests {
    //! Query plans of the selection, and batching with ties on `start_time`.

    use super::*;

    const V1: &str = include_str!("schema/v1.sql");
    const V1_TO_V2: &str = include_str!("schema/v1_to_v2.sql");

    fn v2_database(path: &Path) -> Connection {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(V1).unwrap();
        conn.execute_batch(V1_TO_V2).unwrap();
        conn.pragma_update(None, "user_version", 2).unwrap();
        conn
    }

    use crate::test_support::plan;

    #[test]
    fn selection_searches_an_index_range_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let conn = v2_database(&dir.path().join("flujo_ops.db"));
        let filter = |statuses: &[&str], pipeline: Option<&str>| PruneFilter {
            started_before: "2026-01-01T00:00:00.000000Z".into(),
            statuses: statuses.iter().map(|s| s.to_string()).collect(),
            pipeline_name: pipeline.map(str::to_owned),
        };
        let cases = [
            ("default", filter(&[], None), "idx_runs_start_time"),
            (
                "failed",
                filter(&["failed"], None),
                "idx_runs_status_start_time",
            ),
            (
                "crashed",
                filter(&["crashed"], None),
                "idx_runs_status_start_time",
            ),
            (
                "pipeline",
                filter(&[], Some("etl")),
                "idx_runs_pipeline_name_start_time",
            ),
            (
                "pipeline and status",
                filter(&["failed"], Some("etl")),
                "(pipeline_name=? OR status=?)",
            ),
        ];
        for (name, filter, index) in cases {
            let arms = StatusArms::of(&filter.statuses);
            for status in arms.arms() {
                let cursor = ("2025-01-01T00:00:00.000000Z".to_owned(), 7);
                let (sql, params) = candidates_query(2, &filter, status, Some((&cursor, 500)));
                let plan = plan(&conn, &sql, &params);
                assert!(!plan.contains("TEMP B-TREE"), "{name} sorts:\n{plan}");
                assert!(plan.contains("SEARCH runs USING INDEX"), "{name}:\n{plan}");
                assert!(
                    plan.contains("start_time>? AND start_time<?"),
                    "{name}:\n{plan}"
                );
                if let Some(index) = index.strip_prefix('(') {
                    let (a, b) = index.trim_end_matches(')').split_once(" OR ").unwrap();
                    assert!(plan.contains(a) || plan.contains(b), "{name}:\n{plan}");
                } else {
                    assert!(plan.contains(index), "{name}:\n{plan}");
                }
            }
        }
        let plan = plan(
            &conn,
            "DELETE FROM steps WHERE rowid IN (SELECT rowid FROM steps WHERE run_id = ?1 LIMIT ?2)",
            &[Value::Text("x".into()), Value::Integer(10)],
        );
        assert!(
            plan.contains("SEARCH steps USING COVERING INDEX idx_steps_run_id"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN"), "{plan}");
    }

    /// Runs `r000..` all starting at the same instant, `steps_each` steps each; every third one
    /// `running` with a dead writer (crashed), every third `running` with no writer (running).
    fn tied_database(path: &Path, n_runs: usize, steps_each: usize) {
        let conn = v2_database(path);
        let dead_pid = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            i64::from(pid)
        };
        let host = flujo_trace_core::current_writer().unwrap().host;
        for i in 0..n_runs {
            let (status, writer) = match i % 3 {
                0 => ("completed", None),
                1 => ("running", Some((host.clone(), dead_pid, 1))),
                _ => ("running", None),
            };
            conn.execute(
                "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, \
                 writer_host, writer_pid, writer_pid_start) \
                 VALUES (?1, 'p', 'v', ?2, '2025-01-01T00:00:00.000000Z', ?3, ?4, ?5)",
                rusqlite::params![
                    format!("r{i:03}"),
                    status,
                    writer.as_ref().map(|w| w.0.clone()),
                    writer.as_ref().map(|w| w.1),
                    writer.as_ref().map(|w| w.2),
                ],
            )
            .unwrap();
            for k in 0..steps_each {
                conn.execute(
                    "INSERT INTO steps (step_run_id, run_id, step_name, step_index, status, \
                     start_time) VALUES (?1, ?2, 's', ?3, 'completed', '2025-01-01T00:00:00.000000Z')",
                    rusqlite::params![format!("r{i:03}-{k:03}"), format!("r{i:03}"), k],
                )
                .unwrap();
            }
        }
    }

    fn remaining(path: &Path) -> (Vec<String>, i64) {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT run_id FROM runs ORDER BY run_id")
            .unwrap();
        let runs = stmt
            .query_map([], |row| row.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let steps = conn
            .query_row("SELECT count(*) FROM steps", [], |row| row.get(0))
            .unwrap();
        (runs, steps)
    }

    #[test]
    fn small_batches_with_tied_start_times_delete_exactly_the_asked_status() {
        // (statuses, runs deleted: i % 3 values)
        let cases: [(&[&str], &[usize]); 4] = [
            (&[], &[0]),
            (&["crashed"], &[1]),
            (&["running"], &[2]),
            (&["running", "crashed", "completed"], &[0, 1, 2]),
        ];
        for (statuses, deleted) in cases {
            for (runs_per_tx, rows_per_tx) in [(1, 1), (2, 3), (4, 100), (500, 20_000)] {
                let dir = tempfile::tempdir().unwrap();
                let path = dir.path().join("flujo_ops.db");
                tied_database(&path, 12, 3);
                let filter = PruneFilter {
                    started_before: "2025-01-02T00:00:00.000000Z".into(),
                    statuses: statuses.iter().map(|s| s.to_string()).collect(),
                    pipeline_name: None,
                };
                let mut backend = SqliteBackend::open_for_prune(&path).unwrap();
                let counted = backend.prune_count(&filter).unwrap();
                let mut transactions = 0;
                let report = backend
                    .prune_in_batches(&filter, runs_per_tx, rows_per_tx, |p| {
                        if matches!(p, PruneProgress::Deleting { .. }) {
                            transactions += 1;
                        }
                    })
                    .unwrap();
                drop(backend);
                let case = format!("{statuses:?} in batches of {runs_per_tx}/{rows_per_tx}");
                assert_eq!(
                    (counted.runs, counted.steps),
                    (4 * deleted.len() as u64, 12 * deleted.len() as u64),
                    "{case}"
                );
                assert_eq!(
                    (report.runs, report.steps),
                    (counted.runs, counted.steps),
                    "{case}"
                );
                let expected: Vec<String> = (0..12)
                    .filter(|i| !deleted.contains(&(i % 3)))
                    .map(|i| format!("r{i:03}"))
                    .collect();
                let (runs, steps) = remaining(&path);
                assert_eq!(runs, expected, "{case}");
                assert_eq!(steps, 3 * expected.len() as i64, "{case}");
                if rows_per_tx == 1 {
                    // one row per transaction: every step and every run on its own
                    assert!(
                        transactions as u64 > counted.runs + counted.steps,
                        "{case}: {transactions}"
                    );
                }
            }
        }
    }
}
