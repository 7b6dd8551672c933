//! A version 2 database with rows in it is upgraded to version 3 in place, keeping its rows: its
//! runs have no recorded PID namespace (`writer_pid_ns` NULL) and are judged as before.

use flujo_trace_sqlite::{SqliteBackend, StateBackend, WriterProcess};
use rusqlite::Connection;

const V1: &str = include_str!("fixtures/create_v1.sql");
const V1_TO_V2: &str = include_str!("../src/schema/v1_to_v2.sql");

#[test]
fn a_v2_database_is_upgraded_keeping_its_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(V1).unwrap();
    conn.execute_batch(V1_TO_V2).unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn.execute_batch(
        "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, end_time, \
         total_cost, total_tokens, n_steps, output_blob, writer_host, writer_pid, \
         writer_pid_start) VALUES ('run-1', 'summarise', '1.0', 'completed', \
         '2025-05-01T10:00:00.000000Z', '2025-05-01T10:00:01.500000Z', 0.25, 42, 1, '\"done\"', \
         'build-host', 4242, 77);
         INSERT INTO steps (step_run_id, run_id, step_name, step_index, step_kind, status, \
         attempts, start_time, fallback_taken) VALUES ('step-1', 'run-1', 'fetch', 0, 'step', \
         'completed', 1, '2025-05-01T10:00:00.100000Z', 0);",
    )
    .unwrap();
    drop(conn);

    let backend = SqliteBackend::open(&path).unwrap();
    let run = backend.get_run_details("run-1").unwrap().expect("kept");
    assert_eq!(run.status, "completed");
    assert_eq!(run.total_tokens, Some(42));
    assert_eq!(run.output_blob.as_deref(), Some("\"done\""));
    assert_eq!(
        run.writer,
        Some(WriterProcess {
            host: "build-host".into(),
            pid: 4242,
            pid_start: 77,
            pid_ns: None,
        })
    );
    let steps = backend.list_run_steps("run-1").unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].fallback_taken, Some(false));
    drop(backend);

    let conn = Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 7);
    let pid_ns: Option<i64> = conn
        .query_row(
            "SELECT writer_pid_ns FROM runs WHERE run_id = 'run-1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(pid_ns, None);
}
