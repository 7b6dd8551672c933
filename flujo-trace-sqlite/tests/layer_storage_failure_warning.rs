//! What a user sees when rows cannot be recorded: one warning naming the file and the failure,
//! a line when recording works again, and, when the writer stops, the total if more were lost
//! after the warning. Runs as a child process so
//! its stderr can be read.

mod layer_support;

use std::process::Command;
use std::time::Duration;

use flujo_trace_sqlite::SqliteLayer;
use layer_support::emit_run;
use rusqlite::Connection;
use tracing_subscriber::prelude::*;

const CHILD: &str = "FLUJO_TEST_WARNING_CHILD_DB";

#[test]
fn one_warning_then_a_total() {
    if let Ok(path) = std::env::var(CHILD) {
        child(path.as_ref());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    let output = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "one_warning_then_a_total",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, &path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("flujo: warning:"))
        .collect();
    let shown = path.display();
    assert_eq!(
        warnings,
        [
            format!("flujo: warning: could not record to {shown}: database is locked; 3 rows not recorded so far (runs keep going; later rows are recorded once writing works again)").as_str(),
            format!("flujo: warning: 9 rows in all were not recorded to {shown}").as_str(),
        ],
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "flujo: recording to {shown} works again (9 rows were not recorded before)"
        )),
        "{stderr}"
    );
}

fn child(path: &std::path::Path) {
    let layer = SqliteLayer::builder()
        .with_busy_timeout(Duration::from_millis(20))
        // only the barriers write: each emitted run is one batch, whatever the timing
        .with_flush_interval(Duration::from_secs(3600))
        .with_retry_window(Duration::from_millis(200))
        .open(path)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let mut other = Connection::open(path).unwrap();
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Exclusive)
        .unwrap();
    // locked-1 is retried at its flush for the retry window, then lost (3 rows, the warning);
    // after that loss locked-2 and locked-3 get one attempt each: lost too
    for (run_id, lost) in [("locked-1", 3), ("locked-2", 6), ("locked-3", 9)] {
        tracing::dispatcher::with_default(&dispatch, || emit_run(run_id, "p", 1));
        assert_eq!(handle.flush_blocking().rows_not_recorded, lost);
    }
    lock.rollback().unwrap();
    tracing::dispatcher::with_default(&dispatch, || emit_run("after", "p", 1));
    handle.flush_blocking();
    assert_eq!(handle.rows_not_recorded(), 9);
    let conn = Connection::open(path).unwrap();
    let recorded: Vec<String> = conn
        .prepare("SELECT run_id FROM runs ORDER BY run_id")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(recorded, ["after"]);
    // the writer stops when the last owner goes, and reports the total
    drop(handle);
    drop(dispatch);
}
