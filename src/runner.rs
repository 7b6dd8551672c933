//! `flujo::Flujo`: the runner with persistence wired in (see `recording`).

use std::sync::Arc;

use flujo_runner::{Clock, Pipeline, PipelineResult, Redaction};
use serde::Serialize;

use crate::recording::{Persistence, PersistenceObserver};

/// The runner: a named, versioned pipeline whose every run is recorded (see [`Persistence`]).
///
/// It has the run methods of [`BareFlujo`](crate::BareFlujo), plus
/// [`with_persistence`](Flujo::with_persistence) and [`with_redaction`](Flujo::with_redaction).
///
/// Each [`run`](Flujo::run) is one `flujo.run` span with its steps' spans nested in it, and
/// returns a [`PipelineResult`] once the run's rows are committed. A step failure (an error
/// after its retries, a panic, a timeout) is a `failed` result, never an error of the caller.
pub struct Flujo<In, Out, C = ()> {
    inner: flujo_runner::Flujo<In, Out, C>,
}

impl<In, Out, C> Clone for Flujo<In, Out, C> {
    fn clone(&self) -> Self {
        Flujo {
            inner: self.inner.clone(),
        }
    }
}

impl<In, Out, C> std::fmt::Debug for Flujo<In, Out, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.inner.fmt(f)
    }
}

impl<In, Out, C> Flujo<In, Out, C> {
    /// A runner for `pipeline`, recorded under `pipeline_name`, version `latest`.
    pub fn new(pipeline_name: impl Into<String>, pipeline: Pipeline<In, Out, C>) -> Self {
        let inner = flujo_runner::Flujo::new(pipeline_name, pipeline)
            .with_redaction(crate::settings::settings().redaction.clone());
        Flujo { inner }.with_persistence(Persistence::Default)
    }

    /// Sets the version recorded with every run (default `latest`).
    pub fn with_pipeline_version(mut self, pipeline_version: impl Into<String>) -> Self {
        self.inner = self.inner.with_pipeline_version(pipeline_version);
        self
    }

    /// Which keys' values are replaced by `"[REDACTED]"` in what every layer records (the values
    /// returned to you are never redacted). Default: [`Redaction::default`], or the keys in
    /// `flujo.toml` ([`Redaction::everything`] while its redaction settings cannot be read).
    pub fn with_redaction(mut self, redaction: Redaction) -> Self {
        self.inner = self.inner.with_redaction(redaction);
        self
    }

    /// Sets the clock every recorded time comes from (default: [`SystemClock`](crate::SystemClock)):
    /// the start and end times of each run and step, and the time of each run id and step id
    /// (UUID v7, so ids sort like the clock's times); durations are still measured with the
    /// monotonic clock. See [`BareFlujo::with_clock`](crate::BareFlujo::with_clock).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.inner = self.inner.with_clock(clock);
        self
    }

    /// Whether runs are recorded; [`Persistence::Default`] unless changed. Changes only that:
    /// every other setting of the runner is kept.
    pub fn with_persistence(mut self, persistence: Persistence) -> Self {
        self.inner = match persistence {
            Persistence::Default => self.inner.with_observer(Arc::new(PersistenceObserver)),
            Persistence::Disabled => self.inner.without_observer(),
        };
        self
    }

    /// Sets the version recorded with every run.
    #[deprecated(since = "0.1.0", note = "renamed `with_pipeline_version`")]
    pub fn pipeline_version(self, pipeline_version: impl Into<String>) -> Self {
        self.with_pipeline_version(pipeline_version)
    }

    /// Sets what the spans redact.
    #[deprecated(since = "0.1.0", note = "renamed `with_redaction`")]
    pub fn redaction(self, redaction: Redaction) -> Self {
        self.with_redaction(redaction)
    }

    /// Sets whether runs are recorded.
    #[deprecated(since = "0.1.0", note = "renamed `with_persistence`")]
    pub fn persistence(self, persistence: Persistence) -> Self {
        self.with_persistence(persistence)
    }

    /// The pipeline's name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// The pipeline's version.
    pub fn version(&self) -> &str {
        self.inner.version()
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
        self.inner.run(input).await
    }

    /// Runs the pipeline on `input` with `context` as the context.
    pub async fn run_with_context(&self, input: In, context: C) -> PipelineResult<Out, C> {
        self.inner.run_with_context(input, context).await
    }

    /// [`run`](Flujo::run) for callers that are not async (blocks until the run is recorded).
    pub fn run_blocking(&self, input: In) -> PipelineResult<Out, C>
    where
        C: Default,
    {
        self.inner.run_blocking(input)
    }

    /// [`run_with_context`](Flujo::run_with_context) for callers that are not async.
    pub fn run_blocking_with_context(&self, input: In, context: C) -> PipelineResult<Out, C> {
        self.inner.run_blocking_with_context(input, context)
    }
}
