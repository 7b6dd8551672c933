//! Text for terminals: escaping control characters, cutting long values with a marker giving
//! their full size, wrapping to a width, and formatting numbers, times, durations and costs.

use crate::render::char_width;

/// How a value is laid out in a cell or block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fit {
    /// Columns per line (at least 8).
    pub(crate) width: usize,
    /// At most this many lines, the last ending with the cut marker; `None`: whole.
    pub(crate) max_lines: Option<usize>,
    /// Keep line breaks (errors, pretty JSON) instead of escaping them as `\n`.
    pub(crate) keep_newlines: bool,
}

/// The terminal-safe form of `c`: `None` when it prints as itself, else an escape. Hidden
/// characters ([`is_hidden`]) never reach the terminal raw.
pub(crate) fn escape_char(c: char) -> Option<String> {
    match c {
        '\n' => Some("\\n".to_owned()),
        '\t' => Some("\\t".to_owned()),
        '\r' => Some("\\r".to_owned()),
        c if is_hidden(c) => Some(format!("\\u{{{:x}}}", u32::from(c))),
        _ => None,
    }
}

/// Whether `c` must not reach a terminal raw: a control character (C0, DEL, C1) or an invisible
/// one ([`INVISIBLE`]). The one list of such characters: table and JSON output both escape by it.
pub(crate) fn is_hidden(c: char) -> bool {
    use std::cmp::Ordering;
    c.is_control()
        || INVISIBLE
            .binary_search_by(|&(first, last)| {
                if last < c {
                    Ordering::Less
                } else if first > c {
                    Ordering::Greater
                } else {
                    Ordering::Equal
                }
            })
            .is_ok()
}

/// Characters that print as nothing yet hide, reorder or change the text around them: Unicode
/// general category Cf (format characters, as of Unicode 16), the whole tag block
/// U+E0000..E007F, and the line and paragraph separators (Zl, Zp). Kept out: the zero-width
/// non-joiner and joiner (U+200C, U+200D), which emoji sequences and Persian or Indic text need.
/// Sorted ranges that do not overlap (checked by a test), searched by [`is_hidden`].
const INVISIBLE: [(char, char); 20] = [
    ('\u{00ad}', '\u{00ad}'), // soft hyphen
    ('\u{0600}', '\u{0605}'), // Arabic number signs
    ('\u{061c}', '\u{061c}'), // Arabic letter mark
    ('\u{06dd}', '\u{06dd}'),
    ('\u{070f}', '\u{070f}'),
    ('\u{0890}', '\u{0891}'),
    ('\u{08e2}', '\u{08e2}'),
    ('\u{180e}', '\u{180e}'), // Mongolian vowel separator
    ('\u{200b}', '\u{200b}'), // zero-width space (U+200C, U+200D kept)
    ('\u{200e}', '\u{200f}'), // left-to-right and right-to-left marks
    ('\u{2028}', '\u{202e}'), // line and paragraph separators, bidi embeddings and overrides
    ('\u{2060}', '\u{206f}'), // word joiner, invisible operators, bidi isolates, deprecated
    ('\u{feff}', '\u{feff}'), // zero-width no-break space (byte order mark)
    ('\u{fff9}', '\u{fffb}'), // interlinear annotation
    ('\u{110bd}', '\u{110bd}'),
    ('\u{110cd}', '\u{110cd}'),
    ('\u{13430}', '\u{1343f}'), // Egyptian hieroglyph format controls
    ('\u{1bca0}', '\u{1bca3}'), // shorthand format controls
    ('\u{1d173}', '\u{1d17a}'), // musical symbol format controls
    ('\u{e0000}', '\u{e007f}'), // tags
];

/// `text` with every control or invisible character escaped; line breaks too.
pub(crate) fn escape(text: &str) -> String {
    if !text.chars().any(|c| escape_char(c).is_some()) {
        return text.to_owned();
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match escape_char(c) {
            Some(escape) => escaped.push_str(&escape),
            None => escaped.push(c),
        }
    }
    escaped
}

/// One displayed piece of the current line: its length in the line, its width, and the bytes
/// of the original text it stands for (an escape stands for one character).
#[derive(Debug, Clone, Copy)]
struct Piece {
    len: usize,
    width: usize,
    bytes: usize,
}

