//! Timeouts fire, fail the step with a message naming the limit, and count as attempts.

mod common;

use common::Capture;
use flujo_runner::{step, Backoff, Flujo, Pipeline, RunStatus, StepContext};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument::WithSubscriber;

#[tokio::test(start_paused = true)]
async fn a_slow_step_times_out_and_fails_the_run() {
    let calls = Arc::new(AtomicU32::new(0));
    let draft = {
        let calls = calls.clone();
        step("draft", move |n: u32, _cx: StepContext<()>| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                let wait = if call < 2 { 10 } else { 1 };
                tokio::time::sleep(Duration::from_secs(wait)).await;
                Ok(n)
            }
        })
        .timeout(Duration::from_secs(2))
    };
    let capture = Capture::new();
    let start = tokio::time::Instant::now();
    let result = Flujo::new("timeouts", Pipeline::new(draft.clone()))
        .run(1)
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(2),
        "the timeout fired at its limit"
    );
    let message = "step 'draft' timed out after 2s";
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.error.as_deref(), Some(message));
    capture.assert_contract();
    let span = capture.step("draft");
    assert_eq!(span.str("status"), "failed");
    assert_eq!(span.str("error"), message);
    assert_eq!(span.u64("attempts"), 1);

    // Each attempt has the full limit; the third (a fast one) succeeds. (No backoff, so the
    // elapsed time is the attempts' alone.)
    let start = tokio::time::Instant::now();
    let draft = draft.max_retries(2).backoff(Backoff::none());
    let flujo = Flujo::new("timeouts", Pipeline::new(draft));
    let result = common::checked(flujo.run(5)).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output, Some(5));
    assert_eq!(result.step_history[0].attempts, 2);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_step_within_its_limit_completes() {
    let quick = step("quick", |n: u32, _cx: StepContext<()>| async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        Ok(n * 2)
    })
    .timeout(Duration::from_millis(1600));
    let flujo = Flujo::new("timeouts", Pipeline::new(quick));
    let result = common::checked(flujo.run(4)).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output, Some(8));
}

#[tokio::test(start_paused = true)]
async fn sub_second_limits_are_named_in_the_message() {
    let slow = step("slow", |n: u32, _cx: StepContext<()>| async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(n)
    })
    .timeout(Duration::from_millis(250));
    let flujo = Flujo::new("timeouts", Pipeline::new(slow));
    let result = common::checked(flujo.run(4)).await;
    assert_eq!(
        result.error.as_deref(),
        Some("step 'slow' timed out after 250ms")
    );
}
