//! The `StateBackend` trait (FSD-08's storage interface) over the core's row types, and
//! `SqliteBackend`, the writer's role: it creates and migrates a database and writes rows.
//!
//! Publicly a `SqliteBackend` only writes: `open`, `path` and the `StateBackend` impl (whose read
//! methods, FSD-08's, read back what it wrote). Its read-only open and the lens's queries
//! (`read.rs`) and its prune open and deletes (`prune.rs`) are crate-private: public reading goes
//! through `SqliteReader`, public pruning through `SqlitePruner` (`roles.rs`), each wrapping a
//! `SqliteBackend` of its own; the lens never holds a `SqliteBackend`. The layer's writer thread
//! (`SqliteSink`, `sink.rs`) holds one and writes with this file's row functions (`insert_run`,
//! `insert_step`, `update_run_end`, `update_step_end`), not through the trait.
//!
//! The trait is synchronous, as its callers are (tests write rows through it); an async trait
//! would only add a runtime to them.

use std::path::Path;
use std::time::Duration;

pub(crate) use flujo_trace_core::StepClose;
pub use flujo_trace_core::{RunEnd, RunFilter, RunRecord, StepRecord, WriterProcess};
use rusqlite::{params, Connection};

use crate::{migrate, read, Error};

/// The storage operations of FSD-08 section 5.2, plus `list_runs`.
pub trait StateBackend {
    /// Error of this backend.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Insert a run with status `running`.
    fn save_run_start(&mut self, run: &RunRecord) -> Result<(), Self::Error>;
    /// Insert or replace a step row.
    fn save_step_result(&mut self, step: &StepRecord) -> Result<(), Self::Error>;
    /// Record a run's end.
    fn save_run_end(&mut self, run_id: &str, end: &RunEnd) -> Result<(), Self::Error>;
    /// One run, `None` when unknown.
    fn get_run_details(&self, run_id: &str) -> Result<Option<RunRecord>, Self::Error>;
    /// A run's steps in execution order.
    fn list_run_steps(&self, run_id: &str) -> Result<Vec<StepRecord>, Self::Error>;
    /// Runs matching `filter`, newest first.
    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, Self::Error>;
}

/// The SQLite implementation of [`StateBackend`]: the writer's role.
///
/// [`SqliteBackend::open`] creates and migrates a database; the [`StateBackend`] impl writes runs
/// and steps and, through FSD-08's read operations, reads them back. The lens never holds one:
/// it reads through a [`SqliteReader`](crate::SqliteReader), which never creates, migrates or
/// writes a database, and prunes through a [`SqlitePruner`](crate::SqlitePruner).
#[derive(Debug)]
pub struct SqliteBackend {
    pub(crate) conn: rusqlite::Connection,
    pub(crate) path: std::path::PathBuf,
    /// `PRAGMA user_version` of the database as opened (older versions are readable).
    pub(crate) schema_version: i64,
}

