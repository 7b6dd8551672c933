//! OpenTelemetry export (cargo feature `otlp`, on by default): with an OTLP endpoint set
//! (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, `OTEL_EXPORTER_OTLP_ENDPOINT`, or `[otlp] endpoint` in
//! `flujo.toml`), the default subscriber and [`crate::layer`] stack a `tracing-opentelemetry`
//! layer beside the store's, exporting over OTLP/HTTP (protobuf) from the SDK's batch thread.
//!
//! The span contract is not renamed for it: [`FlujoSpans`], a span processor in front of the
//! batch processor, maps each ended `flujo.run`/`flujo.step` span (named for its pipeline or
//! step, the contract's fields as `flujo.*` attributes, payloads cut or left out, a failure as
//! the span status and an `exception` event), and [`Counted`], around the exporter, counts what
//! was exported and what failed, warns once, and runs under no subscriber, so nothing the HTTP
//! client does reaches a layer. At exit the queued spans get [`EXIT_FLUSH_BOUND`], not more.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use opentelemetry::trace::{Status, TraceContextExt, TracerProvider as _};
use opentelemetry::{Key, KeyValue, Value};
use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, SdkTracerProvider, SpanData, SpanExporter, SpanProcessor,
};
use opentelemetry_sdk::Resource;
use tracing::instrument::WithSubscriber;
use tracing::{Dispatch, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

use flujo_trace_core::{capped, FlujoToml, RUN_SPAN, STEP_SPAN, TARGET};

/// How long the exit waits for the spans still queued to be exported: a dead or slow collector
/// never holds the process longer.
pub const EXIT_FLUSH_BOUND: Duration = Duration::from_secs(2);

/// The default cap on an exported payload or error, in bytes (`[otlp] payload_cap_bytes`).
pub const DEFAULT_OTLP_PAYLOAD_CAP: usize = 4096;

const TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";

/// Where and what to export, resolved from the environment and `flujo.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OtlpSetting {
    /// The full traces URL requests are posted to.
    pub(crate) url: String,
    /// Where the URL came from, for messages.
    pub(crate) source: String,
    /// Whether inputs, outputs and contexts are exported.
    pub(crate) payloads: bool,
    /// The cap on an exported payload or error.
    pub(crate) payload_cap: usize,
}

/// The export setting: the traces endpoint variable as given, else the base endpoint variable
/// or `[otlp] endpoint` with `/v1/traces` appended (the environment wins over the file); `None`
/// when none is set, or `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`.
///
/// # Errors
///
/// A URL that is not `http://` or `https://`, as one line naming where it was set.
pub(crate) fn resolve(
    env: impl Fn(&str) -> Option<String>,
    toml: Option<(&std::path::Path, &FlujoToml)>,
) -> Result<Option<OtlpSetting>, String> {
    let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim().eq_ignore_ascii_case("none"))
    {
        return Ok(None);
    }
    let from_file = toml.and_then(|(file, toml)| {
        let endpoint = toml.otlp.endpoint.clone()?;
        Some((endpoint, format!("[otlp] endpoint in {}", file.display())))
    });
    let (url, source) = if let Some(url) = set(TRACES_ENDPOINT_ENV) {
        (url.trim().to_owned(), TRACES_ENDPOINT_ENV.to_owned())
    } else if let Some(base) = set(ENDPOINT_ENV) {
        (traces_url(&base), ENDPOINT_ENV.to_owned())
    } else if let Some((base, source)) = from_file.filter(|(base, _)| !base.trim().is_empty()) {
        (traces_url(&base), source)
    } else {
        return Ok(None);
    };
    let scheme_ok = ["http://", "https://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(scheme))
            && url.len() > scheme.len()
    });
    if !scheme_ok {
        return Err(format!(
            "{source} is {url:?}, not an http:// or https:// URL of an OTLP/HTTP collector \
             (for example http://localhost:4318)"
        ));
    }
    let otlp = toml.map(|(_, toml)| &toml.otlp);
    Ok(Some(OtlpSetting {
        url,
        source,
        payloads: otlp.and_then(|otlp| otlp.payloads).unwrap_or(true),
        payload_cap: otlp
            .and_then(|otlp| otlp.payload_cap_bytes)
            .map_or(DEFAULT_OTLP_PAYLOAD_CAP, |cap| {
                usize::try_from(cap).unwrap_or(usize::MAX)
            }),
    }))
}

