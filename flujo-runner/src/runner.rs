//! `Flujo`, the runner: one `flujo.run` span per run, the result, and the observer hook.

use crate::clock::{Clock, RunClock};
use crate::context::{Children, Frame, RunShared, UsageNode};
use crate::json::{not_serialisable_message, span_text};
use crate::pipeline::Pipeline;
use crate::redaction::Redaction;
use crate::result::{PipelineResult, RunStatus};
use crate::scrub::RunRedaction;
use crate::step::join_errors;
use crate::timefmt::{duration_ms, format_timestamp};
use serde::Serialize;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::time::Instant;
use tracing::field::Empty;
use tracing::{Instrument, Span};

/// A hook around every run, for whoever records runs (the `flujo` facade plugs persistence in
/// here).
pub trait RunObserver: Send + Sync + 'static {
    /// Called on the caller's task before the run span is created.
    fn before_run(&self) {}
    /// Called once the run span is open, before any step runs: where the facade records the
    /// span's OpenTelemetry trace id (`trace_id`) when an OpenTelemetry layer gave it one.
    fn run_span_opened(&self, _span: &Span) {}
    /// Called after the run span has closed (all its handles dropped); `run()` returns only after the future completes.
    fn after_run<'a>(&'a self, run_id: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
}

/// The runner: a named, versioned pipeline. Each [`run`](Flujo::run) is one `flujo.run` span with
/// the steps' spans nested in it, and returns a [`PipelineResult`]; a step failure is a `failed`
/// result, never an error or a panic of the caller.
pub struct Flujo<In, Out, C = ()> {
    pipeline_name: String,
    pipeline_version: String,
    pipeline: Pipeline<In, Out, C>,
    observer: Option<Arc<dyn RunObserver>>,
    redaction: Redaction,
    clock: RunClock,
}

impl<In, Out, C> Clone for Flujo<In, Out, C> {
    fn clone(&self) -> Self {
        Flujo {
            pipeline_name: self.pipeline_name.clone(),
            pipeline_version: self.pipeline_version.clone(),
            pipeline: self.pipeline.clone(),
            observer: self.observer.clone(),
            redaction: self.redaction.clone(),
            clock: self.clock.clone(),
        }
    }
}

impl<In, Out, C> std::fmt::Debug for Flujo<In, Out, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flujo")
            .field("pipeline_name", &self.pipeline_name)
            .field("pipeline_version", &self.pipeline_version)
            .field("pipeline", &self.pipeline)
            .field("observer", &self.observer.is_some())
            .field("redaction", &self.redaction)
            .finish()
    }
}

/// Records `cancelled` on the run span when the run's future is dropped before it finishes.
struct RunCancelGuard<C: Serialize> {
    span: Span,
    started: Instant,
    shared: Arc<RunShared<C>>,
    usage: Arc<UsageNode>,
    finished: bool,
}

impl<C: Serialize> Drop for RunCancelGuard<C> {
    fn drop(&mut self) {
        if self.finished || self.span.is_disabled() {
            return;
        }
        let usage = self.usage.total();
        let span = &self.span;
        span.record("status", RunStatus::Cancelled.as_str());
        span.record(
            "end_time",
            format_timestamp(self.shared.clock.now()).as_str(),
        );
        span.record("duration_ms", duration_ms(self.started.elapsed()));
        // A step that panicked while updating the context leaves it usable (see `lock`). A
        // cancelled run records no `error`: a context that cannot be serialised is only a
        // placeholder here.
        if let Ok((context, _)) = self
            .shared
            .with_context(|context| span_text(context, &self.shared.redaction))
        {
            span.record("final_context", context.as_str());
        }
        span.record("total_cost_usd", usage.cost_usd);
        span.record("total_tokens", usage.tokens);
    }
}

/// Drops a run's future, when it is dropped unfinished, under the dispatcher that polled it.
///
/// A closing span releases its parent through the *current* dispatcher; a run future dropped
/// outside its dispatcher's scope (after `.with_subscriber(..)`, or an aborted task) would
/// otherwise leave the run span open forever, and its final state unwritten.
struct DropInDispatch<F: Future> {
    inner: Option<Pin<Box<F>>>,
    dispatch: Option<tracing::Dispatch>,
}

impl<F: Future> DropInDispatch<F> {
    fn new(inner: F) -> Self {
        DropInDispatch {
            inner: Some(Box::pin(inner)),
            dispatch: None,
        }
    }
}

impl<F: Future> Future for DropInDispatch<F> {
    type Output = F::Output;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        if self.dispatch.is_none() {
            self.dispatch = Some(tracing::dispatcher::get_default(tracing::Dispatch::clone));
        }
        let inner = self
            .inner
            .as_mut()
            .expect("a run future is not polled after it completed");
        let poll = inner.as_mut().poll(cx);
        if poll.is_ready() {
            self.inner = None;
        }
        poll
    }
}

