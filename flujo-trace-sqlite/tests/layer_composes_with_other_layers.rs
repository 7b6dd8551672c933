//! The layer filters for itself: beside it, other layers see exactly what they saw without it
//! (a user's unfiltered layer still gets debug events; a `warn` fmt filter still turns debug
//! callsites off), it still records under a filter of the user's own, and the facade can find it
//! in any stack with `Dispatch::downcast_ref`.

mod layer_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flujo_trace_sqlite::SqliteLayer;
use layer_support::{count, emit_run, reader};
use tracing::level_filters::LevelFilter;
use tracing::{Dispatch, Level};
use tracing_subscriber::layer::Context;
use tracing_subscriber::{fmt, prelude::*, EnvFilter, Layer};

/// A user's own layer: counts the spans and events it is shown.
#[derive(Clone, Default)]
struct Counter {
    spans: Arc<AtomicUsize>,
    events: Arc<AtomicUsize>,
}

impl<S: tracing::Subscriber> Layer<S> for Counter {
    fn on_new_span(
        &self,
        _: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        self.spans.fetch_add(1, Ordering::Relaxed);
    }

    fn on_event(&self, _: &tracing::Event<'_>, _: Context<'_, S>) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn an_unfiltered_layer_beside_it_sees_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::open(&path).unwrap();
    let handle = layer.handle();
    let counter = Counter::default();
    let subscriber = tracing_subscriber::registry()
        .with(layer)
        .with(counter.clone());
    tracing::subscriber::with_default(subscriber, || {
        assert!(tracing::enabled!(Level::TRACE));
        tracing::trace!("a user's trace event");
        tracing::debug!("a user's debug event");
        let _request = tracing::debug_span!("request").entered();
        emit_run("run-1", "p", 2);
    });
    handle.flush_blocking();
    assert_eq!(counter.events.load(Ordering::Relaxed), 2);
    // the user's span, the run and its two steps
    assert_eq!(counter.spans.load(Ordering::Relaxed), 4);
    assert_eq!(
        count(
            &reader(&path),
            "SELECT count(*) FROM steps WHERE status = 'completed'"
        ),
        2
    );
}

#[test]
fn beside_a_warn_filter_debug_callsites_stay_off() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::open(&path).unwrap();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer).with(
        fmt::layer()
            .with_writer(std::io::sink)
            .with_filter(EnvFilter::new("warn")),
    );
    tracing::subscriber::with_default(subscriber, || {
        assert!(!tracing::enabled!(Level::DEBUG));
        assert!(!tracing::enabled!(Level::INFO));
        assert!(tracing::enabled!(Level::WARN));
        emit_run("run-1", "p", 1);
    });
    handle.flush_blocking();
    assert_eq!(
        count(
            &reader(&path),
            "SELECT count(*) FROM runs WHERE status = 'completed'"
        ),
        1
    );
}

#[test]
fn a_users_filter_on_the_layer_is_honoured() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::open(&path).unwrap();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(LevelFilter::INFO));
    tracing::subscriber::with_default(subscriber, || emit_run("run-1", "p", 1));
    handle.flush_blocking();
    assert_eq!(
        count(
            &reader(&path),
            "SELECT count(*) FROM runs WHERE status = 'completed'"
        ),
        1
    );

    // a filter that turns INFO off turns recording off
    let path = dir.path().join("off.db");
    let layer = SqliteLayer::open(&path).unwrap();
    let handle = layer.handle();
    let subscriber = tracing_subscriber::registry().with(layer.with_filter(LevelFilter::WARN));
    tracing::subscriber::with_default(subscriber, || emit_run("run-1", "p", 1));
    handle.flush_blocking();
    assert_eq!(count(&reader(&path), "SELECT count(*) FROM runs"), 0);
}

#[test]
fn the_layer_is_found_in_any_stack() {
    let dir = tempfile::tempdir().unwrap();
    let stacks: Vec<Dispatch> = vec![
        Dispatch::new(
            tracing_subscriber::registry()
                .with(SqliteLayer::open(dir.path().join("a.db")).unwrap()),
        ),
        Dispatch::new(
            tracing_subscriber::registry()
                .with(
                    fmt::layer()
                        .with_writer(std::io::sink)
                        .with_filter(EnvFilter::new("warn")),
                )
                .with(SqliteLayer::open(dir.path().join("b.db")).unwrap())
                .with(Counter::default()),
        ),
        Dispatch::new(
            tracing_subscriber::registry()
                .with(
                    SqliteLayer::open(dir.path().join("c.db"))
                        .unwrap()
                        .with_filter(LevelFilter::INFO),
                )
                .with(fmt::layer().with_writer(std::io::sink)),
        ),
    ];
    for (dispatch, name) in stacks.iter().zip(["a.db", "b.db", "c.db"]) {
        let layer = dispatch
            .downcast_ref::<SqliteLayer>()
            .expect("SqliteLayer found");
        assert_eq!(layer.path(), dir.path().join(name));
        tracing::dispatcher::with_default(dispatch, || emit_run("run-1", "p", 1));
        layer.handle().flush_blocking();
        assert_eq!(
            count(
                &reader(layer.path()),
                "SELECT count(*) FROM runs WHERE status = 'completed'"
            ),
            1,
            "{name}"
        );
    }
    let plain =
        Dispatch::new(tracing_subscriber::registry().with(fmt::layer().with_writer(std::io::sink)));
    assert!(plain.downcast_ref::<SqliteLayer>().is_none());
}

#[test]
fn two_sqlite_layers_record_the_same_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    let first = SqliteLayer::open(&a).unwrap();
    let second = SqliteLayer::open(&b).unwrap();
    let handles = [first.handle(), second.handle()];
    let subscriber = tracing_subscriber::registry().with(first).with(second);
    tracing::subscriber::with_default(subscriber, || emit_run("run-1", "p", 2));
    for (handle, path) in handles.iter().zip([&a, &b]) {
        handle.flush_blocking();
        let conn = reader(path);
        assert_eq!(
            count(
                &conn,
                "SELECT count(*) FROM runs WHERE status = 'completed' AND n_steps = 2"
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
}
