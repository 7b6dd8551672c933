//! Test support: flujo databases with fixed ids and times, built with plain SQL from the schema
//! files, and a runner for the lens that captures what a user would see.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

pub const V1_SQL: &str = include_str!("../../../flujo-trace-sqlite/src/schema/v1.sql");
pub const V1_TO_V2_SQL: &str = include_str!("../../../flujo-trace-sqlite/src/schema/v1_to_v2.sql");
pub const V1_FIXTURE_SQL: &str =
    include_str!("../../../flujo-trace-sqlite/tests/fixtures/create_v1.sql");

/// An empty schema v2 database at `path`.
pub fn create_v2(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(V1_SQL).unwrap();
    conn.execute_batch(V1_TO_V2_SQL).unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    conn
}

/// A run row; `None` fields are NULL.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub run_id: String,
    pub pipeline_name: String,
    pub pipeline_version: String,
    pub status: String,
    pub start_time: String,
    pub end_time: Option<String>,
    pub duration_ms: Option<i64>,
    pub total_cost: Option<f64>,
    pub total_tokens: Option<i64>,
    pub n_steps: Option<i64>,
    pub input_blob: Option<String>,
    pub output_blob: Option<String>,
    pub final_context_blob: Option<String>,
    pub error_blob: Option<String>,
    pub writer: Option<(String, i64, i64)>,
}

/// A step row; `None` fields are NULL.
#[derive(Debug, Clone, Default)]
pub struct Step {
    pub step_run_id: String,
    pub run_id: String,
    pub parent_step_run_id: Option<String>,
    pub step_name: String,
    pub step_index: i64,
    pub step_kind: Option<String>,
    pub status: String,
    pub attempts: Option<i64>,
    pub start_time: String,
    pub end_time: Option<String>,
    pub duration_ms: Option<i64>,
    pub cost: Option<f64>,
    pub tokens: Option<i64>,
    pub input_blob: Option<String>,
    pub output_blob: Option<String>,
    pub error_blob: Option<String>,
    pub fallback_taken: Option<bool>,
}

pub fn insert_run(conn: &Connection, run: &Run) {
    conn.execute(
        "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, end_time, \
         duration_ms, total_cost, total_tokens, n_steps, input_blob, output_blob, \
         final_context_blob, error_blob, writer_host, writer_pid, writer_pid_start) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        params![
            run.run_id,
            run.pipeline_name,
            run.pipeline_version,
            run.status,
            run.start_time,
            run.end_time,
            run.duration_ms,
            run.total_cost,
            run.total_tokens,
            run.n_steps,
            run.input_blob,
            run.output_blob,
            run.final_context_blob,
            run.error_blob,
            run.writer.as_ref().map(|w| w.0.clone()),
            run.writer.as_ref().map(|w| w.1),
            run.writer.as_ref().map(|w| w.2),
        ],
    )
    .unwrap();
}

pub fn insert_step(conn: &Connection, step: &Step) {
    conn.execute(
        "INSERT INTO steps (step_run_id, run_id, parent_step_run_id, step_name, step_index, \
         step_kind, status, attempts, start_time, end_time, duration_ms, cost, tokens, \
         input_blob, output_blob, error_blob, fallback_taken) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        params![
            step.step_run_id,
            step.run_id,
            step.parent_step_run_id,
            step.step_name,
            step.step_index,
            step.step_kind,
            step.status,
            step.attempts,
            step.start_time,
            step.end_time,
            step.duration_ms,
            step.cost,
            step.tokens,
            step.input_blob,
            step.output_blob,
            step.error_blob,
            step.fallback_taken,
        ],
    )
    .unwrap();
}

/// `0190000N-0000-7000-8000-00000000000N`: run `n` of the fixture (ids sort like their times).
pub fn run_id(n: u32) -> String {
    format!("0190000{n:x}-0000-7000-8000-00000000000{n:x}")
}

/// The short id `list` shows for run `n` of the fixtures: the last 8 characters of its id.
pub fn short_id(n: u32) -> String {
    run_id(n)[28..].to_string()
}

