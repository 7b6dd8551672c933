//! Dropping a run's future mid-way closes its open spans with status `cancelled`.

mod common;

use common::Capture;
use flujo_runner::{loop_until, step, Flujo, Pipeline, RunObserver, StepContext, StepError, Usage};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument::WithSubscriber;

#[derive(Default, serde::Serialize)]
struct Ctx {
    steps_done: u32,
}

#[derive(Default)]
struct CountingObserver {
    before: AtomicU32,
    after: AtomicU32,
}

impl RunObserver for CountingObserver {
    fn before_run(&self) {
        self.before.fetch_add(1, Ordering::SeqCst);
    }
    fn after_run<'a>(&'a self, _run_id: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        self.after.fetch_add(1, Ordering::SeqCst);
        Box::pin(async {})
    }
}

#[tokio::test(start_paused = true)]
async fn dropping_the_run_mid_step_cancels_the_open_spans() {
    let fast = step("fast", |n: u32, cx: StepContext<Ctx>| async move {
        cx.update(|c| c.steps_done += 1)?;
        Ok(n)
    });
    let slow = step("slow", |n: u32, cx: StepContext<Ctx>| async move {
        cx.add_usage(Usage {
            tokens: 5,
            cost_usd: 0.5,
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(n)
    });
    let body = Pipeline::new(slow).into_step("body");
    let refine = loop_until("refine", body, |_: &u32, _: &Ctx| true).max_iterations(3);
    let observer = Arc::new(CountingObserver::default());
    let flujo =
        Flujo::new("cancel", Pipeline::new(fast).then(refine)).with_observer(observer.clone());

    let capture = Capture::new();
    // `with_subscriber` scopes the dispatcher to the run's polls: the run is dropped outside it,
    // and its spans must still close.
    let run = flujo.run(1).with_subscriber(capture.dispatch());
    let outcome = tokio::time::timeout(Duration::from_secs(1), run).await;
    assert!(outcome.is_err(), "the run was still in its slow step");

    capture.assert_contract();
    let run = capture.run();
    assert_eq!(run.str("status"), "cancelled");
    assert!(!run.has("output"));
    assert!(!run.has("error"));
    assert_eq!(
        run.json("final_context"),
        serde_json::json!({"steps_done": 1})
    );
    assert_eq!(
        run.u64("total_tokens"),
        5,
        "usage reported before the cancellation counts"
    );
    assert_eq!(capture.step("fast").str("status"), "completed");
    for name in ["refine", "body", "slow"] {
        let span = capture.step(name);
        assert_eq!(span.str("status"), "cancelled", "{name}");
        assert_eq!(span.u64("attempts"), 1, "{name}");
        assert_eq!(span.u64("tokens"), 5, "{name}");
        assert!(!span.has("output"), "{name}");
    }
    // Children close before their parents, the run last.
    let order = |name: &str| capture.step(name).closed_at.unwrap();
    assert!(order("slow") < order("body"));
    assert!(order("body") < order("refine"));
    assert!(order("refine") < run.closed_at.unwrap());
    assert_eq!(observer.before.load(Ordering::SeqCst), 1);
    assert_eq!(
        observer.after.load(Ordering::SeqCst),
        0,
        "after_run needs a finished run"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retried_step_cancelled_mid_attempt_records_the_attempts_made() {
    let calls = Arc::new(AtomicU32::new(0));
    let flaky = {
        let calls = calls.clone();
        step("flaky", move |n: u32, _cx: StepContext<()>| {
            let call = calls.fetch_add(1, Ordering::SeqCst);
            async move {
                if call == 0 {
                    return Err(StepError::new("first try fails"));
                }
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(n)
            }
        })
        .max_retries(3)
    };
    let capture = Capture::new();
    let flujo = Flujo::new("cancel", Pipeline::new(flaky));
    let run = flujo.run(1).with_subscriber(capture.dispatch());
    assert!(tokio::time::timeout(Duration::from_secs(1), run)
        .await
        .is_err());
    capture.assert_contract();
    let span = capture.step("flaky");
    assert_eq!(span.str("status"), "cancelled");
    assert_eq!(span.u64("attempts"), 2);
    assert_eq!(capture.run().str("status"), "cancelled");
}
