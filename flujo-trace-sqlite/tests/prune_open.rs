//! `SqlitePruner::open` refuses what `SqliteReader::open` refuses, leaving the file byte
//! for byte; an FSD-08 (schema v1, no auto-vacuum) database is pruned as it is, never migrated,
//! and the report says the freed space stays inside the file.

use std::path::Path;

use flujo_trace_sqlite::{Error, PruneFilter, SqlitePruner};
use rusqlite::Connection;

const V1_FIXTURE: &str = include_str!("fixtures/create_v1.sql");

/// Every file in `dir` with its bytes.
fn files(dir: &Path) -> Vec<(std::ffi::OsString, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name(), std::fs::read(e.path()).unwrap_or_default())
        })
        .collect();
    files.sort();
    files
}

fn refused(path: &Path) -> Error {
    let dir = path.parent().unwrap();
    let before = files(dir);
    let error = SqlitePruner::open(path).unwrap_err();
    assert!(files(dir) == before, "{error}: the directory changed");
    error
}

/// A schema v1 database as FSD-08's own backend made it: `runs` 0..n, run `i` started on day
/// `i + 1` of December 2025 with 3 steps; user_version 1, rollback journal, no auto-vacuum.
fn fsd_database(path: &Path, n: usize) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(V1_FIXTURE).unwrap();
    let payload = "y".repeat(2_000);
    for i in 0..n {
        conn.execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time) \
             VALUES (?1, 'p', '1', ?2, ?3)",
            rusqlite::params![
                format!("run-{i:02}"),
                if i % 4 == 3 { "running" } else { "completed" },
                format!("2025-12-{:02}T00:00:00.000000Z", i + 1)
            ],
        )
        .unwrap();
        for k in 0..3 {
            conn.execute(
                "INSERT INTO steps (step_run_id, run_id, step_name, step_index, status, \
                 start_time, output_blob) VALUES (?1, ?2, 's', ?3, 'completed', \
                 '2025-12-01T00:00:00.000000Z', ?4)",
                rusqlite::params![format!("run-{i:02}-{k}"), format!("run-{i:02}"), k, payload],
            )
            .unwrap();
        }
    }
}

#[test]
fn unusable_files_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    assert!(matches!(refused(&path), Error::NotFound { .. }));
    assert!(!path.exists());

    std::fs::write(&path, "not a database at all").unwrap();
    assert!(matches!(refused(&path), Error::NotAFlujoDatabase { .. }));
    std::fs::remove_file(&path).unwrap();

    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY)")
        .unwrap();
    drop(conn);
    assert!(matches!(refused(&path), Error::NotAFlujoDatabase { .. }));
    std::fs::remove_file(&path).unwrap();

    fsd_database(&path, 4);
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    assert!(matches!(refused(&path), Error::TooNew { found: 99, .. }));
    std::fs::remove_file(&path).unwrap();

    fsd_database(&path, 4);
    let mut bytes = std::fs::read(&path).unwrap();
    for byte in &mut bytes[100..1024] {
        *byte = 0xa5;
    }
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(refused(&path), Error::Corrupt { .. }));
}

#[test]
fn an_fsd_database_is_pruned_as_it_is_and_keeps_its_free_pages() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    fsd_database(&path, 20);
    let size = std::fs::metadata(&path).unwrap().len();
    let schema = |path: &Path| -> Vec<String> {
        let conn = Connection::open(path).unwrap();
        let mut stmt = conn
            .prepare("SELECT sql FROM sqlite_schema ORDER BY name")
            .unwrap();
        let sql = stmt
            .query_map([], |row| row.get::<_, Option<String>>(0))
            .unwrap()
            .map(|sql| sql.unwrap().unwrap_or_default())
            .collect();
        sql
    };
    let schema_before = schema(&path);

    let filter = PruneFilter {
        started_before: "2025-12-11T00:00:00.000000Z".into(),
        ..PruneFilter::default()
    };
    let mut pruner = SqlitePruner::open(&path).unwrap();
    assert_eq!(pruner.stored_schema_version(), 1);
    let counts = pruner.prune_count(&filter).unwrap();
    // days 1..=10, minus the running ones (i = 3, 7)
    assert_eq!((counts.runs, counts.steps), (8, 24));
    assert_eq!(counts.bytes_on_disk, size);
    let report = pruner.prune(&filter, |_| {}).unwrap();
    drop(pruner);

    assert_eq!((report.runs, report.steps), (8, 24));
    assert!(!report.gives_space_back);
    // about 24 steps of 2 KB: their pages are free inside the file, which keeps its size
    assert!(report.reusable_bytes >= 40_000, "{report:?}");
    assert_eq!(report.bytes_before, size);
    assert_eq!(report.bytes_after, size);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), size);

    let conn = Connection::open(&path).unwrap();
    let user_version: i64 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(user_version, 1, "the database was migrated");
    drop(conn);
    assert_eq!(schema(&path), schema_before, "the schema changed");
    let conn = Connection::open(&path).unwrap();
    let mut stmt = conn
        .prepare("SELECT run_id FROM runs ORDER BY run_id")
        .unwrap();
    let runs: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let expected: Vec<String> = (0..20)
        .filter(|&i| i >= 10 || i % 4 == 3)
        .map(|i| format!("run-{i:02}"))
        .collect();
    assert_eq!(runs, expected);
    let steps: i64 = conn
        .query_row(
            "SELECT count(*) FROM steps WHERE run_id IN (SELECT run_id FROM runs)",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let all_steps: i64 = conn
        .query_row("SELECT count(*) FROM steps", [], |row| row.get(0))
        .unwrap();
    assert_eq!(
        (steps, all_steps),
        (3 * expected.len() as i64, 3 * expected.len() as i64)
    );
}
