//! Large and hostile payloads: a payload over the cap is stored cut with a marker and its
//! original size, which `truncated` reads back; any string under the cap is stored exactly as
//! recorded.

mod layer_support;

use flujo_trace_sqlite::{truncated, SqliteLayer, DEFAULT_PAYLOAD_CAP, TRUNCATION_MARKER_PREFIX};
use layer_support::{end_run, end_step, reader, run_span, time};
use rusqlite::Connection;
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

/// The longest marker: `…[flujo: truncated, kept K of N bytes]` with 20-digit numbers.
const MAX_MARKER: usize = TRUNCATION_MARKER_PREFIX.len() + 20 + 4 + 20 + 7;

/// Records one run with one step whose input, output and error are `step_input`,
/// `step_output`, `step_error`, and whose run input, output, error and final context are
/// `run_payload`;
/// returns a reader on the database.
fn record(
    layer: SqliteLayer,
    step_input: &str,
    step_output: &str,
    step_error: &str,
    run_payload: &str,
) -> Connection {
    let path = layer.path().to_path_buf();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        let run = tracing::info_span!(
            target: "flujo",
            "flujo.run",
            run_id = "run-1",
            pipeline_name = "p",
            pipeline_version = "latest",
            start_time = time(0).as_str(),
            input = run_payload,
            status = Empty,
            end_time = Empty,
            duration_ms = Empty,
            error = Empty,
            output = Empty,
            final_context = Empty,
            total_cost_usd = Empty,
            total_tokens = Empty,
        );
        run.in_scope(|| {
            let step = tracing::info_span!(
                target: "flujo",
                "flujo.step",
                run_id = "run-1",
                step_run_id = "step-1",
                step_name = "big",
                step_index = 0u64,
                step_kind = "step",
                start_time = time(1).as_str(),
                input = step_input,
                status = Empty,
                attempts = Empty,
                end_time = Empty,
                duration_ms = Empty,
                output = Empty,
                error = Empty,
                fallback_taken = Empty,
                tokens = Empty,
                cost_usd = Empty,
            );
            end_step(&step, "completed", 1, 0.0);
            step.record("output", step_output);
            step.record("error", step_error);
        });
        end_run(&run, "failed", 0.0, 1);
        run.record("output", run_payload);
        run.record("error", run_payload);
        run.record("final_context", run_payload);
    });
    handle.flush_blocking();
    assert_eq!(handle.rows_not_recorded(), 0);
    reader(&path)
}

