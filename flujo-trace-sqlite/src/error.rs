//! The crate's error type: every variant names the path it is about and says what to do next.

use std::path::PathBuf;

/// Errors of opening, configuring, reading or writing a flujo database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No database file at the path (read-only opens never create one).
    #[error("no flujo database at {}: run a pipeline first, or set FLUJO_STATE_URI", .path.display())]
    NotFound {
        /// The path looked at.
        path: PathBuf,
    },
    /// The file is SQLite but holds no flujo tables, or is not SQLite at all.
    #[error("{} is not a flujo database: point --state-uri or FLUJO_STATE_URI at the flujo_ops.db your pipelines write", .path.display())]
    NotAFlujoDatabase {
        /// The path.
        path: PathBuf,
    },
    /// SQLite reports the file as damaged.
    #[error("{} is corrupt ({reason}): it was left untouched; restore it from a backup or move it aside", .path.display())]
    Corrupt {
        /// The path.
        path: PathBuf,
        /// What SQLite said.
        reason: String,
    },
    /// A database cannot be created because its directory does not exist.
    #[error("cannot create {}: directory {} does not exist: create it or point FLUJO_STATE_URI elsewhere", .path.display(), .directory.display())]
    MissingDirectory {
        /// The database file asked for.
        path: PathBuf,
        /// Its directory, which is missing.
        directory: PathBuf,
    },
    /// The database was written by a newer flujo.
    #[error("{} has schema version {found}, newer than the {supported} this flujo knows: upgrade flujo", .path.display())]
    TooNew {
        /// The path.
        path: PathBuf,
        /// `PRAGMA user_version` of the file.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// `save_run_end` was given a run id the database has no run for.
    #[error("{} has no run {run_id}: record the run's start with save_run_start first", .path.display())]
    UnknownRun {
        /// The path.
        path: PathBuf,
        /// The run id asked for.
        run_id: String,
    },
    /// A `flujo.toml` or `FLUJO_STATE_URI` could not be used.
    #[error("{message}")]
    Config {
        /// The whole message, naming the file or variable and what to do.
        message: String,
    },
    /// Any other SQLite failure, with the path it happened on.
    #[error("{}: {source}", .path.display())]
    Sqlite {
        /// The path.
        path: PathBuf,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// An I/O failure, with the path it happened on.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl From<flujo_trace_core::ConfigError> for Error {
    fn from(error: flujo_trace_core::ConfigError) -> Error {
        Error::Config {
            message: error.message,
        }
    }
}