/// Lays `text` out in lines of at most `fit.width` columns, escaped; when `fit.max_lines` would be
/// exceeded, the last line ends with a marker such as `… (+3.2 KiB, 4,310 bytes total; --full)`.
pub(crate) fn fit(text: &str, fit: Fit) -> String {
    let width = fit.width.max(8);
    let total_bytes = text.len();
    let mut rendered = String::with_capacity(text.len().min(1 << 20) + 64);
    // pieces of the line being filled, so a cut can take some back
    let mut pieces: Vec<Piece> = Vec::new();
    let mut n_lines = 1;
    let mut line_width = 0;
    let mut shown_bytes = 0;
    let mut cut = false;
    let mut escape = String::new();
    for c in text.chars() {
        let bytes = c.len_utf8();
        if fit.keep_newlines && c == '\n' {
            if fit.max_lines.is_some_and(|max| n_lines >= max) {
                cut = true;
                break;
            }
            rendered.push('\n');
            n_lines += 1;
            pieces.clear();
            line_width = 0;
            shown_bytes += bytes;
            continue;
        }
        escape.clear();
        let (piece_width, shown) = match escape_char(c) {
            Some(escaped) => {
                escape.push_str(&escaped);
                (escaped.len(), None)
            }
            None => (char_width(c), Some(c)),
        };
        if line_width + piece_width > width && line_width > 0 {
            if fit.max_lines.is_some_and(|max| n_lines >= max) {
                cut = true;
                break;
            }
            rendered.push('\n');
            n_lines += 1;
            pieces.clear();
            line_width = 0;
        }
        let len = match shown {
            Some(c) => {
                rendered.push(c);
                c.len_utf8()
            }
            None => {
                rendered.push_str(&escape);
                escape.len()
            }
        };
        pieces.push(Piece {
            len,
            width: piece_width,
            bytes,
        });
        line_width += piece_width;
        shown_bytes += bytes;
    }
    if !cut {
        return rendered;
    }
    loop {
        let marker = cut_marker(total_bytes - shown_bytes, total_bytes);
        let marker_width = marker.chars().count();
        if line_width + 1 + marker_width <= width || pieces.is_empty() {
            if !rendered.is_empty() && !rendered.ends_with('\n') {
                rendered.push(' ');
            }
            rendered.push_str(&marker);
            return rendered;
        }
        let piece = pieces.pop().expect("not empty");
        rendered.truncate(rendered.len() - piece.len);
        line_width -= piece.width;
        shown_bytes -= piece.bytes;
    }
}

/// `… (+3.2 KiB, 4,310 bytes total; --full)`.
pub(crate) fn cut_marker(hidden_bytes: usize, total_bytes: usize) -> String {
    format!(
        "… (+{}, {} bytes total; --full)",
        human_bytes(hidden_bytes),
        thousands(total_bytes as u64)
    )
}

/// `512 B`, `3.2 KiB`, `1.5 MiB`.
pub(crate) fn human_bytes(bytes: usize) -> String {
    const KIB: f64 = 1024.0;
    let value = bytes as f64;
    if value < KIB {
        format!("{bytes} B")
    } else if value < KIB * KIB {
        format!("{:.1} KiB", value / KIB)
    } else if value < KIB * KIB * KIB {
        format!("{:.1} MiB", value / (KIB * KIB))
    } else {
        format!("{:.1} GiB", value / (KIB * KIB * KIB))
    }
}

/// `1,234,567`.
pub(crate) fn thousands(value: u64) -> String {
    let digits = value.to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    grouped
}

/// `1,234` for a count that may be missing or negative.
pub(crate) fn count(value: Option<i64>) -> String {
    match value {
        Some(value) if value < 0 => value.to_string(),
        Some(value) => thousands(value.unsigned_abs()),
        None => "-".to_owned(),
    }
}

/// `850 ms`, `12.3 s`, `4m 05s`, `2h 03m`.
pub(crate) fn duration(ms: Option<i64>) -> String {
    let Some(ms) = ms else {
        return "-".to_owned();
    };
    if ms < 0 {
        return format!("{ms} ms");
    }
    if ms < 1_000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1_000.0)
    } else if ms < 3_600_000 {
        format!("{}m {:02}s", ms / 60_000, (ms % 60_000) / 1_000)
    } else {
        format!("{}h {:02}m", ms / 3_600_000, (ms % 3_600_000) / 60_000)
    }
}

