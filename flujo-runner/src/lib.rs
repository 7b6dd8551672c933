//! Pipelines of async steps, each run and step a `tracing` span.
//!
//! A [`Step`] is a named async function from an input to an output that can report [`Usage`]
//! and read or update the run's shared context through its [`StepContext`]. Steps compose into
//! a [`Pipeline`] (types checked at compile time) and into control flow ([`loop_until`],
//! [`branch_on`], [`parallel`], [`map_over`], [`Pipeline::into_step`]); every step takes
//! retries, a timeout and a fallback. [`Flujo`] runs a pipeline and returns a
//! [`PipelineResult`]: failures (errors after retries, panics, timeouts) are data in it.
//!
//! Every run is a `flujo.run` span and every step execution a `flujo.step` span nested in it,
//! following the span contract documented in the workspace's `ARCHITECTURE.md`, so any
//! `tracing` layer can record runs. Serialising inputs, outputs and context for the spans costs
//! nothing when no subscriber is interested; values under keys that name secrets (`api_key`,
//! `password`, `token`, ...) are recorded as `"[REDACTED]"` (see [`Redaction`]), and a value
//! that cannot be serialised is recorded as a placeholder with an `error`, never a panic.
//!
//! ```
//! use flujo_runner::{loop_until, step, Flujo, Pipeline, RunStatus, StepContext, StepError, Usage};
//!
//! #[derive(Default, serde::Serialize)]
//! struct Ctx { drafts: u32 }
//!
//! let classify = step("classify", |ticket: String, cx: StepContext<Ctx>| async move {
//!     cx.add_usage(Usage { tokens: 120, cost_usd: 0.0004 });
//!     Ok::<_, StepError>(if ticket.contains("invoice") { "billing" } else { "general" }.to_owned())
//! });
//! let draft = step("draft", |category: String, cx: StepContext<Ctx>| async move {
//!     let n = cx.update(|c| { c.drafts += 1; c.drafts });
//!     Ok::<_, StepError>(format!("{category} draft {n}"))
//! });
//! let refine = loop_until("refine", draft, |_: &String, c: &Ctx| c.drafts >= 2, 5);
//! let flujo = Flujo::new("triage", Pipeline::new(classify).then(refine)).pipeline_version("2");
//!
//! let result = flujo.run_blocking("my invoice is wrong".to_owned());
//! assert_eq!(result.status, RunStatus::Completed);
//! assert_eq!(result.output.as_deref(), Some("billing draft 1 draft 2"));
//! assert_eq!(result.final_context.drafts, 2);
//! assert_eq!(result.total_tokens, 120);
//! ```

#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

mod context;
mod control;
mod error;
mod json;
mod pipeline;
mod redaction;
mod result;
mod runner;
mod scrub;
mod step;
mod timefmt;

pub use context::{StepContext, Usage};
pub use control::{branch_on, loop_until, map_over, parallel, BranchOn, Parallel};
pub use error::{BoxError, StepError};
pub use pipeline::Pipeline;
pub use redaction::Redaction;
pub use result::{PipelineResult, RunStatus, StepKind, StepResult};
pub use runner::{Flujo, RunObserver};
pub use step::{step, IntoStep, Step};
pub use timefmt::format_timestamp;
