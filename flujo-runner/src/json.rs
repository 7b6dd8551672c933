//! JSON for results and span fields: values never fail (a value serde cannot represent, or whose
//! `Serialize` panics, becomes a placeholder and an error message), and span text is made only
//! when asked for, with secrets redacted (see `scrub`).

use crate::error::panic_message;
use crate::scrub::RunRedaction;
use serde::Serialize;
use serde_json::Value;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Why a value could not be serialised: serde's error, or the message of a panic in `Serialize`.
pub(crate) type NotSerialisable = String;

/// Runs one serialisation, turning a panic of the value's `Serialize` into an error.
fn guarded<R>(serialise: impl FnOnce() -> serde_json::Result<R>) -> Result<R, NotSerialisable> {
    match catch_unwind(AssertUnwindSafe(serialise)) {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(error)) => Err(error.to_string()),
        Err(payload) => Err(format!(
            "its Serialize implementation panicked: {}",
            panic_message(&*payload)
        )),
    }
}

/// What a value that could not be serialised is recorded as.
pub(crate) fn placeholder(error: &str) -> Value {
    Value::String(format!("<not serialisable as JSON: {error}>"))
}

/// The value as JSON; when it cannot be serialised, a placeholder and the reason.
pub(crate) fn to_json_value<T: Serialize + ?Sized>(value: &T) -> (Value, Option<NotSerialisable>) {
    match guarded(|| serde_json::to_value(value)) {
        Ok(json) => (json, None),
        Err(error) => (placeholder(&error), Some(error)),
    }
}

/// The message recorded in a span's or a result's `error` when `what` (`output of step 'x'`)
/// could not be serialised.
pub(crate) fn not_serialisable_message(what: &str, error: &str) -> String {
    format!(
        "{what} could not be serialised as JSON and was recorded as a placeholder: {error} \
         (make its Serialize implementation succeed to record it)"
    )
}

/// Span text for a value already made into JSON, secrets redacted and scrubbed.
pub(crate) fn span_text_of_value(value: &Value, redaction: &RunRedaction) -> String {
    redaction.json_text_of_value(value)
}

/// Span text for a value, secrets redacted and scrubbed; when it cannot be serialised, a
/// placeholder (scrubbed too) and the reason. Serialises straight to text, and again to a
/// `Value` only when the text holds a secret key.
pub(crate) fn span_text<T: Serialize + ?Sized>(
    value: &T,
    redaction: &RunRedaction,
) -> (String, Option<NotSerialisable>) {
    match guarded(|| serde_json::to_string(value)) {
        Ok(text) => redaction.json_text(text, || guarded(|| serde_json::to_value(value))),
        Err(error) => (
            redaction.json_text_of_value(&placeholder(&error)),
            Some(error),
        ),
    }
}
