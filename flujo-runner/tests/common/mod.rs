//! A capturing `tracing` layer for the span-contract tests, and helpers to read what it saw.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Dispatch, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

/// The fields of `flujo.run`, in the contract's order.
pub const RUN_FIELDS: &[&str] = &[
    "run_id",
    "pipeline_name",
    "pipeline_version",
    "start_time",
    "input",
    "status",
    "end_time",
    "duration_ms",
    "error",
    "output",
    "final_context",
    "total_cost_usd",
    "total_tokens",
    "trace_id",
];

/// The fields of `flujo.step`, in the contract's order.
pub const STEP_FIELDS: &[&str] = &[
    "run_id",
    "step_run_id",
    "parent_step_run_id",
    "step_name",
    "step_index",
    "step_kind",
    "start_time",
    "input",
    "status",
    "attempts",
    "end_time",
    "duration_ms",
    "output",
    "error",
    "fallback_taken",
    "tokens",
    "cost_usd",
];

/// A recorded value, by the `Visit` method that received it.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Str(String),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Debug(String),
}

/// One span as the layer saw it.
#[derive(Debug, Clone)]
pub struct SpanRecord {
    /// Open order (0-based), also this span's id in the capture.
    pub seq: usize,
    pub name: String,
    pub target: String,
    pub level: tracing::Level,
    /// `seq` of the parent span.
    pub parent: Option<usize>,
    /// Every field the span's metadata declares, in order.
    pub declared: Vec<String>,
    /// Values given when the span opened.
    pub open_fields: BTreeMap<String, FieldValue>,
    /// Every value, at open or later.
    pub fields: BTreeMap<String, FieldValue>,
    /// Close order (0-based) among all spans, once closed.
    pub closed_at: Option<usize>,
    /// Position of the open in the timeline of opens and closes.
    pub opened_event: usize,
    /// Position of the close in the timeline of opens and closes.
    pub closed_event: Option<usize>,
}

impl SpanRecord {
    pub fn get(&self, field: &str) -> Option<&FieldValue> {
        self.fields.get(field)
    }

    /// A field recorded as a `&str`; panics when it is missing or of another type.
    pub fn str(&self, field: &str) -> &str {
        match self.fields.get(field) {
            Some(FieldValue::Str(text)) => text,
            other => panic!("{} field {field} is {other:?}, not a str", self.name),
        }
    }

    pub fn u64(&self, field: &str) -> u64 {
        match self.fields.get(field) {
            Some(FieldValue::U64(value)) => *value,
            other => panic!("{} field {field} is {other:?}, not a u64", self.name),
        }
    }

    pub fn f64(&self, field: &str) -> f64 {
        match self.fields.get(field) {
            Some(FieldValue::F64(value)) => *value,
            other => panic!("{} field {field} is {other:?}, not an f64", self.name),
        }
    }

    pub fn bool(&self, field: &str) -> bool {
        match self.fields.get(field) {
            Some(FieldValue::Bool(value)) => *value,
            other => panic!("{} field {field} is {other:?}, not a bool", self.name),
        }
    }

    /// A JSON field, parsed.
    pub fn json(&self, field: &str) -> serde_json::Value {
        serde_json::from_str(self.str(field))
            .unwrap_or_else(|e| panic!("{} field {field} is not JSON: {e}", self.name))
    }

    pub fn has(&self, field: &str) -> bool {
        self.fields.contains_key(field)
    }

    pub fn opened_with(&self, field: &str) -> bool {
        self.open_fields.contains_key(field)
    }
}

#[derive(Default)]
struct State {
    spans: Vec<SpanRecord>,
    n_closed: usize,
    n_events: usize,
}

/// Records every span of the dispatch it is part of.
#[derive(Clone, Default)]
pub struct Capture {
    state: Arc<Mutex<State>>,
}

struct Seq(usize);

/// Collects the fields a span records, by name.
struct FieldCollector<'a>(&'a mut BTreeMap<String, FieldValue>);

