//! The read and prune roles, each its own type, so what a caller may do with a database is
//! decided by the type it holds: the lens's `list`, `show` and `copy` hold a [`SqliteReader`],
//! which has no method that writes or deletes (a compile-fail test shows it); only `prune` holds a
//! [`SqlitePruner`]. The writer's role is `SqliteBackend` (`open` and the `StateBackend` impl) and,
//! behind `SqliteLayer`, the core's `Sink`, `SqliteSink`.
//!
//! These two types are the only public way to read or prune: each wraps a `SqliteBackend` opened
//! through its crate-private read-only open (`read.rs`) or prune open (`prune.rs`, which makes the
//! read-only open's checks first), and each method is a thin delegation to that backend's
//! crate-private queries.

use std::path::Path;

use crate::backend::{RunFilter, RunRecord, SqliteBackend, StateBackend, StepRecord};
use crate::prune::{PruneCounts, PruneFilter, PruneProgress, PruneReport};
use flujo_trace_core::{Candidate, IndexState, RunReader, RunStat, SearchField, StepStat};
use std::ops::ControlFlow;

use crate::read::RunPage;
use crate::Error;

/// A database opened for reading only: what the lens queries, the core's [`RunReader`]. It
/// has no method that writes.
#[derive(Debug)]
pub struct SqliteReader {
    backend: SqliteBackend,
}

impl SqliteReader {
    /// Opens an existing database for reading only. Never creates, migrates or writes the file:
    /// a missing file is [`Error::NotFound`], a file that is not SQLite or has no flujo tables is
    /// [`Error::NotAFlujoDatabase`], a damaged one [`Error::Corrupt`], one written by a newer
    /// flujo [`Error::TooNew`]. Older schema versions are read as they are.
    ///
    /// A database in WAL mode is read through SQLite's `-wal` and `-shm` companion files, which
    /// SQLite creates next to it when missing (empty); the database file itself is not written.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteReader, Error> {
        SqliteBackend::open_read_only(path).map(|backend| SqliteReader { backend })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.backend.path()
    }

    /// The schema version of the database as opened (`PRAGMA user_version`, at least 1).
    pub fn stored_schema_version(&self) -> i64 {
        self.backend.stored_schema_version()
    }

    /// Calls `each` with every run, with its payloads, oldest first (by `runs(start_time)`), one
    /// row at a time; stops at the first error `each` returns. For copying a whole store.
    pub fn for_each_run<E: From<Error>>(
        &self,
        each: impl FnMut(RunRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        self.backend.for_each_run(each)
    }

    /// How many runs the database holds.
    pub fn run_count(&self) -> Result<u64, Error> {
        self.backend.run_count()
    }

    /// How many runs and steps `prune` with `filter` would delete now (only reads).
    pub fn prune_count(&self, filter: &PruneFilter) -> Result<PruneCounts, Error> {
        self.backend.prune_count(filter)
    }

    /// FSD-08's `get_run_details` ([`StateBackend::get_run_details`]) on this read-only open: one
    /// run with its blobs, `None` when unknown.
    pub fn get_run_details(&self, run_id: &str) -> Result<Option<RunRecord>, Error> {
        StateBackend::get_run_details(&self.backend, run_id)
    }

    /// FSD-08's `list_run_steps` ([`StateBackend::list_run_steps`]) on this read-only open: a
    /// run's steps in execution order, all at once.
    pub fn list_run_steps(&self, run_id: &str) -> Result<Vec<StepRecord>, Error> {
        StateBackend::list_run_steps(&self.backend, run_id)
    }

    /// [`StateBackend::list_runs`] on this read-only open: the runs matching `filter`, newest
    /// first, with their blobs.
    pub fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>, Error> {
        StateBackend::list_runs(&self.backend, filter)
    }
}

impl RunReader for SqliteReader {
    type Error = Error;

    /// A page of runs matching `filter`, newest first, without blobs, and how many match:
    /// counted exactly up to `count_bound`, beyond that reported as "more than `count_bound`".
    /// `filter.limit` of `None` returns every matching run.
    ///
    /// When exactly one of `running` and `crashed` is asked for, each candidate's writer must be
    /// checked: the walk stops after the page and one more run (the count is then "more than
    /// the page") or after [`RECHECK_BOUND`](crate::RECHECK_BOUND) candidates
    /// ([`RunPage::stopped_after`]).
    fn list_runs_page(&self, filter: &RunFilter, count_bound: u64) -> Result<RunPage, Error> {
        self.backend.list_runs_page(filter, count_bound)
    }

    fn find_run(&self, run_id: &str) -> Result<Option<RunRecord>, Error> {
        self.backend.find_run(run_id)
    }

