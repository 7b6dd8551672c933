//! Every way the lens refuses to run: one clear line on stderr, exit code 2, and the file left
//! byte for byte as it was (no database, journal or config file created either).

mod common;

use std::path::Path;

use common::*;

/// Every file in `dir` with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let bytes = if entry.path().is_file() {
                std::fs::read(entry.path()).unwrap()
            } else {
                Vec::new()
            };
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// Runs `args` in `dir`, snapshots the transcript, and checks exit code 2, a one-line message
/// and that no file in `dir` changed or appeared.
fn check_refused(name: &str, dir: &Path, args: &[&str]) -> Outcome {
    let before = files(dir);
    let outcome = lens(dir, args);
    snapshot!(name, dir, outcome.transcript(args));
    assert_eq!(outcome.code, 2, "{}", outcome.stderr);
    assert_eq!(outcome.stdout, "");
    assert_eq!(outcome.stderr.lines().count(), 1, "{}", outcome.stderr);
    assert!(outcome.stderr.starts_with("error: "), "{}", outcome.stderr);
    assert!(files(dir) == before, "{name}: the directory changed");
    outcome
}

#[test]
fn missing_database_is_not_created() {
    let dir = tempfile::tempdir().unwrap();
    check_refused("lens_error_missing", dir.path(), &["lens", "list"]);
    check_refused(
        "lens_error_missing_show",
        dir.path(),
        &["lens", "show", "latest"],
    );
    assert!(!dir.path().join("flujo_ops.db").exists());
}

#[test]
fn file_that_is_not_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flujo_ops.db"), "name,value\nnot,sqlite\n").unwrap();
    check_refused("lens_error_not_sqlite", dir.path(), &["lens", "list"]);
}

#[test]
fn empty_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flujo_ops.db"), "").unwrap();
    let outcome = check_refused("lens_error_empty_file", dir.path(), &["lens", "list"]);
    assert!(outcome.stderr.contains("is not a flujo database"));
}