impl<F: Future> Drop for DropInDispatch<F> {
    fn drop(&mut self) {
        if let (Some(inner), Some(dispatch)) = (self.inner.take(), &self.dispatch) {
            tracing::dispatcher::with_default(dispatch, || drop(inner));
        }
    }
}

impl<In, Out, C> Flujo<In, Out, C> {
    /// A runner for `pipeline`, recorded under `pipeline_name`, version `latest`.
    pub fn new(pipeline_name: impl Into<String>, pipeline: Pipeline<In, Out, C>) -> Self {
        Flujo {
            pipeline_name: pipeline_name.into(),
            pipeline_version: "latest".to_owned(),
            pipeline,
            observer: None,
            redaction: Redaction::default(),
            clock: RunClock::system(),
        }
    }

    /// Sets the version recorded with every run.
    pub fn with_pipeline_version(mut self, pipeline_version: impl Into<String>) -> Self {
        self.pipeline_version = pipeline_version.into();
        self
    }

    /// Sets the version recorded with every run.
    #[deprecated(since = "0.1.0", note = "renamed `with_pipeline_version`")]
    pub fn pipeline_version(self, pipeline_version: impl Into<String>) -> Self {
        self.with_pipeline_version(pipeline_version)
    }

    /// Calls `observer` around every run (replacing an earlier one).
    pub fn with_observer(mut self, observer: Arc<dyn RunObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Calls no observer around the runs (removing one set before).
    pub fn without_observer(mut self) -> Self {
        self.observer = None;
        self
    }

    /// Sets which values the spans record as `"[REDACTED]"` (default:
    /// [`Redaction::default`]; [`Redaction::disabled`] records every value as it is). The
    /// [`PipelineResult`] a run returns is never redacted.
    pub fn with_redaction(mut self, redaction: Redaction) -> Self {
        self.redaction = redaction;
        self
    }

    /// Sets the clock every recorded time comes from (default: [`SystemClock`](crate::SystemClock)):
    /// the `start_time` and `end_time` of each run and step, in the spans and in the
    /// [`PipelineResult`], and the time of each run id and step id (UUID v7, so ids sort like
    /// the clock's times). Durations are still measured with the monotonic clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = RunClock::new(clock);
        self
    }

    /// What the spans redact.
    pub fn redaction(&self) -> &Redaction {
        &self.redaction
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        &self.pipeline_name
    }

