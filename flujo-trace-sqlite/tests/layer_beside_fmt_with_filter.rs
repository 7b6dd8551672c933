//! The layer records beside a fmt layer filtered to `warn` (what `RUST_LOG=warn` gives a user's
//! log output): per-layer filters never stop persistence.

mod layer_support;

use flujo_trace_sqlite::SqliteLayer;
use layer_support::{count, emit_run, reader};
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

#[test]
fn a_warn_filter_on_the_fmt_layer_does_not_stop_recording() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::open(&path).unwrap();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry()
        .with(
            fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(EnvFilter::new("warn")),
        )
        .with(layer)
        .with(
            fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(EnvFilter::new("off")),
        );
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!("a user's warning");
        emit_run("run-1", "p", 3);
        // a user's own spans beside ours are ignored
        let _mine = tracing::info_span!("request", id = 7).entered();
        tracing::info_span!(target: "flujo", "flujo.something_else", run_id = "x").in_scope(|| {});
    });
    handle.flush_blocking();
    let conn = reader(&path);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM runs WHERE status = 'completed'"
        ),
        1
    );
    assert_eq!(count(&conn, "SELECT count(*) FROM runs"), 1);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM steps WHERE status = 'completed'"
        ),
        3
    );
}