/// A base URL with the traces path appended, as the OTLP exporter specification says.
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim().trim_end_matches('/'))
}

/// The exporter's request timeout: `OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`, else
/// `OTEL_EXPORTER_OTLP_TIMEOUT` (milliseconds), else the specification's 10 s.
fn export_timeout() -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|name| std::env::var(name).ok()?.trim().parse().ok())
    .map_or(Duration::from_secs(10), Duration::from_millis)
}

/// A request for the I/O thread, and where its answer goes.
type Job = (
    reqwest::Request,
    std::sync::mpsc::SyncSender<Result<Response<Bytes>, HttpError>>,
);

/// The exporter's HTTP client: reqwest's async client driven by a current-thread runtime on a
/// thread of its own, whose default dispatcher is `Dispatch::none()`. Every task the client
/// spawns runs there, so nothing hyper or reqwest logs reaches a layer (reqwest's blocking
/// client would run them on a thread of its own under the global subscriber).
#[derive(Debug)]
struct QuietClient {
    jobs: std::sync::mpsc::Sender<Job>,
}

impl QuietClient {
    fn spawn(timeout: Duration) -> Result<QuietClient, String> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        let (ready, started) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("flujo-otlp-http".to_owned())
            .spawn(move || {
                let _quiet = tracing::dispatcher::set_default(&Dispatch::none());
                let built = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())
                    .and_then(|runtime| {
                        let client = reqwest::Client::builder()
                            .timeout(timeout)
                            .build()
                            .map_err(|e| e.to_string())?;
                        Ok((runtime, client))
                    });
                let (runtime, client) = match built {
                    Ok(built) => {
                        let _ = ready.send(Ok(()));
                        built
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                        return;
                    }
                };
                // ends when the exporter (the last sender) is dropped
                while let Ok((request, answer)) = queue.recv() {
                    let response = runtime.block_on(async {
                        let mut response = client.execute(request).await?.error_for_status()?;
                        let headers = std::mem::take(response.headers_mut());
                        let mut answered = Response::builder()
                            .status(response.status())
                            .body(response.bytes().await?)?;
                        *answered.headers_mut() = headers;
                        Ok::<_, HttpError>(answered)
                    });
                    let _ = answer.send(response);
                }
            })
            .map_err(|e| format!("cannot start the exporter's HTTP thread: {e}"))?;
        match started.recv() {
            Ok(Ok(())) => Ok(QuietClient { jobs }),
            Ok(Err(error)) => Err(format!("cannot build the exporter's HTTP client: {error}")),
            Err(_) => Err("the exporter's HTTP thread stopped".to_owned()),
        }
    }
}

impl HttpClient for QuietClient {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'b>,
    >
    where
        'a: 'b,
    {
        Box::pin(async move {
            let request = reqwest::Request::try_from(request)?;
            let (answer, answered) = std::sync::mpsc::sync_channel(1);
            self.jobs
                .send((request, answer))
                .map_err(|_| "the exporter's HTTP thread stopped")?;
            // the batch processor's own thread waits here, never a pipeline's
            answered
                .recv()
                .map_err(|_| "the exporter's HTTP thread stopped")?
        })
    }
}

