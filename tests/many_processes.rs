//! Several processes, one database: 4 worker processes x 500 runs each into the same
//! `flujo_ops.db`, all started together, while `flujo lens list` reads it. No row is lost, no
//! "database is locked" surfaces, and the file passes `PRAGMA integrity_check`.
//!
//! The workers are this test binary run again with `FLUJO_TEST_WORKER_DB` set.

use std::process::{Command, Stdio};

use flujo::{step, Flujo, Pipeline, SqliteLayer, StepContext};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

const WORKERS: usize = 4;
const RUNS_PER_WORKER: usize = 500;
const STEPS_PER_RUN: usize = 3;

/// Runs in a worker process only: records `RUNS_PER_WORKER` runs into `FLUJO_TEST_WORKER_DB`.
#[test]
#[ignore = "child process of four_processes_write_one_database_while_the_lens_reads_it, which runs it with --ignored --exact"]
fn worker_process_entry() {
    let db = std::env::var_os("FLUJO_TEST_WORKER_DB")
        .expect("FLUJO_TEST_WORKER_DB is set by the parent test");
    let worker: usize = std::env::var("FLUJO_TEST_WORKER").unwrap().parse().unwrap();
    let layer = SqliteLayer::open(&db).expect("worker opens the database");
    let handle = layer.handle();
    let subscriber = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let a = step("fetch", |x: usize, _: StepContext<()>| async move { Ok(x) });
    let b = step("think", |x: usize, _: StepContext<()>| async move {
        Ok(format!("item {x} {}", "x".repeat(x % 700)))
    });
    let c = step("store", |s: String, _: StepContext<()>| async move {
        Ok(s.len())
    });
    let flujo = Flujo::new(format!("worker-{worker}"), Pipeline::new(a).then(b).then(c));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        for i in 0..RUNS_PER_WORKER {
            let result = flujo
                .run(worker * 10_000 + i)
                .with_subscriber(subscriber.clone())
                .await;
            assert!(result.is_completed(), "{:?}", result.error);
        }
    });
    assert_eq!(
        handle.rows_not_recorded(),
        0,
        "every row of worker {worker} recorded"
    );
}

#[test]
fn four_processes_write_one_database_while_the_lens_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    // the database exists before the workers start, as it does for any long-lived deployment
    drop(SqliteLayer::open(&db).unwrap());

    let exe = std::env::current_exe().unwrap();
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            Command::new(&exe)
                .args([
                    "worker_process_entry",
                    "--exact",
                    "--ignored",
                    "--nocapture",
                ])
                .env("FLUJO_TEST_WORKER_DB", &db)
                .env("FLUJO_TEST_WORKER", worker.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();

    // the lens reads meanwhile: it must never fail, nor see a locked database
    let mut lens_reads = 0;
    let mut lens_failures = Vec::new();
    let mut running = true;
    while running {
        let out = Command::new(env!("CARGO_BIN_EXE_flujo"))
            .args(["lens", "list", "--limit", "5"])
            .env("FLUJO_STATE_URI", &db)
            .output()
            .unwrap();
        lens_reads += 1;
        // 0: runs listed; 1: none recorded yet (the workers may not have committed one);
        // anything else (an error, a locked database) is a failure
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if !matches!(out.status.code(), Some(0 | 1)) || stderr.contains("locked") {
            lens_failures.push(stderr);
        }
        running = lens_reads < 200
            && count(&db, "SELECT count(*) FROM runs") < (WORKERS * RUNS_PER_WORKER) as i64;
    }

    for (worker, child) in workers.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "worker {worker} failed:\n{stderr}");
        assert!(
            !stderr.contains("locked"),
            "worker {worker} surfaced a lock error:\n{stderr}"
        );
        assert!(
            !stderr.contains("not recorded"),
            "worker {worker} lost rows:\n{stderr}"
        );
    }
    assert!(
        lens_failures.is_empty(),
        "the lens failed while workers wrote: {lens_failures:?}"
    );

    let total_runs = (WORKERS * RUNS_PER_WORKER) as i64;
    assert_eq!(count(&db, "SELECT count(*) FROM runs"), total_runs);
    assert_eq!(
        count(&db, "SELECT count(*) FROM runs WHERE status = 'completed'"),
        total_runs
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM steps"),
        total_runs * STEPS_PER_RUN as i64
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM steps WHERE status = 'completed' AND output_blob IS NOT NULL"
        ),
        total_runs * STEPS_PER_RUN as i64
    );
    for worker in 0..WORKERS {
        assert_eq!(
            count(&db, &format!("SELECT count(*) FROM runs WHERE pipeline_name = 'worker-{worker}' AND n_steps = 3")),
            RUNS_PER_WORKER as i64
        );
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
}

fn count(db: &std::path::Path, sql: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}
