//! Step errors: what a step returns when it fails, and how a failure becomes a message.

use std::any::Any;
use std::error::Error;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

/// A boxed error, for code that already has one: [`StepError::from_boxed`] takes it.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// Why a step failed: the error its function returned, or its timeout, or its panic.
///
/// A step function returns `Result<Out, StepError>`, so `Ok(value)` needs no annotation and `?`
/// converts any `std::error::Error + Send + Sync + 'static` into it; [`StepError::new`] makes one
/// from text. Like `anyhow::Error`, it dereferences to `dyn Error`, so the error the step
/// returned is still there: [`source`](Error::source) walks its causes and
/// [`downcast_ref`](StepError::downcast_ref) gets your own type back. (For that reason
/// `StepError` does not itself implement `std::error::Error`.)
///
/// A run that fails hands the failing step's `StepError` to its caller in
/// [`PipelineResult::step_error`](crate::PipelineResult::step_error); a retry predicate
/// ([`Step::retry_if`](crate::Step::retry_if)) sees each attempt's.
///
/// ```
/// use flujo_runner::StepError;
///
/// #[derive(Debug, thiserror::Error)]
/// #[error("rate limited")]
/// struct RateLimited;
///
/// let error = StepError::from(RateLimited).transient();
/// assert!(error.is_transient());
/// assert!(error.downcast_ref::<RateLimited>().is_some());
/// assert_eq!(StepError::new("no such customer").to_string(), "no such customer");
/// ```
#[derive(Clone)]
pub struct StepError {
    error: Arc<dyn Error + Send + Sync + 'static>,
    kind: Kind,
    transient: bool,
}

/// What made the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// The step's function returned it.
    Returned,
    /// The attempt ran past the step's timeout.
    TimedOut,
    /// The attempt panicked.
    Panicked,
}

/// A message as an error (what [`StepError::new`] wraps).
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}

impl StepError {
    /// An error with this message.
    pub fn new(message: impl fmt::Display) -> Self {
        StepError::of(Arc::new(Message(message.to_string())), Kind::Returned)
    }

    /// An error from one already boxed (`Box<dyn Error + Send + Sync>`).
    pub fn from_boxed(error: BoxError) -> Self {
        StepError::of(Arc::from(error), Kind::Returned)
    }

    fn of(error: Arc<dyn Error + Send + Sync + 'static>, kind: Kind) -> Self {
        StepError {
            error,
            kind,
            transient: false,
        }
    }

    /// The error of an attempt still running after `limit`.
    pub(crate) fn timed_out(limit: Duration) -> Self {
        StepError::of(
            Arc::new(Message(format!("timed out after {limit:?}"))),
            Kind::TimedOut,
        )
    }

    /// The error of an attempt that panicked with this message.
    pub(crate) fn panicked(message: String) -> Self {
        StepError::of(Arc::new(Message(message)), Kind::Panicked)
    }

    /// Marks the error as transient (worth retrying: a rate limit, an overloaded endpoint), for
    /// a retry predicate to look at with [`is_transient`](StepError::is_transient).
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }

    /// Whether the step marked the error [`transient`](StepError::transient).
    pub fn is_transient(&self) -> bool {
        self.transient
    }

    /// Whether the attempt ran past the step's [`timeout`](crate::Step::timeout).
    pub fn is_timeout(&self) -> bool {
        self.kind == Kind::TimedOut
    }

    /// Whether the attempt panicked (the error's text is the panic's message).
    pub fn is_panic(&self) -> bool {
        self.kind == Kind::Panicked
    }

    /// The error the step returned, when it is an `E`.
    pub fn downcast_ref<E: Error + 'static>(&self) -> Option<&E> {
        let error: &(dyn Error + 'static) = &*self.error;
        error.downcast_ref::<E>()
    }

    /// The error as the recorded text says it: `step '<name>' failed: <error and its sources>`,
    /// `step '<name>' timed out after <limit>` or `step '<name>' panicked: <message>`.
    pub(crate) fn step_message(&self, step_name: &str) -> String {
        match self.kind {
            Kind::Returned => format!("step '{step_name}' failed: {}", error_chain(&*self.error)),
            Kind::TimedOut => format!("step '{step_name}' {}", self.error),
            Kind::Panicked => format!("step '{step_name}' panicked: {}", self.error),
        }
    }
}

impl<E: Error + Send + Sync + 'static> From<E> for StepError {
    fn from(error: E) -> Self {
        StepError::of(Arc::new(error), Kind::Returned)
    }
}

impl Deref for StepError {
    type Target = dyn Error + Send + Sync + 'static;

    fn deref(&self) -> &Self::Target {
        &*self.error
    }
}

impl AsRef<dyn Error + Send + Sync + 'static> for StepError {
    fn as_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.error
    }
}

impl fmt::Display for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.error, f)
    }
}

impl fmt::Debug for StepError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepError")
            .field("error", &self.error)
            .field("kind", &self.kind)
            .field("transient", &self.transient)
            .finish()
    }
}

/// How a step execution failed, as it travels up to the run: the message recorded (a
/// control-flow step passes its child's up unchanged) and the error value of the step that
/// failed.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) message: String,
    pub(crate) error: StepError,
}

impl Failure {
    /// A failure of a control-flow step itself (a loop at its limit, a missing branch, a
    /// context that cannot be used): the message is the recorded text and the error's.
    pub(crate) fn of_message(message: String) -> Self {
        Failure {
            error: StepError::new(&message),
            message,
        }
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
