//! A dropped run is `cancelled`, in every process, first run or not: with zero setup (the
//! default subscriber is installed by the first run itself), under `tokio::time::timeout`, a
//! `select!` that a ctrl-c (SIGINT) ends, and after a completed run. The cancelled run's last
//! rows are sent after its last barrier, so they are committed by the writer's shutdown at exit.
//!
//! Each case runs this test binary again as a child (`--ignored --exact`), which uses the global
//! default subscriber and exits right after the run was dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use flujo::{step, Flujo, Pipeline, StepContext, StepError};

/// A step that announces it started, then takes far longer than any test.
fn slow() -> Flujo<u64, u64> {
    Flujo::new(
        "slow",
        Pipeline::new(step("warm_up", |x: u64, _: StepContext<()>| async move {
            Ok::<_, StepError>(x + 1)
        }))
        .then(step(
            "call_model",
            |x: u64, _: StepContext<()>| async move {
                println!("step started");
                tokio::time::sleep(Duration::from_secs(600)).await;
                Ok::<_, StepError>(x)
            },
        )),
    )
}

fn child(name: &str, db: &Path) -> Command {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args([
            "--ignored",
            "--exact",
            name,
            "--nocapture",
            "--test-threads=1",
        ])
        .env("FLUJO_STATE_URI", db);
    command
}

/// (status, step statuses in order) of every run in `db`, oldest first.
fn recorded(db: &Path) -> Vec<(String, Vec<String>)> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let runs: Vec<(String, String)> = conn
        .prepare("SELECT run_id, status FROM runs ORDER BY run_id")
        .unwrap()
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    runs.into_iter()
        .map(|(run_id, status)| {
            let steps = conn
                .prepare("SELECT status FROM steps WHERE run_id = ?1 ORDER BY step_run_id")
                .unwrap()
                .query_map([&run_id], |row| row.get(0))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            (status, steps)
        })
        .collect()
}

fn cancelled() -> (String, Vec<String>) {
    (
        "cancelled".to_owned(),
        vec!["completed".to_owned(), "cancelled".to_owned()],
    )
}

fn run_child(name: &str) -> Vec<(String, Vec<String>)> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let output = child(name, &db).output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    recorded(&db)
}

#[test]
fn a_first_run_dropped_by_a_timeout_is_cancelled() {
    assert_eq!(run_child("child_times_out_its_first_run"), [cancelled()]);
}

#[test]
#[ignore = "child process of a_first_run_dropped_by_a_timeout_is_cancelled"]
fn child_times_out_its_first_run() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let run = tokio::time::timeout(Duration::from_millis(200), slow().run(1)).await;
        assert!(run.is_err(), "the run was cut short");
    });
}

#[test]
fn a_run_dropped_after_a_completed_one_is_cancelled() {
    let done = ("completed".to_owned(), vec!["completed".to_owned(); 2]);
    assert_eq!(
        run_child("child_completes_a_run_then_times_out_one"),
        [done, cancelled()]
    );
}

#[test]
#[ignore = "child process of a_run_dropped_after_a_completed_one_is_cancelled"]
fn child_completes_a_run_then_times_out_one() {
    let fast = Flujo::new(
        "slow",
        Pipeline::new(step("warm_up", |x: u64, _: StepContext<()>| async move {
            Ok::<_, StepError>(x + 1)
        }))
        .then(step(
            "call_model",
            |x: u64, _: StepContext<()>| async move { Ok::<_, StepError>(x) },
        )),
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        assert!(fast.run(1).await.is_completed());
        let run = tokio::time::timeout(Duration::from_millis(200), slow().run(2)).await;
        assert!(run.is_err(), "the run was cut short");
    });
}

#[test]
fn a_run_aborted_by_ctrl_c_is_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let mut process = child("child_runs_until_ctrl_c", &db)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // wait for the step to start, then press ctrl-c
    let mut lines = BufReader::new(process.stdout.take().unwrap()).lines();
    let started = lines.any(|line| line.is_ok_and(|line| line.contains("step started")));
    assert!(started, "the child never started its step");
    let kill = Command::new("kill")
        .args(["-INT", &process.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let output = process.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(recorded(&db), [cancelled()]);
}

#[test]
#[ignore = "child process of a_run_aborted_by_ctrl_c_is_cancelled"]
fn child_runs_until_ctrl_c() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        // listening before the run starts, so the parent's SIGINT cannot come too early
        let mut ctrl_c =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).unwrap();
        let flujo = slow();
        tokio::select! {
            _ = flujo.run(1) => panic!("the run cannot finish before ctrl-c"),
            _ = ctrl_c.recv() => eprintln!("aborted by ctrl-c"),
        }
    });
}
