//! The lens's failures and the documented exit code each maps to.

use std::io::Write;

/// Exit code: the command did what was asked.
pub const EXIT_SUCCESS: u8 = 0;
/// Exit code: nothing found (no run matches, or RUN names no run or several), or `prune` was not
/// confirmed (nothing deleted).
pub const EXIT_NOTHING_FOUND: u8 = 1;
/// Exit code: bad arguments, unusable configuration, an unusable database, or `prune` without
/// `--yes` and no terminal to ask on.
pub const EXIT_USAGE: u8 = 2;

/// Exit code of `--follow`: the run failed.
pub const EXIT_RUN_FAILED: u8 = 3;
/// Exit code of `--follow`: the run was cancelled.
pub const EXIT_RUN_CANCELLED: u8 = 4;
/// Exit code of `--follow`: the run's process died before it ended (crashed).
pub const EXIT_RUN_CRASHED: u8 = 5;
/// Exit code of `--follow` stopped by Ctrl-C (SIGINT) or SIGTERM before the run ended, as a
/// shell reports a process ended by SIGINT.
pub const EXIT_INTERRUPTED: u8 = 130;

/// Why a lens command stopped.
#[derive(Debug)]
pub(crate) enum LensError {
    /// Nothing matched, or `prune` was not confirmed; the message (one or more lines) says what
    /// was looked for.
    NothingFound(String),
    /// Bad arguments or configuration detected by the lens itself.
    Usage(String),
    /// Opening or reading the database failed.
    Database(flujo_trace_sqlite::Error),
    /// Opening or reading a PostgreSQL store failed.
    Postgres(flujo_trace_postgres::Error),
    /// `diff`: the runs differ (the difference was printed; exit code 1, as diff(1)).
    Different,
    /// `--follow`: the run ended with this exit code's status (already printed).
    RunEnded(u8),
    /// `--follow`: stopped by a signal before the run ended.
    Interrupted,
    /// Writing the output failed (a closed pipe is not an error: the reader had enough).
    Output(std::io::Error),
}

impl From<flujo_trace_sqlite::Error> for LensError {
    fn from(error: flujo_trace_sqlite::Error) -> LensError {
        match error {
            flujo_trace_sqlite::Error::Config { message } => LensError::Usage(message),
            error => LensError::Database(error),
        }
    }
}

impl From<flujo_trace_postgres::Error> for LensError {
    fn from(error: flujo_trace_postgres::Error) -> LensError {
        match error {
            flujo_trace_postgres::Error::Config { message } => LensError::Usage(message),
            error => LensError::Postgres(error),
        }
    }
}

impl From<std::io::Error> for LensError {
    fn from(error: std::io::Error) -> LensError {
        LensError::Output(error)
    }
}

impl LensError {
    /// Writes the message to `stderr` and returns the exit code.
    pub(crate) fn report(self, stderr: &mut dyn Write) -> u8 {
        let (code, message) = match self {
            LensError::NothingFound(message) => (EXIT_NOTHING_FOUND, message),
            LensError::Different => return EXIT_NOTHING_FOUND,
            LensError::RunEnded(code) => return code,
            LensError::Interrupted => return EXIT_INTERRUPTED,
            LensError::Usage(message) => (EXIT_USAGE, format!("error: {message}")),
            LensError::Database(error) => (EXIT_USAGE, format!("error: {error}")),
            LensError::Postgres(error) => (EXIT_USAGE, format!("error: {error}")),
            LensError::Output(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {
                return EXIT_SUCCESS;
            }
            LensError::Output(error) => (
                EXIT_USAGE,
                format!("error: cannot write the output: {error}"),
            ),
        };
        // if stderr is gone too there is no one left to tell
        let _ = writeln!(stderr, "{message}");
        let _ = stderr.flush();
        code
    }
}