impl SqliteBackend {
    /// Opens the database at `path` for writing: creates it (readable and writable by its owner
    /// only) when missing, upgrades an older schema in one transaction, and refuses a database
    /// written by a newer flujo or a file that is not a flujo database, leaving it untouched.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteBackend, Error> {
        Self::open_with_busy_timeout(
            path.as_ref(),
            migrate::DEFAULT_BUSY_TIMEOUT,
            migrate::PAGE_SIZE,
        )
    }

    pub(crate) fn open_with_busy_timeout(
        path: &Path,
        busy_timeout: Duration,
        page_size: i64,
    ) -> Result<SqliteBackend, Error> {
        let conn = migrate::open_for_writing(path, busy_timeout, page_size)?;
        Ok(SqliteBackend {
            conn,
            path: path.to_path_buf(),
            schema_version: migrate::SCHEMA_VERSION,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sqlite_error(&self, source: rusqlite::Error) -> Error {
        migrate::classify(&self.path, source)
    }
}

impl StateBackend for SqliteBackend {
    type Error = Error;

    fn save_run_start(&mut self, run: &RunRecord) -> Result<(), Error> {
        insert_run(&self.conn, run).map_err(|e| self.sqlite_error(e))
    }

    fn save_step_result(&mut self, step: &StepRecord) -> Result<(), Error> {
        upsert_step(&self.conn, &StepRow::from_record(step)).map_err(|e| self.sqlite_error(e))
    }

    fn save_run_end(&mut self, run_id: &str, end: &RunEnd) -> Result<(), Error> {
        match update_run_end(&self.conn, run_id, end) {
            Ok(0) => Err(Error::UnknownRun {
                path: self.path.clone(),
                run_id: run_id.to_owned(),
            }),
            Ok(_) => Ok(()),
            Err(e) => Err(self.sqlite_error(e)),
        }
    }

    fn get_run_details(&self, run_id: &str) -> Result<Option<RunRecord>, Error> {
        read::get_run_details(&self.conn, run_id).map_err(|e| self.sqlite_error(e))
    }

    fn list_run_steps(&self, run_id: &str) -> Result<Vec<StepRecord>, Error> {
        read::list_run_steps(&self.conn, run_id).map_err(|e| self.sqlite_error(e))
    }

    fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, Error> {
        read::list_runs(&self.conn, filter).map_err(|e| self.sqlite_error(e))
    }
}

/// A whole step row, borrowed from a [`StepRecord`] or from a step's start and close: what
/// [`upsert_step`] binds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepRow<'a> {
    step_run_id: &'a str,
    run_id: &'a str,
    parent_step_run_id: Option<&'a str>,
    step_name: &'a str,
    step_index: i64,
    step_kind: Option<&'a str>,
    status: &'a str,
    attempts: Option<i64>,
    start_time: &'a str,
    end_time: Option<&'a str>,
    duration_ms: Option<i64>,
    cost: Option<f64>,
    tokens: Option<i64>,
    input_blob: Option<&'a str>,
    output_blob: Option<&'a str>,
    error_blob: Option<&'a str>,
    fallback_taken: Option<bool>,
}

impl<'a> StepRow<'a> {
    pub(crate) fn from_record(step: &'a StepRecord) -> StepRow<'a> {
        StepRow {
            step_run_id: &step.step_run_id,
            run_id: &step.run_id,
            parent_step_run_id: step.parent_step_run_id.as_deref(),
            step_name: &step.step_name,
            step_index: step.step_index,
            step_kind: step.step_kind.as_deref(),
            status: &step.status,
            attempts: step.attempts,
            start_time: &step.start_time,
            end_time: step.end_time.as_deref(),
            duration_ms: step.duration_ms,
            cost: step.cost,
            tokens: step.tokens,
            input_blob: step.input_blob.as_deref(),
            output_blob: step.output_blob.as_deref(),
            error_blob: step.error_blob.as_deref(),
            fallback_taken: step.fallback_taken,
        }
    }

    /// The row of a step whose start and close are known together.
    pub(crate) fn from_start_and_close(start: &'a StepRecord, close: &'a StepClose) -> StepRow<'a> {
        StepRow {
            status: &close.status,
            attempts: close.attempts,
            end_time: Some(&close.end_time),
            duration_ms: close.duration_ms,
            cost: close.cost,
            tokens: close.tokens,
            output_blob: close.output_blob.as_deref(),
            error_blob: close.error_blob.as_deref(),
            fallback_taken: close.fallback_taken,
            ..StepRow::from_record(start)
        }
    }
}

/// Inserts a run row (a second start of the same run id is a constraint error).
pub(crate) fn insert_run(conn: &Connection, run: &RunRecord) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, end_time, \
         duration_ms, total_cost, total_tokens, n_steps, input_blob, output_blob, \
         final_context_blob, error_blob, writer_host, writer_pid, writer_pid_start, writer_pid_ns, \
         trace_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19)",
    )?;
    let writer = run.writer.as_ref();
    stmt.execute(params![
        run.run_id,
        run.pipeline_name,
        run.pipeline_version,
        run.status,
        run.start_time,
        run.end_time,
        run.duration_ms,
        run.total_cost,
        run.total_tokens,
        run.n_steps,
        run.input_blob,
        run.output_blob,
        run.final_context_blob,
        run.error_blob,
        writer.map(|w| w.host.as_str()),
        writer.map(|w| w.pid),
        writer.map(|w| w.pid_start),
        writer.and_then(|w| w.pid_ns),
        run.trace_id,
    ])?;
    Ok(())
}

