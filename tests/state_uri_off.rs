//! Off without code: `FLUJO_STATE_URI=off` or `state_uri = "off"` in `flujo.toml` records
//! nothing (no subscriber installed, no database created) and prints nothing, with zero setup,
//! with a subscriber of your own, and through `flujo::layer()`; and `flujo::layer()` records
//! where the configured state URI says, awaited at the barrier like the default subscriber.
//!
//! Each case runs in a child process (this test binary again, with `FLUJO_TEST_CASE` set),
//! because it installs the process's global subscriber and reads `flujo.toml` once.

use std::path::Path;
use std::process::Command;

use flujo::{step, Flujo, Pipeline, StepContext};
use tracing_subscriber::prelude::*;

/// Runs in a child only.
#[test]
#[ignore = "child process of the other tests of this file, which run it with --ignored --exact"]
fn case_process_entry() {
    let case = std::env::var("FLUJO_TEST_CASE").expect("FLUJO_TEST_CASE is set by the parent test");
    std::env::set_current_dir(std::env::var("FLUJO_TEST_DIR").unwrap()).unwrap();
    match case.as_str() {
        "zero-setup" => {}
        "own-subscriber" => tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stdout))
            .init(),
        "layer" => tracing_subscriber::registry()
            .with(flujo::layer().expect("the configured layer"))
            .init(),
        other => panic!("unknown case {other}"),
    }
    let inc = step("inc", |x: u32, _: StepContext<()>| async move { Ok(x + 1) });
    let flujo = Flujo::new("off", Pipeline::new(inc));
    for i in 0..3 {
        let result = flujo.run_blocking(i);
        println!("result: {} {}", result.status.as_str(), result.run_id);
    }
    if let Ok(db) = std::env::var("FLUJO_TEST_READ_DB") {
        // the rows are committed when run() returns: count them now, before the process exits
        let conn =
            rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .unwrap();
        let runs: i64 = conn
            .query_row(
                "SELECT count(*) FROM runs WHERE status = 'completed'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        println!("committed runs: {runs}");
    }
}

/// Runs `case` in `dir` with `FLUJO_STATE_URI` set to `env` (removed when `None`): its stdout,
/// stderr, and the files left in `dir`.
fn run_case(
    case: &str,
    dir: &Path,
    env: Option<&str>,
    read_db: Option<&Path>,
) -> (String, String, Vec<String>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["case_process_entry", "--exact", "--ignored", "--nocapture"])
        .env("FLUJO_TEST_CASE", case)
        .env("FLUJO_TEST_DIR", dir)
        .env_remove("FLUJO_STATE_URI")
        .env_remove("FLUJO_TEST_READ_DB");
    if let Some(env) = env {
        command.env("FLUJO_STATE_URI", env);
    }
    if let Some(db) = read_db {
        command.env("FLUJO_TEST_READ_DB", db);
    }
    let out = command.output().unwrap();
    assert!(
        out.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    files.sort();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        files,
    )
}

fn assert_silent_and_unrecorded(
    case: &str,
    stdout: &str,
    stderr: &str,
    files: &[String],
    kept: &[&str],
) {
    assert_eq!(
        stdout.matches("result: completed").count(),
        3,
        "{case}: {stdout}"
    );
    assert!(!stderr.contains("flujo:"), "{case}: no warning: {stderr}");
    assert_eq!(files, kept, "{case}: no database created");
}

#[test]
fn flujo_state_uri_off_records_nothing_and_says_nothing() {
    for case in ["zero-setup", "own-subscriber", "layer"] {
        let dir = tempfile::tempdir().unwrap();
        let (stdout, stderr, files) = run_case(case, dir.path(), Some("off"), None);
        assert_silent_and_unrecorded(case, &stdout, &stderr, &files, &[]);
    }
}

#[test]
fn state_uri_off_in_flujo_toml_records_nothing_and_the_environment_comes_first() {
    for case in ["zero-setup", "own-subscriber", "layer"] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("flujo.toml"), "state_uri = \"off\"\n").unwrap();
        let (stdout, stderr, files) = run_case(case, dir.path(), None, None);
        assert_silent_and_unrecorded(case, &stdout, &stderr, &files, &["flujo.toml"]);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flujo.toml"), "state_uri = \"off\"\n").unwrap();
    let db = dir.path().join("ci.db");
    let (stdout, stderr, _) =
        run_case("zero-setup", dir.path(), Some("sqlite:///ci.db"), Some(&db));
    assert!(stdout.contains("committed runs: 3"), "{stdout}\n{stderr}");
}

#[test]
fn flujo_layer_records_where_the_state_uri_says_and_is_awaited_at_the_barrier() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("flujo.toml"),
        "state_uri = \"sqlite:///data/from_toml.db\"\n",
    )
    .unwrap();
    let from_toml = dir.path().join("data/from_toml.db");
    let (stdout, stderr, files) = run_case("layer", dir.path(), None, Some(&from_toml));
    assert!(stdout.contains("committed runs: 3"), "{stdout}\n{stderr}");
    assert!(!stderr.contains("flujo:"), "{stderr}");
    assert_eq!(files, ["data", "flujo.toml"], "nothing in the cwd");

    let from_env = dir.path().join("from_env.db");
    let (stdout, stderr, _) = run_case("layer", dir.path(), Some("from_env.db"), Some(&from_env));
    assert!(stdout.contains("committed runs: 3"), "{stdout}\n{stderr}");
}
