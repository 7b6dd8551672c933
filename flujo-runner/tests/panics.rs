//! A panicking step is a failed step and a failed run, never a panic of the caller.

mod common;

use common::Capture;
use flujo_runner::{step, Flujo, Pipeline, RunStatus, StepContext, StepError};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tracing::instrument::WithSubscriber;

#[derive(Default, serde::Serialize)]
struct Ctx {
    touched: bool,
}

#[tokio::test(start_paused = true)]
async fn a_panic_fails_step_and_run_with_its_message() {
    let calls = Arc::new(AtomicU32::new(0));
    let boom = {
        let calls = calls.clone();
        step("boom", move |n: u32, cx: StepContext<Ctx>| {
            calls.fetch_add(1, Ordering::SeqCst);
            async move {
                // A panic while the context is locked must not poison the run.
                cx.update(|c| {
                    c.touched = true;
                    if n > 0 {
                        panic!("index {n} out of range");
                    }
                })?;
                Ok(n)
            }
        })
        .max_retries(1)
    };
    let capture = Capture::new();
    let result = Flujo::new("panics", Pipeline::new(boom))
        .run(3)
        .with_subscriber(capture.dispatch())
        .await;
    let message = "step 'boom' panicked: index 3 out of range";
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.error.as_deref(), Some(message));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "a panic is retried like an error"
    );
    assert_eq!(result.step_history[0].attempts, 2);
    assert!(result.final_context.touched);

    capture.assert_contract();
    let span = capture.step("boom");
    assert_eq!(span.str("status"), "failed");
    assert_eq!(
        span.str("error"),
        format!("attempt 1/2: {message}; attempt 2/2: {message}")
    );
    assert_eq!(span.u64("attempts"), 2);
    assert_eq!(capture.run().str("error"), message);
    assert_eq!(
        capture.run().json("final_context"),
        serde_json::json!({"touched": true})
    );
}

#[tokio::test]
async fn a_panic_while_building_the_future_is_caught_too() {
    let eager = step(
        "eager",
        |_: (), _cx: StepContext<()>| -> std::future::Ready<Result<(), StepError>> {
            panic!("before the future exists")
        },
    );
    let flujo = Flujo::new("panics", Pipeline::new(eager));
    let result = common::checked(flujo.run(())).await;
    assert_eq!(
        result.error.as_deref(),
        Some("step 'eager' panicked: before the future exists")
    );
}
