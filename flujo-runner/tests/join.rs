//! `join`: 2 to 4 differently typed branches run concurrently and return a typed tuple; the
//! spans are those of `parallel`, and a failed branch fails the step after every branch ended.

mod common;

use common::Capture;
use flujo_runner::{join, step, Flujo, Pipeline, RunStatus, Step, StepContext, StepError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Barrier;
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

/// A branch mapping its input with `f` after meeting the others at `barrier` (it deadlocks
/// unless they run concurrently).
fn meet<T: serde::Serialize + Send + 'static>(
    name: &'static str,
    barrier: Arc<Barrier>,
    f: fn(u32) -> T,
) -> Step<u32, T, ()> {
    step(name, move |n: u32, _cx: StepContext<()>| {
        let barrier = barrier.clone();
        async move {
            barrier.wait().await;
            Ok(f(n))
        }
    })
}

#[tokio::test]
async fn two_to_four_typed_branches_return_a_tuple() {
    let barrier = Arc::new(Barrier::new(2));
    let two = join(
        "two",
        (
            meet("count", barrier.clone(), |n| n + 1),
            meet("label", barrier, |n| format!("#{n}")),
        ),
    );
    let capture = Capture::new();
    let flujo = Flujo::new("join", Pipeline::new(two));
    let run = flujo.run(7).with_subscriber(capture.dispatch());
    let result = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the branches deadlocked: they did not run concurrently");
    let output: Option<(u32, String)> = result.output;
    assert_eq!(output, Some((8, "#7".to_owned())));
    capture.assert_contract();
    let span = capture.step("two");
    assert_eq!(span.str("step_kind"), "parallel");
    assert_eq!(span.json("output"), serde_json::json!([8, "#7"]));
    assert_eq!(capture.child_names(&span), ["count", "label"]);
    let indices: Vec<_> = capture
        .children(&span)
        .iter()
        .map(|s| s.u64("step_index"))
        .collect();
    assert_eq!(indices, [0, 1]);

    let barrier = Arc::new(Barrier::new(4));
    let four = join(
        "four",
        (
            meet("a", barrier.clone(), |n| n),
            meet("b", barrier.clone(), |n| n % 2 == 1),
            meet("c", barrier.clone(), |n| vec![n; 2]),
            meet("d", barrier, |n| f64::from(n) / 2.0),
        ),
    );
    let three = join(
        "three",
        (
            step("x", |n: u32, _cx: StepContext<()>| async move { Ok(n) }),
            step("y", |n: u32, _cx: StepContext<()>| async move {
                Ok(i64::from(n) - 10)
            }),
            step("z", |n: u32, _cx: StepContext<()>| async move {
                Ok(n.to_string())
            }),
        ),
    );
    let then = step(
        "sum",
        |(a, b, c, d): (u32, bool, Vec<u32>, f64), _cx: StepContext<()>| async move {
            Ok(format!("{a} {b} {c:?} {d}"))
        },
    );
    let result = common::checked(Flujo::new("join", Pipeline::new(four).then(then)).run(7)).await;
    assert_eq!(result.output.as_deref(), Some("7 true [7, 7] 3.5"));
    let result = common::checked(Flujo::new("join", Pipeline::new(three)).run(3)).await;
    assert_eq!(result.output, Some((3, -7, "3".to_owned())));
}

#[tokio::test(start_paused = true)]
async fn the_first_failed_branch_fails_the_step_after_every_branch_ended() {
    let slow = step("slow", |n: u32, _cx: StepContext<()>| async move {
        tokio::time::sleep(Duration::from_secs(5)).await;
        Ok(n)
    });
    let first = step("first", |_: u32, _cx: StepContext<()>| async move {
        Err::<String, _>(StepError::new("no quota"))
    });
    let second = step("second", |_: u32, _cx: StepContext<()>| async move {
        Err::<bool, _>(StepError::new("also broken"))
    });
    let both = join("both", (slow, first, second));
    let start = Instant::now();
    let capture = Capture::new();
    let result = Flujo::new("join", Pipeline::new(both))
        .run(1)
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(
        start.elapsed(),
        Duration::from_secs(5),
        "the slow branch ran to its end"
    );
    assert_eq!(result.status, RunStatus::Failed);
    let message = "step 'first' failed: no quota";
    assert_eq!(result.error.as_deref(), Some(message));
    assert_eq!(result.step_error.unwrap().to_string(), "no quota");
    let children: Vec<_> = result.step_history[0]
        .children
        .iter()
        .map(|c| (c.name.as_str(), c.status))
        .collect();
    assert_eq!(
        children,
        [
            ("slow", RunStatus::Completed),
            ("first", RunStatus::Failed),
            ("second", RunStatus::Failed)
        ]
    );
    capture.assert_contract();
    assert_eq!(capture.step("both").str("error"), message);
}
