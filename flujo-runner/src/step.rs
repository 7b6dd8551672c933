//! Steps: a named async function (or a control-flow body) with retries, a timeout and a
//! fallback, and the execution that wraps every attempt in a `flujo.step` span.

use crate::clock::RunClock;
use crate::context::{Children, Frame, StepContext, UsageNode};
use crate::error::{panic_message, Failure, StepError};
use crate::json::{not_serialisable_message, span_text_of_value, to_json_value};
use crate::result::{RunStatus, StepKind, StepResult};
use crate::retry::{random_unit, Backoff};
use crate::timefmt::{duration_ms, format_timestamp};
use futures::future::BoxFuture;
use futures::FutureExt;
use serde::Serialize;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tracing::field::Empty;
use tracing::{Instrument, Span};

/// What runs a step's body or a pipeline: the input and the frame it executes in.
pub(crate) type Body<In, Out, C> =
    Arc<dyn Fn(In, Frame<C>) -> BoxFuture<'static, Result<Out, Failure>> + Send + Sync>;

/// Which failed attempts are retried.
type RetryIf = Arc<dyn Fn(&StepError) -> bool + Send + Sync>;

/// A named unit of work from `In` to `Out`, sharing a context `C` with the rest of its run.
///
/// Make one with [`step`] (an async function) or with a control-flow constructor
/// ([`loop_until`](crate::loop_until), [`branch_on`](crate::branch_on),
/// [`parallel`](crate::parallel), [`join`](crate::join), [`map_over`](crate::map_over),
/// [`Pipeline::into_step`](crate::Pipeline::into_step)); every kind takes the same options:
/// [`max_retries`](Step::max_retries) with its [`backoff`](Step::backoff) and
/// [`retry_if`](Step::retry_if), [`timeout`](Step::timeout) and [`fallback`](Step::fallback).
pub struct Step<In, Out, C = ()> {
    name: Arc<str>,
    kind: StepKind,
    body: Body<In, Out, C>,
    max_retries: u32,
    backoff: Backoff,
    retry_if: Option<RetryIf>,
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
            backoff: self.backoff,
            retry_if: self.retry_if.clone(),
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
            .field("backoff", &self.backoff)
            .field("retry_if", &self.retry_if.is_some())
            .field("timeout", &self.timeout)
            .field("fallback", &self.fallback.as_ref().map(|step| &step.name))
            .finish_non_exhaustive()
    }
}

