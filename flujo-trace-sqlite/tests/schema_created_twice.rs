//! Opening an existing database again (and running the DDL twice) changes nothing.

use flujo_trace_sqlite::SqliteBackend;
use rusqlite::Connection;

fn schema_dump(conn: &Connection) -> Vec<(String, String, Option<String>)> {
    let mut stmt = conn
        .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn opening_twice_keeps_schema_and_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    drop(SqliteBackend::open(&path).unwrap());
    let first = schema_dump(&Connection::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time) \
             VALUES ('r1', 'p', 'latest', 'completed', '2026-01-01T00:00:00.000000Z')",
            [],
        )
        .unwrap();

    drop(SqliteBackend::open(&path).unwrap());
    drop(SqliteBackend::open(&path).unwrap());

    let conn = Connection::open(&path).unwrap();
    assert_eq!(schema_dump(&conn), first);
    let n: i64 = conn
        .query_row("SELECT count(*) FROM runs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

#[test]
fn the_frozen_v1_ddl_runs_twice() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(include_str!("fixtures/create_v1.sql"))
        .unwrap();
    let once = schema_dump(&conn);
    conn.execute_batch(include_str!("fixtures/create_v1.sql"))
        .unwrap();
    assert_eq!(schema_dump(&conn), once);
}