/// The seven stored payloads: step input, output, error; run input, output, error, final
/// context.
fn stored(conn: &Connection) -> [String; 7] {
    let (a, b, c) = conn
        .query_row(
            "SELECT input_blob, output_blob, error_blob FROM steps WHERE step_run_id = 'step-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let (d, e, f, g) = conn
        .query_row(
            "SELECT input_blob, COALESCE(output_blob, (SELECT s.output_blob FROM steps s \
             WHERE s.step_run_id = runs.output_step_run_id)), error_blob, final_context_blob \
             FROM runs WHERE run_id = 'run-1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    [a, b, c, d, e, f, g]
}

/// `stored` is `original` cut to at most `cap` bytes, at a character boundary, with the marker.
fn check_cut(stored: &str, original: &str, cap: usize) {
    assert!(stored.len() <= cap + MAX_MARKER, "{} bytes", stored.len());
    let cut = truncated(stored).expect("the stored payload is marked as cut");
    assert_eq!(cut.original_bytes, original.len() as u64);
    assert!(cut.head.len() <= cap);
    assert!(cut.head.len() + 4 > cap, "cut no shorter than needed");
    assert!(original.starts_with(cut.head));
    assert!(stored.starts_with(cut.head));
}

#[test]
fn a_5_mib_output_is_stored_cut_at_the_default_cap() {
    let dir = tempfile::tempdir().unwrap();
    let layer = SqliteLayer::open(dir.path().join("flujo_ops.db")).unwrap();
    let output = format!(r#"{{"text":"{}"}}"#, "a".repeat(5 << 20));
    let conn = record(layer, r#"{"n":1}"#, &output, "boom", r#"{"k":1}"#);
    let [input, stored_output, error, run_input, run_output, run_error, context] = stored(&conn);
    check_cut(&stored_output, &output, DEFAULT_PAYLOAD_CAP);
    assert_eq!(
        truncated(&stored_output).unwrap().original_bytes,
        (5 << 20) + 11
    );
    // the others were under the cap: whole, and not taken for cut
    for (text, expected) in [
        (&input, r#"{"n":1}"#),
        (&error, "boom"),
        (&run_input, r#"{"k":1}"#),
        (&run_output, r#"{"k":1}"#),
        (&run_error, r#"{"k":1}"#),
        (&context, r#"{"k":1}"#),
    ] {
        assert_eq!(text, expected);
        assert_eq!(truncated(text), None);
    }
}

#[test]
fn every_payload_field_is_cut_at_a_configured_cap() {
    let dir = tempfile::tempdir().unwrap();
    let layer = SqliteLayer::builder()
        .with_payload_cap(1000)
        .open(dir.path().join("flujo_ops.db"))
        .unwrap();
    // 4-byte characters: the cut must not split one
    let big = "😀".repeat(1000);
    let conn = record(layer, &big, &big, &big, &big);
    for text in stored(&conn) {
        check_cut(&text, &big, 1000);
        assert_eq!(truncated(&text).unwrap().head, "😀".repeat(250));
    }
}

#[test]
fn any_string_under_the_cap_is_stored_exactly() {
    let line = "x".repeat(DEFAULT_PAYLOAD_CAP);
    let cases = [
        "nul\0in the\0middle\0",
        "emoji 😀👩‍👩‍👧 and ﷽",
        "rtl \u{202e}txet desrever\u{202c} and \u{200f}marks\u{200e}",
        "terminal \x1b[2J\x1b[H\x1b]0;title\x07 \r overwrite \x08\x7f",
        "unusual \u{feff}\u{fffd}\u{ffff}\u{10ffff} e\u{301}",
        "quotes ' \" ; DROP TABLE runs; --",
        "",
        // a single 1 MiB line, exactly at the cap
        line.as_str(),
    ];
    for case in cases {
        let dir = tempfile::tempdir().unwrap();
        let layer = SqliteLayer::open(dir.path().join("flujo_ops.db")).unwrap();
        let conn = record(layer, case, case, case, case);
        for text in stored(&conn) {
            assert!(
                text == case,
                "{:?} stored as {:?}",
                &case[..case.len().min(80)],
                &text[..text.len().min(80)]
            );
            assert_eq!(truncated(&text), None);
        }
    }
    // one byte more is cut
    let dir = tempfile::tempdir().unwrap();
    let layer = SqliteLayer::open(dir.path().join("flujo_ops.db")).unwrap();
    let over = format!("{line}y");
    let conn = record(layer, &over, &over, &over, &over);
    for text in stored(&conn) {
        check_cut(&text, &over, DEFAULT_PAYLOAD_CAP);
        assert_eq!(truncated(&text).unwrap().head, line);
    }
}

#[test]
fn the_run_row_written_at_start_is_cut_too() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::builder()
        .with_payload_cap(10)
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let _run = tracing::dispatcher::with_default(&dispatch, || {
        let run = run_span("run-open", "p");
        handle.flush_blocking();
        run
    });
    // the run is still open: its `running` row holds the cut input
    let input: String = reader(&path)
        .query_row(
            "SELECT input_blob FROM runs WHERE run_id = 'run-open' AND status = 'running'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        input,
        format!("{{\"question{TRUNCATION_MARKER_PREFIX}10 of 18 bytes]")
    );
}
