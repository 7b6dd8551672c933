//! Steps run by a control-flow step are recorded with the `parent_step_run_id` their span names,
//! kind and index included, at any depth. (Hand-made spans: where the runner itself puts a
//! fallback, under the step whose fallback it is, is checked on real runs in
//! `runner_rows_match_result.rs`.)

mod layer_support;

use flujo_trace_sqlite::SqliteLayer;
use layer_support::{end_run, end_step, reader, run_span, step_span};
use tracing_subscriber::prelude::*;

#[test]
fn nested_steps_keep_their_parent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::open(&path).unwrap();
    let handle = layer.handle();
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        let run = run_span("run-1", "nested");
        let _run = run.enter();
        let lp = step_span("run-1", "s1", None, "refine", 0, "loop");
        {
            let _lp = lp.enter();
            for i in 0..2u64 {
                let body = step_span("run-1", &format!("s1-{i}"), Some("s1"), "draft", i, "step");
                let _body = body.enter();
                let primary = step_span(
                    "run-1",
                    &format!("s1-{i}-p"),
                    Some(&format!("s1-{i}")),
                    "call",
                    0,
                    "step",
                );
                end_step(&primary, "failed", 1, 0.0);
                drop(primary);
                let fallback = step_span(
                    "run-1",
                    &format!("s1-{i}-p-fb"),
                    Some(&format!("s1-{i}")),
                    "call_cheap",
                    0,
                    "fallback",
                );
                end_step(&fallback, "completed", 1, 0.0);
                drop(fallback);
                end_step(&body, "completed", 2, 0.0);
            }
        }
        end_step(&lp, "completed", 4, 0.0);
        drop(lp);
        end_run(&run, "completed", 0.0, 4);
    });
    handle.flush_blocking();

    let conn = reader(&path);
    let rows: Vec<(String, Option<String>, String, i64, String)> = conn
        .prepare("SELECT step_run_id, parent_step_run_id, step_name, step_index, step_kind FROM steps ORDER BY step_run_id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected: Vec<(String, Option<String>, String, i64, String)> = vec![
        ("s1".into(), None, "refine".into(), 0, "loop".into()),
        (
            "s1-0".into(),
            Some("s1".into()),
            "draft".into(),
            0,
            "step".into(),
        ),
        (
            "s1-0-p".into(),
            Some("s1-0".into()),
            "call".into(),
            0,
            "step".into(),
        ),
        (
            "s1-0-p-fb".into(),
            Some("s1-0".into()),
            "call_cheap".into(),
            0,
            "fallback".into(),
        ),
        (
            "s1-1".into(),
            Some("s1".into()),
            "draft".into(),
            1,
            "step".into(),
        ),
        (
            "s1-1-p".into(),
            Some("s1-1".into()),
            "call".into(),
            0,
            "step".into(),
        ),
        (
            "s1-1-p-fb".into(),
            Some("s1-1".into()),
            "call_cheap".into(),
            0,
            "fallback".into(),
        ),
    ];
    assert_eq!(rows, expected);
    let n_steps: i64 = conn
        .query_row("SELECT n_steps FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n_steps, 7);
}
