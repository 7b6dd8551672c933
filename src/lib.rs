//! flujo: pipelines of async steps, with every run recorded by default.
//!
//! Build a [`Pipeline`] of [`step`]s and control flow ([`loop_until`], [`branch_on`],
//! [`parallel`], [`join`], [`map_over`], [`Pipeline::into_step`]) and run it with [`Flujo`]. Every run and
//! every step is a `tracing` span (the span contract is in `ARCHITECTURE.md`); the
//! [`SqliteLayer`] records them in `flujo_ops.db`, and `flujo lens` reads them back.
//!
//! With no setup at all, the first run in a process that has no global `tracing` subscriber
//! installs one that records to the configured database (`FLUJO_STATE_URI`, then `state_uri` in
//! the nearest `flujo.toml`, then `./flujo_ops.db`; `off` records nothing). To stack other layers
//! beside it, build the subscriber yourself, with [`layer`] (the same configured store) or a
//! [`SqliteLayer`] at a path of your choice:
//!
//! ```no_run
//! use tracing_subscriber::prelude::*;
//!
//! tracing_subscriber::registry()
//!     .with(flujo::layer().expect("open the configured store"))
//!     .with(tracing_subscriber::fmt::layer().with_filter(tracing_subscriber::EnvFilter::from_default_env()))
//!     .init();
//! ```
//!
//! Either way, when [`Flujo::run`] returns, the run's rows are committed.

#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

#[cfg(feature = "otlp")]
mod otlp;
mod recording;
mod runner;
mod settings;

pub use flujo_runner::{
    branch_on, format_timestamp, join, loop_until, map_over, parallel, step, Backoff, BoxError,
    BranchOn, Clock, ContextError, IntoStep, Join, LoopUntil, OffsetClock, Parallel, Pipeline,
    PipelineResult, Redaction, RunStatus, Step, StepContext, StepError, StepKind, StepResult,
    SystemClock, Usage,
};
pub use flujo_trace_postgres::{PostgresHandle, PostgresLayer, PostgresLayerBuilder};
pub use flujo_trace_sqlite::{
    Error as StorageError, SqliteHandle, SqliteLayer, SqliteLayerBuilder,
};
pub use recording::{layer, recording_store, Persistence};
pub use runner::Flujo;

#[cfg(feature = "otlp")]
pub use otlp::{otlp_counts, OtlpCounts, DEFAULT_OTLP_PAYLOAD_CAP, EXIT_FLUSH_BOUND};

/// The runner without the default persistence wiring, for building your own integrations.
pub use flujo_runner::{Flujo as BareFlujo, RunObserver};

/// The README's Rust examples, compiled as doctests so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
