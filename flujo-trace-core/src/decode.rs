//! Decoding the span contract (ARCHITECTURE.md) into rows: the one place that knows which
//! span field becomes which column. A store's layer calls these from its span callbacks; they
//! only copy (and cut, to the payload cap) field values, never do I/O.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};

use crate::payload::capped;
use crate::rows::{RunEnd, RunRecord, StepClose, StepRecord};
use crate::timefmt::now_timestamp;

/// The target of every flujo span.
pub const TARGET: &str = "flujo";
/// The name of a run's span.
pub const RUN_SPAN: &str = "flujo.run";
/// The name of a step execution's span.
pub const STEP_SPAN: &str = "flujo.step";

/// The open fields of a run span, as its `running` row, and the close fields recorded so far;
/// `None` when it has no `run_id`. A missing `start_time` is now.
pub fn decode_run_start(attrs: &Attributes<'_>, payload_cap: usize) -> Option<(RunRecord, RunEnd)> {
    let mut run = blank_run();
    let mut end = blank_run_end();
    attrs.record(&mut RunVisitor {
        start: Some(&mut run),
        end: &mut end,
        payload_cap,
    });
    if run.run_id.is_empty() {
        return None;
    }
    if run.start_time.is_empty() {
        run.start_time = now_timestamp();
    }
    Some((run, end))
}

/// The open fields of a step span, as its `running` row, and the close fields recorded so
/// far; `None` when it has no `run_id` or `step_run_id`. A missing `start_time` is now.
pub fn decode_step_start(
    attrs: &Attributes<'_>,
    payload_cap: usize,
) -> Option<(StepRecord, StepClose)> {
    let mut step = blank_step();
    let mut close = StepClose::default();
    attrs.record(&mut StepVisitor {
        start: Some(&mut step),
        close: &mut close,
        payload_cap,
    });
    if step.run_id.is_empty() || step.step_run_id.is_empty() {
        return None;
    }
    if step.start_time.is_empty() {
        step.start_time = now_timestamp();
    }
    Some((step, close))
}

/// Copies the close fields a run span records later into `end`.
pub fn decode_run_record(values: &Record<'_>, end: &mut RunEnd, payload_cap: usize) {
    values.record(&mut RunVisitor {
        start: None,
        end,
        payload_cap,
    });
}

/// Copies the close fields a step span records later into `close`.
pub fn decode_step_record(values: &Record<'_>, close: &mut StepClose, payload_cap: usize) {
    values.record(&mut StepVisitor {
        start: None,
        close,
        payload_cap,
    });
}

/// A span that closed without recording its status was dropped before it could: `cancelled`.
pub fn finish_run(mut end: RunEnd) -> RunEnd {
    if end.status.is_empty() {
        end.status = "cancelled".to_owned();
    }
    if end.end_time.is_empty() {
        end.end_time = now_timestamp();
    }
    end
}

/// A step span that closed without recording its status was dropped before it could:
/// `cancelled`.
pub fn finish_step(mut close: StepClose) -> StepClose {
    if close.status.is_empty() {
        close.status = "cancelled".to_owned();
    }
    if close.end_time.is_empty() {
        close.end_time = now_timestamp();
    }
    close
}

fn blank_run() -> RunRecord {
    RunRecord {
        run_id: String::new(),
        pipeline_name: String::new(),
        pipeline_version: String::new(),
        status: "running".to_owned(),
        start_time: String::new(),
        end_time: None,
        duration_ms: None,
        total_cost: None,
        total_tokens: None,
        n_steps: None,
        input_blob: None,
        output_blob: None,
        final_context_blob: None,
        error_blob: None,
        writer: None,
        trace_id: None,
    }
}

fn blank_run_end() -> RunEnd {
    RunEnd {
        status: String::new(),
        end_time: String::new(),
        duration_ms: None,
        total_cost: None,
        total_tokens: None,
        output_blob: None,
        output_step_run_id: None,
        final_context_blob: None,
        error_blob: None,
        trace_id: None,
    }
}

