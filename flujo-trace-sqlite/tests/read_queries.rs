//! The read queries on schema v1 and v2: pages, filters, counts, prefix and latest lookups,
//! streaming steps, and the derived `crashed` status.

use std::path::Path;

use flujo_trace_sqlite::{RunCount, RunFilter, RunReader, SqliteReader, StepRecord};
use rusqlite::params;

const V1_FIXTURE: &str = include_str!("fixtures/create_v1.sql");
const V1: &str = include_str!("../src/schema/v1.sql");
const V1_TO_V2: &str = include_str!("../src/schema/v1_to_v2.sql");

fn run_id(n: u32) -> String {
    format!("0190{n:04x}-0000-7000-8000-000000000000")
}

/// Runs 0..n: status cycles completed, failed, cancelled; pipeline alternates a, b; one minute
/// apart; each with two steps. Columns v1 has only.
fn fill_v1_columns(conn: &rusqlite::Connection, n: u32) {
    for i in 0..n {
        conn.execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, \
             end_time, total_cost, final_context_blob) VALUES (?1, ?2, 'v', ?3, ?4, ?5, 0.5, '{\"i\":1}')",
            params![
                run_id(i),
                ["a", "b"][i as usize % 2],
                ["completed", "failed", "cancelled"][i as usize % 3],
                format!("2026-01-05T{:02}:{:02}:00.000000Z", i / 60, i % 60),
                format!("2026-01-05T{:02}:{:02}:01.500000Z", i / 60, i % 60),
            ],
        )
        .unwrap();
        for k in 0..2 {
            conn.execute(
                "INSERT INTO steps (step_run_id, run_id, step_name, step_index, status, start_time) \
                 VALUES (?1, ?2, ?3, ?4, 'completed', '2026-01-05T00:00:00.000000Z')",
                params![format!("{}-{k}", run_id(i)), run_id(i), format!("s{k}"), k],
            )
            .unwrap();
        }
    }
}

fn v1_database(path: &Path, n: u32) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(V1_FIXTURE).unwrap();
    fill_v1_columns(&conn, n);
}

fn v2_database(path: &Path, n: u32) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(V1).unwrap();
    conn.execute_batch(V1_TO_V2).unwrap();
    conn.pragma_update(None, "user_version", 2).unwrap();
    fill_v1_columns(&conn, n);
    conn
}

fn ids(runs: &[flujo_trace_sqlite::RunRecord]) -> Vec<String> {
    runs.iter().map(|run| run.run_id.clone()).collect()
}

fn filter(statuses: &[&str], pipeline: Option<&str>, limit: usize) -> RunFilter {
    RunFilter {
        statuses: statuses.iter().map(|s| s.to_string()).collect(),
        pipeline_name: pipeline.map(str::to_owned),
        limit: Some(limit),
        ..RunFilter::default()
    }
}

