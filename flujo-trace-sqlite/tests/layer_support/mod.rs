//! Spans emitted by hand, exactly as the span contract in ARCHITECTURE.md describes them, and
//! helpers to look at what landed in the database.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use tracing::field::Empty;
use tracing::Span;

/// Fixed-width RFC 3339 time number `n` (seconds after a fixed instant).
pub fn time(n: u32) -> String {
    format!(
        "2026-01-01T{:02}:{:02}:{:02}.{:06}Z",
        n / 3600 % 24,
        n / 60 % 60,
        n % 60,
        n
    )
}

/// Opens a run span with every field of the contract declared.
pub fn run_span(run_id: &str, pipeline_name: &str) -> Span {
    tracing::info_span!(
        target: "flujo",
        "flujo.run",
        run_id = run_id,
        pipeline_name = pipeline_name,
        pipeline_version = "latest",
        start_time = time(0).as_str(),
        input = r#"{"question":"why"}"#,
        status = Empty,
        end_time = Empty,
        duration_ms = Empty,
        error = Empty,
        output = Empty,
        final_context = Empty,
        total_cost_usd = Empty,
        total_tokens = Empty,
    )
}

/// Records a run's close fields, as the runner does just before the span closes.
pub fn end_run(span: &Span, status: &str, total_cost_usd: f64, total_tokens: u64) {
    span.record("status", status);
    span.record("end_time", time(10).as_str());
    span.record("duration_ms", 10_000u64);
    if status == "failed" {
        span.record("error", "step `b` failed: boom");
    } else {
        span.record("output", r#""done""#);
    }
    span.record("final_context", r#"{"counter":2}"#);
    span.record("total_cost_usd", total_cost_usd);
    span.record("total_tokens", total_tokens);
}

/// Opens a step span; the current span (if any) is its tracing parent.
pub fn step_span(
    run_id: &str,
    step_run_id: &str,
    parent_step_run_id: Option<&str>,
    step_name: &str,
    step_index: u64,
    step_kind: &str,
) -> Span {
    tracing::info_span!(
        target: "flujo",
        "flujo.step",
        run_id = run_id,
        step_run_id = step_run_id,
        parent_step_run_id = parent_step_run_id,
        step_name = step_name,
        step_index = step_index,
        step_kind = step_kind,
        start_time = time(1).as_str(),
        input = r#"{"n":1}"#,
        status = Empty,
        attempts = Empty,
        end_time = Empty,
        duration_ms = Empty,
        output = Empty,
        error = Empty,
        fallback_taken = Empty,
        tokens = Empty,
        cost_usd = Empty,
    )
}

/// Records a step's close fields.
pub fn end_step(span: &Span, status: &str, tokens: u64, cost_usd: f64) {
    span.record("status", status);
    span.record("attempts", 1u64);
    span.record("end_time", time(2).as_str());
    span.record("duration_ms", 1000u64);
    if status == "failed" {
        span.record("error", "boom");
    } else {
        span.record("output", r#"{"n":2}"#);
    }
    span.record("fallback_taken", false);
    span.record("tokens", tokens);
    span.record("cost_usd", cost_usd);
}

/// A whole run of `n_steps` completed steps, spans opened and closed in contract order.
pub fn emit_run(run_id: &str, pipeline_name: &str, n_steps: usize) {
    let run = run_span(run_id, pipeline_name);
    run.in_scope(|| {
        for i in 0..n_steps {
            let step = step_span(
                run_id,
                &format!("{run_id}-step-{i:04}"),
                None,
                &format!("step_{i}"),
                i as u64,
                "step",
            );
            end_step(&step, "completed", 10, 0.001);
        }
    });
    end_run(
        &run,
        "completed",
        0.001 * n_steps as f64,
        10 * n_steps as u64,
    );
}

/// A second, independent connection, as the lens or another process would open it.
pub fn reader(path: &Path) -> Connection {
    Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap()
}

pub fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |row| row.get(0)).unwrap()
}
