//! The payload cap: how the layer cuts an oversized input, output, error or context, and how
//! readers recognise a cut payload.
//!
//! A payload longer than the cap is stored as its first bytes (cut at a UTF-8 character
//! boundary, at most the cap) followed by a marker that gives the bytes kept and the original
//! size, e.g. `{"text":"aaaa…[flujo: truncated, kept 1048576 of 52428800 bytes]`. The cut text is
//! no longer valid JSON; [`truncated`] tells a cut payload from any other text.

use std::fmt::Write as _;

/// The payload cap of a store's layer unless its builder says otherwise (for SQLite,
/// `SqliteLayerBuilder::with_payload_cap`): 1 MiB.
pub const DEFAULT_PAYLOAD_CAP: usize = 1 << 20;

/// What a cut payload's marker starts with; the whole marker is
/// `…[flujo: truncated, kept K of N bytes]`, where K is the length in bytes of the text before
/// the marker and N the size of the payload as recorded. Use [`truncated`] to detect it.
pub const TRUNCATION_MARKER_PREFIX: &str = "\u{2026}[flujo: truncated, kept ";

/// A payload stored cut, as [`truncated`] finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truncated<'a> {
    /// The text kept: the payload's first `head.len()` bytes.
    pub head: &'a str,
    /// The size in bytes of the payload as it was recorded, before the cut.
    pub original_bytes: u64,
}

/// Whether `stored` (a stored input, output, error or context) is a payload the layer cut, and
/// if so its head and original size; `None` for any text stored whole.
///
/// A stored text is cut exactly when it ends with the marker, the marker's K equals the length
/// of the text before it and K < N: a payload that merely quotes a marker is not mistaken for one.
///
/// ```
/// use flujo_trace_core::truncated;
///
/// let cut = truncated("[1,2,\u{2026}[flujo: truncated, kept 5 of 9000 bytes]").unwrap();
/// assert_eq!((cut.head, cut.original_bytes), ("[1,2,", 9000));
/// assert_eq!(truncated(r#"{"n":1}"#), None);
/// ```
pub fn truncated(stored: &str) -> Option<Truncated<'_>> {
    let start = stored.rfind(TRUNCATION_MARKER_PREFIX)?;
    let rest = stored[start + TRUNCATION_MARKER_PREFIX.len()..].strip_suffix(" bytes]")?;
    let (kept, original) = rest.split_once(" of ")?;
    let kept: usize = parse_digits(kept)?;
    let original_bytes: u64 = parse_digits(original)?;
    if kept != start || kept as u64 >= original_bytes {
        return None;
    }
    Some(Truncated {
        head: &stored[..start],
        original_bytes,
    })
}

/// A plain decimal number (no sign, no spaces).
fn parse_digits<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Copies `value`, cut to at most `cap` bytes plus the marker when it is longer: only the kept
/// bytes are copied, so a 50 MiB payload costs a copy of `cap` bytes.
pub fn capped(value: &str, cap: usize) -> String {
    if value.len() <= cap {
        return value.to_owned();
    }
    let mut kept = cap;
    while !value.is_char_boundary(kept) {
        kept -= 1;
    }
    let mut stored = String::with_capacity(kept + TRUNCATION_MARKER_PREFIX.len() + 48);
    stored.push_str(&value[..kept]);
    // writing to a String cannot fail
    let _ = write!(
        stored,
        "{TRUNCATION_MARKER_PREFIX}{kept} of {} bytes]",
        value.len()
    );
    stored
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `capped(input, cap)` stores `expected_head` (whole when `None`), and `truncated` reads it
    /// back.
    fn check(input: &str, cap: usize, expected_head: Option<&str>) {
        let stored = capped(input, cap);
        match expected_head {
            None => {
                assert_eq!(stored, input);
                assert_eq!(truncated(&stored), None, "{stored:?}");
            }
            Some(head) => {
                let cut = truncated(&stored).expect("a cut payload is detected");
                assert_eq!(cut.head, head);
                assert_eq!(cut.original_bytes, input.len() as u64);
                assert!(stored.len() <= cap + TRUNCATION_MARKER_PREFIX.len() + 48);
            }
        }
    }

    #[test]
    fn cuts_at_char_boundaries_and_only_over_the_cap() {
        check("", 0, None);
        check("abc", 3, None);
        check("abcd", 3, Some("abc"));
        check("abcd", 0, Some(""));
        // "é" is 2 bytes, "😀" 4: never split
        check("aé", 2, Some("a"));
        check("😀😀", 5, Some("😀"));
        check("😀😀", 3, Some(""));
        check("\0\0\0", 2, Some("\0\0"));
    }

    #[test]
    fn text_that_only_quotes_a_marker_is_not_cut() {
        for text in [
            "\u{2026}[flujo: truncated, kept 0 of 10 bytes]x",
            "ab\u{2026}[flujo: truncated, kept 5 of 10 bytes]",
            "ab\u{2026}[flujo: truncated, kept 2 of 2 bytes]",
            "ab\u{2026}[flujo: truncated, kept 2 of +9 bytes]",
            "ab\u{2026}[flujo: truncated, kept 2 of  bytes]",
            "plain error message",
        ] {
            assert_eq!(truncated(text), None, "{text:?}");
        }
        assert!(truncated("ab\u{2026}[flujo: truncated, kept 2 of 3 bytes]").is_some());
    }
}
