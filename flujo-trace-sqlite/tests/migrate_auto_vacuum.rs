//! A new database is created with `auto_vacuum = INCREMENTAL`, so space freed by deleting runs
//! can be handed back to the file system with `PRAGMA incremental_vacuum` (no full VACUUM);
//! an existing database keeps its setting and is upgraded as before.

mod layer_support;

use flujo_trace_sqlite::{SqliteBackend, SqliteLayer};
use layer_support::{count, emit_run};
use rusqlite::Connection;
use tracing_subscriber::prelude::*;

const V1: &str = include_str!("fixtures/create_v1.sql");

#[test]
fn a_new_database_has_incremental_auto_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    drop(SqliteBackend::open(&path).unwrap());
    let conn = Connection::open(&path).unwrap();
    assert_eq!(count(&conn, "PRAGMA auto_vacuum"), 2);
    assert_eq!(count(&conn, "PRAGMA user_version"), 7);
}

#[test]
fn deleted_runs_give_their_space_back_without_a_full_vacuum() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::open(&path).unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..300 {
            emit_run(&format!("run-{i:04}"), "p", 10);
        }
    });
    handle.flush_blocking();
    drop(dispatch);
    drop(handle);

    let conn = Connection::open(&path).unwrap();
    let full_pages = count(&conn, "PRAGMA page_count");
    conn.pragma_update(None, "foreign_keys", "ON").unwrap();
    conn.execute("DELETE FROM runs WHERE run_id < 'run-0250'", [])
        .unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM steps"), 500);
    let free_pages = count(&conn, "PRAGMA freelist_count");
    assert!(free_pages > full_pages / 2, "{free_pages} of {full_pages}");
    // each step of the statement frees one page: run it to its end
    let mut vacuum = conn.prepare("PRAGMA incremental_vacuum").unwrap();
    let mut rows = vacuum.query([]).unwrap();
    while rows.next().unwrap().is_some() {}
    drop(rows);
    drop(vacuum);
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    assert_eq!(count(&conn, "PRAGMA freelist_count"), 0);
    let pages = count(&conn, "PRAGMA page_count");
    assert_eq!(pages, full_pages - free_pages);
    let file_bytes = std::fs::metadata(&path).unwrap().len() as i64;
    assert_eq!(file_bytes, pages * count(&conn, "PRAGMA page_size"));
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

#[test]
fn a_v1_database_keeps_its_auto_vacuum_and_is_upgraded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(V1).unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
    drop(conn);

    let layer = SqliteLayer::open(&path).unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || emit_run("run-1", "p", 2));
    handle.flush_blocking();
    assert_eq!(handle.rows_not_recorded(), 0);

    let conn = Connection::open(&path).unwrap();
    // auto_vacuum cannot change once tables exist: left as it was
    assert_eq!(count(&conn, "PRAGMA auto_vacuum"), 0);
    assert_eq!(count(&conn, "PRAGMA user_version"), 7);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM runs WHERE run_id = 'run-1' AND n_steps = 2"
        ),
        1
    );
}
