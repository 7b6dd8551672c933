//! A `flujo.toml` whose redaction settings cannot be read fails closed: when it does not parse,
//! or `[redaction]` holds a key flujo does not know, runs are still recorded (with
//! `FLUJO_STATE_URI` set), but with no value at all, and one warning names the file, the
//! problem and what to fix. An unknown key elsewhere only warns, with the key it probably
//! meant. The file is never rewritten.
//!
//! Each case runs in a child process (this test binary again, the `#[ignore]`d entry run with
//! `--ignored --exact`), because the facade reads `flujo.toml` once per process.

use std::path::{Path, PathBuf};
use std::process::Command;

use flujo::{step, Flujo, Pipeline, StepContext, StepError};
use serde::Serialize;

#[derive(Serialize)]
struct Signup {
    email: String,
    ssn: String,
}

const EMAIL: &str = "ana@example.com";
const SSN: &str = "123-45-6789";

/// The child: one zero-setup run from the directory `FLUJO_TEST_TOML_CHILD_DIR`.
#[test]
#[ignore = "run in a child process by the other tests of this file"]
fn zero_setup_run_in_child() {
    let dir = std::env::var_os("FLUJO_TEST_TOML_CHILD_DIR")
        .expect("run by the tests of this file, which set FLUJO_TEST_TOML_CHILD_DIR");
    std::env::set_current_dir(dir).unwrap();
    let echo = step("echo", |s: Signup, _: StepContext<()>| async move {
        Ok::<_, StepError>(format!("{} {}", s.email, s.ssn))
    });
    let result = Flujo::new("signup", Pipeline::new(echo)).run_blocking(Signup {
        email: EMAIL.into(),
        ssn: SSN.into(),
    });
    assert!(result.is_completed(), "{:?}", result.error);
    assert_eq!(
        result.output.as_deref(),
        Some(format!("{EMAIL} {SSN}").as_str()),
        "the returned value is never redacted"
    );
}

/// What a child run from a project with `toml` as its `flujo.toml` recorded.
struct Recorded {
    stderr: String,
    db: PathBuf,
    /// Every recorded text of the run and its step, with the step's name and both statuses.
    run: (String, Option<String>, Option<String>, Option<String>),
    step: (String, String, Option<String>, Option<String>),
}

fn run_child(project: &Path, toml: &str) -> Recorded {
    let file = project.join("flujo.toml");
    std::fs::write(&file, toml).unwrap();
    let db = project.join("runs.db");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "zero_setup_run_in_child",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("FLUJO_TEST_TOML_CHILD_DIR", project)
        .env("FLUJO_STATE_URI", &db)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        toml,
        "flujo.toml is never rewritten"
    );
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("the run is recorded at FLUJO_STATE_URI");
    let run = conn
        .query_row(
            "SELECT status, input_blob, COALESCE(output_blob, (SELECT s.output_blob FROM steps s \
             WHERE s.step_run_id = runs.output_step_run_id)), final_context_blob FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    let step = conn
        .query_row(
            "SELECT step_name, status, input_blob, output_blob FROM steps",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    Recorded {
        stderr,
        db,
        run,
        step,
    }
}

/// The bytes of the database and its `-wal` hold none of `needles`.
fn assert_not_in_database(db: &Path, needles: &[&str]) {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    for file in [db.to_owned(), PathBuf::from(wal)] {
        let bytes = std::fs::read(&file).unwrap_or_default();
        for needle in needles {
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes()),
                "{needle} is in {}",
                file.display()
            );
        }
    }
}

/// The run and its step are recorded with their structure, and no value.
fn assert_structure_only(recorded: &Recorded) {
    let redacted = Some("\"[REDACTED]\"".to_owned());
    assert_eq!(
        recorded.run,
        (
            "completed".to_owned(),
            redacted.clone(),
            redacted.clone(),
            redacted.clone()
        )
    );
    assert_eq!(
        recorded.step,
        (
            "echo".to_owned(),
            "completed".to_owned(),
            redacted.clone(),
            redacted
        )
    );
    assert_not_in_database(&recorded.db, &[EMAIL, SSN]);
}

#[test]
fn a_flujo_toml_that_does_not_parse_records_no_value() {
    let project = tempfile::tempdir().unwrap();
    let toml = "[redaction]\nextra_keys = [\"ssn\"\n";
    let recorded = run_child(project.path(), toml);
    assert_structure_only(&recorded);
    let warnings: Vec<&str> = recorded
        .stderr
        .lines()
        .filter(|line| line.starts_with("flujo: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", recorded.stderr);
    let file = project.path().join("flujo.toml");
    assert!(
        warnings[0].contains(&format!("{} is not a valid flujo.toml", file.display()))
            && warnings[0].contains("line ")
            && warnings[0].contains("fix the file")
            && warnings[0].contains("every run records no value"),
        "{}",
        warnings[0]
    );
}

#[test]
fn an_unknown_redaction_key_records_no_value_and_names_the_key_meant() {
    let project = tempfile::tempdir().unwrap();
    let recorded = run_child(project.path(), "[redaction]\nextra_key = [\"ssn\"]\n");
    assert_structure_only(&recorded);
    let warnings: Vec<&str> = recorded
        .stderr
        .lines()
        .filter(|line| line.starts_with("flujo: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", recorded.stderr);
    assert!(
        warnings[0].contains(
            "flujo.toml: unknown key `redaction.extra_key` (did you mean `redaction.extra_keys`?)"
        ) && warnings[0].contains("fix the key")
            && warnings[0].contains("every run records no value"),
        "{}",
        warnings[0]
    );
}

#[test]
fn an_unknown_key_elsewhere_warns_and_the_rest_applies() {
    let project = tempfile::tempdir().unwrap();
    let recorded = run_child(
        project.path(),
        "stat_uri = \"elsewhere.db\"\n[redaction]\nextra_keys = [\"ssn\"]\n",
    );
    let warnings: Vec<&str> = recorded
        .stderr
        .lines()
        .filter(|line| line.starts_with("flujo: warning:"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", recorded.stderr);
    assert!(
        warnings[0]
            .contains("flujo.toml: unknown key `stat_uri` (did you mean `state_uri`?); ignored"),
        "{}",
        warnings[0]
    );
    let (status, input, output, _) = &recorded.run;
    assert_eq!(status, "completed");
    assert_eq!(
        input.as_deref(),
        Some(r#"{"email":"ana@example.com","ssn":"[REDACTED]"}"#),
        "extra_keys applies"
    );
    assert_eq!(
        output.as_deref(),
        Some(r#""ana@example.com [REDACTED]""#),
        "the ssn, seen under its key, is scrubbed from the output"
    );
    assert_not_in_database(&recorded.db, &[SSN]);
}