/// Step `k` of run `n`, ids in execution order.
pub fn step_id(n: u32, k: u32) -> String {
    format!("0190000{n:x}-00{k:02x}-7000-8000-0000000000{k:02x}")
}

pub fn time(hour: u32, minute: u32, second: u32, micros: u32) -> String {
    format!("2026-01-05T{hour:02}:{minute:02}:{second:02}.{micros:06}Z")
}

/// A step of run `n` with defaults: completed, one attempt, no fallback taken, times from
/// `minute`.
pub fn step(n: u32, k: u32, hour: u32, name: &str, index: i64) -> Step {
    Step {
        step_run_id: step_id(n, k),
        run_id: run_id(n),
        step_name: name.to_owned(),
        step_index: index,
        step_kind: Some("step".into()),
        status: "completed".into(),
        attempts: Some(1),
        start_time: time(hour, 0, k, 0),
        end_time: Some(time(hour, 0, k, 500_000)),
        duration_ms: Some(500),
        cost: Some(0.001),
        tokens: Some(100),
        fallback_taken: Some(false),
        ..Step::default()
    }
}

/// The host name as the writer records it.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned()
}

/// A pid that certainly ran and exited.
pub fn dead_pid() -> i64 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    i64::from(pid)
}

/// The fixture: six runs of two pipelines covering every status, nested steps, a long output,
/// hostile text, and a run whose process died.
///
/// 1 etl completed 10:00 (3 steps) · 2 etl failed 11:00 · 3 chat completed 12:00 (nested) ·
/// 4 chat cancelled 13:00 · 5 etl running 14:00 (no writer info) · 6 etl crashed 14:30
pub fn fixture(conn: &Connection) {
    insert_run(
        conn,
        &Run {
            run_id: run_id(1),
            pipeline_name: "etl".into(),
            pipeline_version: "1.2.0".into(),
            status: "completed".into(),
            start_time: time(10, 0, 0, 0),
            end_time: Some(time(10, 0, 3, 250_000)),
            duration_ms: Some(3_250),
            total_cost: Some(0.003),
            total_tokens: Some(300),
            n_steps: Some(3),
            input_blob: Some(r#"{"source":"s3://bucket/2026-01-05.csv"}"#.into()),
            output_blob: Some(r#"{"rows":42}"#.into()),
            final_context_blob: Some(r#"{"rows_loaded":42,"table":"events","ok":true}"#.into()),
            ..Run::default()
        },
    );
    for (k, name) in [(1, "extract"), (2, "transform"), (3, "load")] {
        insert_step(
            conn,
            &Step {
                input_blob: Some(format!(r#"{{"stage":"{name}"}}"#)),
                output_blob: Some(r#"{"rows":42}"#.into()),
                ..step(1, k, 10, name, i64::from(k) - 1)
            },
        );
    }

    insert_run(
        conn,
        &Run {
            run_id: run_id(2),
            pipeline_name: "etl".into(),
            pipeline_version: "1.2.0".into(),
            status: "failed".into(),
            start_time: time(11, 0, 0, 0),
            end_time: Some(time(11, 0, 9, 0)),
            duration_ms: Some(9_000),
            total_cost: Some(0.001),
            total_tokens: Some(100),
            n_steps: Some(2),
            input_blob: Some(r#"{"source":"s3://bucket/2026-01-06.csv"}"#.into()),
            final_context_blob: Some(r#"{"rows_loaded":0}"#.into()),
            error_blob: Some("step `load` failed: connection reset by peer".into()),
            ..Run::default()
        },
    );
    insert_step(conn, &step(2, 1, 11, "extract", 0));
    insert_step(
        conn,
        &Step {
            status: "failed".into(),
            attempts: Some(3),
            duration_ms: Some(8_400),
            cost: None,
            tokens: None,
            input_blob: Some(r#"{"rows":42}"#.into()),
            error_blob: Some(
                "connection reset by peer\n  while writing batch 3 of 7\n  after 3 attempts".into(),
            ),
            ..step(2, 2, 11, "load", 1)
        },
    );

    insert_run(
        conn,
        &Run {
            run_id: run_id(3),
            pipeline_name: "chat".into(),
            pipeline_version: "latest".into(),
            status: "completed".into(),
            start_time: time(12, 0, 0, 0),
            end_time: Some(time(12, 0, 7, 0)),
            duration_ms: Some(7_000),
            total_cost: Some(0.0421),
            total_tokens: Some(5_210),
            n_steps: Some(6),
            input_blob: Some(r#"{"question":"what changed in the last deploy?"}"#.into()),
            output_blob: Some(r#""three services were updated""#.into()),
            final_context_blob: Some(
                r#"{"history":[{"role":"user","content":"what changed in the last deploy?"},{"role":"assistant","content":"three services were updated"}],"route":"search"}"#
                    .into(),
            ),
            ..Run::default()
        },
    );
    let long_output = format!(
        r#"{{"documents":[{}]}}"#,
        (0..60)
            .map(|i| format!(r#"{{"id":{i},"title":"release note {i}","score":0.{i:02}}}"#))
            .collect::<Vec<_>>()
            .join(",")
    );
    insert_step(
        conn,
        &Step {
            step_kind: Some("branch".into()),
            cost: Some(0.0421),
            tokens: Some(5_210),
            input_blob: Some(r#"{"question":"what changed in the last deploy?"}"#.into()),
            output_blob: Some(r#""three services were updated""#.into()),
            ..step(3, 1, 12, "route", 0)
        },
    );
    insert_step(
        conn,
        &Step {
            parent_step_run_id: Some(step_id(3, 1)),
            output_blob: Some(r#""search""#.into()),
            ..step(3, 2, 12, "classify", 0)
        },
    );
    insert_step(
        conn,
        &Step {
            parent_step_run_id: Some(step_id(3, 1)),
            step_kind: Some("parallel".into()),
            ..step(3, 3, 12, "search", 1)
        },
    );
    insert_step(
        conn,
        &Step {
            parent_step_run_id: Some(step_id(3, 3)),
            input_blob: Some(r#"{"index":"release-notes"}"#.into()),
            output_blob: Some(long_output),
            ..step(3, 4, 12, "search_docs", 0)
        },
    );
    insert_step(
        conn,
        &Step {
            parent_step_run_id: Some(step_id(3, 3)),
            input_blob: Some(r#"{"index":"tickets"}"#.into()),
            // a hostile tool output: terminal escapes must not reach the terminal raw
            output_blob: Some("\u{1b}]0;pwned\u{7}\u{1b}[2J\u{9b}31mred\u{202e}evil".into()),
            ..step(3, 5, 12, "search_tickets", 1)
        },
    );
    insert_step(
        conn,
        &Step {
            input_blob: Some(r#"{"documents":60}"#.into()),
            output_blob: Some(r#""three services were updated""#.into()),
            cost: Some(0.0401),
            tokens: Some(4_810),
            ..step(3, 6, 12, "answer", 1)
        },
    );

    insert_run(
        conn,
        &Run {
            run_id: run_id(4),
            pipeline_name: "chat".into(),
            pipeline_version: "latest".into(),
            status: "cancelled".into(),
            start_time: time(13, 0, 0, 0),
            end_time: Some(time(13, 0, 0, 800_000)),
            duration_ms: Some(800),
            n_steps: Some(0),
            ..Run::default()
        },
    );

    insert_run(
        conn,
        &Run {
            run_id: run_id(5),
            pipeline_name: "etl".into(),
            pipeline_version: "1.2.0".into(),
            status: "running".into(),
            start_time: time(14, 0, 0, 0),
            input_blob: Some(r#"{"source":"s3://bucket/2026-01-07.csv"}"#.into()),
            ..Run::default()
        },
    );
    insert_step(conn, &step(5, 1, 14, "extract", 0));

    insert_run(
        conn,
        &Run {
            run_id: run_id(6),
            pipeline_name: "etl".into(),
            pipeline_version: "1.2.0".into(),
            status: "running".into(),
            start_time: time(14, 30, 0, 0),
            // longer than the process row, so the table's width does not depend on pid or host
            input_blob: Some(
                r#"{"source":"s3://bucket/2026-01-08.csv","options":{"dedupe":true,"batch_size":500,"retries":3,"owner":"data-platform"}}"#
                    .into(),
            ),
            writer: Some((host_name(), dead_pid(), 1)),
            ..Run::default()
        },
    );
    insert_step(
        conn,
        &Step {
            start_time: time(14, 30, 1, 0),
            end_time: Some(time(14, 30, 1, 500_000)),
            ..step(6, 1, 14, "extract", 0)
        },
    );
    insert_step(
        conn,
        &Step {
            status: "running".into(),
            attempts: None,
            fallback_taken: None,
            start_time: time(14, 30, 2, 0),
            end_time: None,
            duration_ms: None,
            cost: None,
            tokens: None,
            input_blob: Some(r#"{"rows":42}"#.into()),
            ..step(6, 2, 14, "load", 1)
        },
    );
}

/// A temporary directory holding `flujo_ops.db` with the fixture.
pub fn fixture_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let conn = create_v2(&path);
    fixture(&conn);
    drop(conn);
    (dir, path)
}

/// What one lens invocation showed.
#[derive(Debug)]
pub struct Outcome {
    pub code: u8,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// The invocation as a user sees it, for snapshots.
    pub fn transcript(&self, args: &[&str]) -> String {
        format!(
            "$ flujo {}\nexit code: {}\n--- stdout\n{}--- stderr\n{}",
            args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

/// The environment of the tests: not a terminal, 120 columns, fixed clock.
pub fn environment(cwd: &Path) -> flujo_lens::Environment {
    flujo_lens::Environment {
        cwd: cwd.to_path_buf(),
        state_uri: None,
        columns: Some("120".into()),
        no_color: false,
        stdout_is_terminal: false,
        stdin_is_terminal: false,
        stderr_is_terminal: false,
        terminal_width: None,
        terminal_height: None,
        now: time::macros::datetime!(2026-01-05 15:00:00 UTC),
    }
}

/// Runs `flujo ARGS` in `env`.
pub fn lens_in(env: &flujo_lens::Environment, args: &[&str]) -> Outcome {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let argv = std::iter::once("flujo").chain(args.iter().copied());
    let code = flujo_lens::run(argv, env, &mut stdout, &mut stderr);
    Outcome {
        code,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// Runs `flujo ARGS` in `cwd` with the test environment.
pub fn lens(cwd: &Path, args: &[&str]) -> Outcome {
    lens_in(&environment(cwd), args)
}

/// Snapshots `outcome` under `name` in the top-level `snapshots/`, with the temporary
/// directory, host and pid made stable.
#[macro_export]
macro_rules! snapshot {
    ($name:expr, $dir:expr, $text:expr) => {{
        let dir = $dir.to_string_lossy().to_string();
        let host = $crate::common::host_name();
        let filters: Vec<(String, String)> = vec![
            (regex_escape(&dir), "[TMP]".to_owned()),
            // the process row of a crashed run: its padding depends on the pid and host lengths
            (
                format!(r"(│ process +│ )pid \d+ on {} \(gone\) *│", regex_escape(&host)),
                "${1}pid [PID] on [HOST] (gone) │".to_owned(),
            ),
            (format!(r"pid \d+ on {}", regex_escape(&host)), "pid [PID] on [HOST]".to_owned()),
            (
                format!(r#""host":"{}","pid":\d+"#, regex_escape(&host)),
                r#""host":"[HOST]","pid":[PID]"#.to_owned(),
            ),
        ];
        let filters: Vec<(&str, &str)> =
            filters.iter().map(|(from, to)| (from.as_str(), to.as_str())).collect();
        insta::with_settings!({
            snapshot_path => "../../snapshots",
            prepend_module_to_snapshot => false,
            omit_expression => true,
            filters => filters,
        }, {
            insta::assert_snapshot!($name, $text);
        });
    }};
}

/// `text` with regex metacharacters escaped, for insta filters.
pub fn regex_escape(text: &str) -> String {
    let mut escaped = String::new();
    for c in text.chars() {
        if "\\.+*?()|[]{}^$#&-~".contains(c) {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}
