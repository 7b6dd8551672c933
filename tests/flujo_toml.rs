//! `flujo.toml` configures a zero-setup process: where runs are recorded (relative to the file,
//! found from a subdirectory), which keys are redacted, and the payload cap.
//!
//! Each case runs in a child process (this test binary again, with `FLUJO_TEST_TOML_DIR`
//! set), because persistence by default installs the process's global subscriber.

use std::process::Command;

use flujo::{step, Flujo, Pipeline, StepContext};
use serde::Serialize;

#[derive(Serialize)]
struct Signup {
    email: String,
    ssn: String,
    api_key: String,
}

/// Runs in a child only: one zero-setup run from `FLUJO_TEST_TOML_DIR`.
#[test]
#[ignore = "child process of the flujo_toml_* tests of this file, which run it with --ignored --exact"]
fn pipeline_process_entry() {
    let dir = std::env::var_os("FLUJO_TEST_TOML_DIR")
        .expect("FLUJO_TEST_TOML_DIR is set by the parent test");
    std::env::set_current_dir(dir).unwrap();
    let echo = step("echo", |s: Signup, _: StepContext<()>| async move {
        Ok(format!("{}{}", s.email.len(), "b".repeat(498)))
    });
    let result = Flujo::new("signup", Pipeline::new(echo)).run_blocking(Signup {
        email: "ana@example.com".into(),
        ssn: "123-45-6789".into(),
        api_key: "sk-live-abc".into(),
    });
    assert!(result.is_completed());
    assert_eq!(
        result.output.map(|o| o.len()),
        Some(500),
        "the returned value is never cut"
    );
}

fn run_in(project: &std::path::Path, toml: &str) -> (String, String) {
    std::fs::write(project.join("flujo.toml"), toml).unwrap();
    std::fs::create_dir_all(project.join("data")).unwrap();
    let subdir = project.join("src/app");
    std::fs::create_dir_all(&subdir).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "pipeline_process_entry",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("FLUJO_TEST_TOML_DIR", &subdir)
        .env_remove("FLUJO_STATE_URI")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !subdir.join("flujo_ops.db").exists(),
        "the database is where flujo.toml says, not in the cwd"
    );
    let conn = rusqlite::Connection::open_with_flags(
        project.join("data/runs.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("runs recorded at data/runs.db, relative to flujo.toml");
    conn.query_row("SELECT input_blob, output_blob FROM steps", [], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
}

#[test]
fn flujo_toml_sets_the_database_redaction_and_payload_cap() {
    let project = tempfile::tempdir().unwrap();
    let (input, output) = run_in(
        project.path(),
        "state_uri = \"sqlite:///data/runs.db\"\n\n[redaction]\nextra_keys = [\"ssn\"]\n\n[storage]\npayload_cap_bytes = 100\n",
    );
    assert!(
        !input.contains("123-45-6789"),
        "extra key redacted: {input}"
    );
    assert!(
        !input.contains("sk-live-abc"),
        "default keys still redacted: {input}"
    );
    let stored = flujo_trace_sqlite_truncated(&output);
    assert_eq!(
        stored,
        Some(502),
        "output cut at 100 bytes with its size (500 b's in quotes): {output}"
    );
    assert!(output.len() < 200, "{output}");
    assert!(
        input.contains("[REDACTED]") && flujo_trace_sqlite::truncated(&input).is_none(),
        "the input, under the cap, is stored whole: {input}"
    );
}

#[test]
fn flujo_toml_can_turn_redaction_off() {
    let project = tempfile::tempdir().unwrap();
    let (input, _) = run_in(
        project.path(),
        "state_uri = \"data/runs.db\"\n[redaction]\nenabled = false\n",
    );
    assert!(
        input.contains("sk-live-abc") && input.contains("123-45-6789"),
        "{input}"
    );
}

/// The original size a stored payload was cut from, via the layer's own detector.
fn flujo_trace_sqlite_truncated(stored: &str) -> Option<u64> {
    flujo_trace_sqlite::truncated(stored).map(|t| t.original_bytes)
}

/// The redaction given in code survives `persistence(..)`, in either order.
#[tokio::test]
async fn redaction_set_in_code_survives_persistence_in_either_order() {
    use flujo::{Persistence, Redaction, SqliteLayer};
    use tracing::instrument::WithSubscriber;
    use tracing_subscriber::layer::SubscriberExt;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let subscriber = tracing::Dispatch::new(
        tracing_subscriber::registry().with(SqliteLayer::open(&db).unwrap()),
    );
    let echo = || {
        Pipeline::new(step("echo", |s: Signup, _: StepContext<()>| async move {
            Ok(s.email)
        }))
    };
    let signup = || Signup {
        email: "ana@example.com".into(),
        ssn: "123-45-6789".into(),
        api_key: "sk-live-abc".into(),
    };
    let extra = Redaction::default().with_extra_keys(["ssn"]);
    let before = Flujo::new("a", echo())
        .with_redaction(extra.clone())
        .with_persistence(Persistence::Default);
    let after = Flujo::new("b", echo())
        .with_persistence(Persistence::Default)
        .with_redaction(extra);
    let off = Flujo::new("c", echo())
        .with_redaction(Redaction::disabled())
        .with_persistence(Persistence::Default);
    for flujo in [&before, &after, &off] {
        assert!(flujo
            .run(signup())
            .with_subscriber(subscriber.clone())
            .await
            .is_completed());
    }
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let input = |pipeline: &str| -> String {
        conn.query_row(
            "SELECT s.input_blob FROM steps s JOIN runs r ON r.run_id = s.run_id WHERE r.pipeline_name = ?1",
            [pipeline],
            |r| r.get(0),
        )
        .unwrap()
    };
    for pipeline in ["a", "b"] {
        let input = input(pipeline);
        assert!(
            !input.contains("123-45-6789") && !input.contains("sk-live-abc"),
            "{pipeline}: {input}"
        );
    }
    let input = input("c");
    assert!(
        input.contains("123-45-6789") && input.contains("sk-live-abc"),
        "{input}"
    );
}
