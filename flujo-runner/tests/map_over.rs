//! `map_over`: every item runs, in order, never more than `concurrency` at once.

mod common;

use common::Capture;
use flujo_runner::{map_over, step, Flujo, Pipeline, RunStatus, StepContext, StepError, Usage};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument::WithSubscriber;

#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
}

/// A step squaring its item after a delay that depends on the item, tracking in-flight items.
fn square(in_flight: Arc<InFlight>) -> flujo_runner::Step<u64, u64, ()> {
    step("square", move |n: u64, cx: StepContext<()>| {
        let in_flight = in_flight.clone();
        async move {
            let now = in_flight.now.fetch_add(1, Ordering::SeqCst) + 1;
            in_flight.max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(10 * (n % 4 + 1))).await;
            in_flight.now.fetch_sub(1, Ordering::SeqCst);
            cx.add_usage(Usage {
                tokens: n,
                cost_usd: 0.5,
            });
            if n == 13 {
                return Err(StepError::new("unlucky"));
            }
            Ok(n * n)
        }
    })
}

#[tokio::test(start_paused = true)]
async fn the_concurrency_bound_holds_and_order_is_kept() {
    let check = |concurrency: usize, expected_max: usize| async move {
        let in_flight = Arc::new(InFlight::default());
        let each = map_over("each", square(in_flight.clone()), concurrency);
        let items: Vec<u64> = (0..12).collect();
        let flujo = Flujo::new("map", Pipeline::new(each));
        let result = common::checked(flujo.run(items)).await;
        assert_eq!(result.status, RunStatus::Completed);
        assert_eq!(
            result.output,
            Some((0..12).map(|n| n * n).collect::<Vec<u64>>())
        );
        assert_eq!(
            in_flight.max.load(Ordering::SeqCst),
            expected_max,
            "concurrency {concurrency}"
        );
        assert_eq!(result.total_tokens, (0..12).sum::<u64>());
        assert_eq!(result.total_cost_usd, 6.0);
        let indices: Vec<_> = result.step_history[0]
            .children
            .iter()
            .map(|c| c.index)
            .collect();
        assert_eq!(indices, (0..12).collect::<Vec<u64>>());
    };
    check(3, 3).await;
    check(1, 1).await;
    check(0, 1).await;
    check(100, 12).await;
}

#[tokio::test(start_paused = true)]
async fn the_first_failed_item_fails_the_step_and_cancels_the_rest() {
    let in_flight = Arc::new(InFlight::default());
    let each = map_over("each", square(in_flight), 2);
    let capture = Capture::new();
    let result = Flujo::new("map", Pipeline::new(each))
        .run(vec![0, 13, 2, 3, 4])
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        result.error.as_deref(),
        Some("step 'square' failed: unlucky")
    );
    capture.assert_contract();
    let items = capture.steps_named("square");
    let statuses: Vec<_> = items
        .iter()
        .map(|s| (s.u64("step_index"), s.str("status").to_owned()))
        .collect();
    // Item 0 ends at 10ms and item 2 starts; item 1 (13) fails at 20ms, while item 2 runs.
    assert_eq!(
        statuses,
        [
            (0, "completed".to_owned()),
            (1, "failed".to_owned()),
            (2, "cancelled".to_owned()),
        ]
    );
    assert_eq!(capture.step("each").str("status"), "failed");
}

#[tokio::test]
async fn an_empty_collection_maps_to_an_empty_one() {
    let each = map_over("each", square(Arc::default()), 4);
    let flujo = Flujo::new("map", Pipeline::new(each));
    let result = common::checked(flujo.run(Vec::new())).await;
    assert_eq!(result.output, Some(Vec::new()));
    assert!(result.step_history[0].children.is_empty());
}
