//! A run's rows are committed when the barrier (`SqliteHandle::flush`) returns: another
//! connection sees them at once. A run's row exists, `running`, from the moment it starts.

mod layer_support;

use flujo_trace_sqlite::SqliteLayer;
use layer_support::{count, end_run, end_step, reader, run_span, step_span};
use rusqlite::Connection;
use tracing_subscriber::prelude::*;

type RunRow = (
    String,
    String,
    String,
    Option<String>,
    Option<i64>,
    Option<f64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

type StepRow = (
    String,
    String,
    i64,
    String,
    Option<i64>,
    Option<i64>,
    Option<f64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn run_row(conn: &Connection, run_id: &str) -> RunRow {
    conn.query_row(
        "SELECT pipeline_name, pipeline_version, status, end_time, duration_ms, total_cost, \
         total_tokens, n_steps, input_blob, final_context_blob, error_blob FROM runs WHERE run_id = ?1",
        [run_id],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
            ))
        },
    )
    .unwrap()
}

#[test]
fn rows_are_visible_to_another_connection_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    // a flush interval far longer than the test: only the barrier can commit
    let layer = SqliteLayer::builder()
        .with_flush_interval(std::time::Duration::from_secs(3600))
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer);

    tracing::subscriber::with_default(subscriber, || {
        let run = run_span("run-1", "summarise");
        let step = run.in_scope(|| step_span("run-1", "run-1-a", None, "fetch", 0, "step"));

        // started, not finished: the run and its step are `running`, with the writing process
        futures::executor::block_on(handle.flush());
        let conn = reader(&path);
        let (status, pid, host, pid_ns): (String, i64, String, Option<i64>) = conn
            .query_row(
                "SELECT status, writer_pid, writer_host, writer_pid_ns FROM runs \
                 WHERE run_id = 'run-1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(status, "running");
        assert_eq!(pid, i64::from(std::process::id()));
        assert!(!host.is_empty());
        // the PID namespace: the inode of /proc/self/ns/pid (`pid:[4026531836]`)
        let namespace = std::fs::read_link("/proc/self/ns/pid").unwrap();
        assert_eq!(
            pid_ns.map(|ns| format!("pid:[{ns}]")),
            Some(namespace.to_string_lossy().into_owned())
        );
        let step_status: String = conn
            .query_row(
                "SELECT status FROM steps WHERE step_run_id = 'run-1-a'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(step_status, "running");

        end_step(&step, "completed", 7, 0.5);
        drop(step);
        let failing = run.in_scope(|| step_span("run-1", "run-1-b", None, "summarise", 1, "step"));
        end_step(&failing, "failed", 3, 0.25);
        drop(failing);
        end_run(&run, "failed", 0.75, 10);
        drop(run);

        futures::executor::block_on(handle.flush());
        assert_eq!(
            run_row(&conn, "run-1"),
            (
                "summarise".to_owned(),
                "latest".to_owned(),
                "failed".to_owned(),
                Some(layer_support::time(10)),
                Some(10_000),
                Some(0.75),
                Some(10),
                Some(2),
                Some(r#"{"question":"why"}"#.to_owned()),
                Some(r#"{"counter":2}"#.to_owned()),
                Some("step `b` failed: boom".to_owned()),
            )
        );
        let steps: Vec<StepRow> = conn
            .prepare(
                "SELECT step_name, step_kind, step_index, status, attempts, tokens, cost, \
                 input_blob, output_blob, error_blob, end_time FROM steps WHERE run_id = 'run-1' \
                 ORDER BY step_run_id",
            )
            .unwrap()
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                    r.get(7)?,
                    r.get(8)?,
                    r.get(9)?,
                    r.get(10)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let end = Some(layer_support::time(2));
        assert_eq!(
            steps,
            [
                (
                    "fetch".into(),
                    "step".into(),
                    0,
                    "completed".into(),
                    Some(1),
                    Some(7),
                    Some(0.5),
                    Some(r#"{"n":1}"#.into()),
                    Some(r#"{"n":2}"#.into()),
                    None,
                    end.clone()
                ),
                (
                    "summarise".into(),
                    "step".into(),
                    1,
                    "failed".into(),
                    Some(1),
                    Some(3),
                    Some(0.25),
                    Some(r#"{"n":1}"#.into()),
                    None,
                    Some("boom".into()),
                    end
                ),
            ]
        );
        assert_eq!(handle.rows_not_recorded(), 0);
    });
}

#[test]
fn flush_waits_for_rows_of_every_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::builder()
        .with_flush_interval(std::time::Duration::from_secs(3600))
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for i in 0..50 {
                        layer_support::emit_run(&format!("run-{t}-{i:03}"), "threads", 3);
                    }
                })
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    handle.flush_blocking();
    let conn = reader(&path);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM runs WHERE status = 'completed' AND n_steps = 3"
        ),
        200
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM steps WHERE status = 'completed'"
        ),
        600
    );
}

#[test]
fn dropping_the_layer_commits_what_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::builder()
        .with_flush_interval(std::time::Duration::from_secs(3600))
        .open(&path)
        .unwrap();
    // no handle, no flush: the subscriber (and the layer) is dropped when `with_default` returns
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        layer_support::emit_run("run-1", "p", 2);
    });
    let conn = reader(&path);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM runs WHERE status = 'completed'"
        ),
        1
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM steps WHERE status = 'completed'"
        ),
        2
    );
}

#[test]
fn a_run_span_closed_without_status_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::open(&path).unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let run = run_span("run-1", "p");
        let step = run.in_scope(|| step_span("run-1", "run-1-a", None, "slow", 0, "step"));
        drop(step);
        drop(run);
    });
    handle.flush_blocking();
    let conn = reader(&path);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM runs WHERE status = 'cancelled' AND end_time IS NOT NULL"
        ),
        1
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM steps WHERE status = 'cancelled' AND end_time IS NOT NULL"
        ),
        1
    );
}
