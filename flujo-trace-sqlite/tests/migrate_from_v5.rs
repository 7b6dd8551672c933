//! A version 5 database with runs, opened by a writer: it becomes version 6 at once, and the
//! writer fills `run_tails` for the runs before in short steps while another connection writes
//! between them (every write transaction getting the lock within its busy timeout); once done,
//! `run_tails` holds exactly one row per run, new and deleted runs included.

use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

const OLD_RUNS: u64 = 23_456;

fn v5_database(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    for sql in [
        include_str!("../src/schema/v1.sql"),
        include_str!("../src/schema/v1_to_v2.sql"),
        include_str!("../src/schema/v2_to_v3.sql"),
        include_str!("../src/schema/v3_to_v4.sql"),
        include_str!("../src/schema/v4_to_v5.sql"),
    ] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 5).unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..OLD_RUNS {
        tx.execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time) \
             VALUES (?1, 'old', '1', 'completed', '2026-01-01T00:00:00.000000Z')",
            [run_id(i)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// A UUID-shaped id whose tail looks random.
fn run_id(i: u64) -> String {
    let tail = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 16;
    format!("0190{:04x}-0000-7000-8000-{tail:012x}", i % 0xffff)
}

fn count(conn: &Connection, sql: &str) -> u64 {
    conn.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap() as u64
}

#[test]
fn run_tails_are_filled_in_steps_while_others_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    v5_database(&path);

    let layer = flujo_trace_sqlite::SqliteLayer::open(&path).unwrap();
    let mut other = Connection::open(&path).unwrap();
    // the busy timeout a writer waits before its batch is refused
    other.busy_timeout(Duration::from_secs(1)).unwrap();
    assert_eq!(count(&other, "PRAGMA user_version"), 7);

    let started = Instant::now();
    let mut new_runs = 0u64;
    loop {
        // another writer: each transaction gets the lock within its busy timeout
        let tx = other
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("a writer waited past its busy timeout on the backfill");
        tx.execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time) \
             VALUES (?1, 'new', '1', 'running', '2026-01-02T00:00:00.000000Z')",
            [run_id(1_000_000 + new_runs)],
        )
        .unwrap();
        tx.commit().unwrap();
        new_runs += 1;
        // then wait for the backfill's next step (or its end) before writing again
        let step = count(
            &other,
            "SELECT CAST(after AS INTEGER) FROM flujo_backfill WHERE name = 'run_tails'",
        );
        let done = loop {
            let (after, done) = other
                .query_row(
                    "SELECT CAST(after AS INTEGER), done FROM flujo_backfill \
                     WHERE name = 'run_tails'",
                    [],
                    |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, i64>(1)?)),
                )
                .unwrap();
            if after != step || done == 1 {
                break done;
            }
            assert!(started.elapsed() < Duration::from_secs(60), "no step");
            std::thread::sleep(Duration::from_millis(2));
        };
        if done == 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the backfill did not finish: {} of {OLD_RUNS} runs in",
            count(&other, "SELECT count(*) FROM run_tails")
        );
    }
    assert!(new_runs > 1, "the backfill took one step");
    // a run deleted (as prune does) takes its tail with it
    other
        .execute("DELETE FROM runs WHERE run_id = ?1", [run_id(7)])
        .unwrap();
    drop(layer);

    let runs = count(&other, "SELECT count(*) FROM runs");
    assert_eq!(runs, OLD_RUNS + new_runs - 1);
    assert_eq!(count(&other, "SELECT count(*) FROM run_tails"), runs);
    assert_eq!(
        count(
            &other,
            "SELECT count(*) FROM runs r WHERE NOT EXISTS (SELECT 1 FROM run_tails t \
             WHERE t.tail = substr(r.run_id, -8) AND t.run_id = r.run_id)"
        ),
        0
    );
}
