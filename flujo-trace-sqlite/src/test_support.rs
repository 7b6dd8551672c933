//! What the crate's unit tests share: the query plan of a statement.

use rusqlite::types::Value;
use rusqlite::Connection;

/// The plan `EXPLAIN QUERY PLAN` gives for `sql` with `params`, one line per step.
pub(crate) fn plan(conn: &Connection, sql: &str, params: &[Value]) -> String {
    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |row| {
            row.get::<_, String>(3)
        })
        .unwrap();
    rows.map(Result::unwrap).collect::<Vec<_>>().join("\n")
}
