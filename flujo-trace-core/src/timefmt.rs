//! The one timestamp format of the span contract and the stores: UTC RFC 3339 with exactly six
//! fractional digits.

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

/// A stored time read back: RFC 3339, as [`format_timestamp`] writes it (other offsets and
/// precisions too, as older or hand-written rows may have them); `None` when it is not one.
pub fn parse_timestamp(stored: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(stored, &time::format_description::well_known::Rfc3339).ok()
}

/// Now, as [`format_timestamp`] writes it.
pub fn now_timestamp() -> String {
    format_timestamp(OffsetDateTime::now_utc())
}

#[cfg(test)]
mod tests {
    use super::{format_timestamp, parse_timestamp};
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

    #[test]
    fn what_is_written_reads_back() {
        let time = datetime!(2026-11-26 14:35:37.123456 UTC);
        assert_eq!(parse_timestamp(&format_timestamp(time)), Some(time));
        assert_eq!(
            parse_timestamp("2026-01-02T03:30:00+02:00"),
            Some(datetime!(2026-01-02 01:30:00 UTC))
        );
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
