//! A fleet writing one store: 4 processes x 500 runs at once, each with the writer identity of
//! another host, all rows there; and 10 processes opening a fresh database at once migrate it
//! exactly once.

mod support;

use flujo_test_postgres::TestServer;
use flujo_trace_postgres::PostgresLayer;
use support::*;
use tracing_subscriber::prelude::*;

const RUNS_PER_PROCESS: u32 = 500;

#[test]
fn four_hosts_write_500_runs_each_at_once_and_every_row_is_there() {
    let server = TestServer::get();
    let uri = server.create_database("fleet");
    let children: Vec<_> = (0..4)
        .map(|i| {
            let host = format!("worker-{i}.fleet.test");
            spawn_child("child_writes_runs", &[(URI_ENV, &uri), (HOST_ENV, &host)])
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        let stderr = expect_success(child, &format!("writer {i}"));
        assert!(
            !stderr.contains("warning"),
            "writer {i} reported a problem: {stderr}"
        );
    }
    let db = uri.rsplit('/').next().unwrap();
    let per_host = server.psql(
        db,
        "SELECT writer_host || '=' || count(*) || '/' || count(*) FILTER (WHERE status = 'completed') \
         || '/' || sum(n_steps) FROM runs GROUP BY writer_host ORDER BY writer_host",
    );
    let expected: Vec<String> = (0..4)
        .map(|i| format!("worker-{i}.fleet.test=500/500/1500"))
        .collect();
    assert_eq!(per_host.lines().collect::<Vec<_>>(), expected);
    assert_eq!(
        server.psql(db, "SELECT count(*) FROM steps WHERE status = 'completed'"),
        (4 * 3 * RUNS_PER_PROCESS).to_string()
    );
    assert_eq!(
        server.psql(
            db,
            "SELECT count(*) FILTER (WHERE stopped_at IS NOT NULL) || '/' || count(*) FROM flujo_writers"
        ),
        "4/4",
        "each writer registered, beat, and said it stopped"
    );
}

#[test]
#[ignore = "run by four_hosts_write_500_runs_each_at_once_and_every_row_is_there"]
fn child_writes_runs() {
    let uri = child_env(URI_ENV);
    let host = child_env(HOST_ENV);
    let layer = PostgresLayer::builder()
        .with_writer_identity(identity_on(&host))
        .open(&uri)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for n in 0..RUNS_PER_PROCESS {
            let result = run_once(&dispatch, &handle, n).await;
            assert_eq!(result.output, Some((n + 1) * 2));
        }
    });
    assert_eq!(handle.rows_not_recorded(), 0);
}

#[test]
fn ten_processes_opening_a_fresh_database_at_once_migrate_it_exactly_once() {
    let server = TestServer::get();
    let uri = server.create_database("migrate_race");
    let children: Vec<_> = (0..10)
        .map(|i| {
            let host = format!("starter-{i}");
            spawn_child(
                "child_records_one_run",
                &[(URI_ENV, &uri), (HOST_ENV, &host)],
            )
        })
        .collect();
    for (i, child) in children.into_iter().enumerate() {
        expect_success(child, &format!("process {i}"));
    }
    let db = uri.rsplit('/').next().unwrap();
    assert_eq!(
        server.psql(
            db,
            "SELECT string_agg(version::text, ',' ORDER BY version) || ' in ' \
             || count(DISTINCT applied_at) || ' transaction' FROM flujo_schema"
        ),
        "1,2,3,4,5,6,7 in 1 transaction",
        "every version applied once, all by one process"
    );
    assert_eq!(
        server.psql(db, "SELECT count(*) FROM runs WHERE status = 'completed'"),
        "10"
    );
}

#[test]
#[ignore = "run by ten_processes_opening_a_fresh_database_at_once_migrate_it_exactly_once"]
fn child_records_one_run() {
    let uri = child_env(URI_ENV);
    let host = child_env(HOST_ENV);
    let layer = PostgresLayer::builder()
        .with_writer_identity(identity_on(&host))
        .open(&uri)
        .unwrap();
    let (result, handle) = run_once_with(layer, 1);
    assert_eq!(result.output, Some(4));
    assert_eq!(handle.rows_not_recorded(), 0);
}
