//! flujo-trace-core: what every flujo store shares, whatever it writes to: the span contract
//! (ARCHITECTURE.md) decoded into row structs, the payload cap, the one timestamp format, the
//! state-URI resolver with the `flujo.toml` it reads, and the writer thread (bounded channel,
//! batching, barrier, retries, loss reporting, exit handling) around a store's [`Sink`].
//!
//! [`RecordingLayer`] holds the span callbacks of every store's layer.
//!
//! Stores (`flujo-trace-sqlite`, `flujo-trace-postgres`) depend on this crate, never on the runner; the runner depends on
//! it only for the timestamp format it writes.
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

mod channel;
mod config;
mod decode;
mod layer;
mod page;
mod payload;
mod process;
mod reader;
mod rows;
mod schema;
mod short_id;
mod timefmt;
mod writer;

pub use channel::WriterLink;
pub use config::{
    find_flujo_toml, load_flujo_toml, resolve_state_in, resolve_state_path, resolve_state_path_in,
    resolve_state_setting, ConfigError, FlujoToml, OtlpToml, PostgresUri, RedactionToml, StatePath,
    StateSetting, StateSource, StorageToml, UnknownKey, CONFIG_FILE_NAME, DEFAULT_STATE_URI,
    STATE_URI_ENV, STATE_URI_OFF,
};
pub use decode::{
    decode_run_record, decode_run_start, decode_step_record, decode_step_start, finish_run,
    finish_step, RUN_SPAN, STEP_SPAN, TARGET,
};
pub use layer::RecordingLayer;
pub use page::{page_of_runs, prefix_upper_bound, StatusPlan, Walk, RECHECK_BOUND};
pub use payload::{capped, truncated, Truncated, DEFAULT_PAYLOAD_CAP, TRUNCATION_MARKER_PREFIX};
pub use process::{current_writer, writer_lookups_on_this_thread, Liveness, CRASHED};
pub use reader::RunReader;
pub use rows::{
    Candidate, IndexState, RunCount, RunEnd, RunFilter, RunPage, RunRecord, RunStat, SearchField,
    StepClose, StepRecord, StepStat, WriterProcess,
};
pub use schema::{SCHEMA_CHANGES, SCHEMA_VERSION};
pub use short_id::{could_be_short_id, id_tail, short_id, SHORT_ID_MAX, SHORT_ID_MIN, TAIL_LEN};
pub use timefmt::{format_timestamp, now_timestamp, parse_timestamp};
pub use writer::{
    Flushed, OutageBuffer, Row, Sink, SinkError, WriterOptions, DEFAULT_RETRY_WINDOW,
};

/// What [`store_layer!`] expands to refers to, so a store needs no direct dependency on them.
#[doc(hidden)]
pub mod __private {
    pub use tracing::level_filters::LevelFilter;
    pub use tracing::span::{Attributes, Id, Record};
    pub use tracing::subscriber::Interest;
    pub use tracing::{Dispatch, Event, Metadata, Subscriber};
    pub use tracing_subscriber::layer::{Context, Layer};
    pub use tracing_subscriber::registry::LookupSpan;
}
