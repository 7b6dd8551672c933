//! The reader a lens queries, whatever the store: a page of runs with a bounded count, one run,
//! and its steps streamed one at a time. A reader has no method that writes.

use std::ops::ControlFlow;

use crate::rows::{
    Candidate, IndexState, RunFilter, RunPage, RunRecord, RunStat, SearchField, StepRecord,
    StepStat,
};

/// A store opened for reading only (for SQLite, `SqliteReader`).
///
/// Invariant: every method only reads; a page and a count stop at their bounds, and steps are
/// streamed, so no query holds a whole store (or a whole large run) in memory.
pub trait RunReader {
    /// What a query can fail with.
    type Error;

    /// A page of runs matching `filter`, newest first, without their payloads, and how many
    /// match: counted exactly up to `count_bound`, beyond that "more than `count_bound`".
    fn list_runs_page(&self, filter: &RunFilter, count_bound: u64) -> Result<RunPage, Self::Error>;

    /// One run with its payloads, `None` when no run has this id.
    fn find_run(&self, run_id: &str) -> Result<Option<RunRecord>, Self::Error>;

    /// The run that started last, with its payloads.
    fn latest_run(&self) -> Result<Option<RunRecord>, Self::Error>;

    /// Up to `max` runs whose id starts with `prefix`, in id order, without their payloads.
    fn find_runs_by_prefix(&self, prefix: &str, max: usize) -> Result<Vec<RunRecord>, Self::Error>;

    /// The ids of the runs whose id ends with one of `tails` (each an id's last
    /// [`TAIL_LEN`](crate::TAIL_LEN) characters, [`id_tail`](crate::id_tail)), in no particular
    /// order: what makes short ids. An index lookup from schema version 6 on; a store of an
    /// older version is scanned.
    fn run_ids_by_tail(&self, tails: &[&str]) -> Result<Vec<String>, Self::Error>;

    /// A number that changes whenever another connection commits to the store (and may change
    /// for other reasons): followers poll it, cheaply, and query again only when it moved. It
    /// holds no transaction open between calls.
    fn change_token(&self) -> Result<u64, Self::Error>;

    /// Calls `each` with every step of a run in execution order, one at a time; stops at the
    /// first error `each` returns.
    fn for_each_run_step<E: From<Self::Error>>(
        &self,
        run_id: &str,
        each: impl FnMut(StepRecord) -> Result<(), E>,
    ) -> Result<(), E>;

    /// The steps of a run still stored as `running`, in execution order.
    fn running_steps(&self, run_id: &str) -> Result<Vec<StepRecord>, Self::Error>;

    /// Calls `each` with every run that started in the filter's window (`since`, `until`) of
    /// its pipeline (`pipeline_name`), in no particular order; `statuses` and `limit` are not
    /// used. What `flujo lens stats` counts. `Ready` when an index of ended runs served it
    /// ([`stats_index`](RunReader::stats_index)). `each` borrows each run: a reader may fill
    /// the same value again for the next one (a million runs are counted without allocating a
    /// string for each), so clone what you keep.
    fn for_each_run_stat<E: From<Self::Error>>(
        &self,
        filter: &RunFilter,
        each: impl FnMut(&RunStat) -> Result<(), E>,
    ) -> Result<(), E>;

    /// Calls `each` with every step execution of the runs [`for_each_run_stat`] gives, in no
    /// particular order.
    ///
    /// [`for_each_run_stat`]: RunReader::for_each_run_stat
    fn for_each_step_stat<E: From<Self::Error>>(
        &self,
        filter: &RunFilter,
        each: impl FnMut(StepStat) -> Result<(), E>,
    ) -> Result<(), E>;

    /// Whether `for_each_run_stat` reads an index of its own or scans the runs.
    fn stats_index(&self) -> Result<IndexState, Self::Error>;

    /// Calls `each` with the step errors of runs in the filter's window and pipeline that may
    /// contain `needle` (case folded), newest first as recorded, until it answers `Break`: with
    /// an index of substrings ([`error_index`](RunReader::error_index) `Ready`) only the errors
    /// it finds (every one that contains `needle`, perhaps more); without one, or for a needle
    /// shorter than the index's least (3 characters), every error. The caller checks each.
    fn search_errors<E: From<Self::Error>>(
        &self,
        needle: &str,
        filter: &RunFilter,
        each: impl FnMut(Candidate) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E>;

    /// Whether `search_errors` reads an index of substrings or scans.
    fn error_index(&self) -> Result<IndexState, Self::Error>;

    /// Calls `each` with `field` (`Input`, `Output` or `Context`; `Error` as for
    /// [`search_errors`](RunReader::search_errors) without an index) of every run in the
    /// filter's window and pipeline, newest run first, until it answers `Break`: a bounded scan,
    /// the window being the bound.
    fn scan_payloads<E: From<Self::Error>>(
        &self,
        field: SearchField,
        filter: &RunFilter,
        each: impl FnMut(Candidate) -> Result<ControlFlow<()>, E>,
    ) -> Result<(), E>;
}