/// A step from an async function of its input and a [`StepContext`].
///
/// The function returns `Result<Out, StepError>`: `Ok(value)` needs no annotation, `?` works on
/// any `std::error::Error + Send + Sync + 'static`, and [`StepError::new`] makes an error from
/// text.
///
/// ```
/// use flujo_runner::{step, StepContext, StepError, Usage};
///
/// #[derive(Default, serde::Serialize)]
/// struct Ctx { seen: u32 }
///
/// let classify = step("classify", |text: String, cx: StepContext<Ctx>| async move {
///     cx.add_usage(Usage { tokens: 120, cost_usd: 0.0004 });
///     cx.update(|c| c.seen += 1)?;
///     if text.is_empty() {
///         return Err(StepError::new("empty ticket"));
///     }
///     let words: u32 = text.split_whitespace().count().try_into()?;
///     Ok(words > 3 && text.contains("invoice"))
/// });
/// ```
pub fn step<In, Out, C, F, Fut>(name: impl Into<String>, f: F) -> Step<In, Out, C>
where
    In: Serialize + Send + 'static,
    Out: Serialize + Send + 'static,
    C: Send + 'static,
    F: Fn(In, StepContext<C>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Out, StepError>> + Send + 'static,
{
    let name: Arc<str> = name.into().into();
    let step_name = name.clone();
    let body: Body<In, Out, C> = Arc::new(move |input, frame: Frame<C>| {
        let output = f(input, frame.step_context());
        let step_name = step_name.clone();
        Box::pin(async move {
            output.await.map_err(|error| Failure {
                message: error.step_message(&step_name),
                error,
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
            backoff: Backoff::default(),
            retry_if: None,
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
    /// `step '<name>' timed out after <timeout>` (and is retried like any failure; a retry
    /// predicate sees [`StepError::is_timeout`]). Needs a tokio runtime with time enabled.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// How long to wait before each retry (default: [`Backoff::default`], exponential from
    /// 200 ms with jitter, capped at 10 s). Only matters with [`max_retries`](Step::max_retries).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Retries only the failed attempts for which `retry_if(error)` holds (default: every
    /// failure: error, panic or timeout); an attempt it refuses fails the step at once (or runs
    /// its fallback). Only matters with [`max_retries`](Step::max_retries).
    ///
    /// ```
    /// use flujo_runner::{step, StepContext, StepError};
    ///
    /// let call_model = step("call_model", |prompt: String, _cx: StepContext<()>| async move {
    ///     if prompt.is_empty() {
    ///         return Err(StepError::new("empty prompt")); // not worth retrying
    ///     }
    ///     if prompt.len() > 1000 {
    ///         return Err(StepError::new("429 Too Many Requests").transient());
    ///     }
    ///     Ok(prompt.len())
    /// })
    /// .max_retries(3)
    /// .timeout(std::time::Duration::from_secs(30))
    /// .retry_if(|error: &StepError| error.is_timeout() || error.is_transient());
    /// ```
    pub fn retry_if(
        mut self,
        retry_if: impl Fn(&StepError) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.retry_if = Some(Arc::new(retry_if));
        self
    }
}

impl<In: Clone, Out, C> Step<In, Out, C> {
    /// Retries a failed attempt (error, panic or timeout) up to `max_retries` times, each with a
    /// clone of the input, after a wait ([`backoff`](Step::backoff): by default exponential from
    /// 200 ms with jitter, capped at 10 s) and only when [`retry_if`](Step::retry_if) allows;
    /// `attempts` records how many were made, and the step's recorded `error` lists the failed
    /// attempts (`attempt 1/3: ...; attempt 2/3: ...`).
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
    result: Result<Out, Failure>,
    /// What the step's `error` records: the failed attempts (and the fallback's failure).
    error: Option<String>,
    /// Whether the fallback produced the output.
    fallback_taken: bool,
}

/// Records `cancelled` on a step span whose execution is dropped before it finishes.
struct CancelGuard<'a> {
    clock: &'a RunClock,
    span: Span,
    started: Instant,
    usage: Arc<UsageNode>,
    attempts: u32,
    finished: bool,
}

impl Drop for CancelGuard<'_> {
    fn drop(&mut self) {
        if self.finished || self.span.is_disabled() {
            return;
        }
        let usage = self.usage.total();
        let span = &self.span;
        span.record("status", RunStatus::Cancelled.as_str());
        span.record("attempts", u64::from(self.attempts));
        span.record("end_time", format_timestamp(self.clock.now()).as_str());
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
    ) -> Result<Out, Failure> {
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
    ) -> Result<Out, Failure> {
        let seq = parent.children.next_seq();
        let started = Instant::now();
        let (input_value, input_error) = to_json_value(&input);
        let redaction = &parent.run.redaction;
        let clock = &parent.run.clock;
        let (start_time, step_run_id) = clock.stamp();
        let step_run_id: Arc<str> = step_run_id.to_string().into();
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
            start_time = format_timestamp(start_time).as_str(),
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
            clock,
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
        let (status, output_value, output_error) = match &attempted.result {
            Ok(output) => {
                let (output_value, output_error) = to_json_value(output);
                (RunStatus::Completed, Some(output_value), output_error)
            }
            Err(_) => (RunStatus::Failed, None, None),
        };
        let error = attempted.error;
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
        let fallback_taken = attempted.fallback_taken;
        if !span.is_disabled() {
            span.record("status", status.as_str());
            span.record("attempts", u64::from(guard.attempts));
            span.record("end_time", format_timestamp(clock.now()).as_str());
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
        // The messages of the failed attempts before the last one (none without retries).
        let mut failed = Vec::new();
        let last_failure = loop {
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
                        error: self.attempts_text(&failed, None),
                        fallback_taken: false,
                    }
                }
                Err(failure) => {
                    let retry = retries_left
                        && self
                            .retry_if
                            .as_ref()
                            .is_none_or(|retry_if| retry_if(&failure.error));
                    if !retry {
                        break failure;
                    }
                    failed.push(failure.message);
                    self.wait_before_retry(*attempts).await;
                }
            }
        };
        let primary_error = self.attempts_text(&failed, Some(&last_failure.message));
        let (Some(fallback), Some(input)) = (&self.fallback, input) else {
            return Attempted {
                result: Err(last_failure),
                error: primary_error,
                fallback_taken: false,
            };
        };
        match fallback
            .execute_as(input, frame, 0, StepKind::Fallback)
            .await
        {
            Ok(output) => Attempted {
                result: Ok(output),
                error: primary_error,
                fallback_taken: true,
            },
            Err(fallback_failure) => {
                let also = format!(
                    "; fallback '{}' also failed: {}",
                    fallback.name, fallback_failure.message
                );
                Attempted {
                    error: primary_error.map(|error| error + &also),
                    result: Err(Failure {
                        message: last_failure.message + &also,
                        error: fallback_failure.error,
                    }),
                    fallback_taken: false,
                }
            }
        }
    }

    /// What the step's `error` says of its attempts: the one failure as it is when there were
    /// no retries, else each failed attempt numbered, `attempt 1/3: ...; attempt 2/3: ...`, the
    /// last one included. `None` when no attempt failed.
    fn attempts_text(&self, failed: &[String], last: Option<&str>) -> Option<String> {
        let limit = u64::from(self.max_retries) + 1;
        match (failed, last) {
            ([], None) => None,
            ([], Some(last)) => Some(last.to_owned()),
            _ => Some(
                failed
                    .iter()
                    .map(String::as_str)
                    .chain(last)
                    .zip(1u64..)
                    .map(|(message, attempt)| format!("attempt {attempt}/{limit}: {message}"))
                    .collect::<Vec<_>>()
                    .join("; "),
            ),
        }
    }

    /// Waits before retry number `retry` (1 for the first) as the backoff says; outside a tokio
    /// runtime, not at all.
    async fn wait_before_retry(&self, retry: u32) {
        let delay = self.backoff.delay(retry, random_unit);
        if !delay.is_zero() && tokio::runtime::Handle::try_current().is_ok() {
            tokio::time::sleep(delay).await;
        }
    }

    /// One attempt: the body, bounded by the timeout, with panics caught.
    async fn attempt(&self, input: In, frame: &Frame<C>, attempt: u32) -> Result<Out, Failure> {
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
                    Err(_) => {
                        let error = StepError::timed_out(limit);
                        Err(Failure {
                            message: error.step_message(name),
                            error,
                        })
                    }
                },
            }
        };
        match AssertUnwindSafe(attempt).catch_unwind().await {
            Ok(result) => result,
            Err(payload) => {
                let error = StepError::panicked(panic_message(&*payload));
                Err(Failure {
                    message: error.step_message(name),
                    error,
                })
            }
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