/// `$0.0123`; small non-zero costs keep two significant digits (`$0.000042`).
pub(crate) fn cost(usd: Option<f64>) -> String {
    cost_with(usd, cost_decimals([usd]))
}

/// The decimals a column of costs is printed with, the same for every figure so that they line
/// up and compare: four, or enough for the smallest non-zero cost to keep two significant
/// digits (at most twelve).
pub(crate) fn cost_decimals(costs: impl IntoIterator<Item = Option<f64>>) -> usize {
    costs
        .into_iter()
        .flatten()
        .filter(|usd| *usd != 0.0 && usd.is_finite())
        .map(|usd| ((-usd.abs().log10().floor()) as usize + 1).clamp(4, 12))
        .max()
        .unwrap_or(4)
}

/// `usd` with `decimals` decimals (see [`cost_decimals`]); `$0` for nothing spent.
pub(crate) fn cost_with(usd: Option<f64>, decimals: usize) -> String {
    match usd {
        None => "-".to_owned(),
        Some(0.0) => "$0".to_owned(),
        Some(usd) => format!("${usd:.decimals$}"),
    }
}

/// The stored RFC 3339 time as `2026-01-05 14:30:00` (UTC), or with microseconds; a value that
/// does not parse is shown escaped as it is.
pub(crate) fn time(stored: Option<&str>, precision: TimePrecision) -> String {
    let Some(stored) = stored else {
        return "-".to_owned();
    };
    match flujo_trace_core::parse_timestamp(stored) {
        Some(instant) => {
            let utc = instant.to_offset(time::UtcOffset::UTC);
            let seconds = format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
                utc.year(),
                u8::from(utc.month()),
                utc.day(),
                utc.hour(),
                utc.minute(),
                utc.second()
            );
            match precision {
                TimePrecision::ClockMillis => format!(
                    "{:02}:{:02}:{:02}.{:03}",
                    utc.hour(),
                    utc.minute(),
                    utc.second(),
                    utc.millisecond()
                ),
                TimePrecision::Seconds => seconds,
                TimePrecision::Micros => format!("{seconds}.{:06} UTC", utc.microsecond()),
            }
        }
        None => escape(stored),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TimePrecision {
    /// The time of day only, to the millisecond: `14:30:00.123` (lines of `--follow`).
    ClockMillis,
    Seconds,
    Micros,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_fit(text: &str, width: usize, max_lines: Option<usize>, expected: &str) {
        let actual = fit(
            text,
            Fit {
                width,
                max_lines,
                keep_newlines: false,
            },
        );
        assert_eq!(actual, expected, "{text:?} at {width}x{max_lines:?}");
        for line in actual.lines() {
            assert!(
                line.chars().map(char_width).sum::<usize>() <= width.max(8),
                "{line:?}"
            );
        }
    }

    #[test]
    fn fits() {
        check_fit("short", 20, Some(2), "short");
        check_fit("0123456789abcdef", 10, None, "0123456789\nabcdef");
        check_fit(
            &"x".repeat(100),
            40,
            Some(1),
            "xxxxx … (+95 B, 100 bytes total; --full)",
        );
        check_fit(
            &"y".repeat(5000),
            40,
            Some(2),
            &format!(
                "{}\n… (+4.8 KiB, 5,000 bytes total; --full)",
                "y".repeat(40)
            ),
        );
        // escapes are never split, and count as the bytes they stand for
        check_fit("a\u{1b}[2Jb", 40, Some(1), "a\\u{1b}[2Jb");
        check_fit("tab\there\r\nend", 40, None, "tab\\there\\r\\nend");
        // wide characters take two columns
        check_fit("日本語テキスト", 8, None, "日本語テ\nキスト");
    }

    #[test]
    fn keeps_newlines_when_asked_and_cuts_by_lines() {
        let text = "line 1\nline 2\nline 3\nline 4";
        let fitted = fit(
            text,
            Fit {
                width: 60,
                max_lines: Some(2),
                keep_newlines: true,
            },
        );
        assert_eq!(fitted, "line 1\nline 2 … (+14 B, 27 bytes total; --full)");
    }

    #[test]
    fn escapes_terminal_controls() {
        assert_eq!(escape("ok"), "ok");
        assert_eq!(escape("\u{1b}]0;pwned\u{7}"), "\\u{1b}]0;pwned\\u{7}");
        assert_eq!(escape("\u{9b}2J"), "\\u{9b}2J");
        assert_eq!(
            escape("a\u{202e}b\u{200b}c\0"),
            "a\\u{202e}b\\u{200b}c\\u{0}"
        );
        assert_eq!(escape("café ✓"), "café ✓");
    }

    #[test]
    fn format_characters_are_escaped_joiners_kept() {
        let hidden = [
            '\u{00ad}',
            '\u{061c}',
            '\u{180e}',
            '\u{200b}',
            '\u{200e}',
            '\u{200f}',
            '\u{2028}',
            '\u{2029}',
            '\u{202a}',
            '\u{202e}',
            '\u{2060}',
            '\u{2066}',
            '\u{2067}',
            '\u{2068}',
            '\u{2069}',
            '\u{feff}',
            '\u{fffb}',
            '\u{110bd}',
            '\u{1d173}',
        ];
        let tags = ('\u{e0000}'..='\u{e007f}').collect::<Vec<_>>();
        for c in hidden.into_iter().chain(tags) {
            assert!(is_hidden(c), "U+{:04X}", u32::from(c));
            assert_eq!(escape_char(c), Some(format!("\\u{{{:x}}}", u32::from(c))));
        }
        for c in [
            '\u{200c}',
            '\u{200d}',
            '\u{fe0f}',
            '\u{301}',
            'a',
            '✓',
            '\u{e0080}',
        ] {
            assert!(!is_hidden(c), "U+{:04X}", u32::from(c));
        }
        // an emoji ZWJ sequence and Persian with a non-joiner print as they are
        assert_eq!(
            escape("\u{1f469}\u{200d}\u{1f52c}"),
            "\u{1f469}\u{200d}\u{1f52c}"
        );
        assert_eq!(escape("می\u{200c}خواهم"), "می\u{200c}خواهم");
        // a tag sequence hidden in plain text does not
        assert_eq!(escape("ok\u{e0001}\u{e0069}"), "ok\\u{e0001}\\u{e0069}");
    }

    #[test]
    fn invisible_ranges_are_sorted_and_apart() {
        for (first, last) in INVISIBLE {
            assert!(first <= last, "{first:?}..{last:?}");
        }
        for pair in INVISIBLE.windows(2) {
            assert!(pair[0].1 < pair[1].0, "{pair:?}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3_277), "3.2 KiB");
        assert_eq!(human_bytes(1_572_864), "1.5 MiB");
        assert_eq!(duration(Some(850)), "850 ms");
        assert_eq!(duration(Some(12_345)), "12.3 s");
        assert_eq!(duration(Some(245_000)), "4m 05s");
        assert_eq!(duration(Some(7_380_000)), "2h 03m");
        assert_eq!(duration(None), "-");
        assert_eq!(cost(Some(0.0123)), "$0.0123");
        assert_eq!(cost(Some(0.0)), "$0");
        assert_eq!(cost(Some(0.000042)), "$0.000042");
        assert_eq!(cost(Some(12.5)), "$12.5000");
        assert_eq!(cost(None), "-");
        // a column: one number of decimals for every figure
        let column = [Some(0.000236), Some(0.000011), None, Some(0.0), Some(1.5)];
        let decimals = cost_decimals(column);
        let shown: Vec<String> = column.iter().map(|c| cost_with(*c, decimals)).collect();
        assert_eq!(shown, ["$0.000236", "$0.000011", "-", "$0", "$1.500000"]);
        assert_eq!(cost_decimals([Some(0.5), None]), 4);
        assert_eq!(cost_decimals([None]), 4);
    }

    #[test]
    fn times() {
        let stored = Some("2026-01-05T14:30:00.123456Z");
        assert_eq!(time(stored, TimePrecision::Seconds), "2026-01-05 14:30:00");
        assert_eq!(
            time(stored, TimePrecision::Micros),
            "2026-01-05 14:30:00.123456 UTC"
        );
        assert_eq!(
            time(Some("garbage\u{1b}"), TimePrecision::Seconds),
            "garbage\\u{1b}"
        );
    }
}
