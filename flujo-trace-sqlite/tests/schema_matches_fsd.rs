//! A database created by flujo holds every table, column, type, NOT NULL, primary key, foreign key
//! and index of FSD-08 section 5.2 (the frozen `create_v1.sql`), unchanged.

use std::collections::BTreeSet;

use flujo_trace_sqlite::SqliteBackend;
use rusqlite::Connection;

const FSD_DDL: &str = include_str!("fixtures/create_v1.sql");

/// `(cid, name, type, notnull, default, pk)` of every column of `table`.
fn columns(
    conn: &Connection,
    table: &str,
) -> Vec<(i64, String, String, bool, Option<String>, i64)> {
    let mut stmt = conn.prepare("SELECT cid, name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) ORDER BY cid").unwrap();
    stmt.query_map([table], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// `(name, unique, origin, partial, [columns])` of every index of `table`.
fn indexes(conn: &Connection, table: &str) -> BTreeSet<(String, bool, String, bool, Vec<String>)> {
    let mut stmt = conn
        .prepare("SELECT name, \"unique\", origin, partial FROM pragma_index_list(?1)")
        .unwrap();
    let list: Vec<(String, bool, String, bool)> = stmt
        .query_map([table], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    list.into_iter()
        .map(|(name, unique, origin, partial)| {
            // an expression's column has no name
            let mut cols = conn
                .prepare(
                    "SELECT coalesce(name, '<expr>') FROM pragma_index_info(?1) ORDER BY seqno",
                )
                .unwrap();
            let cols = cols
                .query_map([&name], |r| r.get(0))
                .unwrap()
                .collect::<Result<Vec<String>, _>>()
                .unwrap();
            (name, unique, origin, partial, cols)
        })
        .collect()
}

/// `(table, from, to, on_update, on_delete, match)` of every foreign key of `table`.
fn foreign_keys(
    conn: &Connection,
    table: &str,
) -> BTreeSet<(String, String, String, String, String, String)> {
    let mut stmt = conn
        .prepare("SELECT \"table\", \"from\", \"to\", on_update, on_delete, \"match\" FROM pragma_foreign_key_list(?1)")
        .unwrap();
    stmt.query_map([table], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

fn tables(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_new_database_holds_the_fsd_schema_unchanged() {
    let fsd = Connection::open_in_memory().unwrap();
    fsd.execute_batch(FSD_DDL).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    drop(SqliteBackend::open(&path).unwrap());
    let db = Connection::open(&path).unwrap();

    assert_eq!(tables(&fsd), ["runs", "steps"]);
    // flujo's own tables beside the FSD's: short ids (schema version 6), stats and the FTS5
    // index of errors with its shadow tables (version 7)
    assert_eq!(
        tables(&db),
        [
            "error_search",
            "error_search_config",
            "error_search_data",
            "error_search_docsize",
            "error_search_idx",
            "error_search_pending",
            "flujo_backfill",
            "run_stats",
            "run_stats_pending",
            "run_tails",
            "runs",
            "steps"
        ]
    );
    for table in tables(&fsd) {
        let fsd_columns = columns(&fsd, &table);
        let db_columns = columns(&db, &table);
        // columns may be added after the FSD's, never changed, renamed or removed
        assert!(
            db_columns.len() > fsd_columns.len(),
            "{table}: {db_columns:?}"
        );
        assert_eq!(db_columns[..fsd_columns.len()], fsd_columns[..], "{table}");

        let fsd_indexes = indexes(&fsd, &table);
        let db_indexes = indexes(&db, &table);
        assert!(!fsd_indexes.is_empty());
        assert!(
            fsd_indexes.is_subset(&db_indexes),
            "{table}: {fsd_indexes:?} not in {db_indexes:?}"
        );

        assert_eq!(
            foreign_keys(&db, &table),
            foreign_keys(&fsd, &table),
            "{table}"
        );
    }
    let cascade = foreign_keys(&db, "steps");
    assert_eq!(
        cascade.into_iter().collect::<Vec<_>>(),
        [(
            "runs".into(),
            "run_id".into(),
            "run_id".into(),
            "NO ACTION".into(),
            "CASCADE".into(),
            "NONE".into()
        )]
    );
    let version: i64 = db
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 7);
}

#[test]
fn the_added_indexes_serve_newest_first_listing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    drop(SqliteBackend::open(&path).unwrap());
    let db = Connection::open(&path).unwrap();
    let names: BTreeSet<String> = indexes(&db, "runs").into_iter().map(|i| i.0).collect();
    for name in [
        "idx_runs_start_time",
        "idx_runs_status_start_time",
        "idx_runs_pipeline_name_start_time",
    ] {
        assert!(names.contains(name), "{name} missing from {names:?}");
    }
}
