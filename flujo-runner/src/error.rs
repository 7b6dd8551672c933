//! Step errors: what a step returns when it fails, and how a failure becomes a message.

use std::any::Any;
use std::error::Error;

/// Any error a step can return: `?` converts every `std::error::Error + Send + Sync` into it,
/// and `"text".into()` or `String::into()` make one from a message.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// An error with a message, for steps that fail for a reason of their own.
///
/// A step may return any error type that converts into [`BoxError`] (`StepError`, `String`,
/// `&str`, any `std::error::Error`); `StepError` is the one to name when a closure's error type
/// needs annotating: `Ok::<_, StepError>(value)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct StepError {
    message: String,
}

impl StepError {
    /// An error with this message.
    pub fn new(message: impl std::fmt::Display) -> Self {
        StepError {
            message: message.to_string(),
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for StepError {
    fn from(message: String) -> Self {
        StepError { message }
    }
}

impl From<&str> for StepError {
    fn from(message: &str) -> Self {
        StepError::new(message)
    }
}

/// The error's message followed by those of its sources, `: `-separated, skipping a source whose
/// text the message already contains.
pub(crate) fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&'static str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic payload that is not a string".to_owned()
    }
}
