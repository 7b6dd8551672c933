//! Fallbacks: taken when every attempt failed, recorded as a child span of kind `fallback`.

mod common;

use common::Capture;
use flujo_runner::{step, Flujo, Pipeline, RunStatus, StepContext, StepError, StepKind, Usage};
use serde_json::json;
use tracing::instrument::WithSubscriber;

fn primary() -> flujo_runner::Step<String, String, ()> {
    step("draft", |_: String, cx: StepContext<()>| async move {
        cx.add_usage(Usage {
            tokens: 10,
            cost_usd: 0.5,
        });
        Err::<String, _>(StepError::new("model overloaded"))
    })
}

#[tokio::test(start_paused = true)]
async fn a_successful_fallback_completes_the_step() {
    let backup = step(
        "template",
        |topic: String, cx: StepContext<()>| async move {
            cx.add_usage(Usage {
                tokens: 1,
                cost_usd: 0.25,
            });
            Ok(format!("template about {topic}"))
        },
    );
    let capture = Capture::new();
    let result = Flujo::new(
        "fallback",
        Pipeline::new(primary().max_retries(1).fallback(backup)),
    )
    .run("refunds".to_owned())
    .with_subscriber(capture.dispatch())
    .await;

    // the primary's error, each of its attempts
    let primary_error = "attempt 1/2: step 'draft' failed: model overloaded; \
                         attempt 2/2: step 'draft' failed: model overloaded";
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output.as_deref(), Some("template about refunds"));
    assert_eq!(result.total_tokens, 21);
    assert_eq!(result.total_cost_usd, 1.25);
    let draft = &result.step_history[0];
    assert_eq!(draft.status, RunStatus::Completed);
    assert!(draft.fallback_taken);
    assert_eq!(draft.attempts, 2);
    assert_eq!(draft.error.as_deref(), Some(primary_error));
    assert_eq!(draft.output, Some(json!("template about refunds")));
    assert_eq!(draft.children.len(), 1);
    assert_eq!(draft.children[0].name, "template");
    assert_eq!(draft.children[0].kind, StepKind::Fallback);
    assert_eq!(draft.children[0].tokens, 1);

    capture.assert_contract();
    let span = capture.step("draft");
    assert_eq!(span.str("status"), "completed");
    assert!(span.bool("fallback_taken"));
    assert_eq!(span.str("error"), primary_error);
    assert_eq!(span.u64("attempts"), 2);
    assert_eq!(span.json("output"), json!("template about refunds"));
    assert_eq!(span.u64("tokens"), 21);
    let fallback = capture.step("template");
    assert_eq!(fallback.parent, Some(span.seq));
    assert_eq!(fallback.str("step_kind"), "fallback");
    assert_eq!(fallback.u64("step_index"), 0);
    assert_eq!(fallback.str("parent_step_run_id"), span.str("step_run_id"));
    assert_eq!(fallback.json("input"), json!("refunds"));
    assert_eq!(fallback.str("status"), "completed");
    assert!(!fallback.bool("fallback_taken"));
    assert_eq!(capture.run().str("status"), "completed");
    assert!(!capture.run().has("error"));
}

#[tokio::test]
async fn a_failing_fallback_fails_the_step_with_both_errors() {
    let backup = step("template", |_: String, _cx: StepContext<()>| async move {
        Err::<String, _>(StepError::new("no template"))
    });
    let capture = Capture::new();
    let result = Flujo::new("fallback", Pipeline::new(primary().fallback(backup)))
        .run("refunds".to_owned())
        .with_subscriber(capture.dispatch())
        .await;
    let message = "step 'draft' failed: model overloaded; fallback 'template' also failed: \
                   step 'template' failed: no template";
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.error.as_deref(), Some(message));
    assert!(!result.step_history[0].fallback_taken);
    capture.assert_contract();
    let span = capture.step("draft");
    assert_eq!(span.str("status"), "failed");
    assert_eq!(span.str("error"), message);
    assert!(!span.bool("fallback_taken"));
    assert_eq!(capture.step("template").str("status"), "failed");
}

#[tokio::test]
async fn a_step_that_succeeds_never_runs_its_fallback() {
    let ok = step("draft", |topic: String, _cx: StepContext<()>| async move {
        Ok(topic)
    });
    let backup = step("template", |_: String, _cx: StepContext<()>| async move {
        Ok(String::new())
    });
    let capture = Capture::new();
    let result = Flujo::new("fallback", Pipeline::new(ok.fallback(backup)))
        .run("x".to_owned())
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.output.as_deref(), Some("x"));
    assert!(capture.steps_named("template").is_empty());
    assert!(!capture.step("draft").bool("fallback_taken"));
}
