//! Short ids: `list` shows each run by the shortest end of its id (8 to 12 characters) no other
//! run's id ends with, JSON carries it as `short_id`, and every RUN argument takes it (any case);
//! a string that is a run's short id and another run's prefix means the short id; a store from
//! before the index (schema version 5), or one whose index the writer is still filling, works
//! the same, read-only and untouched.

mod common;

use std::path::Path;

use common::*;

/// Runs A and B share their last 8 characters, A and C their last 11; D shares nothing;
/// `deadbeef-…` starts with what `…deadbeef` ends with.
const A: &str = "0193a1b2-7c4d-7e5f-8a9b-0c1d2e3f4a5b";
const B: &str = "0193a1b2-7c4e-7e5f-8a9b-0c1e2e3f4a5b";
const C: &str = "0193a1b2-7c4f-7e5f-8a9b-9c1d2e3f4a5b";
const D: &str = "0193a1b2-7c50-7e5f-8a9b-77aa11bb22cc";
const PREFIXED: &str = "deadbeef-0000-7000-8000-111111111111";
const SUFFIXED: &str = "0193a1b2-7c51-7e5f-8a9b-1234deadbeef";

/// A database of the current schema (with `idx_runs_id_tail`) holding the six runs.
fn store() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    drop(flujo_trace_sqlite::SqliteBackend::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    for (minute, id) in [A, B, C, D, PREFIXED, SUFFIXED].into_iter().enumerate() {
        insert_run(
            &conn,
            &Run {
                run_id: id.into(),
                pipeline_name: "burst".into(),
                pipeline_version: "1".into(),
                status: "completed".into(),
                start_time: time(9, minute as u32, 0, 0),
                end_time: Some(time(9, minute as u32, 1, 0)),
                duration_ms: Some(1_000),
                n_steps: Some(0),
                ..Run::default()
            },
        );
    }
    (dir, path)
}

fn shown_id(dir: &Path, run: &str) -> Result<String, Outcome> {
    let outcome = lens(dir, &["lens", "show", run, "-o", "json"]);
    if outcome.code != 0 {
        return Err(outcome);
    }
    let json: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    Ok(json["run"]["run_id"].as_str().unwrap().to_owned())
}

