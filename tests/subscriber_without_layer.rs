//! A process whose own subscriber has no `SqliteLayer` records nothing and is told once how to
//! add it; `Persistence::Disabled` records nothing and says nothing.
//!
//! Each case runs in a child process (this test binary again, with `FLUJO_TEST_CASE` set),
//! because it installs the process's global subscriber.

use std::process::Command;

use flujo::{step, Flujo, Persistence, Pipeline, StepContext};

/// Runs in a child only.
#[test]
#[ignore = "child process of the other tests of this file, which run it with --ignored --exact"]
fn case_process_entry() {
    let case = std::env::var("FLUJO_TEST_CASE").expect("FLUJO_TEST_CASE is set by the parent test");
    std::env::set_current_dir(std::env::var("FLUJO_TEST_DIR").unwrap()).unwrap();
    let inc = step("inc", |x: u32, _: StepContext<()>| async move { Ok(x + 1) });
    let mut flujo = Flujo::new("no-layer", Pipeline::new(inc));
    match case.as_str() {
        "fmt-only" => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .init(),
        "disabled" => flujo = flujo.with_persistence(Persistence::Disabled),
        other => panic!("unknown case {other}"),
    }
    for i in 0..3 {
        let result = flujo.run_blocking(i);
        println!("result: {} {:?}", result.status.as_str(), result.output);
    }
}

fn run_case(case: &str) -> (String, String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["case_process_entry", "--exact", "--ignored", "--nocapture"])
        .env("FLUJO_TEST_CASE", case)
        .env("FLUJO_TEST_DIR", dir.path())
        .env_remove("FLUJO_STATE_URI")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{case}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        files,
    )
}

#[test]
fn a_subscriber_without_the_layer_gets_one_warning_saying_how_to_add_it() {
    let (stdout, stderr, files) = run_case("fmt-only");
    assert_eq!(stdout.matches("result: completed").count(), 3, "{stdout}");
    let warnings: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("runs are not recorded"))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning for three runs:\n{stderr}");
    assert!(
        warnings[0].contains("SqliteLayer::open"),
        "says how to add the layer: {}",
        warnings[0]
    );
    assert!(
        files.is_empty(),
        "nothing recorded, no database created: {files:?}"
    );
}

#[test]
fn disabled_persistence_records_nothing_and_says_nothing() {
    let (stdout, stderr, files) = run_case("disabled");
    assert_eq!(stdout.matches("result: completed").count(), 3, "{stdout}");
    assert!(!stderr.contains("flujo: warning"), "{stderr}");
    assert!(files.is_empty(), "{files:?}");
}