/// Records a run's end and its number of steps; returns the number of rows changed (0 for an
/// unknown run).
pub(crate) fn update_run_end(
    conn: &Connection,
    run_id: &str,
    end: &RunEnd,
) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(
        "UPDATE runs SET status = ?2, end_time = ?3, duration_ms = ?4, total_cost = ?5, \
         total_tokens = ?6, final_context_blob = ?7, error_blob = ?8, output_blob = ?9, \
         output_step_run_id = ?10, trace_id = ?11, \
         n_steps = (SELECT count(*) FROM steps WHERE steps.run_id = ?1) \
         WHERE run_id = ?1",
    )?;
    // the output kept once: in the row of the step it came from, when there is one
    let (output, output_step) = match &end.output_step_run_id {
        Some(step) => (None, Some(step.as_str())),
        None => (end.output_blob.as_deref(), None),
    };
    stmt.execute(params![
        run_id,
        end.status,
        end.end_time,
        end.duration_ms,
        end.total_cost,
        end.total_tokens,
        end.final_context_blob,
        end.error_blob,
        output,
        output_step,
        end.trace_id,
    ])
}

/// The columns and values of a step row, in [`bind_step`]'s order.
macro_rules! insert_step_sql {
    () => {
        "INSERT INTO steps (step_run_id, run_id, parent_step_run_id, step_name, step_index, \
         step_kind, status, attempts, start_time, end_time, duration_ms, cost, tokens, \
         input_blob, output_blob, error_blob, fallback_taken) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)"
    };
}

/// Inserts a new step row (the writer's path: a step id is never written twice, and a plain
/// INSERT needs no statement journal).
pub(crate) fn insert_step(conn: &Connection, step: &StepRow<'_>) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(insert_step_sql!())?;
    bind_step(&mut stmt, step)
}

/// Inserts a step row, or replaces every column of an existing one.
pub(crate) fn upsert_step(conn: &Connection, step: &StepRow<'_>) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(concat!(
        insert_step_sql!(),
        " ON CONFLICT (step_run_id) DO UPDATE SET run_id = excluded.run_id, \
         parent_step_run_id = excluded.parent_step_run_id, step_name = excluded.step_name, \
         step_index = excluded.step_index, step_kind = excluded.step_kind, \
         status = excluded.status, attempts = excluded.attempts, \
         start_time = excluded.start_time, end_time = excluded.end_time, \
         duration_ms = excluded.duration_ms, cost = excluded.cost, tokens = excluded.tokens, \
         input_blob = excluded.input_blob, output_blob = excluded.output_blob, \
         error_blob = excluded.error_blob, fallback_taken = excluded.fallback_taken"
    ))?;
    bind_step(&mut stmt, step)
}

fn bind_step(stmt: &mut rusqlite::Statement<'_>, step: &StepRow<'_>) -> rusqlite::Result<()> {
    stmt.execute(params![
        step.step_run_id,
        step.run_id,
        step.parent_step_run_id,
        step.step_name,
        step.step_index,
        step.step_kind,
        step.status,
        step.attempts,
        step.start_time,
        step.end_time,
        step.duration_ms,
        step.cost,
        step.tokens,
        step.input_blob,
        step.output_blob,
        step.error_blob,
        step.fallback_taken,
    ])?;
    Ok(())
}

/// Records a step's close fields on its `running` row; returns the number of rows changed (0 when
/// the row is missing).
pub(crate) fn update_step_end(conn: &Connection, close: &StepClose) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(
        "UPDATE steps SET status = ?2, attempts = ?3, end_time = ?4, duration_ms = ?5, \
         cost = ?6, tokens = ?7, output_blob = ?8, error_blob = ?9, fallback_taken = ?10 \
         WHERE step_run_id = ?1",
    )?;
    stmt.execute(params![
        close.step_run_id,
        close.status,
        close.attempts,
        close.end_time,
        close.duration_ms,
        close.cost,
        close.tokens,
        close.output_blob,
        close.error_blob,
        close.fallback_taken,
    ])
}
