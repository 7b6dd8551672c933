//! What a step sees of its run: the shared context, usage reporting, and the internal frame that
//! links a step execution to its span, its parent and its children.

use crate::clock::RunClock;
use crate::result::StepResult;
use crate::scrub::RunRedaction;
use serde::Serialize;
use std::fmt;
use std::ops::{Add, AddAssign};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use tracing::Span;

/// Tokens and cost a step reports with [`StepContext::add_usage`]; summed into its parents and
/// the run's totals.
#[derive(Debug, Default, Clone, Copy, PartialEq, Serialize)]
pub struct Usage {
    /// Tokens used (prompt and completion together).
    pub tokens: u64,
    /// Cost in USD.
    pub cost_usd: f64,
}

impl Add for Usage {
    type Output = Usage;

    fn add(self, other: Usage) -> Usage {
        Usage {
            tokens: self.tokens.saturating_add(other.tokens),
            cost_usd: self.cost_usd + other.cost_usd,
        }
    }
}

impl AddAssign for Usage {
    fn add_assign(&mut self, other: Usage) {
        *self = *self + other;
    }
}

/// Locks a mutex, ignoring poisoning: a panicking step is recorded as a failure and the data it
/// guards (a context, a sum) stays usable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A step execution's usage, children included; adding to it adds to every ancestor, so that
/// usage reported before a cancellation or a timeout still counts.
pub(crate) struct UsageNode {
    usage: Mutex<Usage>,
    parent: Option<Arc<UsageNode>>,
}

impl UsageNode {
    pub(crate) fn root() -> Arc<UsageNode> {
        Arc::new(UsageNode {
            usage: Mutex::new(Usage::default()),
            parent: None,
        })
    }

    pub(crate) fn child(parent: &Arc<UsageNode>) -> Arc<UsageNode> {
        Arc::new(UsageNode {
            usage: Mutex::new(Usage::default()),
            parent: Some(parent.clone()),
        })
    }

    fn add(&self, usage: Usage) {
        let mut node = Some(self);
        while let Some(current) = node {
            *lock(&current.usage) += usage;
            node = current.parent.as_deref();
        }
    }

    pub(crate) fn total(&self) -> Usage {
        *lock(&self.usage)
    }
}

/// Why [`StepContext::read`] or [`StepContext::update`] could not reach the run's context.
///
/// A step can turn it into its error with `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextError {
    run_id: String,
    reason: ContextErrorReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContextErrorReason {
    /// `read` or `update` called inside the closure of another on the same thread.
    InUse,
    /// The run has returned its context.
    RunEnded,
}

impl fmt::Display for ContextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let run_id = &self.run_id;
        match self.reason {
            ContextErrorReason::InUse => write!(
                f,
                "the context of run {run_id} is in use by an enclosing StepContext::read or \
                 update on this thread: return what you need from the first call, then make the \
                 second"
            ),
            ContextErrorReason::RunEnded => write!(
                f,
                "run {run_id} has ended and returned its context: a StepContext cannot be used \
                 after its run"
            ),
        }
    }
}

impl std::error::Error for ContextError {}

/// An address unique to the current thread among running threads, never 0.
fn thread_marker() -> usize {
    thread_local! {
        static MARKER: u8 = const { 0 };
    }
    MARKER.with(|marker| std::ptr::from_ref(marker) as usize)
}

/// Clears `holder` when the closure given the context returns or unwinds.
struct Holding<'a>(&'a AtomicUsize);

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// What every step of one run shares.
pub(crate) struct RunShared<C> {
    pub(crate) run_id: String,
    /// Where the run's times and its steps' ids come from.
    pub(crate) clock: RunClock,
    /// What the spans of this run redact, and the secret values they have seen.
    pub(crate) redaction: RunRedaction,
    /// `None` once the run has returned it in `final_context`.
    context: Mutex<Option<C>>,
    /// The [`thread_marker`] of the thread running a closure on the context, 0 when none: a
    /// second lock taken by that thread would deadlock.
    holder: AtomicUsize,
}

impl<C> RunShared<C> {
    pub(crate) fn new(
        run_id: String,
        clock: RunClock,
        redaction: RunRedaction,
        context: C,
    ) -> Self {
        RunShared {
            run_id,
            clock,
            redaction,
            context: Mutex::new(Some(context)),
            holder: AtomicUsize::new(0),
        }
    }

