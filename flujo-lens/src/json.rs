//! JSON output: the run and step objects documented in the crate root, written one per line.
//!
//! Stored payloads that are JSON are embedded byte for byte (never re-encoded, so no number loses
//! precision); anything else becomes a JSON string. The written text escapes, as `\uXXXX`, the
//! controls and invisible characters serde_json passes through (`text::is_hidden`, the one list),
//! so JSON printed to a terminal cannot drive it either, and still means the same value.

use std::io::Write;

use flujo_trace_sqlite::{RunPage, RunRecord, StepRecord, WriterProcess};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::text::is_hidden;

/// A stored payload: its JSON text when it is JSON, else the text as a string.
#[derive(Debug)]
pub(crate) enum Payload<'a> {
    Json(&'a RawValue),
    /// JSON stored with line breaks, re-written on one line (whitespace between tokens dropped).
    Minified(Box<RawValue>),
    Text(&'a str),
}

impl Serialize for Payload<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Payload::Json(raw) => raw.serialize(serializer),
            Payload::Minified(raw) => raw.serialize(serializer),
            Payload::Text(text) => text.serialize(serializer),
        }
    }
}

fn payload(blob: Option<&str>) -> Option<Payload<'_>> {
    let blob = blob?;
    Some(match serde_json::from_str::<&RawValue>(blob) {
        Ok(raw) if raw.get().contains(['\n', '\r']) => {
            match RawValue::from_string(minify(raw.get())) {
                Ok(minified) => Payload::Minified(minified),
                Err(_) => Payload::Text(blob),
            }
        }
        Ok(raw) => Payload::Json(raw),
        Err(_) => Payload::Text(blob),
    })
}

/// Valid JSON text without the whitespace between its tokens (strings untouched).
fn minify(json: &str) -> String {
    let mut minified = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            minified.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            minified.push(c);
        } else if !c.is_ascii_whitespace() {
            minified.push(c);
        }
    }
    minified
}

/// A run as `list` and `show` print it.
#[derive(Debug, Serialize)]
pub(crate) struct RunJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'static str>,
    run_id: &'a str,
    /// The end of `run_id` that no other run's id ends with (8 to 12 characters): what `list`
    /// shows and every RUN argument accepts.
    #[serde(skip_serializing_if = "Option::is_none")]
    short_id: Option<&'a str>,
    pipeline_name: &'a str,
    pipeline_version: &'a str,
    status: &'a str,
    start_time: &'a str,
    end_time: Option<&'a str>,
    duration_ms: Option<i64>,
    total_cost: Option<f64>,
    total_tokens: Option<i64>,
    n_steps: Option<i64>,
    writer: Option<&'a WriterProcess>,
    /// The OpenTelemetry trace id of an exported run.
    trace_id: Option<&'a str>,
    #[serde(flatten)]
    detail: Option<RunDetailJson<'a>>,
}

#[derive(Debug, Serialize)]
struct RunDetailJson<'a> {
    input: Option<Payload<'a>>,
    output: Option<Payload<'a>>,
    final_context: Option<Payload<'a>>,
    error: Option<&'a str>,
}

/// Whether a run object carries the payloads (`show`) or not (`list`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunShape {
    Summary,
    Detail,
}

impl<'a> RunJson<'a> {
    pub(crate) fn new(run: &'a RunRecord, shape: RunShape, record: Option<&'static str>) -> Self {
        RunJson {
            record,
            run_id: &run.run_id,
            short_id: None,
            pipeline_name: &run.pipeline_name,
            pipeline_version: &run.pipeline_version,
            status: &run.status,
            start_time: &run.start_time,
            end_time: run.end_time.as_deref(),
            duration_ms: run.duration_ms,
            total_cost: run.total_cost,
            total_tokens: run.total_tokens,
            n_steps: run.n_steps,
            writer: run.writer.as_ref(),
            trace_id: run.trace_id.as_deref(),
            detail: (shape == RunShape::Detail).then(|| RunDetailJson {
                input: payload(run.input_blob.as_deref()),
                output: payload(run.output_blob.as_deref()),
                final_context: payload(run.final_context_blob.as_deref()),
                error: run.error_blob.as_deref(),
            }),
        }
    }
}

impl<'a> RunJson<'a> {
    /// The run with its short id.
    pub(crate) fn with_short_id(self, short_id: &'a str) -> Self {
        RunJson {
            short_id: Some(short_id),
            ..self
        }
    }
}

/// A step as `show` prints it.
#[derive(Debug, Serialize)]
pub(crate) struct StepJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    record: Option<&'static str>,
    step_run_id: &'a str,
    parent_step_run_id: Option<&'a str>,
    step_name: &'a str,
    step_index: i64,
    step_kind: Option<&'a str>,
    status: &'a str,
    attempts: Option<i64>,
    fallback_taken: Option<bool>,
    start_time: &'a str,
    end_time: Option<&'a str>,
    duration_ms: Option<i64>,
    cost: Option<f64>,
    tokens: Option<i64>,
    input: Option<Payload<'a>>,
    output: Option<Payload<'a>>,
    error: Option<&'a str>,
}

