//! Runs are `Send`: many run at once on a multi-thread runtime, each its own span tree.

mod common;

use common::Capture;
use flujo_runner::{parallel, step, Flujo, Pipeline, RunStatus, StepContext, Usage};
use std::collections::BTreeSet;
use std::time::Duration;
use tracing::instrument::WithSubscriber;

#[derive(Default, serde::Serialize)]
struct Ctx {
    seen: u32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_spawned_runs_keep_their_spans_apart() {
    let work = step("work", |n: u64, cx: StepContext<Ctx>| async move {
        cx.add_usage(Usage {
            tokens: n,
            cost_usd: 0.0,
        });
        cx.update(|c| c.seen += 1)?;
        tokio::time::sleep(Duration::from_millis(5)).await;
        Ok(n)
    });
    let both = parallel("both").branch(work.clone()).branch(work);
    let flujo = Flujo::new("spawned", Pipeline::new(both)).with_pipeline_version("3");
    let capture = Capture::new();
    let handles: Vec<_> = (1..=8u64)
        .map(|n| {
            let flujo = flujo.clone();
            tokio::spawn(async move { flujo.run(n).await }.with_subscriber(capture.dispatch()))
        })
        .collect();
    let mut run_ids = BTreeSet::new();
    for (handle, n) in handles.into_iter().zip(1..) {
        let result = handle.await.expect("a run never panics its task");
        assert_eq!(result.status, RunStatus::Completed);
        assert_eq!(result.output, Some(vec![n, n]));
        assert_eq!(result.total_tokens, 2 * n);
        assert_eq!(result.final_context.seen, 2);
        run_ids.insert(result.run_id);
    }
    assert_eq!(run_ids.len(), 8);
    capture.assert_contract();
    let runs: Vec<_> = capture
        .spans()
        .into_iter()
        .filter(|s| s.name == "flujo.run")
        .collect();
    assert_eq!(runs.len(), 8);
    for run in &runs {
        assert!(run_ids.contains(run.str("run_id")));
        assert_eq!(run.str("pipeline_version"), "3");
        let both = capture.children(run);
        assert_eq!(both.len(), 1);
        assert_eq!(capture.children(&both[0]).len(), 2);
        assert_eq!(
            run.u64("total_tokens"),
            2 * run.json("input").as_u64().unwrap()
        );
    }
}