fn short_ids(dir: &Path) -> Vec<(String, String)> {
    let outcome = lens(dir, &["lens", "list", "-o", "json"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let json: serde_json::Value = serde_json::from_str(&outcome.stdout).unwrap();
    json["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| {
            (
                run["run_id"].as_str().unwrap().to_owned(),
                run["short_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn expected_short_ids() -> Vec<(String, String)> {
    [
        (SUFFIXED, "deadbeef"),
        (PREFIXED, "11111111"),
        (D, "11bb22cc"),
        (C, "9c1d2e3f4a5b"),
        (B, "e2e3f4a5b"),
        (A, "0c1d2e3f4a5b"),
    ]
    .map(|(id, short)| (id.to_owned(), short.to_owned()))
    .into_iter()
    .collect()
}

#[test]
fn list_shows_the_shortest_end_no_other_run_shares() {
    let (dir, _path) = store();
    assert_eq!(short_ids(dir.path()), expected_short_ids());
    let outcome = lens(dir.path(), &["lens", "list"]);
    snapshot!(
        "lens_list_short_ids",
        dir.path(),
        outcome.transcript(&["lens", "list"])
    );
}

#[test]
fn every_short_id_finds_its_run_in_any_case() {
    let (dir, _path) = store();
    for (id, short) in short_ids(dir.path()) {
        assert_eq!(shown_id(dir.path(), &short).unwrap(), id);
        assert_eq!(shown_id(dir.path(), &short.to_uppercase()).unwrap(), id);
        // a longer end of the id works too, up to 12 characters
        assert_eq!(shown_id(dir.path(), &id[24..]).unwrap(), id);
    }
    for (run, args) in [(A, vec!["trace", A]), (B, vec!["diff", "e2e3f4a5b", A])] {
        let mut argv = vec!["lens"];
        argv.extend(args);
        let outcome = lens(dir.path(), &argv);
        assert!(outcome.code <= 1, "{argv:?}: {}", outcome.stderr);
        assert!(outcome.stdout.contains(run), "{argv:?}: {}", outcome.stdout);
    }
}

#[test]
fn a_shared_end_lists_the_runs_it_could_mean() {
    let (dir, _path) = store();
    let outcome = shown_id(dir.path(), "2e3f4a5b").unwrap_err();
    assert_eq!(outcome.code, 1);
    assert_eq!(outcome.stdout, "");
    for id in [A, B, C] {
        assert!(outcome.stderr.contains(id), "{}", outcome.stderr);
    }
    assert!(!outcome.stderr.contains(D), "{}", outcome.stderr);
    snapshot!(
        "lens_show_shared_short_id",
        dir.path(),
        outcome.transcript(&["lens", "show", "2e3f4a5b", "-o", "json"])
    );
}

#[test]
fn a_short_id_wins_over_a_prefix() {
    let (dir, _path) = store();
    assert_eq!(shown_id(dir.path(), "deadbeef").unwrap(), SUFFIXED);
    // with a dash it cannot be a short id: a prefix
    assert_eq!(shown_id(dir.path(), "deadbeef-").unwrap(), PREFIXED);
    assert_eq!(shown_id(dir.path(), "deadbeef-0").unwrap(), PREFIXED);
}

#[test]
fn a_store_from_before_the_index_works_and_is_left_as_it_was() {
    let (dir, path) = store();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TRIGGER run_tails_insert; DROP TRIGGER run_tails_delete; \
             DROP TABLE run_tails; DROP TABLE flujo_backfill; PRAGMA user_version = 5;",
        )
        .unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    assert_eq!(short_ids(dir.path()), expected_short_ids());
    assert_eq!(shown_id(dir.path(), "e2e3f4a5b").unwrap(), B);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the lens wrote to the store"
    );
    let conn = rusqlite::Connection::open(&path).unwrap();
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, 5);
}

#[test]
fn a_store_whose_tails_are_still_being_filled_answers_the_same() {
    let (dir, path) = store();
    {
        // as just after an upgrade: the writer has not filled run_tails yet
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "DELETE FROM run_tails; UPDATE flujo_backfill SET done = 0, after = '';",
        )
        .unwrap();
    }
    assert_eq!(short_ids(dir.path()), expected_short_ids());
    assert_eq!(shown_id(dir.path(), "E2E3F4A5B").unwrap(), B);
    assert_eq!(shown_id(dir.path(), "2e3f4a5b").unwrap_err().code, 1);
}

#[test]
fn postgres_answers_short_ids_as_sqlite() {
    let server = flujo_test_postgres::TestServer::get();
    let (dir, path) = store();
    let uri = server.create_database("short_ids");
    let copy = lens(dir.path(), &["lens", "copy", "--to", &uri]);
    assert_eq!(copy.code, 0, "{}{}", copy.stdout, copy.stderr);
    let sqlite_env = environment(dir.path());
    let mut postgres_env = environment(dir.path());
    postgres_env.state_uri = Some(uri.clone());
    let shown_uri = flujo_trace_postgres::PostgresUri::parse(&uri)
        .unwrap()
        .redacted();
    let cases: [&[&str]; 6] = [
        &["lens", "list", "-o", "json"],
        &["lens", "list"],
        &["lens", "show", "e2e3f4a5b", "-o", "json"],
        &["lens", "show", "DEADBEEF", "-o", "json"],
        &["lens", "show", "2e3f4a5b"],
        &["lens", "show", "ffffffff"],
    ];
    for args in cases {
        let from_sqlite = lens_in(&sqlite_env, args);
        let from_postgres = lens_in(&postgres_env, args);
        let normalized = |outcome: &Outcome, store: &str| {
            (
                outcome.code,
                outcome.stdout.replace(store, "[STORE]"),
                outcome.stderr.replace(store, "[STORE]"),
            )
        };
        assert_eq!(
            normalized(&from_postgres, &shown_uri),
            normalized(&from_sqlite, &path.display().to_string()),
            "flujo {} differs between PostgreSQL and SQLite",
            args.join(" ")
        );
    }
}
