//! The read and prune roles, each its own type, so what a caller may do with a database is
//! decided by the type it holds: the lens's `list` and `show` hold a [`SqliteReader`], which has
//! no method that writes (a compile-fail test shows it); only `prune` holds a [`SqlitePruner`].
//! (The writer's role is the core's `Sink`, `SqliteSink`, behind `SqliteLayer`.)
//!
//! Both open through `SqliteBackend`'s one read-only open and its checks; the queries are the
//! ones of `read.rs` and `prune.rs`.

use std::path::Path;

use crate::backend::{RunFilter, RunRecord, SqliteBackend, StepRecord};
use crate::prune::{PruneCounts, PruneFilter, PruneProgress, PruneReport};
use flujo_trace_core::RunReader;

use crate::read::RunPage;
use crate::Error;

/// A database opened for reading only: what the lens queries, the core's [`RunReader`]. It
/// has no method that writes.
#[derive(Debug)]
pub struct SqliteReader {
    backend: SqliteBackend,
}

impl SqliteReader {
    /// Opens an existing database for reading only, with the checks and errors of
    /// [`SqliteBackend::open_read_only`] (never creates, migrates or writes the file).
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

    /// Calls `each` with every run, with its payloads, oldest first; see
    /// [`SqliteBackend::for_each_run`].
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
}

impl RunReader for SqliteReader {
    type Error = Error;

    /// See [`SqliteBackend::list_runs_page`].
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

    /// See [`SqliteBackend::for_each_run_step`].
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
}

/// A database opened to delete runs from it: what `flujo lens prune` holds, and only it.
#[derive(Debug)]
pub struct SqlitePruner {
    backend: SqliteBackend,
}

impl SqlitePruner {
    /// Opens an existing database to delete runs from it, with the checks and errors of
    /// [`SqliteBackend::open_for_prune`] (never creates, migrates or repairs the file).
    pub fn open(path: impl AsRef<Path>) -> Result<SqlitePruner, Error> {
        SqliteBackend::open_for_prune(path).map(|backend| SqlitePruner { backend })
    }

    /// How many runs and steps [`prune`](Self::prune) with `filter` would delete now.
    pub fn prune_count(&self, filter: &PruneFilter) -> Result<PruneCounts, Error> {
        self.backend.prune_count(filter)
    }

    /// Deletes the runs matching `filter` with their steps, in short transactions: see
    /// [`SqliteBackend::prune`].
    pub fn prune(
        &mut self,
        filter: &PruneFilter,
        progress: impl FnMut(PruneProgress),
    ) -> Result<PruneReport, Error> {
        self.backend.prune(filter, progress)
    }
}
