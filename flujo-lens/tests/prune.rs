//! `flujo lens prune`: deletes exactly the matching runs with their steps, keeps running and
//! crashed runs unless named, asks first (or needs --yes), changes nothing on a dry run, an
//! abort or an error, and gives the space back on a database flujo created.

mod common;

use std::io::Cursor;
use std::path::Path;

use common::*;
use flujo_trace_sqlite::SqliteBackend;

/// Every file in `dir` with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).unwrap_or_default(),
            )
        })
        .collect();
    files.sort();
    files
}

/// The run ids left, and every step id left with its run.
fn rows(path: &Path) -> (Vec<String>, Vec<(String, String)>) {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT run_id FROM runs ORDER BY run_id")
        .unwrap();
    let runs = stmt
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut stmt = conn
        .prepare("SELECT run_id, step_run_id FROM steps ORDER BY step_run_id")
        .unwrap();
    let steps = stmt
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (runs, steps)
}

/// Runs `prune ARGS` with `--yes` on a fresh fixture (runs 1..6, see `common::fixture`; the
/// clock is 15:00) and checks that exactly the runs `deleted` are gone with all their steps, and
/// that the message counts them.
fn check(args: &[&str], deleted: &[u32]) {
    let (dir, path) = fixture_dir();
    let (runs_before, steps_before) = rows(&path);
    let mut argv = vec!["lens", "prune", "--yes"];
    argv.extend_from_slice(args);
    let outcome = lens(dir.path(), &argv);
    let deleted_ids: Vec<String> = deleted.iter().map(|&n| run_id(n)).collect();
    let expected_runs: Vec<String> = runs_before
        .iter()
        .filter(|id| !deleted_ids.contains(id))
        .cloned()
        .collect();
    let expected_steps: Vec<(String, String)> = steps_before
        .iter()
        .filter(|(run, _)| !deleted_ids.contains(run))
        .cloned()
        .collect();
    let (runs, steps) = rows(&path);
    assert_eq!(runs, expected_runs, "{args:?}: {}", outcome.stderr);
    assert_eq!(steps, expected_steps, "{args:?}");
    if deleted.is_empty() {
        assert_eq!(outcome.code, 1, "{args:?}");
        assert!(
            outcome.stderr.ends_with("match: nothing deleted\n"),
            "{args:?}: {}",
            outcome.stderr
        );
        return;
    }
    assert_eq!(outcome.code, 0, "{args:?}: {}", outcome.stderr);
    let n_steps = steps_before.len() - expected_steps.len();
    let runs_word = if deleted.len() == 1 { "run" } else { "runs" };
    let steps_word = if n_steps == 1 { "step" } else { "steps" };
    assert!(
        outcome.stdout.starts_with(&format!(
            "deleted {} {runs_word} and {n_steps} {steps_word} from ",
            deleted.len()
        )),
        "{args:?}: {}",
        outcome.stdout
    );
}

#[test]
fn deletes_exactly_the_matching_runs_and_their_steps() {
    // 1 etl completed 10:00 (3 steps) · 2 etl failed 11:00 (2) · 3 chat completed 12:00 (6)
    // 4 chat cancelled 13:00 (0) · 5 etl running 14:00 (1) · 6 etl crashed 14:30 (2)
    check(&["--older-than", "3h"], &[1, 2]);
    check(&["--older-than", "2026-01-05 12:00:00.000001"], &[1, 2, 3]);
    check(&["--older-than", "2026-01-05T11:30:00Z"], &[1, 2]);
    // running and crashed runs are kept unless asked for
    check(&["--older-than", "1m"], &[1, 2, 3, 4]);
    check(&["--older-than", "1m", "--status", "running"], &[5]);
    check(&["--older-than", "1m", "--status", "crashed"], &[6]);
    check(&["--older-than", "1m", "-s", "running,crashed"], &[5, 6]);
    check(
        &["--older-than", "1m", "--status", "failed,cancelled"],
        &[2, 4],
    );
    check(
        &["--older-than", "1m", "-s", "completed", "-s", "FAILED"],
        &[1, 2, 3],
    );
    check(&["--older-than", "1m", "--pipeline", "chat"], &[3, 4]);
    check(&["--older-than", "1m", "-p", "etl", "-s", "failed"], &[2]);
    check(&["--older-than", "2h", "--status", "running"], &[]);
    check(&["--older-than", "1d"], &[]);
    // filter values are data, never SQL
    check(&["--older-than", "1m", "--pipeline", "x' OR 1=1 --"], &[]);
}

