//! A burst of 10,000 runs through a tiny queue: the instrumented threads wait for the writer,
//! and every row lands.

mod layer_support;

use flujo_trace_sqlite::SqliteLayer;
use layer_support::{count, reader};
use tracing_subscriber::prelude::*;

#[test]
fn ten_thousand_runs_through_a_queue_of_eight() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::builder()
        .with_queue_capacity(8)
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let dispatch = dispatch.clone();
            std::thread::spawn(move || {
                tracing::dispatcher::with_default(&dispatch, || {
                    for i in 0..5_000 {
                        layer_support::emit_run(&format!("run-{t}-{i:05}"), "burst", 2);
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
    assert_eq!(count(&conn, "SELECT count(*) FROM runs"), 10_000);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM runs WHERE status = 'completed' AND n_steps = 2"
        ),
        10_000
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM steps WHERE status = 'completed'"
        ),
        20_000
    );
    assert_eq!(handle.rows_not_recorded(), 0);
}
