//! `SqliteReader::open`: refuses what it cannot read with a typed error, never
//! creates, migrates or writes a file, and reads schema v1 and v2 databases.

use std::path::Path;

use flujo_trace_sqlite::{Error, RunReader, SqliteReader};

const V1_FIXTURE: &str = include_str!("fixtures/create_v1.sql");
const V1: &str = include_str!("../src/schema/v1.sql");
const V1_TO_V2: &str = include_str!("../src/schema/v1_to_v2.sql");

fn v2_database(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(V1).unwrap();
    conn.execute_batch(V1_TO_V2).unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
}

/// Opens `path` read-only and returns the error, checking the directory is unchanged.
fn refused(path: &Path) -> Error {
    let dir = path.parent().unwrap();
    let snapshot = || {
        let mut files: Vec<(std::ffi::OsString, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name(), std::fs::read(e.path()).unwrap_or_default())
            })
            .collect();
        files.sort();
        files
    };
    let before = snapshot();
    let error = SqliteReader::open(path).unwrap_err();
    assert!(snapshot() == before, "{error}: the directory changed");
    error
}

#[test]
fn missing_file_is_not_found_and_not_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    assert!(matches!(refused(&path), Error::NotFound { path: p } if p == path));
    assert!(!path.exists());
}

#[test]
fn not_sqlite_empty_and_foreign_files_are_not_flujo_databases() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    for contents in [&b""[..], b"hello", b"SQLite format 2\0 and more bytes"] {
        std::fs::write(&path, contents).unwrap();
        assert!(matches!(refused(&path), Error::NotAFlujoDatabase { .. }));
    }
    std::fs::remove_file(&path).unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE runs (x)").unwrap();
    drop(conn);
    assert!(
        matches!(refused(&path), Error::NotAFlujoDatabase { .. }),
        "runs alone is not enough"
    );
}

#[test]
fn too_new_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    v2_database(&path);
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 9)
        .unwrap();
    let error = refused(&path);
    assert!(
        matches!(
            error,
            Error::TooNew {
                found: 9,
                supported: 7,
                ..
            }
        ),
        "{error:?}"
    );
}

#[test]
fn corrupt_schema_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    v2_database(&path);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100..600].fill(0x5a);
    std::fs::write(&path, &bytes).unwrap();
    let error = refused(&path);
    assert!(matches!(error, Error::Corrupt { .. }), "{error:?}");
    assert!(error.to_string().contains("left untouched"), "{error}");
}

#[test]
fn read_only_open_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    v2_database(&path);
    let before = std::fs::read(&path).unwrap();
    let reader = SqliteReader::open(&path).unwrap();
    assert_eq!(reader.stored_schema_version(), 2);
    let filter = flujo_trace_sqlite::RunFilter {
        limit: Some(10),
        ..Default::default()
    };
    let page = reader.list_runs_page(&filter, 100).unwrap();
    assert!(page.runs.is_empty());
    drop(reader);
    assert_eq!(std::fs::read(&path).unwrap(), before);
}

#[test]
fn v1_fixture_opens_as_version_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(V1_FIXTURE)
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let reader = SqliteReader::open(&path).unwrap();
    assert_eq!(reader.stored_schema_version(), 1);
    drop(reader);
    assert_eq!(std::fs::read(&path).unwrap(), before, "never migrated");
}