    /// Runs `f` on the context, or says why it cannot: the run has returned the context, or this
    /// thread is inside such a closure already (locking again would deadlock).
    pub(crate) fn with_context<R>(&self, f: impl FnOnce(&mut C) -> R) -> Result<R, ContextError> {
        let error = |reason| ContextError {
            run_id: self.run_id.clone(),
            reason,
        };
        let me = thread_marker();
        // Only this thread stores its own marker, so reading it back means this thread holds
        // the lock; another thread's value is never `me`.
        if self.holder.load(Ordering::Relaxed) == me {
            return Err(error(ContextErrorReason::InUse));
        }
        let mut guard = lock(&self.context);
        let context = guard
            .as_mut()
            .ok_or_else(|| error(ContextErrorReason::RunEnded))?;
        self.holder.store(me, Ordering::Relaxed);
        let _holding = Holding(&self.holder);
        Ok(f(context))
    }

    pub(crate) fn take_context(&self) -> Option<C> {
        lock(&self.context).take()
    }
}

/// The handle a step function receives: report usage, read and update the run's context.
///
/// The context is shared by every step of the run (parallel branches included) behind a lock
/// held only while `read` or `update` runs their closure. Calling one inside the other's
/// closure, or using a `StepContext` kept after its run ended, returns a [`ContextError`]
/// (never a deadlock or a panic); `?` makes it the step's error.
pub struct StepContext<C> {
    run: Arc<RunShared<C>>,
    usage: Arc<UsageNode>,
    step_name: Arc<str>,
    attempt: u32,
}

impl<C> Clone for StepContext<C> {
    fn clone(&self) -> Self {
        StepContext {
            run: self.run.clone(),
            usage: self.usage.clone(),
            step_name: self.step_name.clone(),
            attempt: self.attempt,
        }
    }
}

impl<C> std::fmt::Debug for StepContext<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepContext")
            .field("run_id", &self.run.run_id)
            .field("step_name", &self.step_name)
            .field("attempt", &self.attempt)
            .finish_non_exhaustive()
    }
}

impl<C> StepContext<C> {
    /// Reports tokens and cost used by this step (call it as often as needed; it adds up).
    pub fn add_usage(&self, usage: Usage) {
        self.usage.add(usage);
    }

    /// Reads the run's context: returns what `f` returns, or a [`ContextError`] when called
    /// inside another `read` or `update` closure, or after the run ended.
    pub fn read<R>(&self, f: impl FnOnce(&C) -> R) -> Result<R, ContextError> {
        self.run.with_context(|context| f(context))
    }

    /// Updates the run's context (later steps and `final_context` see the change): returns what
    /// `f` returns, or a [`ContextError`] as [`read`](StepContext::read) does.
    pub fn update<R>(&self, f: impl FnOnce(&mut C) -> R) -> Result<R, ContextError> {
        self.run.with_context(f)
    }

    /// The run's id (UUID v7).
    pub fn run_id(&self) -> &str {
        &self.run.run_id
    }

    /// The name of the step running.
    pub fn step_name(&self) -> &str {
        &self.step_name
    }

    /// The attempt running: 1 for the first, 2 for the first retry, ...
    pub fn attempt(&self) -> u32 {
        self.attempt
    }
}

/// The results of the step executions a step (or the run) ran, kept in the order they started.
#[derive(Default)]
pub(crate) struct Children {
    next_seq: AtomicU64,
    results: Mutex<Vec<(u64, StepResult)>>,
}

impl Children {
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn push(&self, seq: u64, result: StepResult) {
        lock(&self.results).push((seq, result));
    }

    pub(crate) fn take(&self) -> Vec<StepResult> {
        let mut results = std::mem::take(&mut *lock(&self.results));
        results.sort_by_key(|(seq, _)| *seq);
        results.into_iter().map(|(_, result)| result).collect()
    }
}

/// Where a step executes: the span its children nest under, and what they report to.
pub(crate) struct Frame<C> {
    pub(crate) run: Arc<RunShared<C>>,
    /// The span of the run or of the enclosing step.
    pub(crate) span: Span,
    /// The enclosing step's `step_run_id`; `None` for top-level steps.
    pub(crate) step_run_id: Option<Arc<str>>,
    pub(crate) step_name: Arc<str>,
    pub(crate) usage: Arc<UsageNode>,
    pub(crate) children: Arc<Children>,
    pub(crate) attempt: u32,
}

impl<C> Clone for Frame<C> {
    fn clone(&self) -> Self {
        Frame {
            run: self.run.clone(),
            span: self.span.clone(),
            step_run_id: self.step_run_id.clone(),
            step_name: self.step_name.clone(),
            usage: self.usage.clone(),
            children: self.children.clone(),
            attempt: self.attempt,
        }
    }
}

impl<C> Frame<C> {
    pub(crate) fn step_context(&self) -> StepContext<C> {
        StepContext {
            run: self.run.clone(),
            usage: self.usage.clone(),
            step_name: self.step_name.clone(),
            attempt: self.attempt,
        }
    }
}
