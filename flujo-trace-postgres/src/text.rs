//! PostgreSQL's `text` cannot hold NUL, which Rust strings (error messages, names) may: every
//! text value is stored with NUL written as U+E000 `0` and U+E000 itself doubled, and read back
//! the other way. Text without either character (all but hostile input) is stored as it is.
//! JSON payloads never hold a raw NUL (serde_json escapes it), so they pass unchanged.

use std::borrow::Cow;

/// The escape character: from Unicode's private use area, so ordinary text never holds it.
const ESCAPE: char = '\u{E000}';

/// `text` as stored.
pub(crate) fn encode(text: &str) -> Cow<'_, str> {
    if !text.contains(['\0', ESCAPE]) {
        return Cow::Borrowed(text);
    }
    let mut encoded = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\0' => {
                encoded.push(ESCAPE);
                encoded.push('0');
            }
            ESCAPE => {
                encoded.push(ESCAPE);
                encoded.push(ESCAPE);
            }
            c => encoded.push(c),
        }
    }
    Cow::Owned(encoded)
}

/// `stored` as it was before [`encode`].
pub(crate) fn decode(stored: String) -> String {
    if !stored.contains(ESCAPE) {
        return stored;
    }
    let mut decoded = String::with_capacity(stored.len());
    let mut chars = stored.chars();
    while let Some(c) = chars.next() {
        if c == ESCAPE {
            match chars.next() {
                Some('0') => decoded.push('\0'),
                Some(ESCAPE) => decoded.push(ESCAPE),
                // not written by encode: keep it as it is
                Some(other) => {
                    decoded.push(ESCAPE);
                    decoded.push(other);
                }
                None => decoded.push(ESCAPE),
            }
        } else {
            decoded.push(c);
        }
    }
    decoded
}

/// [`encode`] of an optional value.
pub(crate) fn encode_opt(text: Option<&str>) -> Option<Cow<'_, str>> {
    text.map(encode)
}

/// [`decode`] of an optional value.
pub(crate) fn decode_opt(stored: Option<String>) -> Option<String> {
    stored.map(decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_nul_and_the_escape_itself() {
        for text in [
            "",
            "plain",
            "a\0b",
            "\0",
            "\u{E000}",
            "\u{E000}0",
            "x\u{E000}\0\u{E000}\u{E000}y\0",
        ] {
            let stored = encode(text);
            assert!(!stored.contains('\0'), "{text:?}");
            assert_eq!(decode(stored.into_owned()), text);
        }
        assert!(matches!(encode("plain"), Cow::Borrowed(_)));
    }
}
