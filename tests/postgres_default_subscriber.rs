//! Zero setup into PostgreSQL: with `FLUJO_STATE_URI=postgres://...` the default subscriber (and
//! `flujo::layer()`) records every run there, committed when `run()` returns; a server that
//! cannot be reached at start costs one warning and the pipeline runs; a wrong password is one
//! line naming the cause, never the password.
//!
//! Each case runs in a child process (this test binary again, with `FLUJO_TEST_CASE` set),
//! because it installs the process's global subscriber.

use std::process::Command;

use flujo::{step, Flujo, Pipeline, StepContext};
use flujo_test_postgres::TestServer;
use tracing_subscriber::prelude::*;

/// Runs in a child only.
#[test]
#[ignore = "child process of the other tests of this file, which run it with --ignored --exact"]
fn case_process_entry() {
    let case = std::env::var("FLUJO_TEST_CASE").expect("FLUJO_TEST_CASE is set by the parent test");
    match case.as_str() {
        "zero-setup" => {}
        "layer" => tracing_subscriber::registry()
            .with(flujo::layer().expect("the configured layer"))
            .init(),
        other => panic!("unknown case {other}"),
    }
    let inc = step("inc", |x: u32, _: StepContext<()>| async move { Ok(x + 1) });
    let flujo = Flujo::new("pg", Pipeline::new(inc));
    for i in 0..3 {
        let result = flujo.run_blocking(i);
        println!("result: {} {}", result.status.as_str(), result.run_id);
    }
    if let Ok(uri) = std::env::var("FLUJO_TEST_COUNT_IN") {
        // the rows are committed when run() returns: count them before the process exits
        use flujo_trace_postgres::{PostgresReader, PostgresUri, RunFilter, RunReader};
        let reader = PostgresReader::open(&PostgresUri::parse(&uri).unwrap()).unwrap();
        let filter = RunFilter {
            statuses: vec!["completed".into()],
            ..RunFilter::default()
        };
        let count = reader.list_runs_page(&filter, 100).unwrap().runs.len();
        println!("committed runs: {count}");
    }
}

/// Runs `case` with `FLUJO_STATE_URI=uri`: its stdout and stderr.
fn run_case(case: &str, uri: &str, count_in: bool) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["case_process_entry", "--exact", "--ignored", "--nocapture"])
        .current_dir(dir.path())
        .env("FLUJO_TEST_CASE", case)
        .env("FLUJO_STATE_URI", uri)
        .env_remove("PGPASSWORD")
        .env_remove("FLUJO_TEST_COUNT_IN");
    if count_in {
        command.env("FLUJO_TEST_COUNT_IN", uri);
    }
    let out = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{case}: {stdout}\n{stderr}");
    let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert!(
        files.is_empty(),
        "{case}: no SQLite file was created: {files:?}"
    );
    (stdout, stderr)
}

fn flujo_warnings(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|line| line.starts_with("flujo:"))
        .collect()
}

#[test]
fn the_default_subscriber_and_flujo_layer_record_into_postgres() {
    let server = TestServer::get();
    for case in ["zero-setup", "layer"] {
        let uri = server.create_database(case);
        let (stdout, stderr) = run_case(case, &uri, true);
        assert_eq!(
            stdout.matches("result: completed").count(),
            3,
            "{case}: {stdout}"
        );
        assert!(
            stdout.contains("committed runs: 3"),
            "{case}: committed when run() returned: {stdout}"
        );
        assert_eq!(
            flujo_warnings(&stderr),
            Vec::<&str>::new(),
            "{case}: {stderr}"
        );
        let db = uri.rsplit('/').next().unwrap();
        assert_eq!(
            server.psql(db, "SELECT count(*) FROM steps WHERE step_name = 'inc'"),
            "3",
            "{case}"
        );
    }
}

#[test]
fn an_unreachable_server_costs_one_warning_and_the_pipeline_runs() {
    // a port nothing listens on: the connection is refused at once
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let uri = format!("postgres://flujo:Not-A-Real-PW@127.0.0.1:{port}/ops");
    let (stdout, stderr) = run_case("zero-setup", &uri, false);
    assert_eq!(stdout.matches("result: completed").count(), 3, "{stdout}");
    let warnings = flujo_warnings(&stderr);
    let unreachable: Vec<_> = warnings
        .iter()
        .filter(|w| w.contains("cannot reach"))
        .collect();
    assert_eq!(unreachable.len(), 1, "one warning while it runs:\n{stderr}");
    assert!(unreachable[0].contains("Connection refused"), "{stderr}");
    assert!(
        warnings.iter().any(|w| w.contains("rows not recorded")),
        "the loss is counted when the process exits:\n{stderr}"
    );
    assert!(!stderr.contains("Not-A-Real-PW"), "{stderr}");
}

#[test]
fn a_wrong_password_is_one_line_without_the_password() {
    let server = TestServer::get();
    let uri = server.create_database("wrong_password");
    let db = uri.rsplit('/').next().unwrap().to_owned();
    let role = format!("pw_writer_{}", std::process::id());
    server.create_role(&role, "The-Right-PW");
    let wrong = server.uri_for(&role, "Wr0ng-PW-Guess", &db);
    let (stdout, stderr) = run_case("zero-setup", &wrong, false);
    assert_eq!(stdout.matches("result: completed").count(), 3, "{stdout}");
    let warnings = flujo_warnings(&stderr);
    let auth: Vec<_> = warnings
        .iter()
        .filter(|w| w.contains("password authentication failed"))
        .collect();
    assert!(!auth.is_empty(), "says which: {stderr}");
    assert!(auth[0].contains("check the user and password"), "{stderr}");
    assert!(!stderr.contains("Wr0ng-PW-Guess"), "{stderr}");
}
