//! flujo-trace-postgres: records flujo runs and steps (the span contract in ARCHITECTURE.md) in
//! PostgreSQL, a store that many hosts write and every lens reads: [`PostgresLayer`] (the
//! core's writer around `PostgresSink`) and [`PostgresReader`] (the core's `RunReader`).
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

mod connect;
mod error;
mod import;
mod insight;
mod layer;
mod migrate;
mod read;
mod sink;
mod text;

pub use error::Error;
pub use flujo_trace_core::{
    Flushed, OutageBuffer, PostgresUri, RunFilter, RunPage, RunReader, RunRecord, StepRecord,
    WriterProcess,
};
pub use import::PostgresImporter;
pub use layer::{PostgresHandle, PostgresLayer, PostgresLayerBuilder, DEFAULT_OUTAGE_BUFFER};
pub use read::PostgresReader;
