//! Retries: attempts are counted and recorded, a step that keeps failing fails the run, and the
//! run stops at the first failed step.

mod common;

use common::Capture;
use flujo_runner::{step, BoxError, Flujo, Pipeline, RunStatus, StepContext, StepError};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tracing::instrument::WithSubscriber;

/// A step failing its first `failures` attempts, counting its calls in `calls`.
fn flaky(failures: u32, calls: Arc<AtomicU32>) -> flujo_runner::Step<u32, u32, ()> {
    step("flaky", move |n: u32, cx: StepContext<()>| {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            assert_eq!(cx.attempt(), call, "StepContext::attempt counts attempts");
            if call <= failures {
                Err(format!("rate limited on attempt {call}"))
            } else {
                Ok(n + 1)
            }
        }
    })
}

#[tokio::test]
async fn error_after_retries_fails_step_and_run_with_three_attempts() {
    let calls = Arc::new(AtomicU32::new(0));
    let after_calls = Arc::new(AtomicU32::new(0));
    let after = {
        let after_calls = after_calls.clone();
        step("after", move |n: u32, _cx: StepContext<()>| {
            after_calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok::<_, StepError>(n) }
        })
    };
    let pipeline = Pipeline::new(flaky(10, calls.clone()).max_retries(2)).then(after);
    let capture = Capture::new();
    let result = Flujo::new("retries", pipeline)
        .run(1)
        .with_subscriber(capture.dispatch())
        .await;

    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(
        after_calls.load(Ordering::SeqCst),
        0,
        "the run stops at the failed step"
    );
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.output, None);
    let message = "step 'flaky' failed: rate limited on attempt 3";
    assert_eq!(result.error.as_deref(), Some(message));
    assert_eq!(result.step_history.len(), 1);
    let flaky = &result.step_history[0];
    assert_eq!(flaky.status, RunStatus::Failed);
    assert_eq!(flaky.attempts, 3);
    assert_eq!(flaky.error.as_deref(), Some(message));
    assert_eq!(flaky.output, None);

    capture.assert_contract();
    let run = capture.run();
    assert_eq!(run.str("status"), "failed");
    assert_eq!(run.str("error"), message);
    let span = capture.step("flaky");
    assert_eq!(span.str("status"), "failed");
    assert_eq!(span.u64("attempts"), 3);
    assert_eq!(span.str("error"), message);
    assert!(capture.steps_named("after").is_empty());
    assert_eq!(capture.child_names(&run), ["flaky"]);
}

#[tokio::test]
async fn success_on_a_retry_completes_with_the_attempts_used() {
    let calls = Arc::new(AtomicU32::new(0));
    let capture = Capture::new();
    let result = Flujo::new(
        "retries",
        Pipeline::new(flaky(1, calls.clone()).max_retries(3)),
    )
    .run(1)
    .with_subscriber(capture.dispatch())
    .await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output, Some(2));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(result.step_history[0].attempts, 2);
    assert_eq!(result.step_history[0].error, None);
    capture.assert_contract();
    let span = capture.step("flaky");
    assert_eq!(span.str("status"), "completed");
    assert_eq!(span.u64("attempts"), 2);
    assert!(!span.has("error"));
}

#[tokio::test]
async fn without_retries_one_attempt_is_made() {
    let calls = Arc::new(AtomicU32::new(0));
    let flujo = Flujo::new("retries", Pipeline::new(flaky(1, calls.clone())));
    let result = common::checked(flujo.run(1)).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(result.step_history[0].attempts, 1);
}

#[derive(Debug, thiserror::Error)]
#[error("lookup failed")]
struct LookupError(#[source] std::io::Error);

#[tokio::test]
async fn any_error_type_converts_and_keeps_its_sources() {
    let check = |error: BoxError, expected: &'static str| async move {
        let failing = step("lookup", move |_: (), _cx: StepContext<()>| {
            let message = error.to_string();
            let error: BoxError = if message == "lookup failed" {
                Box::new(LookupError(std::io::Error::other("disk gone")))
            } else {
                message.into()
            };
            async move { Err::<(), _>(error) }
        });
        let flujo = Flujo::new("errors", Pipeline::new(failing));
        let result = common::checked(flujo.run(())).await;
        assert_eq!(result.error.as_deref(), Some(expected));
    };
    check("plain text".into(), "step 'lookup' failed: plain text").await;
    check(
        "lookup failed".into(),
        "step 'lookup' failed: lookup failed: disk gone",
    )
    .await;

    // `?` on a std error inside a step returning BoxError.
    let parse = step("parse", |text: String, _cx: StepContext<()>| async move {
        let n: u32 = text.parse()?;
        Ok::<_, BoxError>(n)
    });
    let flujo = Flujo::new("errors", Pipeline::new(parse));
    let result = common::checked(flujo.run("x".to_owned())).await;
    assert_eq!(
        result.error.as_deref(),
        Some("step 'parse' failed: invalid digit found in string")
    );
}
