//! A version 1 database (the frozen FSD DDL, with rows in it) is upgraded to the newest version
//! in place, keeping its rows; so is one written by the FSD's own backend, which never set
//! user_version.

use flujo_trace_sqlite::{SqliteBackend, StateBackend};
use rusqlite::Connection;

const V1: &str = include_str!("fixtures/create_v1.sql");

fn v1_database(path: &std::path::Path, user_version: i64) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(V1).unwrap();
    conn.pragma_update(None, "user_version", user_version)
        .unwrap();
    conn.execute_batch(
        "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, end_time, \
         total_cost, final_context_blob) VALUES ('run-1', 'summarise', '1.0', 'completed', \
         '2025-05-01T10:00:00.000000Z', '2025-05-01T10:00:01.500000Z', 0.25, '{\"k\":1}');
         INSERT INTO steps (step_run_id, run_id, step_name, step_index, status, start_time, \
         end_time, duration_ms, cost, tokens, input_blob, output_blob, error_blob) VALUES \
         ('step-1', 'run-1', 'fetch', 0, 'completed', '2025-05-01T10:00:00.100000Z', \
         '2025-05-01T10:00:01.400000Z', 1300, 0.25, 42, '\"in\"', '\"out\"', NULL);",
    )
    .unwrap();
}

fn check_upgraded(path: &std::path::Path) {
    let backend = SqliteBackend::open(path).unwrap();
    let run = backend
        .get_run_details("run-1")
        .unwrap()
        .expect("the v1 run survives");
    assert_eq!(run.pipeline_name, "summarise");
    assert_eq!(run.status, "completed");
    assert_eq!(run.total_cost, Some(0.25));
    assert_eq!(run.final_context_blob.as_deref(), Some("{\"k\":1}"));
    assert_eq!(run.total_tokens, None);
    assert_eq!(run.output_blob, None);
    let steps = backend.list_run_steps("run-1").unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].step_name, "fetch");
    assert_eq!(steps[0].tokens, Some(42));
    assert_eq!(steps[0].output_blob.as_deref(), Some("\"out\""));
    assert_eq!(steps[0].parent_step_run_id, None);
    assert_eq!(steps[0].fallback_taken, None);
    drop(backend);

    let conn = Connection::open(path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 7);
    let added: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('steps') WHERE name IN ('parent_step_run_id', 'step_kind', 'attempts', 'fallback_taken')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(added, 4);
    let added: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('runs') WHERE name IN ('input_blob', 'output_blob', 'error_blob', 'writer_pid_ns', 'trace_id')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(added, 5);
}

#[test]
fn a_v1_database_is_upgraded_keeping_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    v1_database(&path, 1);
    check_upgraded(&path);
}

#[test]
fn a_database_of_the_fsd_backend_without_user_version_is_version_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    v1_database(&path, 0);
    check_upgraded(&path);
}

#[test]
fn an_upgraded_database_takes_new_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    v1_database(&path, 1);
    let layer = flujo_trace_sqlite::SqliteLayer::open(&path).unwrap();
    drop(layer);
    let conn = Connection::open(&path).unwrap();
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}