/// The export layer for a subscriber: `tracing-opentelemetry` over an SDK tracer provider whose
/// batch processor posts to `setting.url`; the provider is shut down at exit (within
/// [`EXIT_FLUSH_BOUND`]).
///
/// # Errors
///
/// The exporter cannot be built (an unusable URL or TLS setup), as one line.
pub(crate) fn layer<S>(setting: &OtlpSetting) -> Result<Box<dyn Layer<S> + Send + Sync>, String>
where
    S: tracing::Subscriber + Send + Sync + for<'span> LookupSpan<'span>,
{
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(QuietClient::spawn(export_timeout())?)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(setting.url.clone())
        .build()
        .map_err(|error| format!("{}: {error}", setting.source))?;
    let stats = stats();
    let _ = stats.url.set(setting.url.clone());
    let exporter = Counted {
        inner: exporter,
        url: setting.url.clone(),
    };
    let processor = FlujoSpans {
        inner: BatchSpanProcessor::builder(exporter).build(),
        payloads: setting.payloads,
        payload_cap: setting.payload_cap,
    };
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(resource())
        .build();
    let tracer = provider.tracer("flujo");
    *stats.provider.lock().unwrap_or_else(|e| e.into_inner()) = Some(provider);
    register_exit_flush();
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_filter(tracing_subscriber::filter::filter_fn(exported));
    Ok(Box::new(layer))
}

/// Which spans and events the export layer sees: flujo's, and the application's own at `INFO`
/// or above (so a run is the child of the caller's span), never those of the exporter's HTTP
/// stack or of OpenTelemetry itself.
fn exported(metadata: &tracing::Metadata<'_>) -> bool {
    exported_target(metadata.target(), *metadata.level())
}

fn exported_target(target: &str, level: tracing::Level) -> bool {
    const OWN_STACK: [&str; 8] = [
        "opentelemetry",
        "tracing_opentelemetry",
        "reqwest",
        "hyper",
        "h2",
        "tower",
        "rustls",
        "tokio",
    ];
    if target == TARGET {
        return true;
    }
    let own = OWN_STACK.iter().any(|prefix| {
        target
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with("::") || rest.starts_with('_'))
    });
    !own && level <= tracing::Level::INFO
}

/// The resource: the SDK's (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), with the
/// executable's name as `service.name` when neither sets one.
fn resource() -> Resource {
    let resource = Resource::builder().build();
    let unnamed = resource
        .get(&Key::from_static_str("service.name"))
        .is_none_or(|name| name.as_str().starts_with("unknown_service"));
    if !unnamed {
        return resource;
    }
    let name = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.file_stem()?.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "flujo".to_owned());
    Resource::builder().with_service_name(name).build()
}

/// Records the run span's OpenTelemetry trace id as its `trace_id` field, when an
/// OpenTelemetry layer of this process's `tracing-opentelemetry` gave it one (ours, or one the
/// user stacked), so every store records the link whatever the order of the layers.
pub(crate) fn record_trace_id(span: &Span) {
    if span.is_disabled() {
        return;
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    if span_context.is_valid() {
        span.record("trace_id", span_context.trace_id().to_string().as_str());
    }
}

/// What export did in this process, for the warning and the exit summary.
#[derive(Default)]
struct Stats {
    /// Spans handed to the batch processor.
    ended: AtomicU64,
    /// Spans the collector accepted.
    exported: AtomicU64,
    /// Spans in exports that failed.
    failed: AtomicU64,
    /// Exports that failed.
    failed_exports: AtomicU64,
    /// Set once the exit flush began: its failures are told by the exit summary alone.
    exiting: AtomicBool,
    warned: AtomicBool,
    last_error: Mutex<Option<String>>,
    provider: Mutex<Option<SdkTracerProvider>>,
    /// Where spans are posted, for the exit summary.
    url: OnceLock<String>,
}

fn stats() -> &'static Stats {
    static STATS: OnceLock<Stats> = OnceLock::new();
    STATS.get_or_init(Stats::default)
}