    fn latest_run(&self) -> Result<Option<RunRecord>, Error> {
        self.backend.latest_run()
    }

    fn find_runs_by_prefix(&self, prefix: &str, max: usize) -> Result<Vec<RunRecord>, Error> {
        self.backend.find_runs_by_prefix(prefix, max)
    }

    fn run_ids_by_tail(&self, tails: &[&str]) -> Result<Vec<String>, Error> {
        self.backend.run_ids_by_tail(tails)
    }

    /// `PRAGMA data_version`: changes when another connection commits, read from the WAL
    /// index without touching a table.
    fn change_token(&self) -> Result<u64, Error> {
        self.backend.data_version()
    }

    /// Calls `each` with every step of a run in execution order (the order the writer inserted
    /// them, when each started: `rowid`, read through `idx_steps_run_id`), one row at a time, so
    /// a run with thousands of large steps is never held in memory at once. Stops at the first
    /// error `each` returns.
    fn for_each_run_step<E: From<Error>>(
        &self,
        run_id: &str,
        each: impl FnMut(StepRecord) -> Result<(), E>,
    ) -> Result<(), E> {
        self.backend.for_each_run_step(run_id, each)
    }

    fn running_steps(&self, run_id: &str) -> Result<Vec<StepRecord>, Error> {
        self.backend.running_steps(run_id)
    }

    /// From schema version 7, the ended runs come from `run_stats` (a range of its primary key
    /// by start time) and the running ones from `runs(status, start_time)`, in one read
    /// transaction; before, or while the writer still fills `run_stats`, from `runs`.
    fn for_each_run_stat<E: From<Error>>(
        &self,
        filter: &RunFilter,
        each: impl FnMut(&RunStat) -> Result<(), E>,
    ) -> Result<(), E> {
        self.backend.for_each_run_stat(filter, each)
    }

    fn for_each_step_stat<E: From<Error>>(
        &self,
        filter: &RunFilter,
        each: impl FnMut(StepStat) -> Result<(), E>,
    ) -> Result<(), E> {
        self.backend.for_each_step_stat(filter, each)
    }

    fn stats_index(&self) -> Result<IndexState, Error> {
        self.backend.stats_index()
    }

    /// From schema version 7, the FTS5 trigram index `error_search`, newest first; a needle of
    /// 1 or 2 characters reads every row of that index (the errors only, not the steps).
    fn search_errors<E: From<Error>>(
        &self,
        needle: &str,
        filter: &RunFilter,
        each: impl FnMut(Candidate) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        self.backend.search_errors(needle, filter, each)
    }

    fn error_index(&self) -> Result<IndexState, Error> {
        self.backend.error_index()
    }

    fn scan_payloads<E: From<Error>>(
        &self,
        field: SearchField,
        filter: &RunFilter,
        each: impl FnMut(Candidate) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E> {
        self.backend.scan_payloads(field, filter, each)
    }
}

/// A database opened to delete runs from it: what `flujo lens prune` holds, and only it.
#[derive(Debug)]
pub struct SqlitePruner {
    backend: SqliteBackend,
}

impl SqlitePruner {
    /// Opens an existing database to delete runs from it. Makes the same checks as
    /// [`SqliteReader::open`] first, with the same errors (missing, not a flujo database, corrupt,
    /// too new), and never creates, migrates or repairs the file: an older schema version is
    /// pruned as it is. Sets a busy timeout of 5 s and `foreign_keys`.
    pub fn open(path: impl AsRef<Path>) -> Result<SqlitePruner, Error> {
        SqliteBackend::open_for_prune(path).map(|backend| SqlitePruner { backend })
    }

    /// The schema version of the database as opened (`PRAGMA user_version`, at least 1).
    pub fn stored_schema_version(&self) -> i64 {
        self.backend.stored_schema_version()
    }

    /// How many runs match `filter` and how many steps they have: what [`prune`](Self::prune)
    /// would delete now. Only reads.
    pub fn prune_count(&self, filter: &PruneFilter) -> Result<PruneCounts, Error> {
        self.backend.prune_count(filter)
    }

    /// Deletes the runs matching `filter` with their steps, in short IMMEDIATE transactions so
    /// that pipelines writing meanwhile lose nothing, then hands the freed pages back to the file
    /// system when the database allows it and truncates the `-wal` file when no reader holds it.
    /// Calls `progress` after each transaction.
    pub fn prune(
        &mut self,
        filter: &PruneFilter,
        progress: impl FnMut(PruneProgress),
    ) -> Result<PruneReport, Error> {
        self.backend.prune(filter, progress)
    }
}
