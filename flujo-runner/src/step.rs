//! Steps: a named async function (or a control-flow body) with retries, a timeout and a
//! fallback, and the execution that wraps every attempt in a `flujo.step` span.

use crate::context::{Children, Frame, StepContext, UsageNode};
use crate::error::{error_chain, panic_message, BoxError};
use crate::json::{not_serialisable_message, span_text_of_value, to_json_value};
use crate::result::{RunStatus, StepKind, StepResult};
use crate::timefmt::{duration_ms, now_timestamp};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Serialize;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::field::Empty;
use tracing::{Instrument, Span};

/// What runs a step's body or a pipeline: the input and the frame it executes in.
pub(crate) type Body<In, Out, C> =
    Arc<dyn Fn(In, Frame<C>) -> BoxFuture<'static, Result<Out, String>> + Send + Sync>;

/// A named unit of work from `In` to `Out`, sharing a context `C` with the rest of its run.
///
/// Make one with [`step`] (an async function) or with a control-flow constructor
/// ([`loop_until`](crate::loop_until), [`branch_on`](crate::branch_on),
/// [`parallel`](crate::parallel), [`map_over`](crate::map_over),
/// [`Pipeline::into_step`](crate::Pipeline::into_step)); every kind takes the same options:
/// [`max_retries`](Step::max_retries), [`timeout`](Step::timeout) and
/// [`fallback`](Step::fallback).
pub struct Step<In, Out, C = ()> {
    name: Arc<str>,
    kind: StepKind,
    body: Body<In, Out, C>,
    max_retries: u32,
    clone_input: Option<fn(&In) -> In>,
    timeout: Option<Duration>,
    fallback: Option<Arc<Step<In, Out, C>>>,
}

impl<In, Out, C> Clone for Step<In, Out, C> {
    fn clone(&self) -> Self {
        Step {
            name: self.name.clone(),
            kind: self.kind,
            body: self.body.clone(),
            max_retries: self.max_retries,
            clone_input: self.clone_input,
            timeout: self.timeout,
            fallback: self.fallback.clone(),
        }
    }
}

impl<In, Out, C> std::fmt::Debug for Step<In, Out, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Step")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("max_retries", &self.max_retries)
            .field("timeout", &self.timeout)
            .field("fallback", &self.fallback.as_ref().map(|step| &step.name))
            .finish_non_exhaustive()
    }
}

/// A step from an async function of its input and a [`StepContext`].
///
/// The function returns `Result<Out, E>` where `E` is anything that converts into a
/// [`BoxError`]: [`StepError`](crate::StepError), `String`, `&str`, or any
/// `std::error::Error` (return `Result<Out, BoxError>` to use `?` on several error types).
///
/// ```
/// use flujo_runner::{step, StepContext, StepError, Usage};
///
/// #[derive(Default, serde::Serialize)]
/// struct Ctx { seen: u32 }
///
/// let classify = step("classify", |text: String, cx: StepContext<Ctx>| async move {
///     cx.add_usage(Usage { tokens: 120, cost_usd: 0.0004 });
///     cx.update(|c| c.seen += 1);
///     if text.is_empty() {
///         return Err(StepError::new("empty ticket"));
///     }
///     Ok(text.contains("invoice"))
/// });
/// ```
pub fn step<In, Out, C, F, Fut, E>(name: impl Into<String>, f: F) -> Step<In, Out, C>
where
    In: Serialize + Send + 'static,
    Out: Serialize + Send + 'static,
    C: Send + 'static,
    F: Fn(In, StepContext<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Out, E>> + Send + 'static,
    E: Into<BoxError>,
{
    let name: Arc<str> = name.into().into();
    let step_name = name.clone();
    let body: Body<In, Out, C> = Arc::new(move |input, frame: Frame<C>| {
        let output = f(input, frame.step_context());
        let step_name = step_name.clone();
        Box::pin(async move {
            output.await.map_err(|error| {
                let error: BoxError = error.into();
                format!("step '{step_name}' failed: {}", error_chain(&*error))
            })
        })
    });
    Step::from_body(name, StepKind::Step, body)
}

/// Anything that can be used where a step is expected: a [`Step`], or a control-flow builder
/// ([`BranchOn`](crate::BranchOn), [`Parallel`](crate::Parallel)).
pub trait IntoStep<C> {
    /// The step's input.
    type In;
    /// The step's output.
    type Out;
    /// The step.
    fn into_step(self) -> Step<Self::In, Self::Out, C>;
}

impl<In, Out, C> IntoStep<C> for Step<In, Out, C> {
    type In = In;
    type Out = Out;

    fn into_step(self) -> Step<In, Out, C> {
        self
    }
}

impl<In, Out, C> Step<In, Out, C> {
    pub(crate) fn from_body(name: Arc<str>, kind: StepKind, body: Body<In, Out, C>) -> Self {
        Step {
            name,
            kind,
            body,
            max_retries: 0,
            clone_input: None,
            timeout: None,
            fallback: None,
        }
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The step's kind.
    pub fn kind(&self) -> StepKind {
        self.kind
    }

    /// Bounds each attempt: an attempt still running after `timeout` is dropped and fails with
    /// `step '<name>' timed out after <timeout>` (and is retried like any failure).
    /// Needs a tokio runtime with time enabled.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<In: Clone, Out, C> Step<In, Out, C> {
    /// Retries a failed attempt (error, panic or timeout) up to `max_retries` times, each with a
    /// clone of the input; `attempts` records how many were made.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.max_retries = max_retries;
        self.clone_input = Some(In::clone);
        self
    }

    /// Runs `fallback` on a clone of the input when every attempt failed. When it succeeds the
    /// step is `completed` with `fallback_taken` and the primary's error; its execution is a
    /// child with kind `fallback`.
    pub fn fallback(mut self, fallback: impl IntoStep<C, In = In, Out = Out>) -> Self {
        self.fallback = Some(Arc::new(fallback.into_step()));
        self.clone_input = Some(In::clone);
        self
    }
}

/// How the attempts of one execution ended.
struct Attempted<Out> {
    result: Result<Out, String>,
    /// The primary's error, when the fallback ran.
    primary_error: Option<String>,
}

/// Records `cancelled` on a step span whose execution is dropped before it finishes.
struct CancelGuard {
    span: Span,
    started: Instant,
    usage: Arc<UsageNode>,
    attempts: u32,
    finished: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if self.finished || self.span.is_disabled() {
            return;
        }
        let usage = self.usage.total();
        let span = &self.span;
        span.record("status", RunStatus::Cancelled.as_str());
        span.record("attempts", u64::from(self.attempts));
        span.record("end_time", now_timestamp().as_str());
        span.record("duration_ms", duration_ms(self.started.elapsed()));
        span.record("tokens", usage.tokens);
        span.record("cost_usd", usage.cost_usd);
    }
}

