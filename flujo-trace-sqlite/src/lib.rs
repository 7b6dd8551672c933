//! flujo-trace-sqlite: records flujo runs and steps (the span contract in ARCHITECTURE.md) in SQLite.
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

mod backend;
mod config;
mod error;
mod layer;
mod migrate;
mod process;
mod read;
mod writer;

pub use backend::{
    RunEnd, RunFilter, RunRecord, SqliteBackend, StateBackend, StepRecord, WriterProcess,
};
pub use error::Error;
