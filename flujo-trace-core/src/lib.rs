//! flujo-trace-core: what every flujo store shares, whatever it writes to: the span contract
//! (ARCHITECTURE.md) decoded into row structs, the payload cap, the one timestamp format, the
//! state-URI resolver with the `flujo.toml` it reads, and the writer thread (bounded channel,
//! batching, barrier, retries, loss reporting, exit handling) around a store's [`Sink`].
//!
//! Stores (`flujo-trace-sqlite`) depend on this crate, never on the runner; the runner depends on
//! it only for the timestamp format it writes.
#![warn(missing_docs, unreachable_pub, rust_2018_idioms)]

mod channel;
mod config;
mod decode;
mod payload;
mod reader;
mod rows;
mod timefmt;
mod writer;

pub use channel::WriterLink;
pub use config::{
    find_flujo_toml, load_flujo_toml, resolve_state_path, resolve_state_path_in,
    resolve_state_setting, ConfigError, FlujoToml, RedactionToml, StatePath, StateSetting,
    StateSource, StorageToml, UnknownKey, CONFIG_FILE_NAME, DEFAULT_STATE_URI, STATE_URI_ENV,
    STATE_URI_OFF,
};
pub use decode::{
    decode_run_record, decode_run_start, decode_step_record, decode_step_start, finish_run,
    finish_step, RUN_SPAN, STEP_SPAN, TARGET,
};
pub use payload::{capped, truncated, Truncated, DEFAULT_PAYLOAD_CAP, TRUNCATION_MARKER_PREFIX};
pub use reader::RunReader;
pub use rows::{
    RunCount, RunEnd, RunFilter, RunPage, RunRecord, StepClose, StepRecord, WriterProcess,
};
pub use timefmt::{format_timestamp, now_timestamp};
pub use writer::{Flushed, Row, Sink, SinkError, WriterOptions, DEFAULT_RETRY_WINDOW};
