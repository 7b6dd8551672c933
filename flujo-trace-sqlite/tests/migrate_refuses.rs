//! A database newer than this flujo, a file that is not SQLite, a SQLite file of another
//! application and a corrupt database are refused with their own error, and left byte for byte
//! as they were.

use std::path::{Path, PathBuf};

use flujo_trace_sqlite::{Error, SqliteBackend, SqliteLayer};
use rusqlite::Connection;

fn refused(path: &Path) -> Error {
    let before = std::fs::read(path).unwrap();
    let error = SqliteBackend::open(path).unwrap_err();
    let layer_error = SqliteLayer::open(path).unwrap_err();
    assert_eq!(error.to_string(), layer_error.to_string());
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "{} was changed",
        path.display()
    );
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        assert!(!PathBuf::from(side).exists(), "{suffix} file left behind");
    }
    error
}

#[test]
fn a_newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(include_str!("fixtures/create_v1.sql"))
            .unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let error = refused(&path);
    assert!(
        matches!(
            error,
            Error::TooNew {
                found: 99,
                supported: 7,
                ..
            }
        ),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains("schema version 99"), "{message}");
    assert!(message.contains("upgrade flujo"), "{message}");
    assert!(message.contains("flujo_ops.db"), "{message}");
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let error = refused(&path);
    assert!(
        matches!(error, Error::NotAFlujoDatabase { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("is not a flujo database"),
        "{error}"
    );
}

#[test]
fn another_applications_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users (name) VALUES ('ana');")
            .unwrap();
    }
    let error = refused(&path);
    assert!(
        matches!(error, Error::NotAFlujoDatabase { .. }),
        "{error:?}"
    );

    // the same with a user_version of its own
    let path = dir.path().join("versioned.db");
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE runs (id INTEGER PRIMARY KEY); PRAGMA user_version = 1;")
            .unwrap();
    }
    let error = refused(&path);
    assert!(
        matches!(error, Error::NotAFlujoDatabase { .. }),
        "{error:?}"
    );
}

#[test]
fn a_corrupt_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    drop(SqliteBackend::open(&path).unwrap());
    // checkpointed and closed: the whole schema is in the main file; now damage the schema page
    // after its 100-byte header
    let mut bytes = std::fs::read(&path).unwrap();
    for byte in &mut bytes[100..1024] {
        *byte = 0xA5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let error = refused(&path);
    assert!(matches!(error, Error::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("left untouched"), "{error}");
}