#[test]
fn messages() {
    let (dir, path) = fixture_dir();
    let cases: [(&str, &[&str]); 4] = [
        (
            "lens_prune_dry_run",
            &["lens", "prune", "--older-than", "1m", "--dry-run"],
        ),
        (
            "lens_prune_dry_run_json",
            &[
                "lens",
                "prune",
                "--older-than",
                "3h",
                "--dry-run",
                "--yes",
                "-o",
                "json",
            ],
        ),
        (
            "lens_prune_no_match",
            &[
                "lens",
                "prune",
                "--older-than",
                "5h",
                "-s",
                "failed",
                "-p",
                "etl",
            ],
        ),
        (
            "lens_prune_refused",
            &["lens", "prune", "--older-than", "1m", "--status", "failed"],
        ),
    ];
    for (name, args) in cases {
        let before = files(dir.path());
        let outcome = lens(dir.path(), args);
        snapshot!(name, dir.path(), outcome.transcript(args));
        assert!(files(dir.path()) == before, "{name}: the directory changed");
        let code = match name {
            "lens_prune_no_match" => 1,
            "lens_prune_refused" => 2,
            _ => 0,
        };
        assert_eq!(outcome.code, code, "{name}: {}", outcome.stderr);
    }

    // the database was made with plain SQL: no auto-vacuum, the space stays in the file
    let args = ["lens", "prune", "--older-than", "1m", "--yes"];
    let size = std::fs::metadata(&path).unwrap().len();
    let outcome = lens(dir.path(), &args);
    snapshot!(
        "lens_prune_kept_in_file",
        dir.path(),
        outcome.transcript(&args)
    );
    assert_eq!(outcome.code, 0);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let free: i64 = conn
        .query_row("PRAGMA freelist_count", [], |row| row.get(0))
        .unwrap();
    assert!(free > 0, "deleted rows left no free page");
}

