//! `run_blocking`: the same run for callers that are not async, outside or inside a runtime.

mod common;

use common::Capture;
use flujo_runner::{step, Flujo, Pipeline, RunStatus, StepContext};
use std::time::Duration;

#[derive(Default, serde::Serialize)]
struct Ctx {
    calls: u32,
}

fn flujo() -> Flujo<u32, u32, Ctx> {
    let slow_double = step("slow_double", |n: u32, cx: StepContext<Ctx>| async move {
        cx.update(|c| c.calls += 1)?;
        tokio::time::sleep(Duration::from_millis(n.into())).await;
        Ok(n * 2)
    })
    .timeout(Duration::from_millis(500));
    Flujo::new("blocking", Pipeline::new(slow_double))
}

#[test]
fn outside_a_runtime_it_runs_on_its_own() {
    let capture = Capture::new();
    let result = tracing::dispatcher::with_default(&capture.dispatch(), || flujo().run_blocking(5));
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output, Some(10));
    assert_eq!(result.final_context.calls, 1);
    capture.assert_contract();
    assert_eq!(capture.run().str("status"), "completed");

    // Timers work: a step over its limit times out.
    let capture = Capture::new();
    let result = tracing::dispatcher::with_default(&capture.dispatch(), || {
        flujo().run_blocking_with_context(2000, Ctx { calls: 10 })
    });
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        result.error.as_deref(),
        Some("step 'slow_double' timed out after 500ms")
    );
    assert_eq!(result.final_context.calls, 11);
}

#[tokio::test]
async fn inside_a_runtime_it_runs_on_a_helper_thread_under_the_callers_dispatcher() {
    let capture = Capture::new();
    let result = tracing::dispatcher::with_default(&capture.dispatch(), || flujo().run_blocking(3));
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output, Some(6));
    capture.assert_contract();
    assert_eq!(capture.step("slow_double").str("status"), "completed");
}
