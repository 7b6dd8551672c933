//! Zero setup (FR-21): the first run in a process with no subscriber installs the default one,
//! once, and every run lands in `flujo_ops.db` in the current directory.
//!
//! This file is its own test binary (its own process) because it installs the global default.

use flujo::{step, Flujo, Pipeline, RunStatus, StepContext, Usage};

fn writer_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("read /proc/self/task")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with("flujo-sqlite"))
        .count()
}

#[test]
fn first_run_installs_the_default_subscriber_once_and_records_into_the_cwd() {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    std::env::remove_var("FLUJO_STATE_URI");
    // a user's log filter never reaches the default subscriber's persistence
    std::env::set_var("RUST_LOG", "warn");
    assert!(!tracing::dispatcher::has_been_set());

    let double = step("double", |x: u64, cx: StepContext<()>| async move {
        cx.add_usage(Usage {
            tokens: 10,
            cost_usd: 0.5,
        });
        Ok(x * 2)
    });
    let flujo = Flujo::new("zero-setup", Pipeline::new(double));
    let threads: Vec<_> = (0..4u64)
        .map(|i| {
            let flujo = flujo.clone();
            std::thread::spawn(move || flujo.run_blocking(i))
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let more = flujo.run_blocking(21);
    assert_eq!(more.output, Some(42));
    assert!(results.iter().all(|r| r.status == RunStatus::Completed));

    assert!(
        tracing::dispatcher::has_been_set(),
        "the default subscriber was installed"
    );
    assert_eq!(
        writer_threads(),
        1,
        "exactly one SqliteLayer writer in the process"
    );

    // the rows are committed when run() returns: read them at once, from another connection
    let db = dir.path().join("flujo_ops.db");
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut ids: Vec<String> = results.iter().map(|r| r.run_id.clone()).collect();
    ids.push(more.run_id.clone());
    for id in &ids {
        let (status, cost, pipeline): (String, f64, String) = conn
            .query_row(
                "SELECT status, total_cost, pipeline_name FROM runs WHERE run_id = ?1",
                [id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .unwrap_or_else(|e| panic!("run {id} not recorded: {e}"));
        assert_eq!(
            (status.as_str(), cost, pipeline.as_str()),
            ("completed", 0.5, "zero-setup")
        );
    }
    let output: String = conn
        .query_row(
            "SELECT output_blob FROM steps WHERE run_id = ?1",
            [&more.run_id],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(output, "42");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&db).unwrap().permissions());
    assert_eq!(
        mode & 0o777,
        0o600,
        "new databases are private to their owner"
    );
}
