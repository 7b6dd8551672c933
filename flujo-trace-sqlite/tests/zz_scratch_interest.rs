//! scratch (to be deleted)
use flujo_trace_sqlite::SqliteLayer;
use std::time::Instant;
use tracing_subscriber::{fmt, prelude::*, EnvFilter};

fn spin() -> std::time::Duration {
    let t = Instant::now();
    for i in 0..1_000_000u64 {
        tracing::debug!(x = i, "hello {}", i);
    }
    t.elapsed()
}

#[test]
fn interest() {
    let dir = tempfile::tempdir().unwrap();
    let s1 = tracing_subscriber::registry().with(
        fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(EnvFilter::new("warn")),
    );
    let a = tracing::subscriber::with_default(s1, || {
        eprintln!(
            "enabled debug without: {}",
            tracing::enabled!(tracing::Level::DEBUG)
        );
        spin()
    });
    let s2 = tracing_subscriber::registry()
        .with(SqliteLayer::open(dir.path().join("a.db")).unwrap())
        .with(
            fmt::layer()
                .with_writer(std::io::sink)
                .with_filter(EnvFilter::new("warn")),
        );
    let b = tracing::subscriber::with_default(s2, || {
        eprintln!(
            "enabled debug with: {}",
            tracing::enabled!(tracing::Level::DEBUG)
        );
        spin()
    });
    eprintln!("1M debug events: without sqlite {a:?}, with sqlite {b:?}");
}