impl<'a> StepJson<'a> {
    /// `status` is the step's status as shown (a step left running by a crashed run is `crashed`).
    pub(crate) fn new(step: &'a StepRecord, status: &'a str, record: Option<&'static str>) -> Self {
        StepJson {
            record,
            step_run_id: &step.step_run_id,
            parent_step_run_id: step.parent_step_run_id.as_deref(),
            step_name: &step.step_name,
            step_index: step.step_index,
            step_kind: step.step_kind.as_deref(),
            status,
            attempts: step.attempts,
            fallback_taken: step.fallback_taken,
            start_time: &step.start_time,
            end_time: step.end_time.as_deref(),
            duration_ms: step.duration_ms,
            cost: step.cost,
            tokens: step.tokens,
            input: payload(step.input_blob.as_deref()),
            output: payload(step.output_blob.as_deref()),
            error: step.error_blob.as_deref(),
        }
    }
}

/// `list -o json`.
#[derive(Debug, Serialize)]
pub(crate) struct ListJson<'a> {
    pub(crate) runs: Vec<RunJson<'a>>,
    pub(crate) matching: MatchingJson,
    pub(crate) limit: usize,
}

#[derive(Debug, Serialize)]
pub(crate) struct MatchingJson {
    count: u64,
    exact: bool,
    /// Only when the search for `running` or `crashed` runs stopped after this many runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_after: Option<u64>,
}

impl MatchingJson {
    pub(crate) fn of(page: &RunPage) -> MatchingJson {
        MatchingJson {
            count: page.matching.count,
            exact: page.matching.exact,
            stopped_after: page.stopped_after,
        }
    }
}

/// Writes `value` as compact JSON, made terminal-safe, without a line break.
pub(crate) fn write(out: &mut dyn Write, value: &impl Serialize) -> std::io::Result<()> {
    let text = serde_json::to_string(value).map_err(std::io::Error::other)?;
    out.write_all(terminal_safe(&text).as_bytes())
}

/// Writes `value` as one line of JSON.
pub(crate) fn write_line(out: &mut dyn Write, value: &impl Serialize) -> std::io::Result<()> {
    write(out, value)?;
    out.write_all(b"\n")
}

/// Escapes, as `\uXXXX` (a UTF-16 surrogate pair beyond U+FFFF), the hidden characters
/// (`text::is_hidden`) serde_json leaves raw. In JSON text these can only occur inside strings,
/// where the escape means the same character; line breaks and tabs between tokens stay.
fn terminal_safe(json: &str) -> std::borrow::Cow<'_, str> {
    let needs = |c: char| is_hidden(c) && !matches!(c, '\n' | '\t' | '\r');
    if !json.chars().any(needs) {
        return std::borrow::Cow::Borrowed(json);
    }
    let mut safe = String::with_capacity(json.len() + 16);
    let mut units = [0u16; 2];
    for c in json.chars() {
        if needs(c) {
            for unit in c.encode_utf16(&mut units) {
                safe.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            safe.push(c);
        }
    }
    std::borrow::Cow::Owned(safe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_safe_json_means_the_same() {
        let value = serde_json::json!({"s": "a\u{9b}2J\u{202e}b\u{1b}c"});
        let text = serde_json::to_string(&value).unwrap();
        let safe = terminal_safe(&text);
        assert!(!safe.contains('\u{9b}') && !safe.contains('\u{202e}') && !safe.contains('\u{1b}'));
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn format_characters_are_escaped_as_json_and_joiners_kept() {
        let hidden = "soft\u{ad}hyphen mvs\u{180e} zw\u{200b} fsi\u{2068}x\u{2069} bom\u{feff} \
                      tag\u{e0001}\u{e0067}\u{e007f}";
        let kept = "\u{1f469}\u{200d}\u{1f52c} می\u{200c}خواهم";
        let value = serde_json::json!({"hidden": hidden, "kept": kept});
        let text = serde_json::to_string(&value).unwrap();
        let safe = terminal_safe(&text);
        assert!(!safe.chars().any(is_hidden), "{safe}");
        assert!(
            safe.contains("\\u00ad") && safe.contains("\\u180e"),
            "{safe}"
        );
        // beyond the BMP: a surrogate pair, as JSON spells it
        assert!(
            safe.contains("\\udb40\\udc01\\udb40\\udc67\\udb40\\udc7f"),
            "{safe}"
        );
        assert!(safe.contains(kept), "joiners are kept raw: {safe}");
        let back: serde_json::Value = serde_json::from_str(&safe).unwrap();
        assert_eq!(back, value, "the same value, byte for byte once parsed");
    }

    #[test]
    fn payloads_embed_json_and_quote_text() {
        let json = serde_json::to_string(&payload(Some("{\"n\": 12345678901234567890}"))).unwrap();
        assert_eq!(json, "{\"n\": 12345678901234567890}");
        let text = serde_json::to_string(&payload(Some("not json {"))).unwrap();
        assert_eq!(text, "\"not json {\"");
        assert_eq!(serde_json::to_string(&payload(None)).unwrap(), "null");
        let pretty = "{\n  \"a b\": [1,\n 2],\n  \"q\": \"x \\\" y\"\n}";
        let json = serde_json::to_string(&payload(Some(pretty))).unwrap();
        assert_eq!(json, "{\"a b\":[1,2],\"q\":\"x \\\" y\"}");
    }
}
