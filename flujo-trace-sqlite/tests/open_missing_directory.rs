//! Opening a database in a directory that does not exist says what to do, and creates nothing.

use flujo_trace_sqlite::{Error, SqliteBackend, SqliteLayer};

#[test]
fn a_missing_directory_is_named_with_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no").join("such");
    let path = missing.join("flujo_ops.db");
    let expected = format!(
        "cannot create {}: directory {} does not exist: create it or point FLUJO_STATE_URI \
         elsewhere",
        path.display(),
        missing.display()
    );
    let error = SqliteLayer::open(&path).unwrap_err();
    assert!(matches!(error, Error::MissingDirectory { .. }), "{error:?}");
    assert_eq!(error.to_string(), expected);
    let error = SqliteBackend::open(&path).unwrap_err();
    assert_eq!(error.to_string(), expected);
    assert!(!dir.path().join("no").exists());
}

#[test]
fn a_directory_that_exists_but_refuses_is_an_io_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // a file where a directory should be
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "").unwrap();
    let path = blocker.join("flujo_ops.db");
    let error = SqliteLayer::open(&path).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: ", path.display())),
        "{error}"
    );
}
