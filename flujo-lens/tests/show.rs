//! `flujo lens show RUN`: run lookup (id, prefix, latest), the summary, steps in execution order
//! with nesting, cut and whole values, hostile text, crashed runs, and JSON output.

mod common;

use common::*;

fn check(name: &str, args: &[&str]) -> Outcome {
    let (dir, _path) = fixture_dir();
    let outcome = lens(dir.path(), args);
    snapshot!(name, dir.path(), outcome.transcript(args));
    outcome
}

#[test]
fn completed_run() {
    let id = run_id(1);
    let outcome = check("lens_show_completed", &["lens", "show", &id]);
    assert_eq!(outcome.code, 0);
    let extract = outcome.stdout.find("#0 extract").unwrap();
    let transform = outcome.stdout.find("#1 transform").unwrap();
    let load = outcome.stdout.find("#2 load").unwrap();
    assert!(
        extract < transform && transform < load,
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("\"rows_loaded\": 42"),
        "pretty final context"
    );
}

#[test]
fn failed_run_shows_its_error_and_the_failed_step() {
    let id = run_id(2);
    let outcome = check("lens_show_failed", &["lens", "show", &id]);
    assert_eq!(outcome.code, 0);
    assert!(outcome
        .stdout
        .contains("step `load` failed: connection reset by peer"));
    assert!(
        outcome.stdout.contains("#1 load · failed · 3 attempts"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("while writing batch 3 of 7"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn nested_steps_are_indented_under_their_parent() {
    let id = run_id(3);
    let outcome = check("lens_show_nested", &["lens", "show", &id]);
    assert_eq!(outcome.code, 0);
    let stdout = &outcome.stdout;
    assert!(
        stdout.contains("\n#0 route [branch] · completed"),
        "{stdout}"
    );
    assert!(stdout.contains("\n  #0.0 classify · completed"), "{stdout}");
    assert!(
        stdout.contains("\n  #0.1 search [parallel] · completed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n    #0.1.0 search_docs · completed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n    #0.1.1 search_tickets · completed"),
        "{stdout}"
    );
    assert!(stdout.contains("\n#1 answer · completed"), "{stdout}");
}

#[test]
fn long_values_are_cut_with_their_full_size() {
    let (dir, _path) = fixture_dir();
    let outcome = lens(dir.path(), &["lens", "show", &run_id(3)]);
    let marker = outcome
        .stdout
        .lines()
        .find(|line| line.contains("bytes total; --full)"))
        .expect("a cut marker");
    assert!(marker.contains("… (+"), "{marker}");
    assert!(
        marker.contains("(+2.5 KiB, 2,935 bytes total; --full)"),
        "{marker}"
    );
    for line in outcome.stdout.lines() {
        assert!(line.chars().count() <= 120, "{line}");
    }
}

#[test]
fn full_prints_every_value_whole() {
    let id = run_id(3);
    let outcome = check("lens_show_full", &["lens", "show", &id, "--full"]);
    assert_eq!(outcome.code, 0);
    assert!(!outcome.stdout.contains("--full)"), "{}", outcome.stdout);
    let cells: String = outcome
        .stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("│"))
        .filter_map(|line| {
            line.split_once('│')
                .map(|(_, value)| value.trim().trim_end_matches('│').trim_end())
        })
        .collect();
    assert!(
        cells.contains(r#"{"id":59,"title":"release note 59","score":0.59}]}"#),
        "{cells}"
    );
}

#[test]
fn narrow_terminal() {
    let (dir, _path) = fixture_dir();
    let mut env = environment(dir.path());
    env.columns = Some("60".into());
    let args = ["lens", "show", &run_id(3)];
    let outcome = lens_in(&env, &args);
    snapshot!("lens_show_narrow", dir.path(), outcome.transcript(&args));
    for line in outcome.stdout.lines() {
        assert!(line.chars().count() <= 60, "{line}");
    }
}

#[test]
fn terminal_escapes_in_values_are_shown_escaped() {
    let (dir, _path) = fixture_dir();
    for args in [
        vec!["lens", "show", &run_id(3)],
        vec!["lens", "show", &run_id(3), "--full"],
        vec!["lens", "show", &run_id(3), "-o", "json"],
        vec!["lens", "show", &run_id(3), "-o", "jsonl"],
    ] {
        let outcome = lens(dir.path(), &args);
        assert_eq!(outcome.code, 0);
        for raw in ['\u{1b}', '\u{7}', '\u{9b}', '\u{202e}'] {
            assert!(
                !outcome.stdout.contains(raw),
                "{args:?} let {raw:?} through"
            );
        }
    }
    let outcome = lens(dir.path(), &["lens", "show", &run_id(3)]);
    assert!(
        outcome
            .stdout
            .contains(r"\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31mred\u{202e}evil"),
        "{}",
        outcome.stdout
    );
    let json = lens(dir.path(), &["lens", "show", &run_id(3), "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        value["steps"][4]["output"], "\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31mred\u{202e}evil",
        "JSON keeps the value whole and exact"
    );
}

#[test]
fn unique_prefix_finds_the_run() {
    let (dir, _path) = fixture_dir();
    let full = lens(dir.path(), &["lens", "show", &run_id(2)]);
    let prefix = lens(dir.path(), &["lens", "show", "01900002"]);
    assert_eq!(prefix.code, 0);
    assert_eq!(prefix.stdout, full.stdout);
    let upper = lens(
        dir.path(),
        &["lens", "show", "01900002-0000-7000-8000-00000000000"],
    );
    assert_eq!(upper.stdout, full.stdout);
}

#[test]
fn uppercase_prefix_is_accepted() {
    let (dir, _path) = fixture_dir();
    let conn = rusqlite::Connection::open(dir.path().join("flujo_ops.db")).unwrap();
    insert_run(
        &conn,
        &Run {
            run_id: "0190000f-abcd-7000-8000-0000000000ff".into(),
            pipeline_name: "p".into(),
            pipeline_version: "v".into(),
            status: "completed".into(),
            start_time: time(9, 0, 0, 0),
            ..Run::default()
        },
    );
    drop(conn);
    let outcome = lens(dir.path(), &["lens", "show", "0190000F-ABCD"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert!(outcome
        .stdout
        .contains("0190000f-abcd-7000-8000-0000000000ff"));
}

#[test]
fn ambiguous_prefix_lists_the_candidates() {
    let outcome = check("lens_show_ambiguous", &["lens", "show", "0190"]);
    assert_eq!(outcome.code, 1);
    assert_eq!(outcome.stdout, "");
    for n in 1..=6 {
        assert!(outcome.stderr.contains(&run_id(n)), "{}", outcome.stderr);
    }
}

#[test]
fn unknown_run() {
    let outcome = check("lens_show_unknown", &["lens", "show", "ffff"]);
    assert_eq!(outcome.code, 1);
    assert_eq!(outcome.stdout, "");
    assert_eq!(outcome.stderr.lines().count(), 1);
}

#[test]
fn latest_is_the_last_started_run() {
    let (dir, _path) = fixture_dir();
    let latest = lens(dir.path(), &["lens", "show", "latest"]);
    let by_id = lens(dir.path(), &["lens", "show", &run_id(6)]);
    assert_eq!(latest.code, 0);
    assert_eq!(latest.stdout, by_id.stdout);
}

#[test]
fn latest_of_an_empty_database() {
    let dir = tempfile::tempdir().unwrap();
    drop(create_v2(&dir.path().join("flujo_ops.db")));
    let args = ["lens", "show", "latest"];
    let outcome = lens(dir.path(), &args);
    snapshot!(
        "lens_show_latest_empty",
        dir.path(),
        outcome.transcript(&args)
    );
    assert_eq!(outcome.code, 1);
}

#[test]
fn crashed_run_names_the_step_that_was_running() {
    let id = run_id(6);
    let outcome = check("lens_show_crashed", &["lens", "show", &id]);
    assert_eq!(outcome.code, 0);
    assert!(
        outcome.stdout.contains("│ status     │ crashed"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("│ crashed in │ load"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome.stdout.contains("#1 load · crashed"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn running_run_shows_how_long_so_far() {
    let id = run_id(5);
    let outcome = check("lens_show_running", &["lens", "show", &id]);
    assert_eq!(outcome.code, 0);
    // started 14:00, the test clock says 15:00
    assert!(
        outcome.stdout.contains("1h 00m so far"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn json_output() {
    let id = run_id(2);
    let outcome = check("lens_show_json", &["lens", "show", &id, "-o", "json"]);
    assert_eq!(outcome.code, 0);
    let value: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(value["run"]["run_id"], id);
    assert_eq!(
        value["run"]["final_context"],
        serde_json::json!({"rows_loaded": 0})
    );
    assert_eq!(
        value["run"]["error"],
        "step `load` failed: connection reset by peer"
    );
    let steps = value["steps"].as_array().unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(steps[1]["attempts"], 3);
    assert_eq!(steps[1]["input"], serde_json::json!({"rows": 42}));
}

#[test]
fn json_values_are_whole() {
    let (dir, _path) = fixture_dir();
    let outcome = lens(dir.path(), &["lens", "show", &run_id(3), "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(
        value["steps"][3]["output"]["documents"]
            .as_array()
            .unwrap()
            .len(),
        60
    );
}

#[test]
fn jsonl_output() {
    let id = run_id(6);
    let outcome = check("lens_show_jsonl", &["lens", "show", &id, "-o", "jsonl"]);
    assert_eq!(outcome.code, 0);
    let lines: Vec<serde_json::Value> = outcome
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["record"], "run");
    assert_eq!(lines[0]["status"], "crashed");
    assert_eq!(lines[1]["record"], "step");
    assert_eq!(lines[2]["status"], "crashed");
}

#[test]
fn run_without_steps() {
    let id = run_id(4);
    let outcome = check("lens_show_no_steps", &["lens", "show", &id]);
    assert_eq!(outcome.code, 0);
    assert!(
        outcome.stdout.ends_with("steps: none recorded\n"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn payload_recorded_cut_says_so() {
    let (dir, path) = fixture_dir();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let head = format!("{{\"text\":\"{}", "a".repeat(3_000));
    let stored = format!(
        "{head}{}{} of 52428800 bytes]",
        flujo_trace_sqlite::TRUNCATION_MARKER_PREFIX,
        head.len()
    );
    conn.execute(
        "UPDATE steps SET output_blob = ?1 WHERE step_run_id = ?2",
        rusqlite::params![stored, step_id(1, 3)],
    )
    .unwrap();
    drop(conn);
    let id = run_id(1);
    let args = ["lens", "show", &id];
    let outcome = lens(dir.path(), &args);
    snapshot!(
        "lens_show_recorded_cut",
        dir.path(),
        outcome.transcript(&args)
    );
    assert!(
        outcome
            .stdout
            .contains("[recorded cut: kept 3,009 of 52,428,800 bytes]"),
        "{}",
        outcome.stdout
    );
    let full = lens(dir.path(), &["lens", "show", &id, "--full"]);
    assert!(full
        .stdout
        .contains("[recorded cut: kept 3,009 of 52,428,800 bytes]"));
    assert!(
        !full.stdout.contains("[flujo: truncated"),
        "the raw marker is replaced by the note"
    );
    let json = lens(dir.path(), &["lens", "show", &id, "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        value["steps"][2]["output"],
        stored.as_str(),
        "JSON keeps the stored text"
    );
}

/// A completed run whose `call_model` step failed and whose fallback `template` produced the
/// output, the run's final output recorded.
fn fallback_dir() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let conn = create_v2(&path);
    insert_run(
        &conn,
        &Run {
            run_id: run_id(7),
            pipeline_name: "support".into(),
            pipeline_version: "3".into(),
            status: "completed".into(),
            start_time: time(16, 0, 0, 0),
            end_time: Some(time(16, 0, 4, 0)),
            duration_ms: Some(4_000),
            total_cost: Some(0.003),
            total_tokens: Some(300),
            n_steps: Some(3),
            input_blob: Some(r#""my invoice is wrong""#.into()),
            output_blob: Some(r#"{"reply":"billing template","category":"billing"}"#.into()),
            final_context_blob: Some(r#"{"drafts":0}"#.into()),
            ..Run::default()
        },
    );
    insert_step(
        &conn,
        &Step {
            input_blob: Some(r#""my invoice is wrong""#.into()),
            output_blob: Some(r#""billing""#.into()),
            ..step(7, 1, 16, "classify", 0)
        },
    );
    insert_step(
        &conn,
        &Step {
            attempts: Some(2),
            fallback_taken: Some(true),
            input_blob: Some(r#""billing""#.into()),
            output_blob: Some(r#"{"reply":"billing template","category":"billing"}"#.into()),
            error_blob: Some("step 'call_model' failed: model overloaded".into()),
            ..step(7, 2, 16, "call_model", 1)
        },
    );
    insert_step(
        &conn,
        &Step {
            parent_step_run_id: Some(step_id(7, 2)),
            step_kind: Some("fallback".into()),
            input_blob: Some(r#""billing""#.into()),
            output_blob: Some(r#"{"reply":"billing template","category":"billing"}"#.into()),
            ..step(7, 3, 16, "template", 0)
        },
    );
    drop(conn);
    (dir, path)
}

#[test]
fn run_output_and_a_taken_fallback_are_shown() {
    let (dir, _path) = fallback_dir();
    let id = run_id(7);
    let args = ["lens", "show", &id];
    let outcome = lens(dir.path(), &args);
    snapshot!("lens_show_fallback", dir.path(), outcome.transcript(&args));
    assert_eq!(outcome.code, 0);
    let stdout = &outcome.stdout;
    let output_line = stdout
        .lines()
        .find(|line| line.contains("│ output "))
        .expect("the run's output in the summary");
    assert!(
        output_line.contains(r#"{"reply":"billing template","category":"billing"}"#),
        "{stdout}"
    );
    assert!(
        stdout.contains("\n#1 call_model · completed · fallback taken · 2 attempts"),
        "{stdout}"
    );
    assert_eq!(
        stdout.matches("fallback taken").count(),
        1,
        "only the step whose fallback was taken says so: {stdout}"
    );
    assert!(
        stdout.contains("\n  #1.0 template [fallback] · completed"),
        "{stdout}"
    );

    let json = lens(dir.path(), &["lens", "show", &id, "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        value["run"]["output"],
        serde_json::json!({"reply": "billing template", "category": "billing"}),
        "the run's output embedded as JSON"
    );
    let taken: Vec<&serde_json::Value> = value["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| &step["fallback_taken"])
        .collect();
    assert_eq!(
        taken,
        [
            &serde_json::json!(false),
            &serde_json::json!(true),
            &serde_json::json!(false)
        ]
    );
}

#[test]
fn a_long_run_output_is_cut_and_whole_with_full() {
    let (dir, path) = fallback_dir();
    let long_output = format!(r#"{{"reply":"{}"}}"#, "word ".repeat(400));
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE runs SET output_blob = ?1 WHERE run_id = ?2",
        rusqlite::params![long_output, run_id(7)],
    )
    .unwrap();
    drop(conn);
    let id = run_id(7);
    let cut = lens(dir.path(), &["lens", "show", &id]);
    assert!(
        cut.stdout.contains("(+1.6 KiB, 2,012 bytes total; --full)"),
        "{}",
        cut.stdout
    );
    let full = lens(dir.path(), &["lens", "show", &id, "--full"]);
    let words = full.stdout.matches("word").count();
    assert_eq!(words, 400, "{}", full.stdout);
    let json = lens(dir.path(), &["lens", "show", &id, "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(value["run"]["output"]["reply"], "word ".repeat(400));
}

/// Format characters (Unicode Cf: soft hyphen, Mongolian vowel separator, bidi isolates, tags)
/// never reach the terminal raw, in the table or in JSON; the joiners emoji sequences and
/// Persian text need print as they are, and JSON still means the stored value.
#[test]
fn format_characters_are_escaped_and_joiners_kept() {
    let (dir, path) = fixture_dir();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let stored = serde_json::json!({
        "hidden": "pay\u{ad}pal\u{180e} \u{2066}x\u{2069} \u{e0001}\u{e0074}\u{e007f}",
        "kept": "\u{1f469}\u{200d}\u{1f52c} می\u{200c}خواهم",
    })
    .to_string();
    conn.execute(
        "UPDATE steps SET output_blob = ?1 WHERE step_run_id = ?2",
        rusqlite::params![stored, step_id(1, 3)],
    )
    .unwrap();
    drop(conn);
    let id = run_id(1);
    let raw_hidden = |text: &str| {
        text.chars()
            .filter(|c| {
                matches!(c, '\u{ad}' | '\u{180e}' | '\u{2066}' | '\u{2069}')
                    || ('\u{e0000}'..='\u{e007f}').contains(c)
            })
            .count()
    };
    let table = lens(dir.path(), &["lens", "show", &id, "--full"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert_eq!(raw_hidden(&table.stdout), 0, "{}", table.stdout);
    for escaped in [
        "pay\\u{ad}pal\\u{180e}",
        "\\u{2066}x\\u{2069}",
        "\\u{e0001}\\u{e0074}",
    ] {
        assert!(
            table.stdout.contains(escaped),
            "{escaped}: {}",
            table.stdout
        );
    }
    assert!(table
        .stdout
        .contains("\u{1f469}\u{200d}\u{1f52c} می\u{200c}خواهم"));

    let json = lens(dir.path(), &["lens", "show", &id, "-o", "json"]);
    assert_eq!(raw_hidden(&json.stdout), 0, "{}", json.stdout);
    assert!(json
        .stdout
        .contains("\u{1f469}\u{200d}\u{1f52c} می\u{200c}خواهم"));
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        value["steps"][2]["output"],
        serde_json::from_str::<serde_json::Value>(&stored).unwrap()
    );
}
