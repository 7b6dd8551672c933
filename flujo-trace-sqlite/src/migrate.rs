//! The schema (`schema/*.sql`) and the one migration driver that creates and upgrades databases.
//!
//! A database's version is its `PRAGMA user_version`. [`open_for_writing`] creates a new database
//! at the newest version, upgrades an older one inside one IMMEDIATE transaction, and refuses a
//! newer one or a file that is not a flujo database without writing a byte to it.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::Error;

/// The newest schema version this build writes and reads (`PRAGMA user_version`): the core's
/// one numbering, which every store follows.
pub(crate) const SCHEMA_VERSION: i64 = flujo_trace_core::SCHEMA_VERSION;

/// Version 1: the DDL of FSD-08 section 5.2.
const V1: &str = include_str!("schema/v1.sql");

/// The page size of new databases by default (see `open_for_writing`).
pub(crate) const PAGE_SIZE: i64 = 16 * 1024;

/// How long a writer waits for another connection's lock before giving up.
pub(crate) const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The columns every flujo database has since version 1, by table.
const V1_TABLES: [(&str, &[&str]); 2] = [
    (
        "runs",
        &[
            "run_id",
            "pipeline_name",
            "pipeline_version",
            "status",
            "start_time",
            "end_time",
            "total_cost",
            "final_context_blob",
        ],
    ),
    (
        "steps",
        &[
            "step_run_id",
            "run_id",
            "step_name",
            "step_index",
            "status",
            "start_time",
            "end_time",
            "duration_ms",
            "cost",
            "tokens",
            "input_blob",
            "output_blob",
            "error_blob",
        ],
    ),
];

/// The SQL that upgrades a database of version `version` to `version + 1`.
fn upgrade_from(version: i64) -> &'static str {
    match version {
        1 => include_str!("schema/v1_to_v2.sql"),
        2 => include_str!("schema/v2_to_v3.sql"),
        3 => include_str!("schema/v3_to_v4.sql"),
        4 => include_str!("schema/v4_to_v5.sql"),
        5 => include_str!("schema/v5_to_v6.sql"),
        6 => include_str!("schema/v6_to_v7.sql"),
        _ => unreachable!(
            "no upgrade from schema version {version}: SCHEMA_VERSION is {SCHEMA_VERSION}"
        ),
    }
}

/// Opens the database at `path` for writing: creates it (mode 0600) when missing, refuses a
/// newer or foreign file untouched, upgrades an older one, and sets WAL, `synchronous=NORMAL`,
/// `foreign_keys=ON` and the busy timeout.
pub(crate) fn open_for_writing(
    path: &Path,
    busy_timeout: Duration,
    page_size: i64,
) -> Result<Connection, Error> {
    create_owner_only(path)?;
    let sqlite = |source| Error::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX
        | OpenFlags::SQLITE_OPEN_URI;
    let mut conn = Connection::open_with_flags(path, flags).map_err(|e| classify(path, e))?;
    conn.busy_timeout(busy_timeout).map_err(sqlite)?;

    // Everything up to here only reads: a foreign, corrupt or too new file stays untouched.
    let version = existing_version(&conn, path)?;
    if version > SCHEMA_VERSION {
        return Err(Error::TooNew {
            path: path.to_path_buf(),
            found: version,
            supported: SCHEMA_VERSION,
        });
    }

    // A new database returns the pages its runs free to the file system only when asked
    // (`PRAGMA incremental_vacuum`, by `prune`), without the exclusive lock of a full VACUUM.
    // This only takes effect before the first table is created; on an existing database it
    // changes nothing, and of two processes creating one database the first to commit wins.
    //
    // The page size (`SqliteLayerBuilder::with_page_size`, 16 KiB by default). A step with ~1 KB
    // of input and output is a row of ~2.3 KB: a 4 KiB page holds one, leaving almost half of it
    // empty (2.2x the payload bytes on disk), a 16 KiB page seven (1.27x, with the run's output
    // kept once). `cargo xtask bench overhead` prints both side by side, with what each costs
    // the typical pipeline and a run's commit.
    if version == 0 {
        conn.pragma_update(None, "page_size", page_size)
            .map_err(sqlite)?;
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(sqlite)?;
    }

    // `journal_mode` returns a row and cannot change inside a transaction.
    conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get::<_, String>(0))
        .map_err(|e| classify(path, e))?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(sqlite)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(sqlite)?;

    if version < SCHEMA_VERSION {
        migrate(&mut conn).map_err(|e| classify(path, e))?;
    }
    Ok(conn)
}

