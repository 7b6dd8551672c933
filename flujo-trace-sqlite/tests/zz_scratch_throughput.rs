//! scratch (to be deleted)
mod layer_support;
use flujo_trace_sqlite::SqliteLayer;
use std::time::Instant;
use tracing_subscriber::prelude::*;

#[test]
fn throughput() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let n_runs = 20_000;
    // baseline: registry only
    let t = Instant::now();
    tracing::subscriber::with_default(tracing_subscriber::registry(), || {
        for i in 0..n_runs {
            layer_support::emit_run(&format!("run-{i:06}"), "b", 10);
        }
    });
    let base = t.elapsed();
    let layer = SqliteLayer::builder()
        .with_queue_capacity(250_000)
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    let t = Instant::now();
    let d = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&d, || {
        for i in 0..n_runs {
            layer_support::emit_run(&format!("run-{i:06}"), "b", 10);
        }
    });
    let emitted = t.elapsed();
    handle.flush_blocking();
    let total = t.elapsed();
    let steps = (n_runs * 10) as f64;
    eprintln!("base {:?} ({:.0} ns/step), with layer emit {:?} ({:.0} ns/step), total {:?} => {:.0} steps/s, db {} bytes ({:.0} B/step)",
        base, base.as_nanos() as f64 / steps, emitted, emitted.as_nanos() as f64 / steps, total, steps / total.as_secs_f64(),
        std::fs::metadata(&path).unwrap().len() + std::fs::metadata(dir.path().join("flujo_ops.db-wal")).map(|m| m.len()).unwrap_or(0),
        (std::fs::metadata(&path).unwrap().len() as f64) / steps);
    assert_eq!(handle.rows_not_recorded(), 0);
}