#[test]
fn directory_instead_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("flujo_ops.db")).unwrap();
    let outcome = lens(dir.path(), &["lens", "list"]);
    assert_eq!(outcome.code, 2);
    assert!(
        outcome.stderr.contains("is not a flujo database"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn sqlite_database_of_another_program() {
    let dir = tempfile::tempdir().unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("flujo_ops.db")).unwrap();
    conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO users VALUES (1, 'ada');")
        .unwrap();
    drop(conn);
    check_refused("lens_error_foreign_sqlite", dir.path(), &["lens", "list"]);
}

#[test]
fn corrupt_database() {
    let (dir, path) = fixture_dir();
    // overwrite the schema page's b-tree header and cells, keep the file header intact
    let mut bytes = std::fs::read(&path).unwrap();
    for byte in &mut bytes[100..1024] {
        *byte = 0xa5;
    }
    std::fs::write(&path, &bytes).unwrap();
    let outcome = check_refused("lens_error_corrupt", dir.path(), &["lens", "list"]);
    assert!(outcome.stderr.contains("is corrupt"), "{}", outcome.stderr);
}

#[test]
fn corrupt_data_page_found_while_reading() {
    let (dir, path) = fixture_dir();
    // the schema is intact, the table pages after it are not
    let mut bytes = std::fs::read(&path).unwrap();
    let page_size = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    for byte in &mut bytes[page_size..] {
        *byte = 0xa5;
    }
    std::fs::write(&path, &bytes).unwrap();
    for args in [&["lens", "list"][..], &["lens", "show", "latest"][..]] {
        let before = files(dir.path());
        let outcome = lens(dir.path(), args);
        assert_eq!(outcome.code, 2, "{args:?}: {}", outcome.stderr);
        assert!(
            outcome.stderr.contains("is corrupt"),
            "{args:?}: {}",
            outcome.stderr
        );
        assert!(files(dir.path()) == before);
    }
}

#[test]
fn database_from_a_newer_flujo() {
    let (dir, path) = fixture_dir();
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let outcome = check_refused(
        "lens_error_too_new",
        dir.path(),
        &["lens", "show", "latest"],
    );
    assert!(
        outcome.stderr.contains("upgrade flujo"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn broken_flujo_toml_is_reported_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flujo.toml"),
        "state_uri = \"sqlite:///ops.db\n[broken",
    )
    .unwrap();
    let outcome = check_refused(
        "lens_error_broken_flujo_toml",
        dir.path(),
        &["lens", "list"],
    );
    assert!(
        outcome
            .stderr
            .contains("flujo.toml is not a valid flujo.toml"),
        "{}",
        outcome.stderr
    );
}

#[test]
fn unsupported_state_uri() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = environment(dir.path());
    env.state_uri = Some("mysql://db.internal/flujo".into());
    let args = ["lens", "list"];
    let outcome = lens_in(&env, &args);
    snapshot!(
        "lens_error_state_uri_scheme",
        dir.path(),
        outcome.transcript(&args)
    );
    assert_eq!(outcome.code, 2);
    assert!(outcome
        .stderr
        .contains("FLUJO_STATE_URI=\"mysql://db.internal/flujo\""));
}

#[test]
fn usage_errors_exit_2() {
    let (dir, _path) = fixture_dir();
    let cases: [(&str, &[&str]); 7] = [
        (
            "lens_usage_unknown_status",
            &["lens", "list", "--status", "done"],
        ),
        (
            "lens_usage_bad_since",
            &["lens", "list", "--since", "yesterday"],
        ),
        (
            "lens_usage_since_after_until",
            &["lens", "list", "--since", "1h", "--until", "2h"],
        ),
        ("lens_usage_limit_zero", &["lens", "list", "--limit", "0"]),
        ("lens_usage_missing_run", &["lens", "show"]),
        ("lens_usage_bad_format", &["lens", "list", "-o", "yaml"]),
        ("lens_usage_unknown_command", &["lens", "lsit"]),
    ];
    for (name, args) in cases {
        let outcome = lens(dir.path(), args);
        snapshot!(name, dir.path(), outcome.transcript(args));
        assert_eq!(outcome.code, 2, "{args:?}");
        assert_eq!(outcome.stdout, "", "{args:?}");
        assert!(
            outcome.stderr.starts_with("error: "),
            "{args:?}: {}",
            outcome.stderr
        );
    }
}

#[test]
fn help_documents_examples_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["lens", "--help"][..],
        &["lens", "list", "--help"][..],
        &["lens", "show", "--help"][..],
        &["lens", "diff", "--help"][..],
        &["lens", "trace", "--help"][..],
        &["lens", "stats", "--help"][..],
        &["lens", "search", "--help"][..],
    ] {
        let outcome = lens(dir.path(), args);
        assert_eq!(outcome.code, 0, "{args:?}");
        assert!(outcome.stdout.contains("Examples:"), "{args:?}");
        assert!(outcome.stdout.contains("Exit codes:"), "{args:?}");
        assert!(outcome.stdout.contains("1    nothing found"), "{args:?}");
        assert!(
            outcome.stdout.contains("5    --follow: the run crashed"),
            "{args:?}"
        );
    }
    let list = lens(dir.path(), &["lens", "list", "--help"]);
    snapshot!("lens_help_list", dir.path(), list.stdout);
    let show = lens(dir.path(), &["lens", "show", "--help"]);
    snapshot!("lens_help_show", dir.path(), show.stdout);
    let diff = lens(dir.path(), &["lens", "diff", "--help"]);
    snapshot!("lens_help_diff", dir.path(), diff.stdout);
    let trace = lens(dir.path(), &["lens", "trace", "--help"]);
    snapshot!("lens_help_trace", dir.path(), trace.stdout);
    let stats = lens(dir.path(), &["lens", "stats", "--help"]);
    snapshot!("lens_help_stats", dir.path(), stats.stdout);
    let search = lens(dir.path(), &["lens", "search", "--help"]);
    snapshot!("lens_help_search", dir.path(), search.stdout);
    // csv is for stats only
    let csv = lens(dir.path(), &["lens", "-o", "csv", "list"]);
    assert_eq!(csv.code, 2);
    assert!(
        csv.stderr.contains("-o csv is for `flujo lens stats`"),
        "{}",
        csv.stderr
    );
    let bare = lens(dir.path(), &["lens"]);
    assert_eq!(
        bare.code, 2,
        "a lens without a command shows the help and fails"
    );
}

#[test]
fn closed_pipe_exits_quietly() {
    struct ClosedPipe;
    impl std::io::Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }
    let (dir, _path) = fixture_dir();
    for args in [
        &["flujo", "lens", "list"][..],
        &["flujo", "lens", "show", "latest"][..],
        &["flujo", "lens", "show", "latest", "-o", "jsonl"][..],
        &["flujo", "lens", "--help"][..],
    ] {
        let mut stderr = Vec::new();
        let code = flujo_lens::run(
            args.iter().copied(),
            &environment(dir.path()),
            &mut ClosedPipe,
            &mut stderr,
        );
        assert_eq!(code, 0, "{args:?}");
        assert!(
            stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&stderr)
        );
    }
}
