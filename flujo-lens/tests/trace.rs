//! `flujo lens trace RUN`: the waterfall over a run with parallel branches, a retried step and a
//! large map (folded, and whole with --expand), --depth, a narrow terminal, a crashed run, and
//! the JSON tree with offsets.

mod common;

use common::*;

/// Run 7: `fetch` (retried), `enrich` [parallel] with two overlapping branches, `score` [map]
/// with 25 items, then `publish`; times fixed in ms from 09:00:00.
fn trace_fixture() -> (tempfile::TempDir, std::path::PathBuf) {
    let (dir, path) = fixture_dir();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let at = |ms: u32| time(9, 0, ms / 1_000, (ms % 1_000) * 1_000);
    insert_run(
        &conn,
        &Run {
            run_id: run_id(7),
            pipeline_name: "scoring".into(),
            pipeline_version: "3".into(),
            status: "completed".into(),
            start_time: at(0),
            end_time: Some(at(2_000)),
            duration_ms: Some(2_000),
            n_steps: Some(30),
            ..Run::default()
        },
    );
    let mut k = 0;
    let mut add = |name: &str, kind: &str, parent: Option<u32>, index: i64, from: u32, to: u32| {
        k += 1;
        insert_step(
            &conn,
            &Step {
                parent_step_run_id: parent.map(|p| step_id(7, p)),
                step_kind: Some(kind.into()),
                start_time: at(from),
                end_time: Some(at(to)),
                duration_ms: Some(i64::from(to - from)),
                attempts: Some(if name == "fetch" { 3 } else { 1 }),
                ..step(7, k, 9, name, index)
            },
        );
        k
    };
    add("fetch", "step", None, 0, 0, 400);
    let enrich = add("enrich", "parallel", None, 1, 400, 1_000);
    add("geo", "step", Some(enrich), 0, 400, 700);
    add("history", "step", Some(enrich), 1, 410, 1_000);
    let score = add("score", "map", None, 2, 1_000, 1_900);
    for item in 0..25u32 {
        add(
            "score_item",
            "step",
            Some(score),
            i64::from(item),
            1_000 + item * 30,
            1_010 + item * 30 + item % 4 * 5,
        );
    }
    add("publish", "step", None, 3, 1_900, 2_000);
    drop(conn);
    (dir, path)
}

fn check(name: &str, env_columns: &str, args: &[&str]) -> Outcome {
    let (dir, _path) = trace_fixture();
    let mut env = environment(dir.path());
    env.columns = Some(env_columns.into());
    let outcome = lens_in(&env, args);
    snapshot!(name, dir.path(), outcome.transcript(args));
    outcome
}

#[test]
fn parallel_branches_overlap_and_a_large_map_is_folded() {
    let id = run_id(7);
    let outcome = check("lens_trace", "120", &["lens", "trace", &id]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    let line = |name: &str| {
        *lines
            .iter()
            .find(|l| l.trim_start().starts_with(name))
            .unwrap()
    };
    // the two branches overlap on the axis
    let bar = |l: &str| {
        let start = l.find('█').unwrap();
        (start, start + l[start..].matches('█').count())
    };
    let (geo, history) = (bar(line("geo")), bar(line("history")));
    assert!(
        geo.0 <= history.0 && history.0 < geo.1,
        "{outcome:?}",
        outcome = outcome.stdout
    );
    // 25 items: 10 shown, 15 folded into one line
    assert_eq!(
        lines.iter().filter(|l| l.contains("score_item")).count(),
        10
    );
    assert!(outcome.stdout.contains("… 15 more"), "{}", outcome.stdout);
    assert!(line("fetch").contains("3 attempts"));
    assert!(line("enrich").contains("◀ slowest") || line("history").contains("◀ slowest"));
}

#[test]
fn expand_depth_and_a_narrow_terminal() {
    let id = run_id(7);
    let expanded = check(
        "lens_trace_expand",
        "120",
        &["lens", "trace", &id, "--expand"],
    );
    assert_eq!(expanded.stdout.matches("score_item").count(), 25);
    let shallow = check(
        "lens_trace_depth_0",
        "120",
        &["lens", "trace", &id, "--depth", "0"],
    );
    assert!(!shallow.stdout.contains("score_item") && !shallow.stdout.contains("geo"));
    assert!(shallow.stdout.contains("publish"));
    let narrow = check("lens_trace_narrow", "50", &["lens", "trace", &id]);
    assert_eq!(narrow.code, 0);
}

#[test]
fn a_crashed_run_and_json() {
    let crashed = check("lens_trace_crashed", "120", &["lens", "trace", &run_id(6)]);
    assert_eq!(crashed.code, 0, "{}", crashed.stderr);
    assert!(crashed.stdout.contains("crashed"), "{}", crashed.stdout);
    let json = check(
        "lens_trace_json",
        "120",
        &["lens", "-o", "json", "trace", &run_id(7)],
    );
    let tree: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let steps = tree["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 4);
    assert_eq!(steps[1]["children"][1]["offset_ms"], 410.0);
    assert_eq!(
        steps[2]["children"].as_array().unwrap().len(),
        25,
        "nothing folded in JSON"
    );
    let missing = check("lens_trace_unknown", "120", &["lens", "trace", "0000"]);
    assert_eq!(missing.code, 1);
}
