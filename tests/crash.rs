//! A process killed with SIGKILL mid-run: the database opens, the steps finished before the kill
//! are there (they are committed within the 5 ms flush interval), and the lens shows the run
//! as `crashed`, with the step that was running.
//!
//! The victim is this test binary run again with `FLUJO_TEST_VICTIM_DB` set.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flujo::{step, Flujo, Pipeline, SqliteLayer, StepContext};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

/// Runs in the victim process only: two quick steps, then one that never ends.
#[test]
#[ignore = "child process of a_run_killed_mid_way_reads_as_crashed_with_its_running_step, which runs it with --ignored --exact"]
fn victim_process_entry() {
    let db = std::env::var_os("FLUJO_TEST_VICTIM_DB")
        .expect("FLUJO_TEST_VICTIM_DB is set by the parent test");
    let subscriber = tracing_subscriber::registry().with(SqliteLayer::open(&db).unwrap());
    let fetch = step(
        "fetch",
        |x: u32, _: StepContext<()>| async move { Ok(x + 1) },
    );
    let parse = step(
        "parse",
        |x: u32, _: StepContext<()>| async move { Ok(x * 2) },
    );
    let hang = step("call_model", |x: u32, _: StepContext<()>| async move {
        tokio::time::sleep(Duration::from_secs(600)).await;
        Ok(x)
    });
    let flujo = Flujo::new("doomed", Pipeline::new(fetch).then(parse).then(hang));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(flujo.run(1).with_subscriber(subscriber));
    unreachable!("the victim is killed before its run ends");
}

fn lens(db: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flujo"))
        .args(args)
        .env("FLUJO_STATE_URI", db)
        .env("NO_COLOR", "1")
        .env("COLUMNS", "120")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_run_killed_mid_way_reads_as_crashed_with_its_running_step() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let mut victim = Command::new(std::env::current_exe().unwrap())
        .args([
            "victim_process_entry",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("FLUJO_TEST_VICTIM_DB", &db)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // wait until the hanging step's start is committed (the flush interval is 5 ms)
    let started = Instant::now();
    loop {
        let seen =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .and_then(|conn| {
                    conn.query_row(
                "SELECT count(*) FROM steps WHERE step_name = 'call_model' AND status = 'running'",
                [],
                |r| r.get::<_, i64>(0),
            )
                })
                .unwrap_or(0);
        if seen == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the running step never reached the database"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    victim.kill().unwrap(); // SIGKILL
    let status = victim.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the victim was still running its run when killed: {status}"
    );

    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let mut stmt = conn
        .prepare("SELECT step_name, status, output_blob FROM steps ORDER BY step_run_id")
        .unwrap();
    let steps: Vec<(String, String, Option<String>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        steps,
        [
            (
                "fetch".to_owned(),
                "completed".to_owned(),
                Some("2".to_owned())
            ),
            (
                "parse".to_owned(),
                "completed".to_owned(),
                Some("4".to_owned())
            ),
            ("call_model".to_owned(), "running".to_owned(), None),
        ]
    );
    // the database itself is never rewritten: the run stays stored as running
    let stored: String = conn
        .query_row("SELECT status FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, "running");

    let (code, out, err) = lens(&db, &["lens", "list", "--status", "crashed", "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let runs: serde_json::Value = serde_json::from_str(&out).unwrap();
    let runs = runs
        .as_array()
        .or_else(|| runs["runs"].as_array())
        .expect("a list of runs")
        .clone();
    assert_eq!(runs.len(), 1, "{out}");
    assert_eq!(runs[0]["status"], "crashed");

    let (code, out, err) = lens(&db, &["lens", "show", "latest"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("crashed"), "{out}");
    let crashed_line = out
        .lines()
        .find(|l| l.contains("crashed in"))
        .unwrap_or_else(|| panic!("no 'crashed in' line:\n{out}"));
    assert!(crashed_line.contains("call_model"), "{crashed_line}");
}
