//! The `StateBackend` trait (FSD-08's storage interface), its row types, and `SqliteBackend`.
//!
//! The trait is synchronous: its two callers, the layer's writer thread and the lens, are
//! synchronous, and an async trait would only add a runtime to both.

use serde::Serialize;

/// A run as stored in the `runs` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    /// UUID v7 of the run.
    pub run_id: String,
    /// Name given to the runner.
    pub pipeline_name: String,
    /// Version given to the runner (`latest` by default).
    pub pipeline_version: String,
    /// `running`, `completed`, `failed`, `cancelled` (and `crashed`, derived by readers).
    pub status: String,
    /// RFC 3339 UTC, fixed width.
    pub start_time: String,
    /// RFC 3339 UTC, fixed width; `None` while running.
    pub end_time: Option<String>,
    /// Wall time of the run.
    pub duration_ms: Option<i64>,
    /// Sum of the steps' cost in USD.
    pub total_cost: Option<f64>,
    /// Sum of the steps' tokens.
    pub total_tokens: Option<i64>,
    /// Number of step rows of the run.
    pub n_steps: Option<i64>,
    /// The run's input, JSON text.
    pub input_blob: Option<String>,
    /// The final context, JSON text.
    pub final_context_blob: Option<String>,
    /// The error that failed the run.
    pub error_blob: Option<String>,
    /// The process that wrote the run, for crash detection.
    pub writer: Option<WriterProcess>,
}

/// The process that wrote a run: enough to tell later whether it is still alive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WriterProcess {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// Start time of the process, in clock ticks since boot (`/proc/PID/stat` field 22), so a
    /// reused pid is not mistaken for the writer.
    pub pid_start: i64,
}

/// A step execution as stored in the `steps` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// UUID v7 of this step execution.
    pub step_run_id: String,
    /// The run it belongs to.
    pub run_id: String,
    /// The enclosing control-flow step, for nested steps.
    pub parent_step_run_id: Option<String>,
    /// The step's name.
    pub step_name: String,
    /// Position among its siblings.
    pub step_index: i64,
    /// `step`, `fallback`, `loop`, `branch`, `parallel`, `map`, `pipeline`.
    pub step_kind: Option<String>,
    /// `running`, `completed`, `failed`, `cancelled`.
    pub status: String,
    /// Attempts made.
    pub attempts: Option<i64>,
    /// RFC 3339 UTC, fixed width.
    pub start_time: String,
    /// RFC 3339 UTC, fixed width.
    pub end_time: Option<String>,
    /// Wall time of all attempts.
    pub duration_ms: Option<i64>,
    /// Cost in USD.
    pub cost: Option<f64>,
    /// Tokens.
    pub tokens: Option<i64>,
    /// Input, JSON text.
    pub input_blob: Option<String>,
    /// Output, JSON text.
    pub output_blob: Option<String>,
    /// Error message.
    pub error_blob: Option<String>,
}

/// What `save_run_end` records when a run's span closes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunEnd {
    /// Final status.
    pub status: String,
    /// RFC 3339 UTC.
    pub end_time: String,
    /// Wall time.
    pub duration_ms: Option<i64>,
    /// Total cost in USD.
    pub total_cost: Option<f64>,
    /// Total tokens.
    pub total_tokens: Option<i64>,
    /// Final context, JSON text.
    pub final_context_blob: Option<String>,
    /// Error that failed the run.
    pub error_blob: Option<String>,
}

/// Filters of `list_runs`; every field narrows the result. Newest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFilter {
    /// Any of these statuses (empty: all).
    pub statuses: Vec<String>,
    /// Exactly this pipeline name.
    pub pipeline_name: Option<String>,
    /// Runs started at or after this RFC 3339 time.
    pub since: Option<String>,
    /// Runs started before this RFC 3339 time.
    pub until: Option<String>,
    /// At most this many runs (`None`: all).
    pub limit: Option<usize>,
}

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

/// The SQLite implementation of [`StateBackend`].
///
/// `SqliteBackend::open` creates and migrates a database (writers); `SqliteBackend::open_read_only`
/// never creates, migrates or writes one (the lens).
#[derive(Debug)]
pub struct SqliteBackend {
    pub(crate) conn: rusqlite::Connection,
    pub(crate) path: std::path::PathBuf,
    /// `PRAGMA user_version` of the database as opened (older versions are readable).
    pub(crate) schema_version: i64,
}