/// Counts of this process's export so far: spans handed to the exporter, exported, and lost
/// (in failed exports or dropped at a full queue, which also counts those still queued).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OtlpCounts {
    /// Spans that ended and were handed to the batch processor.
    pub ended: u64,
    /// Spans the collector accepted.
    pub exported: u64,
    /// Spans in exports that failed (collector down, refusing, too slow).
    pub failed: u64,
    /// Exports (requests) that failed.
    pub failed_exports: u64,
}

/// What OpenTelemetry export did in this process so far (all zero when nothing is exported).
pub fn otlp_counts() -> OtlpCounts {
    let stats = stats();
    OtlpCounts {
        ended: stats.ended.load(Ordering::Relaxed),
        exported: stats.exported.load(Ordering::Relaxed),
        failed: stats.failed.load(Ordering::Relaxed),
        failed_exports: stats.failed_exports.load(Ordering::Relaxed),
    }
}

/// The exporter, counted: runs under no subscriber (nothing the HTTP client or the SDK does
/// reaches a layer), counts what was accepted and what failed, and warns on the first failure.
#[derive(Debug)]
struct Counted<E> {
    inner: E,
    url: String,
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let spans = batch.len() as u64;
        let none = Dispatch::none();
        let export = tracing::dispatcher::with_default(&none, || self.inner.export(batch));
        let url = &self.url;
        async move {
            let result = export.await;
            let stats = stats();
            match &result {
                Ok(()) => {
                    stats.exported.fetch_add(spans, Ordering::Relaxed);
                }
                Err(error) => {
                    stats.failed.fetch_add(spans, Ordering::Relaxed);
                    stats.failed_exports.fetch_add(1, Ordering::Relaxed);
                    let message = error.to_string();
                    if !stats.exiting.load(Ordering::Relaxed)
                        && !stats.warned.swap(true, Ordering::Relaxed)
                    {
                        eprintln!(
                            "flujo: warning: OpenTelemetry export to {url} failed: {message}; \
                             spans are dropped while it fails (runs are still recorded; a \
                             count at exit)"
                        );
                    }
                    *stats.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
                }
            }
            result
        }
        .with_subscriber(none)
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        let none = Dispatch::none();
        tracing::dispatcher::with_default(&none, || self.inner.shutdown_with_timeout(timeout))
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

fn register_exit_flush() {
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| {
        // SAFETY: `flush_at_exit` is an `extern "C" fn()` that never unwinds (it catches panics)
        unsafe {
            libc::atexit(flush_at_exit);
        }
    });
}

/// At exit: export what is queued, waiting at most [`EXIT_FLUSH_BOUND`], then say what was lost,
/// if anything.
extern "C" fn flush_at_exit() {
    let _ = std::panic::catch_unwind(|| {
        let stats = stats();
        let provider = stats
            .provider
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let Some(provider) = provider else { return };
        stats.exiting.store(true, Ordering::Relaxed);
        let none = Dispatch::none();
        let finished = tracing::dispatcher::with_default(&none, || {
            provider.shutdown_with_timeout(EXIT_FLUSH_BOUND)
        })
        .is_ok();
        let counts = otlp_counts();
        let lost = counts.ended.saturating_sub(counts.exported);
        if lost == 0 {
            return;
        }
        let queued = lost.saturating_sub(counts.failed);
        let mut parts = Vec::new();
        if counts.failed > 0 {
            let last = stats
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default();
            parts.push(format!(
                "{} in {} failed export(s) (last: {last})",
                counts.failed, counts.failed_exports
            ));
        }
        if queued > 0 {
            parts.push(if finished {
                format!("{queued} dropped at a full queue")
            } else {
                format!(
                    "{queued} dropped at a full queue or still queued after {} s at exit",
                    EXIT_FLUSH_BOUND.as_secs()
                )
            });
        }
        eprintln!(
            "flujo: warning: OpenTelemetry export to {}: {lost} of {} spans not exported: {}",
            stats.url.get().map_or("the collector", String::as_str),
            counts.ended,
            parts.join(", ")
        );
    });
}