fn blank_step() -> StepRecord {
    StepRecord {
        step_run_id: String::new(),
        run_id: String::new(),
        parent_step_run_id: None,
        step_name: String::new(),
        step_index: 0,
        step_kind: None,
        status: "running".to_owned(),
        attempts: None,
        start_time: String::new(),
        end_time: None,
        duration_ms: None,
        cost: None,
        tokens: None,
        input_blob: None,
        output_blob: None,
        error_blob: None,
        fallback_taken: None,
    }
}

/// An OpenTelemetry trace id as W3C trace context writes it: 32 lowercase hex digits, not all
/// zero (the invalid id).
fn is_trace_id(value: &str) -> bool {
    value.len() == 32
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && value.bytes().any(|b| b != b'0')
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Copies a run span's fields: open fields into `start` (when opening), close fields into `end`;
/// payloads are cut to `payload_cap`.
struct RunVisitor<'a> {
    start: Option<&'a mut RunRecord>,
    end: &'a mut RunEnd,
    payload_cap: usize,
}

impl Visit for RunVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let owned = || value.to_owned();
        let payload_cap = self.payload_cap;
        let payload = || capped(value, payload_cap);
        match (field.name(), self.start.as_deref_mut()) {
            ("run_id", Some(start)) => start.run_id = owned(),
            ("pipeline_name", Some(start)) => start.pipeline_name = owned(),
            ("pipeline_version", Some(start)) => start.pipeline_version = owned(),
            ("start_time", Some(start)) => start.start_time = owned(),
            ("input", Some(start)) => start.input_blob = Some(payload()),
            ("status", _) => self.end.status = owned(),
            ("end_time", _) => self.end.end_time = owned(),
            ("output", _) => self.end.output_blob = Some(payload()),
            ("error", _) => self.end.error_blob = Some(payload()),
            ("final_context", _) => self.end.final_context_blob = Some(payload()),
            // an id a store can index and a backend can look up, or nothing
            ("trace_id", _) if is_trace_id(value) => self.end.trace_id = Some(owned()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_i64(field, to_i64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        match field.name() {
            "duration_ms" => self.end.duration_ms = Some(value),
            "total_tokens" => self.end.total_tokens = Some(value),
            "total_cost_usd" => self.end.total_cost = Some(value as f64),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "total_cost_usd" {
            self.end.total_cost = Some(value);
        }
    }

    fn record_bool(&mut self, _field: &Field, _value: bool) {}

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_str(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}

/// Copies a step span's fields: open fields into `start` (when opening), close fields into
/// `close`; payloads are cut to `payload_cap`.
struct StepVisitor<'a> {
    start: Option<&'a mut StepRecord>,
    close: &'a mut StepClose,
    payload_cap: usize,
}

impl Visit for StepVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        let owned = || value.to_owned();
        let payload_cap = self.payload_cap;
        let payload = || capped(value, payload_cap);
        match (field.name(), self.start.as_deref_mut()) {
            ("run_id", Some(start)) => start.run_id = owned(),
            ("step_run_id", Some(start)) => {
                start.step_run_id = owned();
                self.close.step_run_id = owned();
            }
            ("parent_step_run_id", Some(start)) => start.parent_step_run_id = Some(owned()),
            ("step_name", Some(start)) => start.step_name = owned(),
            ("step_kind", Some(start)) => start.step_kind = Some(owned()),
            ("start_time", Some(start)) => start.start_time = owned(),
            ("input", Some(start)) => start.input_blob = Some(payload()),
            ("status", _) => self.close.status = owned(),
            ("end_time", _) => self.close.end_time = owned(),
            ("output", _) => self.close.output_blob = Some(payload()),
            ("error", _) => self.close.error_blob = Some(payload()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_i64(field, to_i64(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        match (field.name(), self.start.as_deref_mut()) {
            ("step_index", Some(start)) => start.step_index = value,
            ("attempts", _) => self.close.attempts = Some(value),
            ("duration_ms", _) => self.close.duration_ms = Some(value),
            ("tokens", _) => self.close.tokens = Some(value),
            ("cost_usd", _) => self.close.cost = Some(value as f64),
            _ => {}
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if field.name() == "cost_usd" {
            self.close.cost = Some(value);
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if field.name() == "fallback_taken" {
            self.close.fallback_taken = Some(value);
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.record_str(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.record_str(field, &format!("{value:?}"));
    }
}
