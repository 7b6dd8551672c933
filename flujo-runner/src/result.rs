//! What a run returns: `PipelineResult`, one `StepResult` per step execution, and the statuses.

use crate::context::Usage;
use crate::error::StepError;
use crate::timefmt::{serialize_duration_ms, serialize_timestamp};
use serde::Serialize;
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;

/// The status of a run or of a step execution, as the spans and the results record it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Still executing (a span that is open; never recorded by the spans).
    Running,
    /// Finished with an output.
    Completed,
    /// Stopped by a step failure (an error after retries, a panic, a timeout).
    Failed,
    /// Its future was dropped before it finished.
    Cancelled,
    /// Reserved for human-in-the-loop steps; nothing produces it yet.
    Paused,
}

impl RunStatus {
    /// The lowercase name used in spans and JSON: `running`, `completed`, `failed`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Completed => "completed",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
            RunStatus::Paused => "paused",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What kind of step an execution was; the span contract's `step_kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// A step running an async function ([`step`](crate::step)).
    Step,
    /// The execution of a step's fallback, a child of the step that failed.
    Fallback,
    /// [`loop_until`](crate::loop_until): its children are the iterations.
    Loop,
    /// [`branch_on`](crate::branch_on): its child is the branch taken.
    Branch,
    /// [`parallel`](crate::parallel): its children are the branches.
    Parallel,
    /// [`map_over`](crate::map_over): its children are the items.
    Map,
    /// A pipeline used as a step ([`Pipeline::into_step`](crate::Pipeline::into_step)).
    Pipeline,
}

impl StepKind {
    /// The lowercase name used in spans and JSON: `step`, `fallback`, `loop`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Step => "step",
            StepKind::Fallback => "fallback",
            StepKind::Loop => "loop",
            StepKind::Branch => "branch",
            StepKind::Parallel => "parallel",
            StepKind::Map => "map",
            StepKind::Pipeline => "pipeline",
        }
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One execution of a step (all of its attempts), with the executions it ran nested in
/// `children`. Mirrors the step's `flujo.step` span.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct StepResult {
    /// The step's name.
    pub name: String,
    /// Position among its siblings (0-based); for loop iterations, map items and parallel
    /// branches, the iteration, item or branch number.
    pub index: u64,
    /// What kind of step ran.
    pub kind: StepKind,
    /// `completed` or `failed`.
    pub status: RunStatus,
    /// Attempts made: 1 + retries used.
    pub attempts: u32,
    /// The step's input as JSON, not redacted (only the spans are); a placeholder string when
    /// it could not be serialised.
    pub input: serde_json::Value,
    /// The step's output as JSON when it completed, not redacted; a placeholder string when it
    /// could not be serialised.
    pub output: Option<serde_json::Value>,
    /// The failure when it failed; when a fallback was taken, the primary's. After one failed
    /// attempt that is its message; after retries, every failed attempt's, numbered
    /// (`attempt 1/3: ...; attempt 2/3: ...`), which a step that completed on a retry also
    /// records. Then, `; `-separated, a note for an input or output that could not be
    /// serialised (set even when the step completed: the value itself flowed on).
    pub error: Option<String>,
    /// Wall time of all attempts, the waits between them included.
    #[serde(rename = "duration_ms", serialize_with = "serialize_duration_ms")]
    pub duration: Duration,
    /// Tokens reported by this step, children included.
    pub tokens: u64,
    /// Cost in USD reported by this step, children included.
    pub cost_usd: f64,
    /// The step executions this one ran, in the order they started.
    pub children: Vec<StepResult>,
    /// Whether the step's fallback produced the output.
    pub fallback_taken: bool,
    /// UUID v7 of this execution (the span's `step_run_id`).
    pub step_run_id: String,
}

impl StepResult {
    /// Tokens and cost of this execution, children included.
    pub fn usage(&self) -> Usage {
        Usage {
            tokens: self.tokens,
            cost_usd: self.cost_usd,
        }
    }

    /// The first execution, depth first (this one included), with this name.
    pub fn find(&self, name: &str) -> Option<&StepResult> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|child| child.find(name))
    }
}

/// The result of one run: what the `flujo.run` span records, plus the output and the context as
/// values. A failed run is a result too, never an error of the caller.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct PipelineResult<Out, C> {
    /// UUID v7 of the run.
    pub run_id: String,
    /// The name given to [`Flujo`](crate::Flujo).
    pub pipeline_name: String,
    /// The version given to [`Flujo`](crate::Flujo) (default `latest`).
    pub pipeline_version: String,
    /// `completed` or `failed`.
    pub status: RunStatus,
    /// The last step's output, when the run completed.
    pub output: Option<Out>,
    /// The message of the failure that failed the run (`None` when it completed; a value the
    /// run span could not serialise is noted in the span's `error` only).
    pub error: Option<String>,
    /// The error value of the step whose failure failed the run (`None` when it completed): the
    /// error its function returned (get your own type back with
    /// [`StepError::downcast_ref`], its causes with `source()`), its timeout or its panic; for
    /// a failed fallback, the fallback's; for a control-flow step's own failure (a loop at its
    /// limit, a branch missing), an error with the message. Not serialised.
    #[serde(skip)]
    pub step_error: Option<StepError>,
    /// One result per top-level step executed; a failed run ends with the step that failed.
    pub step_history: Vec<StepResult>,
    /// Sum of the steps' cost in USD.
    pub total_cost_usd: f64,
    /// Sum of the steps' tokens.
    pub total_tokens: u64,
    /// The context after the run.
    pub final_context: C,
    /// When the run started.
    #[serde(serialize_with = "serialize_timestamp")]
    pub start_time: OffsetDateTime,
    /// When the run ended.
    #[serde(serialize_with = "serialize_timestamp")]
    pub end_time: OffsetDateTime,
    /// Wall time of the run.
    #[serde(rename = "duration_ms", serialize_with = "serialize_duration_ms")]
    pub duration: Duration,
}

impl<Out, C> PipelineResult<Out, C> {
    /// Whether the run completed.
    pub fn is_completed(&self) -> bool {
        self.status == RunStatus::Completed
    }

    /// The first step execution, depth first through `step_history`, with this name.
    pub fn step(&self, name: &str) -> Option<&StepResult> {
        self.step_history.iter().find_map(|step| step.find(name))
    }
}
