//! A large database of schema version 6 (no indexes for stats and search; short ids read
//! without their index too): the
//! reader reads it as it is (scans, saying the indexes are missing) and changes nothing; the
//! first writer of this flujo upgrades it to version 7 at once and builds the new indexes with
//! `CREATE INDEX CONCURRENTLY` on a thread of its own, so other writers go on writing while an
//! index is being built (held open here by a transaction whose snapshot predates it), readers
//! see it `Filling` meanwhile and `Ready` after.

mod support;

use std::time::{Duration, Instant};

use flujo_test_postgres::TestServer;
use flujo_trace_core::{IndexState, RunReader};
use flujo_trace_postgres::{PostgresLayer, PostgresReader};
use support::*;

/// A bound on a hang, not a timing.
const PATIENCE: Duration = Duration::from_secs(60);

/// Copies of the first run (and its steps, each with an error) made in SQL: more than the
/// migration builds indexes for in its own transaction.
const COPIES: i64 = 12_000;

fn record_one(uri: &str, n: u32) {
    let (result, _) = run_once_with(PostgresLayer::open(uri).unwrap(), n);
    assert_eq!(result.output, Some((n + 1) * 2));
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < PATIENCE,
            "{what}: not within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_large_version_6_database_is_read_as_it_is_and_upgraded_without_blocking_writers() {
    let server = TestServer::get();
    let uri = server.create_database("upgrade_v7");
    let db = uri.rsplit('/').next().unwrap().to_owned();
    record_one(&uri, 0);
    // version 6 as an older flujo left it
    server.psql(
        &db,
        "DROP INDEX idx_runs_stats, idx_steps_error_trgm; DELETE FROM flujo_schema WHERE version = 7",
    );
    server.psql(
        &db,
        &format!(
            "INSERT INTO runs SELECT (jsonb_populate_record(NULL::runs, to_jsonb(r) || \
               jsonb_build_object('run_id', r.run_id || '-' || g, \
                                  'output_step_run_id', r.output_step_run_id || '-' || g))).* \
             FROM runs r, generate_series(1, {COPIES}) g; \
             INSERT INTO steps OVERRIDING SYSTEM VALUE \
             SELECT (jsonb_populate_record(NULL::steps, to_jsonb(s) || jsonb_build_object( \
               'seq', s.seq + g * 100, 'run_id', s.run_id || '-' || g, \
               'step_run_id', s.step_run_id || '-' || g, \
               'parent_step_run_id', s.parent_step_run_id || '-' || g, \
               'error_blob', 'copy ' || g || ': rate limit reached'))).* \
             FROM steps s, generate_series(1, {COPIES}) g; \
             ANALYZE runs; ANALYZE steps"
        ),
    );
    let version = || server.psql(&db, "SELECT max(version) FROM flujo_schema");
    let index = |name: &str| {
        server.psql(
            &db,
            &format!("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('{name}')"),
        )
    };

    // read as it is: the same rows, the indexes said to be missing, nothing changed
    let reader =
        PostgresReader::open(&flujo_trace_core::PostgresUri::parse(&uri).unwrap()).unwrap();
    assert_eq!(reader.stored_schema_version(), 6);
    assert_eq!(reader.stats_index().unwrap(), IndexState::Missing);
    assert_eq!(reader.error_index().unwrap(), IndexState::Missing);
    let mut runs = 0;
    reader
        .for_each_run_stat(
            &Default::default(),
            |_| -> Result<(), flujo_trace_postgres::Error> {
                runs += 1;
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(runs, COPIES + 1);
    // a short id: a scan of the ids without idx_runs_id_tail
    server.psql(&db, "DROP INDEX idx_runs_id_tail");
    let some = server.psql(&db, "SELECT run_id FROM runs WHERE run_id LIKE '%-7777'");
    let tail = &some[some.len() - 8..];
    assert_eq!(reader.run_ids_by_tail(&[tail]).unwrap(), vec![some]);
    assert_eq!(version(), "6");
    assert_eq!(index("idx_runs_stats"), "");
    server.psql(
        &db,
        "CREATE INDEX idx_runs_id_tail ON runs ((right(run_id, 8)))",
    );

    // a transaction whose snapshot predates the build keeps a concurrent build from ending
    let mut holder = postgres::Client::connect(&uri, postgres::NoTls).unwrap();
    let mut held = holder
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    held.query("SELECT count(*) FROM runs", &[]).unwrap();

    // the first writer of this flujo upgrades it and starts building the indexes
    record_one(&uri, 1);
    assert_eq!(version(), "7");
    wait_until("idx_runs_stats being built (there, not yet valid)", || {
        index("idx_runs_stats") == "f"
    });
    assert!(matches!(
        reader.stats_index().unwrap(),
        IndexState::Filling(_)
    ));
    // meanwhile other writers write into both tables at once (a lock would make these fail)
    server.psql(
        &db,
        "SET lock_timeout = '2s'; \
         INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time) \
           VALUES ('written-while-building', 'p', '1', 'running', '2026-01-01T00:00:00.000000Z'); \
         INSERT INTO steps (step_run_id, run_id, step_name, step_index, status, start_time) \
           VALUES ('step-written-while-building', 'written-while-building', 's', 0, 'running', \
                   '2026-01-01T00:00:00.000000Z')",
    );
    record_one(&uri, 2);
    assert_eq!(
        index("idx_runs_stats"),
        "f",
        "the build ended before the test looked"
    );

    held.commit().unwrap();
    wait_until("every new index built and valid", || {
        index("idx_runs_stats") == "t" && index("idx_steps_error_trgm") == "t"
    });
    assert_eq!(reader.stats_index().unwrap(), IndexState::Ready);
    assert_eq!(reader.error_index().unwrap(), IndexState::Ready);
    assert_eq!(index("idx_runs_id_tail"), "t");
}
