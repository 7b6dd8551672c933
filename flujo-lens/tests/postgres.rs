//! The lens over a real PostgreSQL server: the fixture copied from SQLite with `flujo lens copy`
//! reads back exactly as from SQLite (tables, JSON, errors, crashed runs), copying again writes
//! nothing twice, a role with SELECT only is enough for `list` and `show`, and a wrong password
//! or a missing database is one line that never shows the password.

mod common;

use common::*;
use flujo_test_postgres::TestServer;

/// The lens's outcome with the store's name written as `[STORE]`.
fn normalized(outcome: &Outcome, store: &str) -> (u8, String, String) {
    (
        outcome.code,
        outcome.stdout.replace(store, "[STORE]"),
        outcome.stderr.replace(store, "[STORE]"),
    )
}

#[test]
fn postgres_reads_back_exactly_as_sqlite() {
    let server = TestServer::get();
    let (dir, path) = fixture_dir();
    let uri = server.create_database("lens_same");
    let copy = lens(dir.path(), &["lens", "copy", "--to", &uri]);
    assert_eq!(copy.code, 0, "{}{}", copy.stdout, copy.stderr);
    assert!(
        copy.stdout.contains("copied 6 runs and 14 steps"),
        "{}",
        copy.stdout
    );
    let superuser_password = uri
        .split_once("://postgres:")
        .and_then(|(_, rest)| rest.split_once('@'))
        .map(|(password, _)| password.to_owned())
        .unwrap();
    assert!(
        !copy.stdout.contains(&superuser_password),
        "{}",
        copy.stdout
    );

    let sqlite_env = environment(dir.path());
    let mut postgres_env = environment(dir.path());
    postgres_env.state_uri = Some(uri.clone());
    let shown_uri = flujo_trace_postgres::PostgresUri::parse(&uri)
        .unwrap()
        .redacted();
    let (run1, run2, run3, run6) = (run_id(1), run_id(2), run_id(3), run_id(6));
    let prefix = &run3[..run3.len() - 2];
    let cases: Vec<Vec<&str>> = vec![
        vec!["lens", "list"],
        vec!["lens", "list", "--status", "failed,cancelled"],
        vec!["lens", "list", "--status", "crashed"],
        vec!["lens", "list", "--status", "running"],
        vec!["lens", "list", "--pipeline", "etl", "--limit", "2"],
        vec!["lens", "list", "--since", "2026-01-05 12:00", "-o", "json"],
        vec!["lens", "list", "-o", "jsonl"],
        vec!["lens", "list", "--pipeline", "nope"],
        vec!["lens", "show", &run1],
        vec!["lens", "show", &run3, "--full"],
        vec!["lens", "show", &run6],
        vec!["lens", "show", prefix],
        vec!["lens", "show", "latest", "-o", "json"],
        vec!["lens", "show", &run3, "-o", "jsonl"],
        vec!["lens", "show", "0000"],
        vec!["lens", "trace", &run3],
        vec!["lens", "trace", &run6],
        vec!["lens", "trace", "latest", "-o", "json"],
        vec!["lens", "diff", &run1, &run2],
        vec!["lens", "diff", &run1, &run3, "-o", "json"],
        vec!["lens", "diff", &run3, &run3],
        vec!["lens", "diff", &run1, "0000"],
    ];
    for args in &cases {
        let from_sqlite = lens_in(&sqlite_env, args);
        let from_postgres = lens_in(&postgres_env, args);
        assert_eq!(
            normalized(&from_postgres, &shown_uri),
            normalized(&from_sqlite, &path.display().to_string()),
            "flujo {} differs between PostgreSQL and SQLite",
            args.join(" ")
        );
    }

    // copying again writes nothing twice
    let again = lens(dir.path(), &["lens", "copy", "--to", &uri, "-o", "json"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(
        again.stdout,
        "{\"runs_copied\":6,\"steps_copied\":14,\"unfinished\":2}\n"
    );
    let db = uri.rsplit('/').next().unwrap();
    assert_eq!(
        server.psql(
            db,
            "SELECT (SELECT count(*) FROM runs) || '/' || (SELECT count(*) FROM steps)"
        ),
        "6/14"
    );
}

#[test]
fn a_select_only_role_is_enough_and_bad_credentials_are_one_line() {
    let server = TestServer::get();
    let (dir, _path) = fixture_dir();
    let uri = server.create_database("lens_roles");
    assert_eq!(lens(dir.path(), &["lens", "copy", "--to", &uri]).code, 0);
    let db = uri.rsplit('/').next().unwrap().to_owned();
    let role = format!("lens_reader_{}", std::process::id());
    let password = "Sup3r-S3cret-PW";
    server.create_role(&role, password);
    server.psql(
        &db,
        &format!("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role}"),
    );
    let reader_uri = server.uri_for(&role, password, &db);
    let mut env = environment(dir.path());
    env.state_uri = Some(reader_uri.clone());
    let list = lens_in(&env, &["lens", "list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    assert_eq!(
        list.stdout.lines().count(),
        8,
        "6 runs, the header and its rule:\n{}",
        list.stdout
    );
    let show = lens_in(&env, &["lens", "show", "latest", "-o", "json"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(show.stdout.contains(&run_id(6)), "{}", show.stdout);

    // the SELECT-only role cannot write: copying into the store with it fails and says why
    let copy = lens(dir.path(), &["lens", "copy", "--to", &reader_uri]);
    assert_eq!(copy.code, 2, "{}", copy.stdout);
    assert!(copy.stderr.contains("permission denied"), "{}", copy.stderr);
    assert!(!copy.stderr.contains(password), "{}", copy.stderr);

    for (what, uri, expected) in [
        (
            "a wrong password",
            server.uri_for(&role, "Wr0ng-Guess-PW", &db),
            "password authentication failed",
        ),
        (
            "a missing database",
            server.uri_for(&role, password, "no_such_database"),
            "does not exist",
        ),
    ] {
        env.state_uri = Some(uri);
        let outcome = lens_in(&env, &["lens", "list"]);
        assert_eq!(outcome.code, 2, "{what}");
        assert_eq!(outcome.stdout, "", "{what}");
        assert_eq!(
            outcome.stderr.lines().count(),
            1,
            "{what}: {}",
            outcome.stderr
        );
        assert!(
            outcome.stderr.contains(expected),
            "{what}: {}",
            outcome.stderr
        );
        for secret in [password, "Wr0ng-Guess-PW"] {
            assert!(
                !outcome.stderr.contains(secret),
                "{what}: {}",
                outcome.stderr
            );
        }
    }
}

/// A store without the indexes of schema 7: the SQLite fixture (schema 2, read-only, never
/// upgraded) and a PostgreSQL database whose recording role may not create extensions (no
/// pg_trgm: the migration makes a partial index of errored steps instead). `stats` and
/// `search` answer the same from a scan, say so, and say how to get the index; the SQLite file
/// is not changed.
#[test]
fn stats_and_search_without_the_indexes_of_schema_7() {
    let (dir, path) = fixture_dir();
    let before = std::fs::read(&path).unwrap();
    let search = lens(
        dir.path(),
        &["lens", "search", "CONNECTION RESET", "--in", "error"],
    );
    assert_eq!(search.code, 0, "{}", search.stderr);
    assert!(search.stdout.contains("load"), "{}", search.stdout);
    assert!(
        search
            .stdout
            .contains("note: this store has no index of errors"),
        "{}",
        search.stdout
    );
    assert!(search.stdout.contains("upgrades it"), "{}", search.stdout);
    let stats = lens(dir.path(), &["lens", "stats"]);
    assert_eq!(stats.code, 0, "{}", stats.stderr);
    assert!(
        stats.stdout.contains("note: this store has no stats table"),
        "{}",
        stats.stdout
    );
    let json = lens(dir.path(), &["lens", "stats", "-o", "json"]);
    let json: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(json["index"], "missing");
    assert_eq!(json["total"]["runs"], 6);
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the lens changed the file"
    );

    // PostgreSQL, recorded by a role that may create tables but not extensions
    let server = TestServer::get();
    let uri = server.create_database("no_trgm");
    let db = uri.rsplit('/').next().unwrap().to_owned();
    let role = format!("flujo_no_ext_{}", std::process::id());
    server.create_role(&role, "no-ext-password");
    server.psql(
        &db,
        &format!(
            "REVOKE CREATE ON DATABASE \"{db}\" FROM PUBLIC; \
             GRANT USAGE, CREATE ON SCHEMA public TO {role}"
        ),
    );
    let role_uri = server.uri_for(&role, "no-ext-password", &db);
    let copy = lens(dir.path(), &["lens", "copy", "--to", &role_uri]);
    assert_eq!(copy.code, 0, "{}{}", copy.stdout, copy.stderr);
    assert_eq!(
        server.psql(
            &db,
            "SELECT count(*) FROM pg_extension WHERE extname = 'pg_trgm'"
        ),
        "0"
    );
    assert_eq!(
        server.psql(
            &db,
            "SELECT to_regclass('idx_steps_error') IS NOT NULL, \
             to_regclass('idx_steps_error_trgm') IS NULL"
        ),
        "t|t"
    );
    let mut env = environment(dir.path());
    env.state_uri = Some(role_uri);
    let from_postgres = lens_in(
        &env,
        &["lens", "search", "CONNECTION RESET", "--in", "error"],
    );
    assert_eq!(from_postgres.code, 0, "{}", from_postgres.stderr);
    assert!(
        from_postgres.stdout.contains("without pg_trgm"),
        "{}",
        from_postgres.stdout
    );
    // the same matches as from SQLite
    let rows = |out: &str| -> Vec<String> {
        out.lines()
            .filter(|line| line.contains(" error "))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(rows(&from_postgres.stdout), rows(&search.stdout));
    assert!(!rows(&search.stdout).is_empty());
}
