//! A full database (the file reaches `with_max_db_bytes`, as a full disk would stop it): runs
//! return their usual results, one warning names the file and the rows not recorded, the
//! database stays consistent, and recording resumes by itself once space is freed in the file.
//! The runs happen in a child process so its stderr can be read.

use std::future::Future;
use std::pin::Pin;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use flujo_runner::{step, Flujo, Pipeline, RunObserver, RunStatus, StepContext};
use flujo_trace_sqlite::{SqliteBackend, SqliteHandle, SqliteLayer};
use rusqlite::Connection;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::prelude::*;

const CHILD: &str = "FLUJO_TEST_DISK_FULL_CHILD_DB";
/// Lines the child prints for the parent.
const REPORT: &str = "disk-full-child:";

/// What the facade does: the run returns once its rows are committed (or refused).
struct Barrier(SqliteHandle);

impl RunObserver for Barrier {
    fn after_run<'a>(&'a self, _run_id: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        let flush = self.0.flush();
        Box::pin(async move {
            flush.await;
        })
    }
}

#[derive(Debug, Default, serde::Serialize)]
struct Ctx {}

/// Three steps, each passing a few KB on.
fn pipeline() -> Pipeline<String, usize, Ctx> {
    Pipeline::new(step("fetch", |s: String, _: StepContext<Ctx>| async move {
        Ok(s.repeat(400))
    }))
    .then(step("upper", |s: String, _: StepContext<Ctx>| async move {
        Ok(s.to_uppercase())
    }))
    .then(step("len", |s: String, _: StepContext<Ctx>| async move {
        Ok(s.len())
    }))
}

fn count(conn: &Connection, sql: &str) -> i64 {
    conn.query_row(sql, [], |row| row.get(0)).unwrap()
}

#[tokio::test]
async fn a_full_database_loses_rows_not_results_and_recovers() {
    if let Ok(path) = std::env::var(CHILD) {
        child(path.as_ref()).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_full_database_loses_rows_not_results_and_recovers",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let reported = |key: &str| -> u64 {
        let prefix = format!("{REPORT} {key}=");
        stdout
            .lines()
            // the first line follows the harness's `test ... ` on the same line
            .find_map(|l| l.split_once(&prefix).map(|(_, value)| value))
            .unwrap_or_else(|| panic!("no {key} in {stdout}"))
            .parse()
            .unwrap()
    };
    let (lost, max_db_bytes) = (reported("lost"), reported("max_db_bytes"));
    assert!(lost > 0);
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("flujo: warning:"))
        .collect();
    assert_eq!(
        warnings,
        [format!(
            "flujo: warning: could not record to {}: database or disk is full (the file may not \
             grow past the {max_db_bytes} bytes of with_max_db_bytes, or the disk is full: free \
             space, e.g. with flujo lens prune); {lost} rows not recorded so far (runs keep \
             going; later rows are recorded once writing works again)",
            path.display()
        )],
        "{stderr}"
    );
}

async fn child(path: &std::path::Path) {
    // a cap of a few pages over the new database's size
    drop(SqliteBackend::open(path).unwrap());
    let conn = Connection::open(path).unwrap();
    let page_size = count(&conn, "PRAGMA page_size") as u64;
    let max_db_bytes = (count(&conn, "PRAGMA page_count") as u64 + 24) * page_size;
    drop(conn);
    println!("{REPORT} max_db_bytes={max_db_bytes}");

    let layer = SqliteLayer::builder()
        .with_max_db_bytes(max_db_bytes)
        // only the barriers write: each run is one batch
        .with_flush_interval(Duration::from_secs(3600))
        .open(path)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let flujo = Flujo::new("fill", pipeline()).with_observer(Arc::new(Barrier(handle.clone())));
    let run = || async {
        let result = flujo
            .run("0123456789".to_owned())
            .with_subscriber(dispatch.clone())
            .await;
        // the pipeline's result never depends on recording
        assert_eq!(result.status, RunStatus::Completed);
        assert_eq!(result.output, Some(4000));
        result
    };

    // fill the file: a refused batch is retried within the retry window, then counted as lost
    // before the run's barrier is answered
    let mut pending = None;
    for _ in 0..500 {
        let result = run().await;
        if handle.rows_not_recorded() > 0 {
            pending = Some(result.run_id);
            break;
        }
    }
    let pending = pending.expect("the database filled up within 500 runs");
    let lost = handle.rows_not_recorded();
    println!("{REPORT} lost={lost}");

    // consistent: every recorded run is whole, or absent
    let other = Connection::open(path).unwrap();
    let integrity: String = other
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    let recorded = count(&other, "SELECT count(*) FROM runs");
    assert!(recorded > 0);
    assert_eq!(
        count(
            &other,
            "SELECT count(*) FROM runs WHERE status = 'completed' AND n_steps = 3 \
             AND (SELECT count(*) FROM steps WHERE steps.run_id = runs.run_id \
             AND status = 'completed') = 3"
        ),
        recorded
    );

    // free space inside the file, as `flujo lens prune` would: the freed pages are reused
    other.pragma_update(None, "foreign_keys", "ON").unwrap();
    other.execute("DELETE FROM runs", []).unwrap();
    assert_eq!(count(&other, "SELECT count(*) FROM steps"), 0);

    // the run whose rows were refused past the retry window stays unrecorded (it was counted)
    assert_eq!(
        count(
            &other,
            &format!(
                "SELECT count(*) FROM runs WHERE run_id = '{pending}' AND status = 'completed'"
            )
        ),
        0
    );
    // recording resumes by itself: the next runs are written whole
    let mut expected = vec![];
    for _ in 0..3 {
        expected.push(run().await.run_id);
    }
    assert_eq!(handle.rows_not_recorded(), lost);
    let mut run_ids: Vec<String> = other
        .prepare("SELECT run_id FROM runs WHERE status = 'completed' AND n_steps = 3")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    run_ids.sort();
    expected.sort();
    assert_eq!(run_ids, expected);
    assert_eq!(count(&other, "SELECT count(*) FROM steps"), 9);
    let integrity: String = other
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    drop(dispatch);
    drop(handle);
}