impl<In, Out, C> Step<In, Out, C>
where
    In: Serialize + Send + 'static,
    Out: Serialize + Send + 'static,
    C: Send + 'static,
{
    /// Runs this step as a child of `parent`, at position `index`, with its own kind.
    pub(crate) async fn execute(
        &self,
        input: In,
        parent: &Frame<C>,
        index: u64,
    ) -> Result<Out, String> {
        self.execute_as(input, parent, index, self.kind).await
    }

    /// Runs this step as a child of `parent`: opens its span, makes the attempts and the
    /// fallback, records the close fields and pushes its `StepResult` into the parent.
    pub(crate) async fn execute_as(
        &self,
        input: In,
        parent: &Frame<C>,
        index: u64,
        kind: StepKind,
    ) -> Result<Out, String> {
        let seq = parent.children.next_seq();
        let started = Instant::now();
        let (input_value, input_error) = to_json_value(&input);
        let redaction = &parent.run.redaction;
        let step_run_id: Arc<str> = uuid::Uuid::now_v7().to_string().into();
        let span = tracing::info_span!(
            target: "flujo",
            parent: &parent.span,
            "flujo.step",
            run_id = parent.run.run_id.as_str(),
            step_run_id = &*step_run_id,
            parent_step_run_id = parent.step_run_id.as_deref(),
            step_name = &*self.name,
            step_index = index,
            step_kind = kind.as_str(),
            start_time = now_timestamp().as_str(),
            input = span_text_of_value(&input_value, redaction).as_str(),
            status = Empty,
            attempts = Empty,
            end_time = Empty,
            duration_ms = Empty,
            output = Empty,
            error = Empty,
            fallback_taken = Empty,
            tokens = Empty,
            cost_usd = Empty,
        );
        let frame = Frame {
            run: parent.run.clone(),
            span: span.clone(),
            step_run_id: Some(step_run_id.clone()),
            step_name: self.name.clone(),
            usage: UsageNode::child(&parent.usage),
            children: Arc::new(Children::default()),
            attempt: 0,
        };
        let mut guard = CancelGuard {
            span: span.clone(),
            started,
            usage: frame.usage.clone(),
            attempts: 0,
            finished: false,
        };
        let attempted = self
            .attempt_all(input, &frame, &mut guard.attempts)
            .instrument(span.clone())
            .await;

        let duration = started.elapsed();
        let usage = frame.usage.total();
        let (status, output_value, output_error, error) = match &attempted.result {
            Ok(output) => {
                let (output_value, output_error) = to_json_value(output);
                (
                    RunStatus::Completed,
                    Some(output_value),
                    output_error,
                    attempted.primary_error.clone(),
                )
            }
            Err(error) => (RunStatus::Failed, None, None, Some(error.clone())),
        };
        // A value that could not be serialised is an error of the step, not a failure: the
        // value itself is fine and flows on.
        let error = join_errors(
            error,
            [("input", input_error), ("output", output_error)]
                .into_iter()
                .filter_map(|(what, error)| {
                    let error = error?;
                    let what = format!("{what} of step '{}'", self.name);
                    Some(not_serialisable_message(&what, &error))
                }),
        );
        let fallback_taken = attempted.result.is_ok() && attempted.primary_error.is_some();
        if !span.is_disabled() {
            span.record("status", status.as_str());
            span.record("attempts", u64::from(guard.attempts));
            span.record("end_time", now_timestamp().as_str());
            span.record("duration_ms", duration_ms(duration));
            if let Some(output) = &output_value {
                span.record("output", span_text_of_value(output, redaction).as_str());
            }
            if let Some(error) = &error {
                span.record("error", &*redaction.error_text(error));
            }
            span.record("fallback_taken", fallback_taken);
            span.record("tokens", usage.tokens);
            span.record("cost_usd", usage.cost_usd);
        }
        guard.finished = true;
        let attempts = guard.attempts;
        drop(guard);
        drop(span);

        let result = StepResult {
            name: self.name.to_string(),
            index,
            kind,
            status,
            attempts,
            input: input_value,
            output: output_value,
            error,
            duration,
            tokens: usage.tokens,
            cost_usd: usage.cost_usd,
            children: frame.children.take(),
            fallback_taken,
            step_run_id: step_run_id.to_string(),
        };
        parent.children.push(seq, result);
        attempted.result
    }

    /// Makes up to `1 + max_retries` attempts, then runs the fallback if every one failed.
    /// Boxed: a step's execution contains its fallback's, of the same type.
    fn attempt_all<'a>(
        &'a self,
        input: In,
        frame: &'a Frame<C>,
        attempts: &'a mut u32,
    ) -> BoxFuture<'a, Attempted<Out>> {
        Box::pin(self.attempt_all_unboxed(input, frame, attempts))
    }

    async fn attempt_all_unboxed(
        &self,
        input: In,
        frame: &Frame<C>,
        attempts: &mut u32,
    ) -> Attempted<Out> {
        let mut input = Some(input);
        let last_error = loop {
            *attempts += 1;
            let retries_left = *attempts <= self.max_retries;
            let needs_input_later = retries_left || self.fallback.is_some();
            let attempt_input = match (needs_input_later, self.clone_input, input.as_ref()) {
                (true, Some(clone_input), Some(kept)) => clone_input(kept),
                _ => input.take().expect("the input is kept while it is needed"),
            };
            match self.attempt(attempt_input, frame, *attempts).await {
                Ok(output) => {
                    return Attempted {
                        result: Ok(output),
                        primary_error: None,
                    }
                }
                Err(error) if !retries_left => break error,
                Err(_) => {}
            }
        };
        let (Some(fallback), Some(input)) = (&self.fallback, input) else {
            return Attempted {
                result: Err(last_error),
                primary_error: None,
            };
        };
        let result = fallback
            .execute_as(input, frame, 0, StepKind::Fallback)
            .await
            .map_err(|fallback_error| {
                format!(
                    "{last_error}; fallback '{}' also failed: {fallback_error}",
                    fallback.name
                )
            });
        Attempted {
            result,
            primary_error: Some(last_error),
        }
    }

    /// One attempt: the body, bounded by the timeout, with panics caught.
    async fn attempt(&self, input: In, frame: &Frame<C>, attempt: u32) -> Result<Out, String> {
        let frame = Frame {
            attempt,
            ..frame.clone()
        };
        let body = self.body.clone();
        let timeout = self.timeout;
        let name = &self.name;
        let attempt = async move {
            let output = body(input, frame);
            match timeout {
                None => output.await,
                Some(limit) => match tokio::time::timeout(limit, output).await {
                    Ok(result) => result,
                    Err(_) => Err(format!("step '{name}' timed out after {limit:?}")),
                },
            }
        };
        match AssertUnwindSafe(attempt).catch_unwind().await {
            Ok(result) => result,
            Err(payload) => Err(format!(
                "step '{name}' panicked: {}",
                panic_message(&*payload)
            )),
        }
    }
}

/// `error` followed by `more`, `; `-separated.
pub(crate) fn join_errors(
    error: Option<String>,
    more: impl IntoIterator<Item = String>,
) -> Option<String> {
    more.into_iter().fold(error, |joined, next| match joined {
        Some(joined) => Some(format!("{joined}; {next}")),
        None => Some(next),
    })
}
