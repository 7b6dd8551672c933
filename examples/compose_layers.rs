//! Composing layers: one run recorded in the configured store (`flujo::layer()`: where
//! `FLUJO_STATE_URI` or `flujo.toml` say, `./flujo_ops.db` by default), logged by fmt, counted by
//! a layer of your own, and exported as OpenTelemetry spans, all from the same `tracing` spans.
//!
//! `cargo run --example compose_layers` (the OpenTelemetry exporter here keeps spans in memory so
//! the example runs offline; swap in an OTLP exporter to send them to Jaeger or Tempo).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flujo::{step, Flujo, Pipeline, StepContext};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{fmt, EnvFilter};

/// A layer of your own: counts the spans it sees close.
struct CountSpans(Arc<AtomicUsize>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for CountSpans {
    fn on_close(&self, _id: tracing::span::Id, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    let closed = Arc::new(AtomicUsize::new(0));

    tracing_subscriber::registry()
        // persistence: every run and step in the configured store, as with zero setup
        .with(flujo::layer()?)
        // logs: filtered per layer, so RUST_LOG=warn quiets the logs, never the recording
        .with(fmt::layer().with_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        ))
        .with(CountSpans(closed.clone()))
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("flujo-example")))
        .init();

    let fetch = step("fetch", |url: String, _: StepContext<()>| async move {
        Ok(format!("<html>{url}</html>"))
    });
    let measure = step("measure", |page: String, _: StepContext<()>| async move {
        Ok(page.len())
    });
    let flujo = Flujo::new("page-size", Pipeline::new(fetch).then(measure));
    let result = flujo.run("https://example.com".to_owned()).await;

    provider.force_flush()?;
    let exported = exporter.get_finished_spans()?;
    println!(
        "run {} {}: output {:?}",
        result.run_id,
        result.status.as_str(),
        result.output
    );
    println!(
        "your layer saw {} spans close",
        closed.load(Ordering::Relaxed)
    );
    for span in &exported {
        let run_id = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "run_id")
            .map(|kv| kv.value.to_string());
        println!(
            "opentelemetry exported span {:<10} run_id={}",
            span.name,
            run_id.unwrap_or_default()
        );
    }
    println!(
        "recorded in the configured store: `flujo lens show {}`",
        result.run_id
    );
    Ok(())
}