    /// The pipeline's version.
    pub fn version(&self) -> &str {
        &self.pipeline_version
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline<In, Out, C> {
        &self.pipeline
    }
}

impl<In, Out, C> Flujo<In, Out, C>
where
    In: Serialize + Send + 'static,
    Out: Serialize + Send + 'static,
    C: Serialize + Send + 'static,
{
    /// Runs the pipeline on `input` with `C::default()` as the context.
    pub async fn run(&self, input: In) -> PipelineResult<Out, C>
    where
        C: Default,
    {
        self.run_with_context(input, C::default()).await
    }

    /// Runs the pipeline on `input` with `context` as the context.
    ///
    /// The run span is created in the caller's current dispatcher. Dropping the returned future
    /// before it finishes closes the open spans with `status = "cancelled"`.
    pub async fn run_with_context(&self, input: In, context: C) -> PipelineResult<Out, C> {
        // The observer may install the global default subscriber: it must be in place before
        // `DropInDispatch` takes the dispatcher the run is polled (and maybe dropped) under, or a
        // first run cancelled in a fresh process would leave its spans open forever.
        if let Some(observer) = &self.observer {
            observer.before_run();
        }
        DropInDispatch::new(self.run_inner(input, context)).await
    }

    async fn run_inner(&self, input: In, context: C) -> PipelineResult<Out, C> {
        let (start_time, run_id) = self.clock.stamp();
        let run_id = run_id.to_string();
        let started = Instant::now();
        // The run's redaction, and the secrets it sees (the input's first).
        let redaction = RunRedaction::new(self.redaction.clone());
        // Why a value the run span records could not be serialised (only looked at when the
        // span is enabled).
        let mut not_serialisable = Vec::new();
        let span = tracing::info_span!(
            target: "flujo",
            "flujo.run",
            run_id = run_id.as_str(),
            pipeline_name = self.pipeline_name.as_str(),
            pipeline_version = self.pipeline_version.as_str(),
            start_time = format_timestamp(start_time).as_str(),
            input = self
                .span_text(&redaction, "input", &input, &mut not_serialisable)
                .as_str(),
            status = Empty,
            end_time = Empty,
            duration_ms = Empty,
            error = Empty,
            output = Empty,
            final_context = Empty,
            total_cost_usd = Empty,
            total_tokens = Empty,
            trace_id = Empty,
        );
        if let Some(observer) = &self.observer {
            observer.run_span_opened(&span);
        }
        let shared = Arc::new(RunShared::new(
            run_id,
            self.clock.clone(),
            redaction,
            context,
        ));
        let usage = UsageNode::root();
        let children = Arc::new(Children::default());
        let frame = Frame {
            run: shared.clone(),
            span: span.clone(),
            step_run_id: None,
            step_name: Arc::from(""),
            usage: usage.clone(),
            children: children.clone(),
            attempt: 0,
        };
        let mut guard = RunCancelGuard {
            span,
            started,
            shared,
            usage,
            finished: false,
        };
        let outcome = self
            .pipeline
            .run_in(input, frame)
            .instrument(guard.span.clone())
            .await;

        let end_time = guard.shared.clock.now();
        let duration = started.elapsed();
        let totals = guard.usage.total();
        let (status, output, error, step_error) = match outcome {
            Ok(output) => (RunStatus::Completed, Some(output), None, None),
            Err(failure) => (
                RunStatus::Failed,
                None,
                Some(failure.message),
                Some(failure.error),
            ),
        };
        let span = &guard.span;
        if !span.is_disabled() {
            span.record("status", status.as_str());
            span.record("end_time", format_timestamp(end_time).as_str());
            span.record("duration_ms", duration_ms(duration));
            if let Some(output) = &output {
                let output = self.span_text(
                    &guard.shared.redaction,
                    "output",
                    output,
                    &mut not_serialisable,
                );
                span.record("output", output.as_str());
            }
            // The run still holds its context and no step closure is running here.
            if let Ok(context) = guard.shared.with_context(|context| {
                let redaction = &guard.shared.redaction;
                self.span_text(redaction, "final context", context, &mut not_serialisable)
            }) {
                span.record("final_context", context.as_str());
            }
            if let Some(error) = join_errors(error.clone(), not_serialisable) {
                span.record("error", &*guard.shared.redaction.error_text(&error));
            }
            span.record("total_cost_usd", totals.cost_usd);
            span.record("total_tokens", totals.tokens);
        }
        guard.finished = true;
        let final_context = guard
            .shared
            .take_context()
            .expect("the context stays in the run until the run returns it");
        let run_id = guard.shared.run_id.clone();
        // Closes the run span: the pipeline's future, its frames and the steps' spans are gone.
        drop(guard);
        if let Some(observer) = &self.observer {
            observer.after_run(&run_id).await;
        }
        PipelineResult {
            run_id,
            pipeline_name: self.pipeline_name.clone(),
            pipeline_version: self.pipeline_version.clone(),
            status,
            output,
            error,
            step_error,
            step_history: children.take(),
            total_cost_usd: totals.cost_usd,
            total_tokens: totals.tokens,
            final_context,
            start_time,
            end_time,
            duration,
        }
    }

    /// The span text of the run's `what` (`input`, `output`, `final context`), redacted; when
    /// it cannot be serialised, a placeholder, and the reason pushed onto `not_serialisable`.
    fn span_text<T: Serialize>(
        &self,
        redaction: &RunRedaction,
        what: &str,
        value: &T,
        not_serialisable: &mut Vec<String>,
    ) -> String {
        let (text, error) = span_text(value, redaction);
        if let Some(error) = error {
            let what = format!("{what} of pipeline '{}'", self.pipeline_name);
            not_serialisable.push(not_serialisable_message(&what, &error));
        }
        text
    }

    /// [`run`](Flujo::run) for callers that are not async: runs it to completion on a
    /// current-thread tokio runtime of its own and blocks until it returns.
    ///
    /// Called from inside a tokio runtime (where blocking the thread would panic), it runs the
    /// pipeline on a helper thread under the caller's tracing dispatcher and blocks the calling
    /// thread meanwhile; prefer `.await`ing [`run`](Flujo::run) there.
    pub fn run_blocking(&self, input: In) -> PipelineResult<Out, C>
    where
        C: Default,
    {
        self.run_blocking_with_context(input, C::default())
    }

    /// [`run_with_context`](Flujo::run_with_context) for callers that are not async; see
    /// [`run_blocking`](Flujo::run_blocking).
    pub fn run_blocking_with_context(&self, input: In, context: C) -> PipelineResult<Out, C> {
        let run = self.run_with_context(input, context);
        let block_on = |run| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("flujo could not start a tokio runtime for run_blocking")
                .block_on(run)
        };
        if tokio::runtime::Handle::try_current().is_err() {
            return block_on(run);
        }
        let dispatch = tracing::dispatcher::get_default(|dispatch| dispatch.clone());
        std::thread::scope(|scope| {
            let helper =
                scope.spawn(move || tracing::dispatcher::with_default(&dispatch, || block_on(run)));
            match helper.join() {
                Ok(result) => result,
                Err(panic) => std::panic::resume_unwind(panic),
            }
        })
    }
}
