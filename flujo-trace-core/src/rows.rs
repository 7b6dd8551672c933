//! The row structs every store writes and reads: what the span contract's fields become.

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
    /// The run's final output, JSON text (only for a completed run).
    pub output_blob: Option<String>,
    /// The final context, JSON text.
    pub final_context_blob: Option<String>,
    /// The error that failed the run.
    pub error_blob: Option<String>,
    /// The process that wrote the run, for crash detection.
    pub writer: Option<WriterProcess>,
    /// The run span's OpenTelemetry trace id (32 lowercase hex digits), when a layer exported
    /// it; recorded with the run's end.
    pub trace_id: Option<String>,
}

/// The process that wrote a run: enough to tell later whether it is still alive.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct WriterProcess {
    /// Host name.
    pub host: String,
    /// Process id.
    pub pid: i64,
    /// Start time of the process, in clock ticks since boot (`/proc/PID/stat` field 22), so a
    /// reused pid is not mistaken for the writer.
    pub pid_start: i64,
    /// PID namespace of the process (the inode of `/proc/self/ns/pid`), so two containers with
    /// one host name are told apart; `None` when not recorded (schema v2, or no `/proc`).
    pub pid_ns: Option<i64>,
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
    /// Whether the step's fallback produced its output (`None` when not recorded: a running or
    /// cancelled step, or a schema v1 database).
    pub fallback_taken: Option<bool>,
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
    /// The run's final output, JSON text (only for a completed run).
    pub output_blob: Option<String>,
    /// The run's last top-level step when its recorded output is the run's output byte for byte
    /// (as it is whenever a run completes), so a store may keep the output once, in that step's
    /// row (SQLite does; see its `runs.output_step_run_id`).
    pub output_step_run_id: Option<String>,
    /// Final context, JSON text.
    pub final_context_blob: Option<String>,
    /// Error that failed the run.
    pub error_blob: Option<String>,
    /// The run span's OpenTelemetry trace id (32 lowercase hex digits), when the span had one.
    pub trace_id: Option<String>,
}

/// The close fields of a step span, which a store records on the step's `running` row.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepClose {
    /// The step execution.
    pub step_run_id: String,
    /// `completed`, `failed` or `cancelled`.
    pub status: String,
    /// Attempts made.
    pub attempts: Option<i64>,
    /// RFC 3339 UTC, fixed width.
    pub end_time: String,
    /// Wall time of all attempts.
    pub duration_ms: Option<i64>,
    /// Cost in USD.
    pub cost: Option<f64>,
    /// Tokens.
    pub tokens: Option<i64>,
    /// Output, JSON text.
    pub output_blob: Option<String>,
    /// Error message.
    pub error_blob: Option<String>,
    /// Whether the fallback produced the output.
    pub fallback_taken: Option<bool>,
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

/// How many runs match a filter: exact when counting was cheap, otherwise a lower bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunCount {
    /// The number of matching runs, or when `exact` is false, a number that more runs match.
    pub count: u64,
    /// False when counting stopped at the bound: more than `count` runs match.
    pub exact: bool,
}

/// One page of runs, newest first, and how many runs match in all.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPage {
    /// At most `filter.limit` runs, without their blobs (`input_blob`, `output_blob`,
    /// `final_context_blob` and `error_blob` are `None`).
    pub runs: Vec<RunRecord>,
    /// How many runs match the filter.
    pub matching: RunCount,
    /// `Some(n)` when only one of `running` and `crashed` was asked for and the walk stopped
    /// after looking at the newest `n` candidate runs (its bound, for SQLite `RECHECK_BOUND`) before the page was
    /// full: older runs may match too, and `matching` (not exact) counts those found.
    pub stopped_after: Option<u64>,
}

/// A run as `flujo lens stats` counts it: what it was, how long it took and what it used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunStat {
    /// RFC 3339, as stored.
    pub start_time: String,
    /// The pipeline's name.
    pub pipeline_name: String,
    /// The pipeline's version.
    pub pipeline_version: String,
    /// As read: a run stored as `running` whose writer is gone is `crashed`.
    pub status: String,
    /// `None` while running (and for a crashed run).
    pub duration_ms: Option<i64>,
    /// Tokens of all its steps, when recorded.
    pub total_tokens: Option<i64>,
    /// Cost in USD of all its steps, when recorded.
    pub total_cost: Option<f64>,
}

/// A step execution as `flujo lens stats --by step` counts it.
#[derive(Debug, Clone, PartialEq)]
pub struct StepStat {
    /// The run it belongs to.
    pub run_id: String,
    /// Its run's pipeline.
    pub pipeline_name: String,
    /// The step's name.
    pub step_name: String,
    /// `step`, `loop`, `parallel`, ... when recorded.
    pub step_kind: Option<String>,
    /// As stored (a step of a crashed run stays `running`).
    pub status: String,
    /// `None` while running.
    pub duration_ms: Option<i64>,
    /// Attempts made, when recorded.
    pub attempts: Option<i64>,
    /// Whether its fallback produced its output, when recorded.
    pub fallback_taken: Option<bool>,
    /// Tokens it used, when recorded.
    pub tokens: Option<i64>,
    /// What it cost in USD, when recorded.
    pub cost: Option<f64>,
}

/// Which recorded text a search looks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchField {
    /// Step errors (plain text).
    Error,
    /// Step inputs (JSON).
    Input,
    /// Step outputs (JSON).
    Output,
    /// The run's final context (JSON).
    Context,
}

impl SearchField {
    /// Every field, in the order a search of all of them looks.
    pub const ALL: [SearchField; 4] = [
        SearchField::Error,
        SearchField::Input,
        SearchField::Output,
        SearchField::Context,
    ];

    /// The name used on the command line and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            SearchField::Error => "error",
            SearchField::Input => "input",
            SearchField::Output => "output",
            SearchField::Context => "context",
        }
    }
}

/// A recorded text a search looks at: where it is, and the text as stored (an error's text, a
/// payload's JSON) for the reader to match.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// The run it belongs to.
    pub run_id: String,
    /// The step it belongs to; `None` for the run's own (its final context).
    pub step_run_id: Option<String>,
    /// That step's name.
    pub step_name: Option<String>,
    /// Which field it is.
    pub field: SearchField,
    /// As stored.
    pub text: String,
}

/// How a store can answer a query of `stats` or `search --in error`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum IndexState {
    /// Its index is complete: an index search.
    Ready,
    /// The writer is still filling it for the rows before the upgrade (this fraction is in): a
    /// scan meanwhile, with the same answers.
    Filling(f64),
    /// The store has no such index (a database of an older schema version, never opened by a
    /// writer of this one; a PostgreSQL server without `pg_trgm`): a scan.
    Missing,
}
