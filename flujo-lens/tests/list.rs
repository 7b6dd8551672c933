//! `flujo lens list`: the table, every filter, the footer, empty results and JSON output.

mod common;

use common::*;

fn check(name: &str, args: &[&str]) -> Outcome {
    let (dir, _path) = fixture_dir();
    let outcome = lens(dir.path(), args);
    snapshot!(name, dir.path(), outcome.transcript(args));
    outcome
}

#[test]
fn plain_list_is_newest_first() {
    let outcome = check("lens_list_plain", &["lens", "list"]);
    assert_eq!(outcome.code, 0);
    let ids: Vec<&str> = outcome
        .stdout
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|word| word.starts_with("0000000"))
        .collect();
    assert_eq!(ids, [6, 5, 4, 3, 2, 1].map(short_id));
    assert!(outcome.stdout.contains("crashed"), "{}", outcome.stdout);
}

#[test]
fn status_filter() {
    let outcome = check(
        "lens_list_status_failed",
        &["lens", "list", "--status", "failed"],
    );
    assert_eq!(outcome.code, 0);
    assert!(outcome.stdout.contains(&short_id(2)));
    assert!(!outcome.stdout.contains(&short_id(1)));
}

#[test]
fn several_statuses_repeated_or_comma_separated() {
    let outcome = check(
        "lens_list_status_several",
        &[
            "lens",
            "list",
            "--status",
            "failed,cancelled",
            "--status",
            "crashed",
        ],
    );
    assert_eq!(outcome.code, 0);
    for n in [2, 4, 6] {
        assert!(outcome.stdout.contains(&short_id(n)), "{}", outcome.stdout);
    }
    for n in [1, 3, 5] {
        assert!(!outcome.stdout.contains(&short_id(n)), "{}", outcome.stdout);
    }
}

