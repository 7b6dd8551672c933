//! Timestamps as the span contract writes them: UTC RFC 3339 with exactly six fractional digits.

use serde::Serializer;
use std::time::Duration;
use time::{OffsetDateTime, UtcOffset};

/// Formats a time as UTC RFC 3339 with exactly six fractional digits and a `Z`, e.g.
/// `2026-11-26T14:35:37.123456Z`, the form every time field of the span contract uses (so that
/// text order is time order).
pub fn format_timestamp(time: OffsetDateTime) -> String {
    let utc = time.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second(),
        utc.microsecond()
    )
}

pub(crate) fn now_timestamp() -> String {
    format_timestamp(OffsetDateTime::now_utc())
}

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

#[cfg(test)]
mod tests {
    use super::format_timestamp;
    use time::macros::datetime;

    #[test]
    fn six_fractional_digits_in_utc() {
        let check = |time, expected: &str| assert_eq!(format_timestamp(time), expected);
        check(
            datetime!(2026-11-26 14:35:37.123456789 UTC),
            "2026-11-26T14:35:37.123456Z",
        );
        check(
            datetime!(2026-01-02 03:04:05 UTC),
            "2026-01-02T03:04:05.000000Z",
        );
        check(
            datetime!(2026-01-02 01:30:00.5 +02:00),
            "2026-01-01T23:30:00.500000Z",
        );
    }
}
