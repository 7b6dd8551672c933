//! JSON for results and span fields: values never fail, text is made only when asked for.

use serde::Serialize;
use serde_json::Value;

/// The value as JSON; a value serde cannot represent becomes a string saying why.
pub(crate) fn to_json_value<T: Serialize + ?Sized>(value: &T) -> Value {
    serde_json::to_value(value)
        .unwrap_or_else(|error| Value::String(format!("<not serialisable as JSON: {error}>")))
}

/// The value as JSON text; a value serde cannot represent becomes a JSON string saying why.
pub(crate) fn to_json_string<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|error| {
        Value::String(format!("<not serialisable as JSON: {error}>")).to_string()
    })
}
