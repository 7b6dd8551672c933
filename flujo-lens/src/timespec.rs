//! `--since`/`--until` values: a duration back from now, a date, a date and time, or RFC 3339,
//! turned into the stored time format (UTC, six fractional digits) so text order is time order.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, Duration, OffsetDateTime, PrimitiveDateTime};

use crate::error::LensError;

/// Parses WHEN for `flag`, relative to `now`.
pub(crate) fn parse_when(flag: &str, when: &str, now: OffsetDateTime) -> Result<String, LensError> {
    let when = when.trim();
    parse_instant(when, now).map(format_stored).ok_or_else(|| {
        LensError::Usage(format!(
            "cannot read {flag} {when:?}: use a duration back from now (45s, 30m, 1h30m, 90min, \
             2 days, 2w), a date (2026-01-05), a date and time in UTC (2026-01-05 14:30) or \
             RFC 3339"
        ))
    })
}

fn parse_instant(when: &str, now: OffsetDateTime) -> Option<OffsetDateTime> {
    if let Some(ago) = parse_duration(when) {
        return now.checked_sub(ago);
    }
    if let Ok(instant) = OffsetDateTime::parse(when, &Rfc3339) {
        return Some(instant);
    }
    if let Ok(date) = Date::parse(when, format_description!("[year]-[month]-[day]")) {
        return Some(date.midnight().assume_utc());
    }
    let normalized = when.replacen('T', " ", 1);
    let formats = [
        format_description!("[year]-[month]-[day] [hour]:[minute]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]"),
    ];
    formats.iter().find_map(|format| {
        PrimitiveDateTime::parse(&normalized, format)
            .ok()
            .map(PrimitiveDateTime::assume_utc)
    })
}

/// `45s`, `30m`, `1h30m`, `90min`, `2 days`, `2w` (humantime's units: a month is 30.44 days, a
/// year 365.25).
fn parse_duration(when: &str) -> Option<Duration> {
    let ago = humantime::parse_duration(when).ok()?;
    Duration::try_from(ago).ok()
}

/// `2026-01-05T14:30:00.000000Z`: the span contract's time format (the core's one formatter).
pub(crate) fn format_stored(instant: OffsetDateTime) -> String {
    flujo_trace_core::format_timestamp(instant)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-05 12:00:00 UTC);

    fn check(when: &str, expected: Option<&str>) {
        let actual = parse_when("--since", when, NOW).ok();
        assert_eq!(actual.as_deref(), expected, "{when}");
    }

    #[test]
    fn forms() {
        check("30m", Some("2026-01-05T11:30:00.000000Z"));
        check("2h", Some("2026-01-05T10:00:00.000000Z"));
        check("7d", Some("2025-12-29T12:00:00.000000Z"));
        check("2w", Some("2025-12-22T12:00:00.000000Z"));
        check("45s", Some("2026-01-05T11:59:15.000000Z"));
        check("0m", Some("2026-01-05T12:00:00.000000Z"));
        check("2026-01-04", Some("2026-01-04T00:00:00.000000Z"));
        check("2026-01-04 13:45", Some("2026-01-04T13:45:00.000000Z"));
        check("2026-01-04T13:45", Some("2026-01-04T13:45:00.000000Z"));
        check("2026-01-04 13:45:10", Some("2026-01-04T13:45:10.000000Z"));
        check(
            "2026-01-04T13:45:10+01:00",
            Some("2026-01-04T12:45:10.000000Z"),
        );
        check(
            "2026-01-04T13:45:10.25Z",
            Some("2026-01-04T13:45:10.250000Z"),
        );
        check(" 2h ", Some("2026-01-05T10:00:00.000000Z"));
        check("1h30m", Some("2026-01-05T10:30:00.000000Z"));
        check("1h 30m", Some("2026-01-05T10:30:00.000000Z"));
        check("90min", Some("2026-01-05T10:30:00.000000Z"));
        check("2 days", Some("2026-01-03T12:00:00.000000Z"));
        check("1day 12hours", Some("2026-01-04T00:00:00.000000Z"));
        check("", None);
        check("yesterday", None);
        check("-2h", None);
        check("2x", None);
        check("h", None);
        check("2026-13-01", None);
        check("99999999999999d", None);
        check("2 parsecs", None);
        check("30", None);
    }

    #[test]
    fn error_says_what_forms_work() {
        let Err(LensError::Usage(message)) = parse_when("--until", "soon", NOW) else {
            panic!("soon parsed");
        };
        assert!(
            message.starts_with("cannot read --until \"soon\": use a duration"),
            "{message}"
        );
    }
}
