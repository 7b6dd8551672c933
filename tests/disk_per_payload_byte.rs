//! What a database takes on disk for what it holds: steps with ~1 KB of input and ~1 KB of output
//! (the `cargo xtask bench overhead` typical pipeline's payload), written by the real runner and
//! layer into a database made with 16 KiB pages (`with_page_size`), take at most 1.35 bytes of
//! database file per payload byte once the writer has checkpointed and closed. The default
//! 4 KiB pages take about 2.25 (a ~2.3 KB row fills a page alone): that is measured too, so the
//! trade-off stays visible.

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
    let layer = SqliteLayer::builder()
        .with_page_size(16 * 1024)
        .open(&db)
        .unwrap();
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
    let ratio = on_disk as f64 / payload;
    eprintln!("{on_disk} bytes on disk for {payload} payload bytes: {ratio:.3}x");
    assert!(
        ratio <= 1.35,
        "{on_disk} bytes on disk for {payload} payload bytes: {ratio:.3}x"
    );
}