/// Creates an empty file readable and writable by its owner only, unless one exists; SQLite then
/// gives its `-wal` and `-shm` files the same mode.
fn create_owner_only(path: &Path) -> Result<(), Error> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => {
            let directory = match path.parent() {
                Some(parent) if parent.as_os_str().is_empty() => Path::new("."),
                Some(parent) => parent,
                None => Path::new("/"),
            };
            if source.kind() == ErrorKind::NotFound && !directory.exists() {
                return Err(Error::MissingDirectory {
                    path: path.to_path_buf(),
                    directory: directory.to_path_buf(),
                });
            }
            Err(Error::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    }
}

/// Caps the size of the database file at `max_db_bytes` (whole pages) for this connection.
pub(crate) fn set_max_db_bytes(
    conn: &Connection,
    path: &Path,
    max_db_bytes: u64,
) -> Result<(), Error> {
    let sqlite = |source| Error::Sqlite {
        path: path.to_path_buf(),
        source,
    };
    let page_size: i64 = conn
        .pragma_query_value(None, "page_size", |row| row.get(0))
        .map_err(sqlite)?;
    let pages = max_db_bytes / u64::try_from(page_size.max(1)).unwrap_or(4096);
    let pages = i64::try_from(pages.max(1)).unwrap_or(i64::MAX);
    // SQLite answers with the cap it applied (never below the current size)
    conn.pragma_update_and_check(None, "max_page_count", pages, |row| row.get::<_, i64>(0))
        .map_err(sqlite)?;
    Ok(())
}

/// The schema version of an open database, 0 for an empty one; checks that a non-empty database
/// holds the flujo tables.
fn existing_version(conn: &Connection, path: &Path) -> Result<i64, Error> {
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    let n_objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    if n_objects == 0 && version == 0 {
        return Ok(0);
    }
    if !has_v1_tables(conn).map_err(|e| classify(path, e))? {
        return Err(Error::NotAFlujoDatabase {
            path: path.to_path_buf(),
        });
    }
    // The FSD's SQLiteBackend never set `user_version`: its tables are version 1.
    Ok(version.max(1))
}

/// Whether `runs` and `steps` exist with at least the columns of version 1.
fn has_v1_tables(conn: &Connection) -> rusqlite::Result<bool> {
    let mut columns = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    for (table, expected) in V1_TABLES {
        let found = columns
            .query_map([table], |row| row.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if !expected.iter().all(|c| found.iter().any(|f| f == c)) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Brings the database to [`SCHEMA_VERSION`] in one IMMEDIATE transaction. The version is read
/// again under the write lock, so two processes creating one database do it once.
fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut version: i64 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if version >= SCHEMA_VERSION {
        return Ok(());
    }
    // An empty database gets version 1; a user_version of 0 on the v1 tables (the FSD's own
    // backend) is also version 1, and `CREATE ... IF NOT EXISTS` leaves those tables as they are.
    if version == 0 {
        tx.execute_batch(V1)?;
        version = 1;
    }
    while version < SCHEMA_VERSION {
        tx.execute_batch(upgrade_from(version))?;
        version += 1;
    }
    tx.pragma_update(None, "user_version", version)?;
    tx.commit()
}

/// Maps SQLite's "not a database" and "corrupt" to their own variants.
pub(crate) fn classify(path: &Path, source: rusqlite::Error) -> Error {
    match source.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => Error::NotAFlujoDatabase {
            path: path.to_path_buf(),
        },
        Some(ErrorCode::DatabaseCorrupt) => Error::Corrupt {
            path: path.to_path_buf(),
            reason: source.to_string(),
        },
        _ => Error::Sqlite {
            path: path.to_path_buf(),
            source,
        },
    }
}
