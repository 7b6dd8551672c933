//! `SqliteBackend`'s StateBackend write operations, read back through the same trait.

use flujo_trace_sqlite::{Error, RunEnd, RunRecord, SqliteBackend, StateBackend, StepRecord};

fn run(run_id: &str) -> RunRecord {
    RunRecord {
        run_id: run_id.into(),
        pipeline_name: "summarise".into(),
        pipeline_version: "1.2".into(),
        status: "running".into(),
        start_time: "2026-01-01T00:00:00.000000Z".into(),
        end_time: None,
        duration_ms: None,
        total_cost: None,
        total_tokens: None,
        n_steps: None,
        input_blob: Some("\"text\"".into()),
        output_blob: None,
        final_context_blob: None,
        error_blob: None,
        writer: None,
        trace_id: None,
    }
}

fn step(run_id: &str, step_run_id: &str, step_index: i64, status: &str) -> StepRecord {
    StepRecord {
        step_run_id: step_run_id.into(),
        run_id: run_id.into(),
        parent_step_run_id: None,
        step_name: format!("step_{step_index}"),
        step_index,
        step_kind: Some("step".into()),
        status: status.into(),
        attempts: Some(1),
        start_time: "2026-01-01T00:00:00.100000Z".into(),
        end_time: Some("2026-01-01T00:00:00.200000Z".into()),
        duration_ms: Some(100),
        cost: Some(0.5),
        tokens: Some(12),
        input_blob: Some("1".into()),
        output_blob: Some("2".into()),
        error_blob: None,
        // stored as 0/1 and read back as a bool; step 1 took its fallback
        fallback_taken: Some(step_index == 1),
    }
}

#[test]
fn a_run_written_through_the_trait_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = SqliteBackend::open(dir.path().join("flujo_ops.db")).unwrap();
    backend.save_run_start(&run("r1")).unwrap();
    backend
        .save_step_result(&step("r1", "r1-a", 0, "running"))
        .unwrap();
    // a step saved twice is replaced, not duplicated
    backend
        .save_step_result(&step("r1", "r1-a", 0, "completed"))
        .unwrap();
    backend
        .save_step_result(&step("r1", "r1-b", 1, "completed"))
        .unwrap();
    let end = RunEnd {
        status: "completed".into(),
        end_time: "2026-01-01T00:00:01.000000Z".into(),
        duration_ms: Some(1000),
        total_cost: Some(1.0),
        total_tokens: Some(24),
        output_blob: Some("\"a summary\"".into()),
        output_step_run_id: None,
        final_context_blob: Some("{}".into()),
        error_blob: None,
        trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
    };
    backend.save_run_end("r1", &end).unwrap();

    let stored = backend.get_run_details("r1").unwrap().unwrap();
    assert_eq!(stored.status, "completed");
    assert_eq!(stored.n_steps, Some(2));
    assert_eq!(stored.total_tokens, Some(24));
    assert_eq!(stored.input_blob.as_deref(), Some("\"text\""));
    assert_eq!(stored.output_blob.as_deref(), Some("\"a summary\""));
    assert_eq!(
        stored.trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
    let steps = backend.list_run_steps("r1").unwrap();
    assert_eq!(
        steps,
        [
            step("r1", "r1-a", 0, "completed"),
            step("r1", "r1-b", 1, "completed")
        ]
    );
}

#[test]
fn a_run_output_kept_in_its_last_step_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let mut backend = SqliteBackend::open(&db).unwrap();
    backend.save_run_start(&run("r1")).unwrap();
    backend
        .save_step_result(&step("r1", "r1-a", 0, "completed"))
        .unwrap();
    let end = RunEnd {
        status: "completed".into(),
        end_time: "2026-01-01T00:00:01.000000Z".into(),
        duration_ms: Some(1000),
        total_cost: None,
        total_tokens: None,
        // the step's output, as the recorder names it
        output_blob: Some("2".into()),
        output_step_run_id: Some("r1-a".into()),
        final_context_blob: None,
        error_blob: None,
        trace_id: None,
    };
    backend.save_run_end("r1", &end).unwrap();
    let stored = backend.get_run_details("r1").unwrap().unwrap();
    assert_eq!(stored.output_blob.as_deref(), Some("2"));
    // on disk the output is once, in the step's row
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (output, step): (Option<String>, Option<String>) = conn
        .query_row(
            "SELECT output_blob, output_step_run_id FROM runs WHERE run_id = 'r1'",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((output.as_deref(), step.as_deref()), (None, Some("r1-a")));
}

#[test]
fn write_errors_name_the_database_and_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut backend = SqliteBackend::open(dir.path().join("flujo_ops.db")).unwrap();
    let end = RunEnd {
        status: "completed".into(),
        end_time: "2026-01-01T00:00:01.000000Z".into(),
        duration_ms: None,
        total_cost: None,
        total_tokens: None,
        output_blob: None,
        output_step_run_id: None,
        final_context_blob: None,
        error_blob: None,
        trace_id: None,
    };
    let error = backend.save_run_end("nope", &end).unwrap_err();
    assert!(matches!(error, Error::UnknownRun { .. }), "{error:?}");
    assert!(
        error.to_string().contains("flujo_ops.db has no run nope"),
        "{error}"
    );

    // a step of an unknown run breaks the foreign key
    let error = backend
        .save_step_result(&step("ghost", "g-a", 0, "completed"))
        .unwrap_err();
    assert!(error.to_string().contains("flujo_ops.db"), "{error}");
    assert!(error.to_string().contains("FOREIGN KEY"), "{error}");

    backend.save_run_start(&run("r1")).unwrap();
    let error = backend.save_run_start(&run("r1")).unwrap_err();
    assert!(error.to_string().contains("UNIQUE"), "{error}");
}
