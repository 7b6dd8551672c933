//! flujo-trace-sqlite: records flujo runs and steps (the span contract in ARCHITECTURE.md) in SQLite.
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

mod backend;
mod backfill;
mod config;
mod error;
mod insight;
mod layer;
mod migrate;
mod process;
mod prune;
mod read;
mod roles;
mod sink;
#[cfg(test)]
mod test_support;

pub use backend::{
    RunEnd, RunFilter, RunRecord, SqliteBackend, StateBackend, StepRecord, WriterProcess,
};
pub use config::{
    find_flujo_toml, load_flujo_toml, resolve_state_path, resolve_state_path_in, FlujoToml,
    RedactionToml, StatePath, StateSetting, StateSource, StorageToml, UnknownKey, CONFIG_FILE_NAME,
    DEFAULT_STATE_URI, STATE_URI_ENV, STATE_URI_OFF,
};
pub use error::Error;
pub use flujo_trace_core::{truncated, Truncated, DEFAULT_PAYLOAD_CAP, TRUNCATION_MARKER_PREFIX};
pub use flujo_trace_core::{Flushed, RunReader};
pub use layer::{SqliteHandle, SqliteLayer, SqliteLayerBuilder};
pub use prune::{PruneCounts, PruneFilter, PruneProgress, PruneReport};
pub use read::{RunCount, RunPage, CRASHED, RECHECK_BOUND};
pub use roles::{SqlitePruner, SqliteReader};
