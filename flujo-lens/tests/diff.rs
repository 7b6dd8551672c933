//! `flujo lens diff A B`: equal runs (exit 0), runs that differ in status, usage, payloads and
//! steps (exit 1, the changed paths shown), `--all`, different pipelines noted, the JSON diff,
//! and an unknown RUN (exit 2, as diff(1)).

mod common;

use common::*;

/// Runs 8 and 9 beside the fixture: 8 is run 1 again (other ids and times, other durations);
/// 9 is run 1 with `transform` giving a different output, `load` retried, and a `validate` step
/// added.
fn diff_fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = fixture_dir();
    let conn = rusqlite::Connection::open(&path).unwrap();
    for n in [8u32, 9] {
        insert_run(
            &conn,
            &Run {
                run_id: run_id(n),
                pipeline_name: "etl".into(),
                pipeline_version: "1.2.0".into(),
                status: "completed".into(),
                start_time: time(15, n, 0, 0),
                end_time: Some(time(15, n, 4, 0)),
                duration_ms: Some(if n == 8 { 4_000 } else { 5_100 }),
                total_cost: Some(if n == 8 { 0.003 } else { 0.0041 }),
                total_tokens: Some(if n == 8 { 300 } else { 410 }),
                n_steps: Some(if n == 8 { 3 } else { 4 }),
                input_blob: Some(r#"{"source":"s3://bucket/2026-01-05.csv"}"#.into()),
                output_blob: Some(
                    if n == 8 {
                        r#"{"rows":42}"#
                    } else {
                        r#"{"rows":41}"#
                    }
                    .into(),
                ),
                final_context_blob: Some(if n == 8 {
                    r#"{"rows_loaded":42,"table":"events","ok":true}"#.into()
                } else {
                    r#"{"rows_loaded":41,"table":"events","ok":true,"warnings":["1 row dropped"]}"#
                        .into()
                }),
                ..Run::default()
            },
        );
        let names: &[&str] = if n == 8 {
            &["extract", "transform", "load"]
        } else {
            &["extract", "transform", "validate", "load"]
        };
        for (k, name) in names.iter().enumerate() {
            let k = k as u32 + 1;
            let changed = n == 9 && *name != "extract";
            insert_step(
                &conn,
                &Step {
                    input_blob: Some(format!(r#"{{"stage":"{name}"}}"#)),
                    output_blob: Some(match (changed, *name) {
                        (true, "transform") => {
                            r#"{"rows":41,"dropped":[{"line":7,"why":"no id"}]}"#.into()
                        }
                        (true, _) => r#"{"rows":41}"#.into(),
                        _ => r#"{"rows":42}"#.into(),
                    }),
                    attempts: Some(if changed && *name == "load" { 2 } else { 1 }),
                    error_blob: (changed && *name == "load")
                        .then(|| "attempt 1/3: connection reset by peer".to_owned()),
                    tokens: Some(if *name == "validate" { 110 } else { 100 }),
                    duration_ms: Some(if n == 8 { 700 } else { 900 }),
                    ..step(n, k, 15, name, i64::from(k) - 1)
                },
            );
        }
    }
    drop(conn);
    (dir, path)
}

fn check(name: &str, args: &[&str]) -> Outcome {
    let (dir, _path) = diff_fixture();
    let outcome = lens(dir.path(), args);
    snapshot!(name, dir.path(), outcome.transcript(args));
    outcome
}

#[test]
fn equal_runs_exit_0_whatever_their_durations() {
    let (a, b) = (run_id(1), run_id(8));
    let outcome = check("lens_diff_equal", &["lens", "diff", &a, &b]);
    assert_eq!(outcome.code, 0, "{}{}", outcome.stdout, outcome.stderr);
    assert!(outcome.stdout.contains("run  equal"), "{}", outcome.stdout);
    assert!(
        outcome.stdout.contains("steps: 0 of 3 differ"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("3.2 s → 4.0 s (+750 ms)"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn runs_that_differ_show_the_changed_paths_and_exit_1() {
    let (a, b) = (run_id(8), run_id(9));
    let outcome = check("lens_diff_changed", &["lens", "diff", &a, &b]);
    assert_eq!(outcome.code, 1, "{}{}", outcome.stdout, outcome.stderr);
    assert_eq!(outcome.stderr, "");
    let out = &outcome.stdout;
    for expected in [
        "run  differs",
        "tokens 300 → 410 (+110)",
        "output.rows: 42 → 41",
        "final_context.warnings: (none) → [\"1 row dropped\"]",
        "steps: 3 of 4 differ (--all shows the equal ones too)",
        "≠ transform",
        "output.dropped: (none) → [{\"line\":7,\"why\":\"no id\"}]",
        "≠ validate  only in B",
        "attempts 1 → 2",
        "error: (none) → \"attempt 1/3: connection reset by peer\"",
    ] {
        assert!(out.contains(expected), "{expected:?} not in\n{out}");
    }
    assert!(!out.contains("extract"), "equal steps are left out: {out}");
}

#[test]
fn all_lists_equal_steps_too_and_json_carries_every_change() {
    let (dir, _path) = diff_fixture();
    let (a, b) = (run_id(8), run_id(9));
    let all = lens(dir.path(), &["lens", "diff", &a, &b, "--all"]);
    assert_eq!(all.code, 1);
    assert!(all.stdout.contains("= extract"), "{}", all.stdout);
    assert!(
        all.stdout.contains("steps: 3 of 4 differ\n"),
        "{}",
        all.stdout
    );

    let args = ["lens", "diff", &a, &b, "-o", "json"];
    let json = lens(dir.path(), &args);
    assert_eq!(json.code, 1);
    snapshot!("lens_diff_json", dir.path(), json.transcript(&args));
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["equal"], false);
    assert_eq!(value["same_pipeline"], true);
    assert_eq!(value["steps_compared"], 4);
    assert_eq!(value["steps_different"], 3);
    let steps = value["steps"].as_array().unwrap();
    let transform = steps.iter().find(|s| s["path"] == "transform").unwrap();
    assert_eq!(
        transform["changes"][1],
        serde_json::json!({"path": "output.dropped", "a": null, "b": [{"line": 7, "why": "no id"}]})
    );
    let validate = steps.iter().find(|s| s["path"] == "validate").unwrap();
    assert_eq!(validate["in"], "b");
    assert_eq!(value["run"]["total_tokens"]["delta"], 110);
}

#[test]
fn different_pipelines_are_compared_and_said_so() {
    let (a, b) = (run_id(1), run_id(3));
    let outcome = check("lens_diff_pipelines", &["lens", "diff", &a, &b]);
    assert_eq!(outcome.code, 1);
    assert!(
        outcome
            .stdout
            .contains("note: different pipelines: A is etl 1.2.0, B is chat latest"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn an_unknown_run_is_trouble_exit_2() {
    let (dir, _path) = diff_fixture();
    let outcome = lens(dir.path(), &["lens", "diff", &run_id(1), "0000"]);
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    assert!(outcome.stdout.is_empty());
    assert!(
        outcome.stderr.starts_with("error: no run 0000 in "),
        "{}",
        outcome.stderr
    );
}