/// The same questions give the same answers on both schema versions.
fn check_queries(reader: &SqliteReader) {
    let page = reader.list_runs_page(&filter(&[], None, 5), 1_000).unwrap();
    assert_eq!(ids(&page.runs), [29, 28, 27, 26, 25].map(run_id));
    assert_eq!(
        page.matching,
        RunCount {
            count: 30,
            exact: true
        }
    );
    assert_eq!(page.runs[0].n_steps, Some(2), "counted when not stored");
    assert_eq!(
        page.runs[0].duration_ms,
        Some(1_500),
        "derived from the times when not stored"
    );
    assert_eq!(
        page.runs[0].final_context_blob, None,
        "pages carry no blobs"
    );

    let page = reader.list_runs_page(&filter(&[], None, 5), 10).unwrap();
    assert_eq!(
        page.matching,
        RunCount {
            count: 10,
            exact: false
        },
        "bounded count"
    );

    let failed = reader
        .list_runs_page(&filter(&["failed"], None, 100), 1_000)
        .unwrap();
    assert_eq!(failed.runs.len(), 10);
    assert!(failed.runs.iter().all(|run| run.status == "failed"));

    let several = reader
        .list_runs_page(&filter(&["failed", "cancelled"], Some("a"), 100), 1_000)
        .unwrap();
    let expected: Vec<String> = (0..30u32)
        .rev()
        .filter(|i| i % 2 == 0 && i % 3 != 0)
        .map(run_id)
        .collect();
    assert_eq!(ids(&several.runs), expected, "merged newest first");

    let window = RunFilter {
        since: Some("2026-01-05T00:10:00.000000Z".into()),
        until: Some("2026-01-05T00:13:00.000000Z".into()),
        limit: Some(50),
        ..RunFilter::default()
    };
    let page = reader.list_runs_page(&window, 1_000).unwrap();
    assert_eq!(
        ids(&page.runs),
        [12, 11, 10].map(run_id),
        "since included, until excluded"
    );

    let injection = filter(&[], Some("a' OR 1=1 --"), 50);
    assert!(reader
        .list_runs_page(&injection, 1_000)
        .unwrap()
        .runs
        .is_empty());

    let by_prefix = reader.find_runs_by_prefix("0190001", 100).unwrap();
    assert_eq!(ids(&by_prefix), (16..30).map(run_id).collect::<Vec<_>>());
    assert!(reader.find_runs_by_prefix("0191", 10).unwrap().is_empty());
    assert_eq!(reader.find_runs_by_prefix("0190", 3).unwrap().len(), 3);

    let latest = reader.latest_run().unwrap().unwrap();
    assert_eq!(latest.run_id, run_id(29));
    assert_eq!(latest.final_context_blob.as_deref(), Some("{\"i\":1}"));
    assert!(reader.find_run("nope").unwrap().is_none());

    let mut streamed: Vec<StepRecord> = Vec::new();
    reader
        .for_each_run_step(
            &run_id(3),
            |step| -> Result<(), flujo_trace_sqlite::Error> {
                streamed.push(step);
                Ok(())
            },
        )
        .unwrap();
    assert_eq!(
        streamed
            .iter()
            .map(|s| s.step_name.as_str())
            .collect::<Vec<_>>(),
        ["s0", "s1"]
    );

    // the trait's reads (FSD-08's, on this read-only open) agree with the lens's
    assert_eq!(
        reader.get_run_details(&run_id(3)).unwrap().unwrap(),
        reader.find_run(&run_id(3)).unwrap().unwrap()
    );
    assert_eq!(reader.list_run_steps(&run_id(3)).unwrap(), streamed);
    let all = reader.list_runs(&filter(&["cancelled"], None, 3)).unwrap();
    assert_eq!(ids(&all), [29, 26, 23].map(run_id));
    assert!(
        all[0].final_context_blob.is_some(),
        "the trait's list carries blobs"
    );
}

#[test]
fn schema_v1_is_read_with_missing_columns_as_null() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    v1_database(&path, 30);
    let reader = SqliteReader::open(&path).unwrap();
    check_queries(&reader);
    let run = reader.find_run(&run_id(0)).unwrap().unwrap();
    assert_eq!(
        (
            run.input_blob,
            run.output_blob,
            run.error_blob,
            run.total_tokens,
            run.writer
        ),
        (None, None, None, None, None)
    );
    let step = &reader.list_run_steps(&run_id(0)).unwrap()[0];
    assert_eq!(
        (&step.parent_step_run_id, step.fallback_taken),
        (&None, None)
    );
}

#[test]
fn schema_v2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    drop(v2_database(&path, 30));
    check_queries(&SqliteReader::open(&path).unwrap());
}

#[test]
fn stopping_a_stream_early_returns_the_callers_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    drop(v2_database(&path, 1));
    let reader = SqliteReader::open(&path).unwrap();
    #[derive(Debug)]
    enum Stop {
        Here(usize),
        Read(flujo_trace_sqlite::Error),
    }
    impl From<flujo_trace_sqlite::Error> for Stop {
        fn from(error: flujo_trace_sqlite::Error) -> Stop {
            Stop::Read(error)
        }
    }
    let mut seen = 0;
    let result = reader.for_each_run_step(&run_id(0), |_| {
        seen += 1;
        Err(Stop::Here(seen))
    });
    match result {
        Err(Stop::Here(seen)) => assert_eq!(seen, 1, "stopped at the first step"),
        Err(Stop::Read(error)) => panic!("the read failed: {error}"),
        Ok(()) => panic!("the stream ignored the caller's error"),
    }
}