#[test]
fn running_and_crashed_are_told_apart() {
    let (dir, _path) = fixture_dir();
    let running = lens(
        dir.path(),
        &["lens", "list", "--status", "running", "-o", "jsonl"],
    );
    assert_eq!(running.code, 0);
    assert_eq!(running.stdout.lines().count(), 1, "{}", running.stdout);
    assert!(running.stdout.contains(&short_id(5)));
    let crashed = lens(
        dir.path(),
        &["lens", "list", "--status", "crashed", "-o", "jsonl"],
    );
    assert_eq!(crashed.code, 0);
    assert_eq!(crashed.stdout.lines().count(), 1, "{}", crashed.stdout);
    assert!(crashed.stdout.contains(&short_id(6)));
    assert!(crashed.stdout.contains(r#""status":"crashed""#));
}

#[test]
fn pipeline_filter() {
    let outcome = check(
        "lens_list_pipeline",
        &["lens", "list", "--pipeline", "chat"],
    );
    assert_eq!(outcome.code, 0);
    assert!(outcome.stdout.contains(&short_id(3)) && outcome.stdout.contains(&short_id(4)));
    assert!(!outcome.stdout.contains(&short_id(1)));
}

#[test]
fn since_and_until_filters() {
    // now is 15:00: 2h back is 13:00, included; until 14:00 excludes the run started at 14:00
    let outcome = check(
        "lens_list_since_until",
        &[
            "lens",
            "list",
            "--since",
            "2h",
            "--until",
            "2026-01-05 14:00",
        ],
    );
    assert_eq!(outcome.code, 0);
    assert!(outcome.stdout.contains(&short_id(4)));
    for n in [1, 2, 3, 5, 6] {
        assert!(!outcome.stdout.contains(&short_id(n)), "{}", outcome.stdout);
    }
}

#[test]
fn since_a_date() {
    let (dir, _path) = fixture_dir();
    let outcome = lens(dir.path(), &["lens", "list", "--since", "2026-01-06"]);
    assert_eq!(outcome.code, 1);
    let outcome = lens(
        dir.path(),
        &["lens", "list", "--since", "2026-01-05", "-o", "jsonl"],
    );
    assert_eq!(outcome.stdout.lines().count(), 6);
}

#[test]
fn no_match_is_one_line_and_exit_1() {
    let outcome = check(
        "lens_list_no_match",
        &["lens", "list", "--status", "failed", "--pipeline", "chat"],
    );
    assert_eq!(outcome.code, 1);
    assert_eq!(outcome.stdout, "");
    assert_eq!(outcome.stderr.lines().count(), 1);
}

#[test]
fn filter_values_are_data_not_sql() {
    let (dir, _path) = fixture_dir();
    let outcome = lens(dir.path(), &["lens", "list", "--pipeline", "x' OR 1=1 --"]);
    assert_eq!(outcome.code, 1, "{}", outcome.stdout);
    assert_eq!(outcome.stdout, "");
}

#[test]
fn empty_database() {
    let dir = tempfile::tempdir().unwrap();
    drop(create_v2(&dir.path().join("flujo_ops.db")));
    let args = ["lens", "list"];
    let outcome = lens(dir.path(), &args);
    snapshot!("lens_list_empty", dir.path(), outcome.transcript(&args));
    assert_eq!(outcome.code, 1);
    assert!(
        outcome.stderr.starts_with("no runs recorded in "),
        "{}",
        outcome.stderr
    );
}

#[test]
fn limit_footer_with_exact_count() {
    let outcome = check("lens_list_limit_footer", &["lens", "list", "--limit", "2"]);
    assert_eq!(outcome.code, 0);
    assert!(outcome
        .stdout
        .contains("showing the 2 newest of 6 matching runs"));
}

#[test]
fn limit_footer_bounded_beyond_ten_thousand() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = create_v2(&dir.path().join("flujo_ops.db"));
    let tx = conn.transaction().unwrap();
    for i in 0..10_050u32 {
        tx.execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time) \
             VALUES (?1, 'bulk', 'v1', 'completed', ?2)",
            rusqlite::params![
                format!("01900000-{:04x}-7000-8000-{:012x}", i >> 16, i),
                format!(
                    "2026-01-0{}T{:02}:{:02}:{:02}.{:06}Z",
                    1 + i / 86_400,
                    (i / 3600) % 24,
                    (i / 60) % 60,
                    i % 60,
                    i
                ),
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(conn);
    let args = ["lens", "list", "--limit", "3"];
    let outcome = lens(dir.path(), &args);
    snapshot!(
        "lens_list_limit_footer_bounded",
        dir.path(),
        outcome.transcript(&args)
    );
    assert!(outcome
        .stdout
        .contains("showing the 3 newest of more than 10,000 matching runs"));
    let json = lens(dir.path(), &["lens", "list", "--limit", "3", "-o", "json"]);
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        value["matching"],
        serde_json::json!({"count": 10_000, "exact": false})
    );
    assert_eq!(value["runs"].as_array().unwrap().len(), 3);
}

/// 1,500 runs stored as `running` by 1,500 dead processes of this host and one live run (this
/// test's process) older than all of them: telling running from crashed checks each process,
/// so `--status running` looks at the newest 1,000 only and says so; `--status crashed` stops
/// once its page is full.
#[test]
fn running_or_crashed_search_stops_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let mut conn = create_v2(&dir.path().join("flujo_ops.db"));
    let tx = conn.transaction().unwrap();
    let host = host_name();
    let me = i64::from(std::process::id());
    for i in 0..1_501u32 {
        // no pid above the kernel's PID_MAX_LIMIT (2^22) ever exists
        let pid = if i == 0 { me } else { 5_000_000 + i64::from(i) };
        tx.execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, \
             writer_host, writer_pid, writer_pid_start) \
             VALUES (?1, 'bulk', 'v1', 'running', ?2, ?3, ?4, 0)",
            rusqlite::params![
                format!("01900000-0000-7000-8000-{i:012x}"),
                format!(
                    "2026-01-01T{:02}:{:02}:{:02}.000000Z",
                    i / 3600,
                    (i / 60) % 60,
                    i % 60
                ),
                host,
                pid,
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    drop(conn);

    let running = lens(dir.path(), &["lens", "list", "--status", "running"]);
    assert_eq!(running.code, 1, "{}", running.stdout);
    assert!(
        running
            .stderr
            .contains("no runs match status running among the newest 1,000 looked at"),
        "{}",
        running.stderr
    );
    assert!(
        running.stderr.contains("narrow with --since"),
        "{}",
        running.stderr
    );
    let json = lens(
        dir.path(),
        &["lens", "list", "--status", "running", "-o", "json"],
    );
    let value: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(
        value["matching"],
        serde_json::json!({"count": 0, "exact": false, "stopped_after": 1_000})
    );
    // narrowed in time, the live run is found
    let narrowed = lens(
        dir.path(),
        &[
            "lens",
            "list",
            "--status",
            "running",
            "--until",
            "2026-01-01 00:10",
            "-o",
            "json",
        ],
    );
    let value: serde_json::Value = serde_json::from_str(&narrowed.stdout).unwrap();
    assert_eq!(
        value["runs"][0]["run_id"],
        "01900000-0000-7000-8000-000000000000"
    );
    assert_eq!(
        value["matching"],
        serde_json::json!({"count": 1, "exact": true})
    );

    let crashed = lens(
        dir.path(),
        &["lens", "list", "--status", "crashed", "--limit", "3"],
    );
    assert_eq!(crashed.code, 0, "{}", crashed.stderr);
    assert!(
        crashed
            .stdout
            .contains("showing the 3 newest of more than 3 matching runs"),
        "{}",
        crashed.stdout
    );
}

#[test]
fn json_output() {
    let outcome = check(
        "lens_list_json",
        &["lens", "list", "--limit", "3", "-o", "json"],
    );
    assert_eq!(outcome.code, 0);
    let value: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    assert_eq!(value["limit"], 3);
    assert_eq!(
        value["matching"],
        serde_json::json!({"count": 6, "exact": true})
    );
    let runs = value["runs"].as_array().unwrap();
    assert_eq!(runs[0]["run_id"], run_id(6));
    assert_eq!(runs[0]["status"], "crashed");
    assert!(runs[0].get("input").is_none(), "list carries no payloads");
}

#[test]
fn jsonl_output() {
    let outcome = check(
        "lens_list_jsonl",
        &["lens", "list", "-o", "jsonl", "--pipeline", "etl"],
    );
    assert_eq!(outcome.code, 0);
    let lines: Vec<serde_json::Value> = outcome
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[3]["total_cost"], 0.003);
    assert_eq!(lines[3]["n_steps"], 3);
}

#[test]
fn narrow_terminal_cuts_long_names_not_ids() {
    let (dir, _path) = fixture_dir();
    let mut env = environment(dir.path());
    env.columns = Some("80".into());
    let args = ["lens", "list"];
    let outcome = lens_in(&env, &args);
    snapshot!("lens_list_narrow", dir.path(), outcome.transcript(&args));
    for line in outcome.stdout.lines() {
        assert!(line.chars().count() <= 80, "{line}");
    }
    assert!(outcome.stdout.contains(&short_id(6)));
}

#[test]
fn colour_only_on_a_terminal_without_no_color() {
    let (dir, _path) = fixture_dir();
    let mut env = environment(dir.path());
    env.stdout_is_terminal = true;
    let coloured = lens_in(&env, &["lens", "list"]);
    assert!(coloured.stdout.contains("\u{1b}["), "{}", coloured.stdout);
    env.no_color = true;
    let plain = lens_in(&env, &["lens", "list"]);
    assert!(!plain.stdout.contains('\u{1b}'), "{}", plain.stdout);
    env.no_color = false;
    env.stdout_is_terminal = false;
    let piped = lens_in(&env, &["lens", "list"]);
    assert!(!piped.stdout.contains('\u{1b}'), "{}", piped.stdout);
}
