//! Usage sums into every enclosing step and the run's totals; context updates are shared by the
//! steps and returned in `final_context`.

mod common;

use common::Capture;
use flujo_runner::{
    loop_until, map_over, parallel, step, Flujo, Pipeline, RunStatus, StepContext, StepError, Usage,
};
use serde_json::json;
use tracing::instrument::WithSubscriber;

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize)]
struct Ctx {
    notes: Vec<String>,
    rounds: u32,
}

/// A step reporting `tokens` tokens at `tokens / 100` USD and noting its name in the context.
fn paid(name: &'static str, tokens: u64) -> flujo_runner::Step<u64, u64, Ctx> {
    step(name, move |n: u64, cx: StepContext<Ctx>| async move {
        cx.add_usage(Usage {
            tokens,
            cost_usd: tokens as f64 / 100.0,
        });
        cx.update(|c| c.notes.push(name.to_owned()))?;
        Ok(n + 1)
    })
}

#[tokio::test]
async fn usage_sums_through_nesting_into_the_totals() {
    let fan_out = parallel("fan_out")
        .branch(paid("left", 10))
        .branch(paid("right", 20))
        .combine(|outputs: Vec<u64>| outputs.iter().sum::<u64>());
    let counted = step("count", |n: u64, cx: StepContext<Ctx>| async move {
        cx.add_usage(Usage {
            tokens: 1,
            cost_usd: 0.01,
        });
        // Two reports from one step add up.
        cx.add_usage(Usage {
            tokens: 1,
            cost_usd: 0.01,
        });
        cx.update(|c| c.rounds += 1)?;
        Ok(n)
    });
    let body = Pipeline::new(fan_out).then(counted).into_step("round");
    let rounds = loop_until("rounds", body, |_: &u64, c: &Ctx| c.rounds == 2).max_iterations(5);
    let each = map_over("each", paid("item", 5), 2);
    let to_items = step("split", |n: u64, _cx: StepContext<Ctx>| async move {
        Ok(vec![n; 3])
    });
    let pipeline = Pipeline::new(paid("first", 100))
        .then(rounds)
        .then(to_items)
        .then(each);
    let capture = Capture::new();
    let result = Flujo::new("usage", pipeline)
        .run(0)
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.status, RunStatus::Completed, "{:?}", result.error);

    // first 100 + 2 rounds x (10 + 20 + 2) + 3 items x 5
    assert_eq!(result.total_tokens, 100 + 64 + 15);
    assert!((result.total_cost_usd - 1.79).abs() < 1e-9);
    let tokens: Vec<_> = result.step_history.iter().map(|s| s.tokens).collect();
    assert_eq!(tokens, [100, 64, 0, 15]);
    let rounds = &result.step_history[1];
    assert_eq!(
        rounds.children.iter().map(|c| c.tokens).collect::<Vec<_>>(),
        [32, 32]
    );
    assert_eq!(
        rounds.children[0].children[0].tokens, 30,
        "fan_out sums its branches"
    );

    capture.assert_contract();
    let run = capture.run();
    assert_eq!(run.u64("total_tokens"), 179);
    assert!((run.f64("total_cost_usd") - 1.79).abs() < 1e-9);
    assert_eq!(capture.step("rounds").u64("tokens"), 64);
    assert_eq!(capture.steps_named("fan_out")[0].u64("tokens"), 30);
    assert_eq!(capture.step("each").u64("tokens"), 15);
}

#[tokio::test]
async fn context_updates_are_seen_by_later_steps_and_returned() {
    let read_back = step("read_back", |n: u64, cx: StepContext<Ctx>| async move {
        let notes = cx.read(|c| c.notes.clone())?;
        assert_eq!(notes, ["seed", "first"]);
        assert!(!cx.run_id().is_empty());
        assert_eq!(cx.step_name(), "read_back");
        Ok(n + notes.len() as u64)
    });
    let capture = Capture::new();
    let initial = Ctx {
        notes: vec!["seed".to_owned()],
        rounds: 7,
    };
    let result = Flujo::new("context", Pipeline::new(paid("first", 1)).then(read_back))
        .run_with_context(1, initial)
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.status, RunStatus::Completed, "{:?}", result.error);
    assert_eq!(result.output, Some(4));
    assert_eq!(
        result.final_context,
        Ctx {
            notes: vec!["seed".to_owned(), "first".to_owned()],
            rounds: 7
        }
    );
    capture.assert_contract();
    assert_eq!(
        capture.run().json("final_context"),
        json!({"notes": ["seed", "first"], "rounds": 7})
    );
}

#[tokio::test(start_paused = true)]
async fn usage_of_a_failed_run_still_counts() {
    let failing = step("failing", |_: u64, cx: StepContext<Ctx>| async move {
        cx.add_usage(Usage {
            tokens: 40,
            cost_usd: 0.5,
        });
        Err::<u64, _>(StepError::new("model refused"))
    })
    .max_retries(1);
    let flujo = Flujo::new("usage", Pipeline::new(paid("first", 2)).then(failing));
    let result = common::checked(flujo.run(0)).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.total_tokens, 82, "both attempts' usage counts");
    assert_eq!(result.step_history[1].tokens, 80);
    assert_eq!(result.final_context.notes, ["first"]);
}