/// The span processor in front of the batch processor: flujo's spans renamed and mapped to
/// attributes (see ARCHITECTURE.md, "OpenTelemetry export"), every span counted.
#[derive(Debug)]
struct FlujoSpans<P> {
    inner: P,
    payloads: bool,
    payload_cap: usize,
}

impl<P: SpanProcessor> SpanProcessor for FlujoSpans<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, mut span: SpanData) {
        if span.name == RUN_SPAN || span.name == STEP_SPAN {
            self.map(&mut span);
        }
        stats().ended.fetch_add(1, Ordering::Relaxed);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// A contract field as exported: its attribute name, and whether it is a payload.
fn attribute_of(span_name: &str, field: &str) -> Option<(&'static str, bool)> {
    let run = span_name == RUN_SPAN;
    Some(match field {
        "run_id" => ("flujo.run.id", false),
        "pipeline_name" => ("flujo.pipeline.name", false),
        "pipeline_version" => ("flujo.pipeline.version", false),
        "step_run_id" => ("flujo.step.id", false),
        "parent_step_run_id" => ("flujo.step.parent_id", false),
        "step_name" => ("flujo.step.name", false),
        "step_index" => ("flujo.step.index", false),
        "step_kind" => ("flujo.step.kind", false),
        "attempts" => ("flujo.step.attempts", false),
        "fallback_taken" => ("flujo.step.fallback_taken", false),
        "status" => ("flujo.status", false),
        "duration_ms" => ("flujo.duration_ms", false),
        "tokens" | "total_tokens" => ("flujo.usage.tokens", false),
        "cost_usd" | "total_cost_usd" => ("flujo.usage.cost_usd", false),
        "input" => ("flujo.input", true),
        "output" => ("flujo.output", true),
        "final_context" if run => ("flujo.final_context", true),
        "error" => ("flujo.error", false),
        // the span's own start, end and trace id say these
        _ => return None,
    })
}

impl<P> FlujoSpans<P> {
    /// Renames a run or step span for its pipeline or step, maps the contract's fields to
    /// `flujo.*` attributes (payloads cut to the cap, or left out), and turns a failure into
    /// the span status and an `exception` event.
    fn map(&self, span: &mut SpanData) {
        let span_name = span.name.clone();
        let mut name = None;
        let mut status = None;
        let mut error = None;
        let attributes = std::mem::take(&mut span.attributes);
        let mut mapped = Vec::with_capacity(attributes.len());
        for KeyValue { key, value, .. } in attributes {
            let Some((exported, payload)) = attribute_of(&span_name, key.as_str()) else {
                // not a contract field: an application's attribute, kept as it is
                if !matches!(key.as_str(), "start_time" | "end_time" | "trace_id") {
                    mapped.push(KeyValue::new(key, value));
                }
                continue;
            };
            match key.as_str() {
                "pipeline_name" if span_name == RUN_SPAN => {
                    name = Some(value.as_str().into_owned())
                }
                "step_name" => name = Some(value.as_str().into_owned()),
                "status" => status = Some(value.as_str().into_owned()),
                "error" => error = Some(value.as_str().into_owned()),
                _ => {}
            }
            let value = match value {
                // tracing-opentelemetry records a u64 field as its text: the contract's counts
                // go out as integers
                Value::String(text) if is_count(key.as_str()) => match text.as_str().parse() {
                    Ok(count) => Value::I64(count),
                    Err(_) => Value::String(text),
                },
                Value::String(text) if payload || exported == "flujo.error" => {
                    if payload && !self.payloads {
                        continue;
                    }
                    Value::from(capped(text.as_str(), self.payload_cap))
                }
                other => other,
            };
            mapped.push(KeyValue::new(exported, value));
        }
        span.attributes = mapped;
        if let Some(name) = name {
            span.name = Cow::Owned(name);
        }
        match status.as_deref() {
            Some("failed") => {
                let message = error.unwrap_or_else(|| "failed".to_owned());
                let message = capped(&message, self.payload_cap);
                span.events.events.push(opentelemetry::trace::Event::new(
                    "exception",
                    span.end_time,
                    vec![
                        KeyValue::new("exception.type", "flujo.StepError"),
                        KeyValue::new("exception.message", message.clone()),
                    ],
                    0,
                ));
                span.status = Status::error(message);
            }
            Some("completed") => span.status = Status::Ok,
            _ => {}
        }
    }
}

/// Whether a contract field is a count (a u64 in the span contract).
fn is_count(field: &str) -> bool {
    matches!(
        field,
        "step_index" | "attempts" | "duration_ms" | "tokens" | "total_tokens"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    fn toml_with(endpoint: &str) -> FlujoToml {
        let mut toml = FlujoToml::default();
        toml.otlp.endpoint = Some(endpoint.to_owned());
        toml
    }

    #[test]
    fn the_environment_wins_over_the_file_and_the_traces_variable_is_used_as_given() {
        let file = std::path::Path::new("/w/flujo.toml");
        let toml = toml_with("http://file:4318/");
        let toml = Some((file, &toml));
        let url = |vars: &[(&str, &str)]| resolve(env(vars), toml).unwrap().map(|s| s.url);
        assert_eq!(url(&[]).as_deref(), Some("http://file:4318/v1/traces"));
        assert_eq!(
            url(&[(ENDPOINT_ENV, "https://base:4318")]).as_deref(),
            Some("https://base:4318/v1/traces")
        );
        assert_eq!(
            url(&[
                (ENDPOINT_ENV, "https://base:4318"),
                (TRACES_ENDPOINT_ENV, "http://traces:9/custom")
            ])
            .as_deref(),
            Some("http://traces:9/custom")
        );
        assert_eq!(url(&[("OTEL_SDK_DISABLED", "true")]), None);
        assert_eq!(url(&[("OTEL_TRACES_EXPORTER", "none")]), None);
        assert_eq!(
            resolve(env(&[]), None).unwrap(),
            None,
            "nothing set, nothing sent"
        );
    }

    #[test]
    fn a_url_that_is_not_http_is_one_line_naming_where_it_was_set() {
        let error = resolve(env(&[(ENDPOINT_ENV, "localhost:4318")]), None).unwrap_err();
        assert_eq!(
            error,
            "OTEL_EXPORTER_OTLP_ENDPOINT is \"localhost:4318/v1/traces\", not an http:// or \
             https:// URL of an OTLP/HTTP collector (for example http://localhost:4318)"
        );
    }

    #[test]
    fn payload_settings_come_from_the_file() {
        let mut toml = toml_with("http://c:4318");
        toml.otlp.payloads = Some(false);
        toml.otlp.payload_cap_bytes = Some(10);
        let file = std::path::Path::new("flujo.toml");
        let setting = resolve(env(&[]), Some((file, &toml))).unwrap().unwrap();
        assert!(!setting.payloads);
        assert_eq!(setting.payload_cap, 10);
        assert_eq!(setting.source, "[otlp] endpoint in flujo.toml");
    }

    #[test]
    fn the_exporters_own_stack_is_never_exported() {
        use tracing::Level;
        let seen = exported_target;
        assert!(seen("flujo", Level::INFO));
        assert!(seen("my_app::handler", Level::INFO));
        assert!(!seen("my_app::handler", Level::DEBUG));
        assert!(!seen("opentelemetry_sdk", Level::WARN));
        assert!(!seen("hyper::client", Level::INFO));
        assert!(!seen("h2", Level::INFO));
        assert!(seen("h2o_app", Level::INFO), "only the crates themselves");
    }
}
