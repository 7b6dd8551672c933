//! New database files are readable and writable by their owner only, whatever the umask.

use std::os::unix::fs::PermissionsExt;

use flujo_trace_sqlite::SqliteLayer;

#[test]
fn a_new_database_and_its_wal_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::open(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "{mode:o}");
    let wal = dir.path().join("flujo_ops.db-wal");
    if wal.exists() {
        let mode = std::fs::metadata(&wal).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "wal {mode:o}");
    }
    drop(layer);
}

#[test]
fn an_existing_database_keeps_its_mode() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    drop(SqliteLayer::open(&path).unwrap());
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

#[test]
fn a_missing_directory_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/flujo_ops.db");
    let error = SqliteLayer::open(&path).unwrap_err();
    assert!(
        error.to_string().contains("no/such/dir/flujo_ops.db"),
        "{error}"
    );
}
