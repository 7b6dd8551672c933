//! The reader a lens queries, whatever the store: a page of runs with a bounded count, one run,
//! and its steps streamed one at a time. A reader has no method that writes.

use crate::rows::{RunFilter, RunPage, RunRecord, StepRecord};

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
}
