//! Storage failures never reach the instrumented code: span callbacks return as usual, refused
//! rows are retried within the retry window before a barrier is answered, the rows that still
//! could not be written are counted, and recording resumes when writing works again.

mod layer_support;

use std::time::Duration;

use flujo_trace_sqlite::SqliteLayer;
use layer_support::{count, emit_run};
use rusqlite::Connection;
use tracing_subscriber::prelude::*;

#[test]
fn a_database_locked_too_long_loses_rows_not_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::builder()
        .with_busy_timeout(Duration::from_millis(50))
        .with_retry_window(Duration::from_millis(200))
        // only the barriers write: each emitted run is one batch, whatever the timing
        .with_flush_interval(Duration::from_secs(3600))
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));

    // another process holds the write lock for longer than the busy timeout and retry window
    let mut other = Connection::open(&path).unwrap();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || emit_run("run-locked-1", "p", 1));
    // retried for the retry window, then counted before the barrier is answered: run start,
    // the step (start and end in one row), run end
    let flushed = handle.flush_blocking();
    assert_eq!(flushed.rows_not_recorded, 3);
    assert!(!flushed.all_recorded() && flushed.writer_running);
    // after a loss, rows get one attempt each (no retry window) until a write works
    tracing::dispatcher::with_default(&dispatch, || emit_run("run-locked-2", "p", 1));
    assert_eq!(handle.flush_blocking().rows_not_recorded, 6);
    lock.rollback().unwrap();

    tracing::dispatcher::with_default(&dispatch, || emit_run("run-after", "p", 1));
    assert_eq!(handle.flush_blocking().rows_not_recorded, 6);
    assert_eq!(
        count(
            &other,
            "SELECT count(*) FROM runs WHERE run_id = 'run-after' AND status = 'completed' \
             AND n_steps = 1"
        ),
        1
    );
    assert_eq!(
        count(
            &other,
            "SELECT count(*) FROM runs WHERE run_id LIKE 'run-locked-%'"
        ),
        0
    );
    assert_eq!(count(&other, "SELECT count(*) FROM steps"), 1);
}

#[test]
fn rows_refused_are_retried_until_the_lock_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::builder()
        .with_busy_timeout(Duration::from_millis(20))
        // longer than the test: the barrier can only return once the rows are committed
        .with_retry_window(Duration::from_secs(120))
        .with_flush_interval(Duration::from_secs(3600))
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let mut other = Connection::open(&path).unwrap();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    tracing::dispatcher::with_default(&dispatch, || emit_run("run-locked", "p", 2));
    let flushing = std::thread::spawn({
        let handle = handle.clone();
        move || handle.flush_blocking()
    });
    lock.rollback().unwrap();
    // the barrier waited for the retries instead of leaving the rows for a later batch
    let flushed = flushing.join().unwrap();
    assert!(flushed.all_recorded(), "{flushed:?}");
    assert_eq!(
        count(
            &other,
            "SELECT count(*) FROM runs WHERE run_id = 'run-locked' AND status = 'completed' \
             AND n_steps = 2"
        ),
        1
    );
}

#[test]
fn one_bad_row_costs_only_that_row() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::builder()
        .with_flush_interval(Duration::from_secs(3600))
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    // a run with this id already exists: its start cannot be inserted (UUID v7 ids never
    // collide; a constraint error stands for any error of one row)
    let other = Connection::open(&path).unwrap();
    other
        .execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time) \
             VALUES ('dup', 'older', 'latest', 'completed', '2020-01-01T00:00:00.000000Z')",
            [],
        )
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        emit_run("before", "p", 1);
        emit_run("dup", "p", 0);
        emit_run("after", "p", 1);
    });
    handle.flush_blocking();
    // the duplicate start is refused
    assert_eq!(handle.rows_not_recorded(), 1);
    assert_eq!(count(&other, "SELECT count(*) FROM runs WHERE run_id IN ('before', 'after') AND status = 'completed'"), 2);
    assert_eq!(count(&other, "SELECT count(*) FROM steps"), 2);
    assert_eq!(
        count(&other, "SELECT count(*) FROM runs WHERE run_id = 'dup' AND pipeline_name = 'older' AND start_time LIKE '2020-%'"),
        1
    );
}
