//! A version 6 database with runs and steps, opened by a writer: it becomes version 7 at once,
//! and the writer fills `run_stats` (the ended runs) and `error_search` (the steps' errors) for
//! the rows before in short steps while another connection writes between them, every one of
//! its write transactions getting the lock within a 1 s busy timeout; once done, `run_stats`
//! holds exactly the ended runs and `error_search` exactly the errors, rows written and deleted
//! meanwhile included, and the index finds errors by any substring, in any case.

use std::time::{Duration, Instant};

use rusqlite::{Connection, TransactionBehavior};

const OLD_RUNS: u64 = 12_000;
const STEPS_PER_RUN: u64 = 4;

fn v6_database(path: &std::path::Path) {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    for sql in [
        include_str!("../src/schema/v1.sql"),
        include_str!("../src/schema/v1_to_v2.sql"),
        include_str!("../src/schema/v2_to_v3.sql"),
        include_str!("../src/schema/v3_to_v4.sql"),
        include_str!("../src/schema/v4_to_v5.sql"),
        include_str!("../src/schema/v5_to_v6.sql"),
    ] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", 6).unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..OLD_RUNS {
        // one run in ten still running, one in five failed with an error in its last step
        let (status, end) = match i % 10 {
            0 => ("running", None),
            1 | 2 => ("failed", Some("2026-01-01T00:00:01.000000Z")),
            _ => ("completed", Some("2026-01-01T00:00:01.000000Z")),
        };
        tx.execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, \
             end_time, duration_ms) VALUES (?1, 'old', '1', ?2, ?3, ?4, ?5)",
            rusqlite::params![run_id(i), status, start_time(i), end, end.map(|_| i as i64)],
        )
        .unwrap();
        for k in 0..STEPS_PER_RUN {
            let error = (status == "failed" && k == STEPS_PER_RUN - 1)
                .then(|| format!("CRM API rejected cust-{i}: Número de cliente inválido"));
            tx.execute(
                "INSERT INTO steps (step_run_id, run_id, step_name, step_index, status, \
                 start_time, error_blob) VALUES (?1, ?2, 'step', ?3, 'completed', ?4, ?5)",
                rusqlite::params![
                    format!("{}-{k}", run_id(i)),
                    run_id(i),
                    k as i64,
                    start_time(i),
                    error
                ],
            )
            .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn run_id(i: u64) -> String {
    format!(
        "0190{i:08x}-0000-7000-8000-{:012x}",
        i.wrapping_mul(0x9e37_79b9) & 0xffff_ffff
    )
}

fn start_time(i: u64) -> String {
    format!("2026-01-01T{:02}:{:02}:00.000000Z", (i / 60) % 24, i % 60)
}

fn count(conn: &Connection, sql: &str) -> u64 {
    conn.query_row(sql, [], |row| row.get::<_, i64>(0)).unwrap() as u64
}

fn backfilled(conn: &Connection) -> bool {
    count(conn, "SELECT count(*) FROM flujo_backfill WHERE done = 0") == 0
}

#[test]
fn stats_and_error_index_are_filled_in_steps_while_others_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo_ops.db");
    v6_database(&path);

    let layer = flujo_trace_sqlite::SqliteLayer::open(&path).unwrap();
    let mut other = Connection::open(&path).unwrap();
    other.busy_timeout(Duration::from_secs(1)).unwrap();
    assert_eq!(count(&other, "PRAGMA user_version"), 7);
    assert!(
        !backfilled(&other),
        "nothing left to fill right after the upgrade"
    );

    let started = Instant::now();
    let mut new_runs = 0u64;
    while !backfilled(&other) {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the backfill did not finish: {:?}",
            other
                .query_row(
                    "SELECT group_concat(name || ':' || after) FROM flujo_backfill",
                    [],
                    |r| r.get::<_, String>(0)
                )
                .unwrap()
        );
        // another writer: each transaction gets the lock within its busy timeout; a failed
        // run of its own (with an error) and a running run that ends a moment later
        let tx = other
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("a writer waited past its busy timeout on the backfill");
        let id = run_id(1_000_000 + new_runs);
        tx.execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time) \
             VALUES (?1, 'new', '1', 'running', '2026-01-02T00:00:00.000000Z')",
            [&id],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO steps (step_run_id, run_id, step_name, step_index, status, start_time) \
             VALUES (?1 || '-0', ?1, 'call', 0, 'running', '2026-01-02T00:00:00.000000Z')",
            [&id],
        )
        .unwrap();
        tx.commit().unwrap();
        let tx = other
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .expect("a writer waited past its busy timeout on the backfill");
        tx.execute(
            "UPDATE steps SET status = 'failed', error_blob = 'RATE LIMIT exceeded (429)' \
             WHERE step_run_id = ?1 || '-0'",
            [&id],
        )
        .unwrap();
        tx.execute(
            "UPDATE runs SET status = 'failed', end_time = '2026-01-02T00:00:01.000000Z', \
             duration_ms = 1000 WHERE run_id = ?1",
            [&id],
        )
        .unwrap();
        tx.commit().unwrap();
        new_runs += 1;
        // an old running run ends meanwhile: the trigger adds it
        if new_runs == 1 {
            other
                .execute(
                    "UPDATE runs SET status = 'completed', end_time = '2026-01-01T00:00:02.000000Z' \
                     WHERE run_id = ?1",
                    [run_id(10)],
                )
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(new_runs > 1, "the backfill took one step");
    // a run deleted (as prune does, its steps with it) takes its rows with it
    other
        .execute("DELETE FROM steps WHERE run_id = ?1", [run_id(1)])
        .unwrap();
    other
        .execute("DELETE FROM runs WHERE run_id = ?1", [run_id(1)])
        .unwrap();
    drop(layer);

    let ended = count(
        &other,
        "SELECT count(*) FROM runs WHERE end_time IS NOT NULL",
    );
    assert_eq!(ended, OLD_RUNS - OLD_RUNS / 10 + 1 - 1 + new_runs);
    assert_eq!(count(&other, "SELECT count(*) FROM run_stats"), ended);
    assert_eq!(
        count(
            &other,
            "SELECT count(*) FROM runs r JOIN run_stats s ON s.start_time = r.start_time \
             AND s.run_id = r.run_id AND s.status = r.status \
             AND s.duration_ms IS r.duration_ms WHERE r.end_time IS NOT NULL"
        ),
        ended
    );
    let errors = count(
        &other,
        "SELECT count(*) FROM steps WHERE error_blob IS NOT NULL",
    );
    assert_eq!(count(&other, "SELECT count(*) FROM error_search"), errors);
    assert_eq!(
        count(
            &other,
            "SELECT count(*) FROM steps s JOIN error_search e ON e.rowid = s.rowid \
             WHERE s.error_blob IS NOT NULL"
        ),
        errors
    );
    // any substring, any case, any script; the deleted run is not found
    let matches = |phrase: &str| {
        count(
            &other,
            &format!("SELECT count(*) FROM error_search WHERE error_search MATCH '\"{phrase}\"'"),
        )
    };
    assert_eq!(matches("rate limit"), new_runs);
    assert_eq!(matches("NÚMERO DE"), 2 * OLD_RUNS / 10 - 1);
    assert_eq!(matches("pi rejected cust-1:"), 0);
    assert_eq!(matches("pi rejected cust-2:"), 1);
}