#[test]
fn dry_run_changes_no_byte() {
    let (dir, path) = fixture_dir();
    let before = files(dir.path());
    let outcome = lens(
        dir.path(),
        &[
            "lens",
            "prune",
            "--older-than",
            "1m",
            "-s",
            "running,crashed,completed",
            "--dry-run",
        ],
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert!(
        outcome
            .stdout
            .starts_with("would delete 4 runs and 12 steps older than 1m"),
        "{}",
        outcome.stdout
    );
    assert!(files(dir.path()) == before, "the directory changed");
    assert_eq!(rows(&path).0.len(), 6);
}

fn terminal(dir: &Path) -> flujo_lens::Environment {
    flujo_lens::Environment {
        stdin_is_terminal: true,
        ..environment(dir)
    }
}

/// Runs `flujo ARGS` in `env`, answering `answer` to the question.
fn answered(env: &flujo_lens::Environment, args: &[&str], answer: &str) -> Outcome {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let argv = std::iter::once("flujo").chain(args.iter().copied());
    let mut stdin = Cursor::new(answer.as_bytes().to_vec());
    let code = flujo_lens::run_with_input(argv, env, &mut stdin, &mut stdout, &mut stderr);
    Outcome {
        code,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

#[test]
fn asks_first_on_a_terminal_and_only_yes_deletes() {
    let (dir, path) = fixture_dir();
    let env = terminal(dir.path());
    let args = ["lens", "prune", "--older-than", "3h", "-p", "etl"];
    for answer in ["n\n", "\n", "", "no\n", "yess\n", "sure\n"] {
        let before = files(dir.path());
        let outcome = answered(&env, &args, answer);
        if answer == "n\n" {
            snapshot!(
                "lens_prune_answered_no",
                dir.path(),
                outcome.transcript(&args)
            );
        }
        assert_eq!(outcome.code, 1, "{answer:?}: {}", outcome.stderr);
        assert!(outcome.stderr.starts_with(&format!(
            "delete 2 runs and 5 steps older than 3h of pipeline etl from {}? [y/N] ",
            path.display()
        )));
        assert!(
            outcome.stderr.ends_with("aborted: nothing deleted\n"),
            "{answer:?}: {}",
            outcome.stderr
        );
        assert_eq!(outcome.stdout, "");
        assert!(
            files(dir.path()) == before,
            "{answer:?}: the directory changed"
        );
    }
    for answer in ["y\n", " YES \n"] {
        let (dir, path) = fixture_dir();
        let outcome = answered(&terminal(dir.path()), &args, answer);
        assert_eq!(outcome.code, 0, "{answer:?}: {}", outcome.stderr);
        assert!(outcome.stdout.starts_with("deleted 2 runs and 5 steps"));
        assert_eq!(rows(&path).0.len(), 4, "{answer:?}");
    }
}

#[test]
fn without_a_terminal_it_needs_yes() {
    let (dir, path) = fixture_dir();
    let before = files(dir.path());
    // not a terminal: the question is never asked, even with an answer waiting
    let outcome = answered(
        &environment(dir.path()),
        &["lens", "prune", "--older-than", "1m"],
        "y\n",
    );
    assert_eq!(outcome.code, 2);
    assert_eq!(
        outcome.stderr,
        "error: refusing to delete 4 runs and 11 steps without confirmation: pass --yes (or \
         --dry-run to see what would go)\n"
    );
    assert!(files(dir.path()) == before);
    assert_eq!(rows(&path).0.len(), 6);
}

#[test]
fn unusable_databases_are_left_untouched() {
    let missing = tempfile::tempdir().unwrap();
    let not_sqlite = tempfile::tempdir().unwrap();
    std::fs::write(not_sqlite.path().join("flujo_ops.db"), "a,b\n1,2\n").unwrap();
    let (corrupt, corrupt_path) = fixture_dir();
    let mut bytes = std::fs::read(&corrupt_path).unwrap();
    for byte in &mut bytes[100..1024] {
        *byte = 0xa5;
    }
    std::fs::write(&corrupt_path, &bytes).unwrap();
    let (too_new, too_new_path) = fixture_dir();
    let conn = rusqlite::Connection::open(&too_new_path).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let cases = [
        (missing.path(), "no flujo database at"),
        (not_sqlite.path(), "is not a flujo database"),
        (corrupt.path(), "is corrupt"),
        (too_new.path(), "upgrade flujo"),
    ];
    for (dir, message) in cases {
        for mode in ["--yes", "--dry-run"] {
            let before = files(dir);
            let outcome = lens(dir, &["lens", "prune", "--older-than", "1m", mode]);
            assert_eq!(outcome.code, 2, "{message}: {}", outcome.stderr);
            assert!(outcome.stderr.contains(message), "{}", outcome.stderr);
            assert_eq!(outcome.stderr.lines().count(), 1, "{}", outcome.stderr);
            assert!(
                files(dir) == before,
                "{message} {mode}: the directory changed"
            );
        }
    }
    assert!(!missing.path().join("flujo_ops.db").exists());
}

#[test]
fn usage_errors() {
    let (dir, _path) = fixture_dir();
    let cases: [(&str, &[&str]); 3] = [
        (
            "lens_prune_usage_no_older_than",
            &["lens", "prune", "--yes"],
        ),
        (
            "lens_prune_usage_bad_older_than",
            &["lens", "prune", "--older-than", "last week", "--yes"],
        ),
        (
            "lens_prune_usage_unknown_status",
            &[
                "lens",
                "prune",
                "--older-than",
                "30d",
                "-s",
                "done",
                "--yes",
            ],
        ),
    ];
    for (name, args) in cases {
        let before = files(dir.path());
        let outcome = lens(dir.path(), args);
        snapshot!(name, dir.path(), outcome.transcript(args));
        assert_eq!(outcome.code, 2, "{args:?}");
        assert!(files(dir.path()) == before);
    }
}

#[test]
fn help() {
    let dir = tempfile::tempdir().unwrap();
    let outcome = lens(dir.path(), &["lens", "prune", "--help"]);
    assert_eq!(outcome.code, 0);
    for expected in [
        "Examples:",
        "Exit codes:",
        "--older-than <WHEN>",
        "--dry-run",
        "--yes",
        "kept unless --status running or --status crashed",
        "sqlite3 PATH 'VACUUM'",
    ] {
        assert!(outcome.stdout.contains(expected), "{expected}");
    }
    snapshot!("lens_help_prune", dir.path(), outcome.stdout);
    let lens_help = lens(dir.path(), &["lens", "--help"]);
    assert!(lens_help.stdout.contains("prune"), "{}", lens_help.stdout);
}

/// A database created by flujo (`SqliteBackend::open`: WAL, incremental auto-vacuum) holding
/// `old` runs from December and `new` runs from January, 4 steps of about 1 KiB each.
fn flujo_database(path: &Path, old: usize, new: usize) {
    drop(SqliteBackend::open(path).unwrap());
    let mut conn = rusqlite::Connection::open(path).unwrap();
    let tx = conn.transaction().unwrap();
    let payload = format!(r#"{{"text":"{}"}}"#, "x".repeat(1_000));
    for i in 0..old + new {
        let (day, pipeline) = if i < old {
            ("2025-12-01", "old")
        } else {
            ("2026-01-05", "new")
        };
        let start_time = format!("{day}T10:{:02}:{:02}.{:06}Z", i / 60 % 60, i % 60, i);
        let run_id = format!("{pipeline}-{i:05}");
        tx.execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, \
             end_time, input_blob, n_steps) VALUES (?1, ?2, '1', 'completed', ?3, ?3, ?4, 4)",
            rusqlite::params![run_id, pipeline, start_time, payload],
        )
        .unwrap();
        for k in 0..4 {
            tx.execute(
                "INSERT INTO steps (step_run_id, run_id, step_name, step_index, status, \
                 start_time, end_time, input_blob, output_blob) \
                 VALUES (?1, ?2, ?3, ?4, 'completed', ?5, ?5, ?6, ?6)",
                rusqlite::params![
                    format!("{run_id}-{k}"),
                    run_id,
                    format!("step_{k}"),
                    k,
                    start_time,
                    payload
                ],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn bytes_on_disk(path: &Path) -> u64 {
    let wal = std::fs::metadata(format!("{}-wal", path.display())).map_or(0, |m| m.len());
    std::fs::metadata(path).unwrap().len() + wal
}

#[test]
fn space_goes_back_to_the_file_system() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    flujo_database(&path, 400, 100);
    let before = bytes_on_disk(&path);
    let mut env = environment(dir.path());
    env.stderr_is_terminal = true;
    let outcome = lens_in(
        &env,
        &["lens", "prune", "--older-than", "7d", "--yes", "-o", "json"],
    );
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    // progress on the terminal, the line cleared at the end
    assert!(
        outcome.stderr.contains("deleting: 400 of 400 runs"),
        "{:?}",
        outcome.stderr
    );
    assert!(outcome
        .stderr
        .contains("giving space back to the file system"));
    assert!(outcome.stderr.ends_with('\r'), "{:?}", outcome.stderr);

    let report: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    let after = bytes_on_disk(&path);
    assert_eq!(report["runs_deleted"], 400);
    assert_eq!(report["steps_deleted"], 1_600);
    assert_eq!(report["dry_run"], false);
    assert_eq!(report["bytes_before"], before);
    assert_eq!(report["bytes_after"], after);
    assert_eq!(report["reusable_bytes"], 0);
    // four fifths of the rows went: the file is well under half its size
    assert!(after * 2 < before, "{before} -> {after}");

    let conn = rusqlite::Connection::open(&path).unwrap();
    let pragma = |name: &str| -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
            .unwrap()
    };
    assert_eq!(pragma("freelist_count"), 0);
    assert_eq!(
        std::fs::metadata(&path).unwrap().len() as i64,
        pragma("page_count") * pragma("page_size")
    );
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    drop(conn);
    let (runs, steps) = rows(&path);
    assert_eq!(runs.len(), 100);
    assert!(runs.iter().all(|id| id.starts_with("new-")));
    assert_eq!(steps.len(), 400);

    // the table message, on another one
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    flujo_database(&path, 40, 10);
    let args = ["lens", "prune", "--older-than", "7d", "--yes"];
    let outcome = lens(dir.path(), &args);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    // sizes depend on SQLite's page layout: checked above, not snapshotted
    let (head, sizes) = outcome.stdout.split_once("; freed ").unwrap();
    assert!(sizes.contains(" -> "), "{sizes}");
    snapshot!(
        "lens_prune_freed",
        dir.path(),
        format!("{head}; freed [SIZE] ([BEFORE] -> [AFTER])\n")
    );
}
