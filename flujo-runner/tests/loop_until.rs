//! `loop_until`: stops when its condition holds, never exceeds its limit, fails at the limit.

mod common;

use common::Capture;
use flujo_runner::{loop_until, step, Flujo, Pipeline, RunStatus, StepContext};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tracing::instrument::WithSubscriber;

#[derive(Default, serde::Serialize)]
struct Ctx {
    iterations: u32,
}

fn double(calls: Arc<AtomicU32>) -> flujo_runner::Step<u32, u32, Ctx> {
    step("double", move |n: u32, cx: StepContext<Ctx>| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            cx.update(|c| c.iterations += 1)?;
            Ok(n * 2)
        }
    })
}

/// Runs `loop_until(double, output >= target, max)` on 1; returns the result and the calls made.
async fn check(target: u32, max: u32) -> (flujo_runner::PipelineResult<u32, Ctx>, u32) {
    let calls = Arc::new(AtomicU32::new(0));
    let grow = loop_until("grow", double(calls.clone()), move |n: &u32, _: &Ctx| {
        *n >= target
    })
    .max_iterations(max);
    let flujo = Flujo::new("loops", Pipeline::new(grow));
    let result = common::checked(flujo.run(1)).await;
    (result, calls.load(Ordering::SeqCst))
}

#[tokio::test]
async fn the_loop_stops_when_its_condition_holds() {
    let (result, calls) = check(8, 10).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output, Some(8));
    assert_eq!(calls, 3);
    assert_eq!(result.final_context.iterations, 3);
    assert_eq!(result.step_history[0].children.len(), 3);
}

#[tokio::test]
async fn the_condition_is_checked_after_the_first_iteration() {
    let (result, calls) = check(0, 10).await;
    assert_eq!(result.output, Some(2));
    assert_eq!(calls, 1);
}

#[tokio::test]
async fn the_limit_holds_and_reaching_it_fails_the_step() {
    let (result, calls) = check(1000, 4).await;
    assert_eq!(calls, 4, "never more iterations than max_iterations");
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        result.error.as_deref(),
        Some(
            "step 'grow' reached its limit of 4 iterations without meeting its exit condition: \
             raise max_iterations or check the condition"
        )
    );
    let grow = &result.step_history[0];
    assert_eq!(grow.status, RunStatus::Failed);
    let indices: Vec<_> = grow.children.iter().map(|c| c.index).collect();
    assert_eq!(indices, [0, 1, 2, 3]);
    assert!(grow
        .children
        .iter()
        .all(|c| c.status == RunStatus::Completed));
}

#[tokio::test]
async fn an_exact_limit_is_enough() {
    let (result, calls) = check(16, 4).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output, Some(16));
    assert_eq!(calls, 4);
}

#[tokio::test]
async fn the_condition_sees_the_context() {
    let calls = Arc::new(AtomicU32::new(0));
    let grow =
        loop_until("grow", double(calls), |_: &u32, c: &Ctx| c.iterations == 2).max_iterations(10);
    let capture = Capture::new();
    let result = Flujo::new("loops", Pipeline::new(grow))
        .run(5)
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.output, Some(20));
    capture.assert_contract();
    let grow = capture.step("grow");
    assert_eq!(grow.str("status"), "completed");
    assert_eq!(grow.u64("attempts"), 1);
    let iterations = capture.children(&grow);
    let indices: Vec<_> = iterations.iter().map(|s| s.u64("step_index")).collect();
    assert_eq!(indices, [0, 1]);
}

#[tokio::test]
async fn zero_iterations_fails_the_step_with_a_clear_error_not_a_panic() {
    let (result, calls) = check(0, 0).await;
    assert_eq!(calls, 0, "a loop of at most 0 iterations runs nothing");
    assert_eq!(result.status, RunStatus::Failed);
    let message = "step 'grow' has max_iterations 0: a loop needs at least 1 iteration";
    assert_eq!(result.error.as_deref(), Some(message));
    assert_eq!(result.step_history[0].error.as_deref(), Some(message));
    let error = result.step_error.expect("the loop's own error value");
    assert_eq!(error.to_string(), message);
}
