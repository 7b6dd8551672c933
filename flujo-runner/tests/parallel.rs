//! `parallel`: branches really run concurrently, outputs are combined in branch order, and a
//! failed branch fails the step after every branch ended.

mod common;

use common::Capture;
use flujo_runner::{parallel, step, Flujo, Pipeline, RunStatus, StepContext, StepError, Usage};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;
use tracing::instrument::WithSubscriber;

#[derive(Default, serde::Serialize)]
struct Ctx {
    arrived: Vec<String>,
}

/// A branch that waits at `barrier` for the others: it deadlocks unless they run concurrently.
fn meet(name: &'static str, barrier: Arc<Barrier>) -> flujo_runner::Step<u32, String, Ctx> {
    step(name, move |n: u32, cx: StepContext<Ctx>| {
        let barrier = barrier.clone();
        async move {
            cx.add_usage(Usage {
                tokens: n.into(),
                cost_usd: 0.125,
            });
            barrier.wait().await;
            cx.update(|c| c.arrived.push(name.to_owned()))?;
            Ok(format!("{name}:{n}"))
        }
    })
}

#[tokio::test]
async fn branches_run_concurrently_and_combine_in_branch_order() {
    let barrier = Arc::new(Barrier::new(3));
    let fan_out = parallel("fan_out")
        .branch(meet("a", barrier.clone()))
        .branch(meet("b", barrier.clone()))
        .branch(meet("c", barrier))
        .combine(|outputs: Vec<String>| outputs.join(","));
    let capture = Capture::new();
    let flujo = Flujo::new("parallel", Pipeline::new(fan_out));
    let run = flujo.run(7).with_subscriber(capture.dispatch());
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the branches deadlocked: they did not run concurrently");
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output.as_deref(), Some("a:7,b:7,c:7"));
    assert_eq!(result.total_tokens, 21);
    assert_eq!(result.total_cost_usd, 0.375);
    let mut arrived = result.final_context.arrived.clone();
    arrived.sort();
    assert_eq!(arrived, ["a", "b", "c"]);
    let branches: Vec<_> = result.step_history[0]
        .children
        .iter()
        .map(|c| (c.name.as_str(), c.index))
        .collect();
    assert_eq!(branches, [("a", 0), ("b", 1), ("c", 2)]);

    capture.assert_contract();
    let span = capture.step("fan_out");
    assert_eq!(span.str("step_kind"), "parallel");
    assert_eq!(span.u64("tokens"), 21);
    assert_eq!(capture.child_names(&span), ["a", "b", "c"]);
    // Every branch opened before any closed: they overlapped.
    let branches = capture.children(&span);
    let last_open = branches.iter().map(|s| s.opened_event).max().unwrap();
    let first_close = branches
        .iter()
        .map(|s| s.closed_event.unwrap())
        .min()
        .unwrap();
    assert!(last_open < first_close, "{branches:#?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_branch_fails_the_step_after_all_branches_end() {
    let slow_ok = step("slow_ok", |n: u32, _cx: StepContext<()>| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(n)
    });
    let fails = step("fails", |_: u32, _cx: StepContext<()>| async move {
        Err::<u32, _>(StepError::new("no quota"))
    });
    let fan_out = parallel("fan_out").branch(slow_ok).branch(fails);
    let capture = Capture::new();
    let result = Flujo::new("parallel", Pipeline::new(fan_out))
        .run(1)
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        result.error.as_deref(),
        Some("step 'fails' failed: no quota")
    );
    let statuses: Vec<_> = result.step_history[0]
        .children
        .iter()
        .map(|c| (c.name.as_str(), c.status))
        .collect();
    assert_eq!(
        statuses,
        [
            ("slow_ok", RunStatus::Completed),
            ("fails", RunStatus::Failed)
        ]
    );
    capture.assert_contract();
    assert_eq!(capture.step("slow_ok").str("status"), "completed");
    assert_eq!(capture.step("fan_out").str("status"), "failed");
}

#[tokio::test]
async fn without_combine_the_output_is_the_branch_outputs() {
    let one = step(
        "one",
        |n: u32, _cx: StepContext<()>| async move { Ok(n + 1) },
    );
    let two = step(
        "two",
        |n: u32, _cx: StepContext<()>| async move { Ok(n + 2) },
    );
    let flujo = Flujo::new(
        "parallel",
        Pipeline::new(parallel("both").branch(one).branch(two)),
    );
    let result = common::checked(flujo.run(10)).await;
    assert_eq!(result.output, Some(vec![11, 12]));
}
