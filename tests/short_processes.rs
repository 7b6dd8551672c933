//! A cron-style use: 60 short processes record into one `flujo_ops.db`, one after another. When
//! each exits, its writer commits, checkpoints the WAL into the database file (TRUNCATE) and
//! closes, so the WAL stays bounded (no `-wal` file is left once the last process is gone) and a
//! copy of `flujo_ops.db` alone holds every run. The lens reads a database whose WAL is large,
//! and leaves it byte for byte.

use std::path::Path;
use std::process::Command;

use flujo::{step, Flujo, Pipeline, RunStatus, StepContext, StepError};

const PROCESSES: usize = 60;
const RUNS_PER_PROCESS: usize = 4;

#[test]
fn sixty_short_processes_leave_every_run_in_the_database_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    for i in 0..PROCESSES {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--ignored", "--exact", "child_records_four_runs_and_exits"])
            .env("FLUJO_STATE_URI", &db)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "process {i}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(
            !String::from_utf8_lossy(&output.stderr).contains("flujo: warning"),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // no other connection is open: the last writer's checkpoint emptied the WAL and its close
    // removed it
    let wal = dir.path().join("flujo_ops.db-wal");
    let wal_bytes = std::fs::metadata(&wal).map_or(0, |m| m.len());
    assert_eq!(
        wal_bytes, 0,
        "the WAL holds {wal_bytes} bytes after the last process"
    );

    // what users do: copy or mail the database file alone
    let elsewhere = tempfile::tempdir().unwrap();
    let copy = elsewhere.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();
    let conn = rusqlite::Connection::open(&copy).unwrap();
    let count = |sql: &str| -> i64 { conn.query_row(sql, [], |row| row.get(0)).unwrap() };
    let runs = (PROCESSES * RUNS_PER_PROCESS) as i64;
    assert_eq!(
        count("SELECT count(*) FROM runs WHERE status = 'completed'"),
        runs
    );
    assert_eq!(
        count("SELECT count(*) FROM steps WHERE status = 'completed'"),
        runs * 2
    );
}

#[test]
#[ignore = "child process of sixty_short_processes_leave_every_run_in_the_database_file_alone"]
fn child_records_four_runs_and_exits() {
    let pipeline =
        Pipeline::new(step(
            "greet",
            |name: String, _: StepContext<()>| async move {
                Ok::<_, StepError>(format!("hello, {name}"))
            },
        ))
        .then(step("shout", |s: String, _: StepContext<()>| async move {
            Ok::<_, StepError>(s.to_uppercase())
        }));
    let flujo = Flujo::new("cron-job", pipeline);
    for i in 0..RUNS_PER_PROCESS {
        let result = flujo.run_blocking(format!("run {i}"));
        assert_eq!(result.status, RunStatus::Completed);
    }
    // main returns: the process exits, and its writer is shut down at exit
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_default()
}

#[test]
fn the_lens_reads_a_database_with_a_large_wal_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    drop(flujo_trace_sqlite_open(&db));
    // another process's connection that never checkpoints keeps a WAL of some 20 MiB
    let mut writer = rusqlite::Connection::open(&db).unwrap();
    writer.pragma_update(None, "wal_autocheckpoint", 0).unwrap();
    let tx = writer.transaction().unwrap();
    let blob = "x".repeat(1000);
    for i in 0..20_000 {
        tx.execute(
            "INSERT INTO runs (run_id, pipeline_name, pipeline_version, status, start_time, \
             end_time, final_context_blob) VALUES (?1, 'big-wal', 'latest', 'completed', ?2, ?2, ?3)",
            rusqlite::params![
                format!("0190a000-0000-7000-8000-{i:012}"),
                format!("2026-12-01T00:{:02}:{:02}.000000Z", i / 60 % 60, i % 60),
                blob
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    let wal = dir.path().join("flujo_ops.db-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 16 * 1024 * 1024);
    let before = (file_bytes(&db), file_bytes(&wal));

    for args in [&["list"][..], &["show", "latest"][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_flujo"))
            .arg("lens")
            .args(args)
            .env("FLUJO_STATE_URI", &db)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("big-wal"), "{args:?}: {stdout}");
    }
    assert!(
        before == (file_bytes(&db), file_bytes(&wal)),
        "the lens changed the database or its WAL"
    );
    drop(writer);
}

/// Creates an empty flujo database at `path`, as a writer would.
fn flujo_trace_sqlite_open(path: &Path) -> flujo::SqliteLayer {
    flujo::SqliteLayer::open(path).unwrap()
}
