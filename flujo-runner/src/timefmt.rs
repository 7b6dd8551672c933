//! Timestamps as the span contract writes them: the one format of `flujo-trace-core`, and
//! durations in whole milliseconds.

use serde::Serializer;
use std::time::Duration;
use time::OffsetDateTime;

pub use flujo_trace_core::format_timestamp;

/// Whole milliseconds, saturating (the contract's `duration_ms` is a `u64`).
pub(crate) fn duration_ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

pub(crate) fn serialize_timestamp<S: Serializer>(
    time: &OffsetDateTime,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_timestamp(*time))
}

pub(crate) fn serialize_duration_ms<S: Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration_ms(*duration))
}
