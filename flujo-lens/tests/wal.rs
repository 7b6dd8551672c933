//! Reading a WAL-mode database: closed cleanly by its writer, and still open by one (with a
//! write transaction in progress). The reader never blocks the writer or sees uncommitted rows,
//! and the database file itself is not written.

mod common;

use common::*;

fn wal_fixture(dir: &std::path::Path) -> rusqlite::Connection {
    let conn = create_v2(&dir.join("flujo_ops.db"));
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    fixture(&conn);
    conn
}

#[test]
fn database_closed_cleanly_by_its_writer() {
    let dir = tempfile::tempdir().unwrap();
    drop(wal_fixture(dir.path()));
    let db = dir.path().join("flujo_ops.db");
    assert!(
        !dir.path().join("flujo_ops.db-wal").exists(),
        "a clean close checkpoints"
    );
    let before = std::fs::read(&db).unwrap();
    let list = lens(dir.path(), &["lens", "list", "-o", "jsonl"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(list.stdout.lines().count(), 6);
    let show = lens(dir.path(), &["lens", "show", "latest"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the database file is not written"
    );
}

#[test]
fn database_still_open_by_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let writer = wal_fixture(dir.path());
    // committed by the open writer: in the WAL, not yet in the database file
    insert_run(
        &writer,
        &Run {
            run_id: run_id(7),
            pipeline_name: "etl".into(),
            pipeline_version: "1.2.0".into(),
            status: "completed".into(),
            start_time: time(14, 45, 0, 0),
            ..Run::default()
        },
    );
    // a write transaction in progress while the lens reads
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    insert_run(
        &writer,
        &Run {
            run_id: run_id(8),
            pipeline_name: "etl".into(),
            pipeline_version: "1.2.0".into(),
            status: "running".into(),
            start_time: time(14, 50, 0, 0),
            ..Run::default()
        },
    );
    let list = lens(dir.path(), &["lens", "list", "-o", "jsonl"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(list.stdout.lines().count(), 7, "{}", list.stdout);
    assert!(list.stdout.contains(&run_id(7)));
    assert!(
        !list.stdout.contains(&run_id(8)),
        "uncommitted rows are not read"
    );
    let show = lens(dir.path(), &["lens", "show", "latest"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains(&run_id(7)));
    writer.execute_batch("COMMIT").unwrap();
    let list = lens(dir.path(), &["lens", "list", "-o", "jsonl"]);
    assert_eq!(list.stdout.lines().count(), 8, "{}", list.stdout);
}
