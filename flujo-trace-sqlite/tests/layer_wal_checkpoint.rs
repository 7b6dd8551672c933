//! The writer checkpoints the WAL itself, after answering barriers, instead of inside commits:
//! with a barrier after every run (one commit each), the `-wal` file stays bounded and every row
//! is readable from another connection, and checkpoints stay spaced (each costs fsyncs).

mod layer_support;

use flujo_trace_sqlite::SqliteLayer;
use layer_support::{count, emit_run, reader};
use tracing_subscriber::prelude::*;

/// Steps per run: enough that 64 commits outgrow the 4 MiB WAL limit, so both checkpoint
/// triggers are exercised.
const STEPS: usize = 20;

#[test]
fn a_commit_per_run_keeps_the_wal_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let wal = dir.path().join("flujo_ops.db-wal");
    let layer = SqliteLayer::open(&path).unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    // a reader that stays open, as the lens or another process may
    let other = reader(&path);
    let runs = 3_000;
    let mut largest_wal = 0;
    // the WAL header's checkpoint sequence number (bytes 12..16, big-endian) counts the times
    // SQLite started the WAL over after a checkpoint
    let restarts = || {
        let header = std::fs::read(&wal).unwrap();
        u32::from_be_bytes(header[12..16].try_into().unwrap())
    };
    let mut first_restarts = None;
    for i in 0..runs {
        tracing::dispatcher::with_default(&dispatch, || {
            emit_run(&format!("run-{i:05}"), "p", STEPS)
        });
        handle.flush_blocking();
        largest_wal = largest_wal.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
        first_restarts.get_or_insert_with(restarts);
    }
    let restarted = restarts() - first_restarts.unwrap();
    assert_eq!(handle.rows_not_recorded(), 0);
    assert_eq!(
        count(
            &other,
            "SELECT count(*) FROM runs WHERE status = 'completed'"
        ),
        runs
    );
    assert_eq!(
        count(&other, "SELECT count(*) FROM steps"),
        runs * STEPS as i64
    );
    // 3,000 commits of a few pages each would make a WAL of tens of MiB without checkpoints,
    // (168 MiB measured with the checkpoints taken out)
    assert!(
        largest_wal < 8 * 1024 * 1024,
        "the WAL grew to {largest_wal} bytes"
    );
    // a checkpoint is due every 64 commits or once the WAL outgrows 4 MiB; at least 16 commits
    // apart, then (one after every commit before the size check was fixed)
    assert!(
        restarted > 0 && restarted <= runs as u32 / 16,
        "the WAL was started over {restarted} times in {runs} commits"
    );
}