impl Visit for FieldCollector<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), FieldValue::Str(value.to_owned()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0
            .insert(field.name().to_owned(), FieldValue::U64(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0
            .insert(field.name().to_owned(), FieldValue::I64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0
            .insert(field.name().to_owned(), FieldValue::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0
            .insert(field.name().to_owned(), FieldValue::Bool(value));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            FieldValue::Debug(format!("{value:?}")),
        );
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a new span is in the registry");
        let parent = span
            .parent()
            .and_then(|parent| parent.extensions().get::<Seq>().map(|seq| seq.0));
        let mut open_fields = BTreeMap::new();
        attrs.record(&mut FieldCollector(&mut open_fields));
        let metadata = attrs.metadata();
        let mut state = self.state.lock().unwrap();
        let seq = state.spans.len();
        let opened_event = state.n_events;
        state.n_events += 1;
        state.spans.push(SpanRecord {
            opened_event,
            closed_event: None,
            seq,
            name: metadata.name().to_owned(),
            target: metadata.target().to_owned(),
            level: *metadata.level(),
            parent,
            declared: metadata
                .fields()
                .iter()
                .map(|f| f.name().to_owned())
                .collect(),
            fields: open_fields.clone(),
            open_fields,
            closed_at: None,
        });
        drop(state);
        span.extensions_mut().insert(Seq(seq));
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let span = ctx.span(id).expect("a recorded span is in the registry");
        let seq = span.extensions().get::<Seq>().expect("seq").0;
        let mut state = self.state.lock().unwrap();
        values.record(&mut FieldCollector(&mut state.spans[seq].fields));
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let span = ctx.span(&id).expect("a closing span is in the registry");
        let seq = span.extensions().get::<Seq>().expect("seq").0;
        let mut state = self.state.lock().unwrap();
        let order = state.n_closed;
        state.n_closed += 1;
        state.spans[seq].closed_at = Some(order);
        state.spans[seq].closed_event = Some(state.n_events);
        state.n_events += 1;
    }
}

impl Capture {
    pub fn new() -> Self {
        Capture::default()
    }

    /// A dispatch of a `Registry` with this layer.
    pub fn dispatch(&self) -> Dispatch {
        Dispatch::new(Registry::default().with(self.clone()))
    }

    pub fn spans(&self) -> Vec<SpanRecord> {
        self.state.lock().unwrap().spans.clone()
    }

    /// The one `flujo.run` span.
    pub fn run(&self) -> SpanRecord {
        let runs: Vec<_> = self
            .spans()
            .into_iter()
            .filter(|span| span.name == "flujo.run")
            .collect();
        assert_eq!(runs.len(), 1, "expected one run span, got {runs:#?}");
        runs.into_iter().next().unwrap()
    }

    /// Every `flujo.step` span with this `step_name`, in open order.
    pub fn steps_named(&self, step_name: &str) -> Vec<SpanRecord> {
        self.spans()
            .into_iter()
            .filter(|span| {
                span.name == "flujo.step"
                    && matches!(span.open_fields.get("step_name"), Some(FieldValue::Str(n)) if n == step_name)
            })
            .collect()
    }

    /// The one `flujo.step` span with this `step_name`.
    pub fn step(&self, step_name: &str) -> SpanRecord {
        let steps = self.steps_named(step_name);
        assert_eq!(
            steps.len(),
            1,
            "expected one step span {step_name}, got {steps:#?}"
        );
        steps.into_iter().next().unwrap()
    }

    /// The spans whose parent is `parent`, in open order.
    pub fn children(&self, parent: &SpanRecord) -> Vec<SpanRecord> {
        self.spans()
            .into_iter()
            .filter(|span| span.parent == Some(parent.seq))
            .collect()
    }

    /// The `step_name`s of the children of `parent`, in open order.
    pub fn child_names(&self, parent: &SpanRecord) -> Vec<String> {
        self.children(parent)
            .iter()
            .map(|span| span.str("step_name").to_owned())
            .collect()
    }

    /// Asserts what every flujo span must satisfy whatever happened: target, level, declared
    /// fields, open-time fields, types of the close-time fields, closed.
    pub fn assert_contract(&self) {
        let spans = self.spans();
        assert!(!spans.is_empty(), "no spans captured");
        for span in &spans {
            assert_eq!(span.target, "flujo", "{span:#?}");
            assert_eq!(span.level, tracing::Level::INFO, "{span:#?}");
            assert!(span.closed_at.is_some(), "span not closed: {span:#?}");
            match span.name.as_str() {
                "flujo.run" => assert_run_span(span),
                "flujo.step" => assert_step_span(span, &spans),
                other => panic!("unexpected span name {other}"),
            }
            if let Some(parent) = span.parent {
                assert!(
                    spans[parent].closed_at > span.closed_at,
                    "a parent closed before its child: {span:#?}"
                );
            }
        }
    }
}

/// Asserts `text` is UTC RFC 3339 with exactly six fractional digits and a `Z`.
pub fn assert_timestamp(text: &str) {
    let bytes = text.as_bytes();
    let ok = bytes.len() == 27
        && text.ends_with('Z')
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && bytes[19] == b'.'
        && text[20..26].bytes().all(|b| b.is_ascii_digit())
        && time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
            .is_ok();
    assert!(
        ok,
        "not an RFC 3339 UTC time with 6 fractional digits: {text}"
    );
}

/// Asserts `text` is a lowercase hyphenated UUID v7.
pub fn assert_uuid_v7(text: &str) {
    let uuid = uuid::Uuid::parse_str(text).unwrap_or_else(|e| panic!("{text}: {e}"));
    assert_eq!(uuid.get_version_num(), 7, "{text}");
    assert_eq!(uuid.hyphenated().to_string(), text);
}

fn assert_status(span: &SpanRecord) -> &str {
    let status = span.str("status");
    assert!(
        ["completed", "failed", "cancelled"].contains(&status),
        "bad status {status}"
    );
    assert!(!span.opened_with("status"), "status recorded at open");
    status
}

fn assert_run_span(span: &SpanRecord) {
    assert_eq!(
        span.declared, RUN_FIELDS,
        "run span declares the contract's fields"
    );
    for field in [
        "run_id",
        "pipeline_name",
        "pipeline_version",
        "start_time",
        "input",
    ] {
        assert!(span.opened_with(field), "run span opened without {field}");
    }
    assert_uuid_v7(span.str("run_id"));
    assert_timestamp(span.str("start_time"));
    assert_timestamp(span.str("end_time"));
    assert!(span.str("start_time") <= span.str("end_time"));
    span.json("input");
    span.json("final_context");
    span.u64("duration_ms");
    span.f64("total_cost_usd");
    span.u64("total_tokens");
    // the bare runner has no observer that fills it (the facade's does, with OpenTelemetry)
    assert!(!span.has("trace_id"), "{span:#?}");
    match assert_status(span) {
        "completed" => {
            span.json("output");
            // A completed run's only error is a note on a value it could not serialise.
            if span.has("error") {
                assert!(
                    span.str("error")
                        .contains("could not be serialised as JSON"),
                    "{span:#?}"
                );
            }
        }
        "failed" => {
            assert!(!span.str("error").is_empty());
            assert!(!span.has("output"));
        }
        _ => assert!(!span.has("output")),
    }
}

fn assert_step_span(span: &SpanRecord, spans: &[SpanRecord]) {
    assert_eq!(
        span.declared, STEP_FIELDS,
        "step span declares the contract's fields"
    );
    for field in [
        "run_id",
        "step_run_id",
        "step_name",
        "step_index",
        "step_kind",
        "start_time",
        "input",
    ] {
        assert!(span.opened_with(field), "step span opened without {field}");
    }
    assert_uuid_v7(span.str("step_run_id"));
    assert_timestamp(span.str("start_time"));
    assert_timestamp(span.str("end_time"));
    span.json("input");
    span.u64("step_index");
    assert!(span.u64("attempts") >= 1 || span.str("status") == "cancelled");
    span.u64("duration_ms");
    span.u64("tokens");
    span.f64("cost_usd");
    assert!(
        ["step", "fallback", "loop", "branch", "parallel", "map", "pipeline"]
            .contains(&span.str("step_kind")),
        "{span:#?}"
    );
    let parent = &spans[span.parent.expect("a step span has a parent")];
    assert_eq!(span.str("run_id"), root_run(parent, spans).str("run_id"));
    if parent.name == "flujo.run" {
        assert!(
            !span.has("parent_step_run_id"),
            "top-level step has a parent_step_run_id"
        );
    } else {
        assert!(span.opened_with("parent_step_run_id"));
        assert_eq!(span.str("parent_step_run_id"), parent.str("step_run_id"));
    }
    match assert_status(span) {
        "completed" => {
            span.json("output");
            span.bool("fallback_taken");
        }
        "failed" => {
            assert!(!span.str("error").is_empty());
            assert!(!span.has("output"));
            assert!(!span.bool("fallback_taken"));
        }
        _ => assert!(!span.has("output")),
    }
}

fn root_run<'a>(span: &'a SpanRecord, spans: &'a [SpanRecord]) -> &'a SpanRecord {
    match span.parent {
        Some(parent) if span.name != "flujo.run" => root_run(&spans[parent], spans),
        _ => span,
    }
}

/// Awaits `run` under a fresh capture and asserts the contract on what it recorded.
///
/// Every run in these tests goes through a capturing dispatcher: a callsite first reached while
/// no interested dispatcher exists can cache "never" while another test thread registers its
/// dispatcher, and that thread would then miss spans.
pub async fn checked<F: std::future::Future>(run: F) -> F::Output {
    use tracing::instrument::WithSubscriber;
    let capture = Capture::new();
    let output = run.with_subscriber(capture.dispatch()).await;
    capture.assert_contract();
    output
}
