//! Without any barrier, rows are committed after at most one flush interval: a run's `running`
//! row shows up on its own, so a process killed mid-run leaves evidence.

mod layer_support;

use std::time::{Duration, Instant};

use flujo_trace_sqlite::SqliteLayer;
use layer_support::{count, end_run, reader, run_span};
use tracing_subscriber::prelude::*;

#[test]
fn a_started_run_is_committed_without_a_barrier() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::builder()
        .with_flush_interval(Duration::from_millis(20))
        .open(&path)
        .unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let run = tracing::dispatcher::with_default(&dispatch, || run_span("run-1", "p"));

    let conn = reader(&path);
    // generous: this checks that the timer commits at all, not how fast (that is the bench's job)
    let give_up = Instant::now() + Duration::from_secs(30);
    while count(&conn, "SELECT count(*) FROM runs WHERE status = 'running'") == 0 {
        assert!(Instant::now() < give_up, "the running row never appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
    end_run(&run, "completed", 0.0, 0);
    drop(run);
    while count(
        &conn,
        "SELECT count(*) FROM runs WHERE status = 'completed'",
    ) == 0
    {
        assert!(Instant::now() < give_up, "the run's end never appeared");
        std::thread::sleep(Duration::from_millis(5));
    }
}
