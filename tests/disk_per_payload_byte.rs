//! What a database takes on disk for what it holds: steps with ~1 KB of input and ~1 KB of output
//! (the `cargo xtask bench overhead` typical pipeline's payload), written by the real runner and
//! layer into a new database with the default settings, take at most 1.3 bytes of database file
//! per payload byte once the writer has checkpointed and closed (16 KiB pages, each run's output
//! kept once, in its last step's row). With 4 KiB pages it was 2.24, and 1.32 at 16 KiB with the
//! output kept twice.

use flujo::{step, Flujo, Pipeline, SqliteLayer, StepContext, StepError};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::prelude::*;

#[derive(Debug, Clone, serde::Serialize)]
struct Payload {
    step: u64,
    customer: String,
    notes: String,
}

#[tokio::test]
async fn steps_with_1_kb_payloads_take_little_more_than_their_payload() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let layer = SqliteLayer::builder().open(&db).unwrap();
    let dispatch = tracing::Dispatch::new(tracing_subscriber::registry().with(layer));
    let mut pipeline = Pipeline::new(step(
        "call_0",
        |p: Payload, _: StepContext<()>| async move {
            Ok::<_, StepError>(Payload {
                step: p.step + 1,
                ..p
            })
        },
    ));
    for i in 1..10 {
        pipeline = pipeline.then(step(
            format!("call_{i}"),
            |p: Payload, _: StepContext<()>| async move {
                Ok::<_, StepError>(Payload {
                    step: p.step + 1,
                    ..p
                })
            },
        ));
    }
    let flujo = Flujo::new("disk-use", pipeline);
    let input = Payload {
        step: 0,
        customer: "ana@example.com".into(),
        notes: "the quick brown fox jumps over the lazy dog; ".repeat(22),
    };
    for _ in 0..300 {
        let result = flujo
            .run(input.clone())
            .with_subscriber(dispatch.clone())
            .await;
        assert!(result.is_completed());
    }
    // the last owner gone: the writer checkpoints into the file and closes
    drop(dispatch);

    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let on_disk =
        std::fs::metadata(&db).unwrap().len() + std::fs::metadata(&wal).map_or(0, |m| m.len());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let payload: f64 = conn
        .query_row(
            "SELECT total(length(CAST(input_blob AS BLOB)) + length(CAST(output_blob AS BLOB))) \
             FROM steps",
            [],
            |row| row.get(0),
        )
        .unwrap();
    let steps: i64 = conn
        .query_row("SELECT count(*) FROM steps", [], |row| row.get(0))
        .unwrap();
    assert_eq!(steps, 3000);
    let kept_once: i64 = conn
        .query_row(
            "SELECT count(*) FROM runs WHERE output_blob IS NULL AND output_step_run_id IS NOT NULL",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(
        kept_once, 300,
        "every run's output is its last step's, kept once"
    );
    let ratio = on_disk as f64 / payload;
    eprintln!("{on_disk} bytes on disk for {payload} payload bytes: {ratio:.3}x");
    assert!(
        ratio <= 1.3,
        "{on_disk} bytes on disk for {payload} payload bytes: {ratio:.3}x"
    );
}
