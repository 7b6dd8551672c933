//! Pruning while a pipeline writes to the same database: the writer (the real `SqliteLayer`, busy
//! timeout 5 s) loses no row, the prune deletes exactly the old runs, and the file is sound.

mod layer_support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use flujo_trace_sqlite::{PruneFilter, PruneProgress, SqliteLayer, SqlitePruner};
use layer_support::{count, emit_run, end_run, end_step, reader, step_span};
use tracing::field::Empty;
use tracing_subscriber::prelude::*;

const OLD_RUNS: usize = 6_000;
const OLD_STEPS_EACH: usize = 3;

/// A run of `n_steps` steps, started at `start_time`, through the layer.
fn emit_run_at(run_id: &str, start_time: &str, n_steps: usize) {
    let run = tracing::info_span!(
        target: "flujo",
        "flujo.run",
        run_id = run_id,
        pipeline_name = "old",
        pipeline_version = "latest",
        start_time = start_time,
        input = r#"{"question":"why"}"#,
        status = Empty,
        end_time = Empty,
        duration_ms = Empty,
        error = Empty,
        output = Empty,
        final_context = Empty,
        total_cost_usd = Empty,
        total_tokens = Empty,
    );
    run.in_scope(|| {
        for i in 0..n_steps {
            let step = step_span(
                run_id,
                &format!("{run_id}-step-{i}"),
                None,
                "s",
                i as u64,
                "step",
            );
            end_step(&step, "completed", 1, 0.0);
        }
    });
    end_run(&run, "completed", 0.0, 1);
}

#[test]
fn a_writer_loses_nothing_while_old_runs_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    // commits every 10 ms, so the pipeline's rows land between the prune's transactions
    let layer = SqliteLayer::builder()
        .with_flush_interval(Duration::from_millis(10))
        .open(&path)
        .unwrap();
    let handle = layer.handle();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    tracing::dispatcher::with_default(&dispatch, || {
        for i in 0..OLD_RUNS {
            let start_time = format!("2025-06-01T{:02}:{:02}:00.{i:06}Z", i / 60 % 24, i % 60);
            emit_run_at(&format!("old-{i:05}"), &start_time, OLD_STEPS_EACH);
        }
    });
    handle.flush_blocking();
    assert_eq!(handle.rows_not_recorded(), 0);

    // the pipeline: new runs (started 2026-01-01) as fast as it can, until told to stop
    let emitted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (dispatch, emitted, stop) = (dispatch.clone(), emitted.clone(), stop.clone());
        std::thread::spawn(move || {
            tracing::dispatcher::with_default(&dispatch, || {
                while !stop.load(Ordering::SeqCst) {
                    let i = emitted.load(Ordering::SeqCst);
                    emit_run(&format!("new-{i:06}"), "new", 3);
                    emitted.store(i + 1, Ordering::SeqCst);
                }
            })
        })
    };
    while emitted.load(Ordering::SeqCst) < 200 {
        std::thread::yield_now();
    }
    handle.flush_blocking();

    let filter = PruneFilter {
        started_before: "2025-12-01T00:00:00.000000Z".into(),
        ..PruneFilter::default()
    };
    let mut pruner = SqlitePruner::open(&path).unwrap();
    // how many new runs were committed, seen after each of the prune's transactions
    let watcher = reader(&path);
    let mut committed_while_deleting = Vec::new();
    let report = pruner
        .prune(&filter, |progress| {
            if let PruneProgress::Deleting { .. } = progress {
                committed_while_deleting.push(count(
                    &watcher,
                    "SELECT count(*) FROM runs WHERE pipeline_name = 'new'",
                ));
            }
        })
        .unwrap();
    drop(watcher);
    drop(pruner);
    // keep writing a little after the prune, then stop
    let after_prune = emitted.load(Ordering::SeqCst);
    while emitted.load(Ordering::SeqCst) < after_prune + 50 {
        std::thread::yield_now();
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    handle.flush_blocking();

    // the pipeline went on while the prune ran: its rows were committed between the prune's
    // transactions
    assert!(
        committed_while_deleting.len() >= OLD_RUNS / 500,
        "{committed_while_deleting:?}"
    );
    assert!(
        committed_while_deleting.last() > committed_while_deleting.first(),
        "no run was committed during the prune: {committed_while_deleting:?}"
    );

    assert_eq!(report.runs, OLD_RUNS as u64);
    assert_eq!(report.steps, (OLD_RUNS * OLD_STEPS_EACH) as u64);
    assert_eq!(handle.rows_not_recorded(), 0, "the writer lost rows");

    let new_runs = emitted.load(Ordering::SeqCst) as i64;
    let conn = reader(&path);
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM runs WHERE pipeline_name = 'old'"
        ),
        0
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM steps WHERE run_id LIKE 'old-%'"
        ),
        0
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM runs WHERE pipeline_name = 'new' AND status = 'completed' \
             AND n_steps = 3"
        ),
        new_runs
    );
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM steps WHERE run_id LIKE 'new-%' AND status = 'completed'"
        ),
        3 * new_runs
    );
    let integrity: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    assert_eq!(
        count(&conn, "SELECT count(*) FROM pragma_foreign_key_check"),
        0
    );
}
