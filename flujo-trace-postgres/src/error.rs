//! What can go wrong with a PostgreSQL store, in messages that name the store without its
//! password and say what to do.

use flujo_trace_core::PostgresUri;

/// A PostgreSQL store could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URI or an option in it cannot be honoured.
    #[error("{message}")]
    Config {
        /// The whole message.
        message: String,
    },
    /// The server refused the password or the user.
    #[error("cannot log in to PostgreSQL at {store}: {message} (check the user and password in the URI, or PGPASSWORD)")]
    Auth {
        /// The store, its password hidden.
        store: String,
        /// The server's message.
        message: String,
    },
    /// The database named in the URI does not exist.
    #[error("PostgreSQL at {store}: {message} (create it, e.g. `createdb`, or fix the database name in the URI)")]
    MissingDatabase {
        /// The store, its password hidden.
        store: String,
        /// The server's message.
        message: String,
    },
    /// The server cannot be reached.
    #[error("cannot reach PostgreSQL at {store}: {message}")]
    Unreachable {
        /// The store, its password hidden.
        store: String,
        /// What failed.
        message: String,
    },
    /// TLS was asked for and could not be had: the server offers none, or its certificate fails
    /// the check `sslmode` asks for.
    #[error("cannot connect securely to PostgreSQL at {store}: {message}")]
    Tls {
        /// The store, its password hidden.
        store: String,
        /// What failed and what to do.
        message: String,
    },
    /// The database has no flujo tables (nothing recorded there yet).
    #[error("PostgreSQL at {store} holds no flujo runs yet (no flujo_schema table): run a pipeline with FLUJO_STATE_URI set to it first")]
    NotAFlujoDatabase {
        /// The store, its password hidden.
        store: String,
    },
    /// The database was written by a newer flujo.
    #[error("PostgreSQL at {store} has flujo schema version {found}, newer than this flujo reads ({supported}): upgrade flujo")]
    TooNew {
        /// The store, its password hidden.
        store: String,
        /// The version found.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// A query failed.
    #[error("PostgreSQL at {store}: {message}")]
    Query {
        /// The store, its password hidden.
        store: String,
        /// What failed.
        message: String,
    },
}

impl Error {
    /// The message without the store's name, for warnings that name the store already.
    pub(crate) fn cause(&self) -> String {
        match self {
            Error::Auth { message, .. } => {
                format!("{message} (check the user and password in the URI, or PGPASSWORD)")
            }
            Error::MissingDatabase { message, .. } => format!(
                "{message} (create it, e.g. `createdb`, or fix the database name in the URI)"
            ),
            Error::Unreachable { message, .. }
            | Error::Query { message, .. }
            | Error::Tls { message, .. } => message.clone(),
            Error::Config { message } => message.clone(),
            other => other.to_string(),
        }
    }

    /// Classifies a client error of the store `uri`. Server messages never hold the password
    /// (the client sends it only in the authentication exchange).
    pub(crate) fn from_client(uri: &PostgresUri, error: &postgres::Error) -> Error {
        use postgres::error::SqlState;
        let store = uri.redacted();
        let message = describe(error);
        match error.code() {
            Some(code)
                if *code == SqlState::INVALID_PASSWORD
                    || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION =>
            {
                Error::Auth { store, message }
            }
            Some(code) if *code == SqlState::INVALID_CATALOG_NAME => {
                Error::MissingDatabase { store, message }
            }
            Some(_) => Error::Query { store, message },
            None => Error::Unreachable { store, message },
        }
    }
}

/// The server's message (with its detail and hint), or the client's own.
pub(crate) fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut message = db.message().to_owned();
            if let Some(detail) = db.detail() {
                message.push_str(": ");
                message.push_str(detail);
            }
            if let Some(hint) = db.hint() {
                message.push_str(" (");
                message.push_str(hint);
                message.push(')');
            }
            message
        }
        None => {
            // the client's errors chain their cause (e.g. "error connecting to server" caused by
            // "Connection refused (os error 111)")
            let mut message = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !message.contains(&cause_text) {
                    message.push_str(": ");
                    message.push_str(&cause_text);
                }
                source = cause.source();
            }
            message
        }
    }
}
