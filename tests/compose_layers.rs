//! The SqliteLayer composes: stacked with fmt, a user layer and OpenTelemetry, one run lands in
//! SQLite and in the OpenTelemetry exporter with the same run id (and the row holds the span's
//! trace id), and a per-layer `warn` filter on the logs never stops persistence.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flujo::{step, Flujo, Pipeline, SqliteLayer, StepContext};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::prelude::*;
use tracing_subscriber::{fmt, EnvFilter};

struct CountSpans(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountSpans {
    fn on_close(&self, _id: tracing::span::Id, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

fn pipeline() -> Pipeline<u32, u32> {
    let inc = step("inc", |x: u32, _: StepContext<()>| async move { Ok(x + 1) });
    let dbl = step("dbl", |x: u32, _: StepContext<()>| async move { Ok(x * 2) });
    Pipeline::new(inc).then(dbl)
}

fn read_run(db: &std::path::Path, run_id: &str) -> (String, i64) {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let status: String = conn
        .query_row("SELECT status FROM runs WHERE run_id = ?1", [run_id], |r| {
            r.get(0)
        })
        .unwrap_or_else(|e| panic!("run {run_id} not in the database: {e}"));
    let steps: i64 = conn
        .query_row(
            "SELECT count(*) FROM steps WHERE run_id = ?1",
            [run_id],
            |r| r.get(0),
        )
        .unwrap();
    (status, steps)
}

#[tokio::test]
async fn one_run_lands_in_sqlite_and_in_opentelemetry_with_the_same_run_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let closed = Arc::new(AtomicUsize::new(0));
    let subscriber = tracing_subscriber::registry()
        .with(SqliteLayer::open(&db).unwrap())
        .with(
            fmt::layer()
                .with_test_writer()
                .with_filter(EnvFilter::new("info")),
        )
        .with(CountSpans(closed.clone()))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("test")));

    let result = Flujo::new("composed", pipeline())
        .run(4)
        .with_subscriber(subscriber)
        .await;
    assert_eq!(result.output, Some(10));

    // SQLite: committed when run() returned
    assert_eq!(read_run(&db, &result.run_id), ("completed".to_owned(), 2));
    // the user's layer saw the run span and both step spans close
    assert_eq!(closed.load(Ordering::Relaxed), 3);
    // OpenTelemetry: the same run, same id, with its steps as children
    provider.force_flush().unwrap();
    let spans = exporter.get_finished_spans().unwrap();
    let run = spans
        .iter()
        .find(|s| s.name == "flujo.run")
        .expect("a flujo.run span exported");
    let attr = |span: &opentelemetry_sdk::trace::SpanData, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.to_string())
    };
    assert_eq!(attr(run, "run_id").as_deref(), Some(result.run_id.as_str()));
    assert_eq!(attr(run, "status").as_deref(), Some("completed"));
    let steps: Vec<_> = spans.iter().filter(|s| s.name == "flujo.step").collect();
    assert_eq!(steps.len(), 2);
    for step in steps {
        assert_eq!(step.parent_span_id, run.span_context.span_id());
        assert_eq!(
            attr(step, "run_id").as_deref(),
            Some(result.run_id.as_str())
        );
    }
    // the run's row links to its trace, though the SqliteLayer comes before the OpenTelemetry
    // layer: the facade records the trace id on the span, every layer sees it
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let trace_id: Option<String> = conn
        .query_row(
            "SELECT trace_id FROM runs WHERE run_id = ?1",
            [&result.run_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        trace_id,
        Some(run.span_context.trace_id().to_string()),
        "the exported trace id is recorded with the run"
    );
}

#[tokio::test]
async fn a_warn_filter_on_the_logs_does_not_stop_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    // what `RUST_LOG=warn` gives a user who filters their fmt layer
    let subscriber = tracing_subscriber::registry()
        .with(SqliteLayer::open(&db).unwrap())
        .with(
            fmt::layer()
                .with_test_writer()
                .with_filter(EnvFilter::new("warn")),
        );
    let result = Flujo::new("filtered", pipeline())
        .run(1)
        .with_subscriber(subscriber)
        .await;
    assert_eq!(read_run(&db, &result.run_id), ("completed".to_owned(), 2));
}
