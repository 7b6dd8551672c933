//! Pipelines of async steps, each run and step a `tracing` span.
//!
//! A [`Step`] is a named async function from an input to an output that can report [`Usage`]
//! and read or update the run's shared context through its [`StepContext`]. Steps compose into
//! a [`Pipeline`] (types checked at compile time) and into control flow ([`loop_until`],
//! [`branch_on`], [`parallel`], [`join`], [`map_over`], [`Pipeline::into_step`]); every step
//! takes retries (waiting by a [`Backoff`], filtered by a predicate), a timeout and a fallback.
//! [`Flujo`] runs a pipeline and returns a [`PipelineResult`]: failures (errors after retries,
//! panics, timeouts) are data in it, the failing step's [`StepError`] value included.
//!
//! Every run is a `flujo.run` span and every step execution a `flujo.step` span nested in it,
//! following the span contract documented in the workspace's `ARCHITECTURE.md`, so any
//! `tracing` layer can record runs. Serialising inputs, outputs and context for the spans costs
//! nothing when no subscriber is interested; values under keys that name secrets (`api_key`,
//! `password`, `token`, ...) are recorded as `"[REDACTED]"` (see [`Redaction`]), and a value
//! that cannot be serialised is recorded as a placeholder with an `error`, never a panic.
//!
//! ```
//! use flujo_runner::{join, loop_until, step, Flujo, Pipeline, RunStatus, StepContext, Usage};
//!
//! #[derive(Default, serde::Serialize)]
//! struct Ctx { drafts: u32 }
//!
//! let classify = step("classify", |ticket: String, cx: StepContext<Ctx>| async move {
//!     cx.add_usage(Usage { tokens: 120, cost_usd: 0.0004 });
//!     Ok(if ticket.contains("invoice") { "billing" } else { "general" }.to_owned())
//! })
//! .max_retries(2); // waits before each retry: exponential backoff with jitter, capped
//! let words = step("words", |ticket: String, _cx: StepContext<Ctx>| async move {
//!     Ok(ticket.split_whitespace().count())
//! });
//! let draft = step("draft", |category: String, cx: StepContext<Ctx>| async move {
//!     let n = cx.update(|c| { c.drafts += 1; c.drafts })?;
//!     Ok(format!("{category} draft {n}"))
//! });
//! let refine = loop_until("refine", draft, |_: &String, c: &Ctx| c.drafts >= 2).max_iterations(5);
//! let describe = step("describe", |(category, words): (String, usize), _cx: StepContext<Ctx>| async move {
//!     Ok(format!("{category} ({words} words)"))
//! });
//! let pipeline = Pipeline::new(join("read", (classify, words))).then(describe).then(refine);
//! let flujo = Flujo::new("triage", pipeline).with_pipeline_version("2");
//!
//! let result = flujo.run_blocking("my invoice is wrong".to_owned());
//! assert_eq!(result.status, RunStatus::Completed);
//! assert_eq!(result.output.as_deref(), Some("billing (4 words) draft 1 draft 2"));
//! assert_eq!(result.final_context.drafts, 2);
//! assert_eq!(result.total_tokens, 120);
//! ```
//!
//! A step that fails hands its error to the caller as a value, not only as text:
//!
//! ```
//! use flujo_runner::{step, Flujo, Pipeline, StepContext};
//!
//! #[derive(Debug, thiserror::Error)]
//! #[error("no customer {0}")]
//! struct NoCustomer(String);
//!
//! let lookup = step("lookup", |email: String, _cx: StepContext<()>| async move {
//!     if email.ends_with("@example.com") {
//!         return Ok(42);
//!     }
//!     Err(NoCustomer(email).into())
//! });
//! let result = Flujo::new("crm", Pipeline::new(lookup)).run_blocking("kim@unknown.test".to_owned());
//! assert_eq!(result.error.as_deref(), Some("step 'lookup' failed: no customer kim@unknown.test"));
//! let error = result.step_error.expect("the failing step's error");
//! assert_eq!(error.downcast_ref::<NoCustomer>().unwrap().0, "kim@unknown.test");
//! ```

#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

mod clock;
mod context;
mod control;
mod error;
mod json;
mod pipeline;
mod redaction;
mod result;
mod retry;
mod runner;
mod scrub;
mod step;
mod timefmt;

pub use clock::{Clock, OffsetClock, SystemClock};
pub use context::{ContextError, StepContext, Usage};
pub use control::{
    branch_on, join, loop_until, map_over, parallel, BranchOn, Join, LoopUntil, Parallel,
};
pub use error::{BoxError, StepError};
pub use pipeline::Pipeline;
pub use redaction::Redaction;
pub use result::{PipelineResult, RunStatus, StepKind, StepResult};
pub use retry::Backoff;
pub use runner::{Flujo, RunObserver};
pub use step::{step, IntoStep, Step};
pub use timefmt::format_timestamp;
