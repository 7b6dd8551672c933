//! Retries: attempts are counted and recorded (each failed attempt's error in the step's
//! `error`), a step that keeps failing fails the run, the run stops at the first failed step,
//! and `retry_if` retries only the errors it accepts. (The waits between attempts are
//! `backoff.rs`'s.)

mod common;

use common::Capture;
use flujo_runner::{step, BoxError, Flujo, Pipeline, RunStatus, StepContext, StepError};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument::WithSubscriber;

/// A step failing its first `failures` attempts, counting its calls in `calls`.
fn flaky(failures: u32, calls: Arc<AtomicU32>) -> flujo_runner::Step<u32, u32, ()> {
    step("flaky", move |n: u32, cx: StepContext<()>| {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            assert_eq!(cx.attempt(), call, "StepContext::attempt counts attempts");
            if call <= failures {
                Err(StepError::new(format!("rate limited on attempt {call}")))
            } else {
                Ok(n + 1)
            }
        }
    })
}

#[tokio::test(start_paused = true)]
async fn error_after_retries_fails_step_and_run_with_three_attempts() {
    let calls = Arc::new(AtomicU32::new(0));
    let after_calls = Arc::new(AtomicU32::new(0));
    let after = {
        let after_calls = after_calls.clone();
        step("after", move |n: u32, _cx: StepContext<()>| {
            after_calls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(n) }
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
    assert_eq!(
        result
            .step_error
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("rate limited on attempt 3")
    );
    assert_eq!(result.step_history.len(), 1);
    // the step's own error lists every attempt, the last one included
    let attempts_message = "attempt 1/3: step 'flaky' failed: rate limited on attempt 1; \
                            attempt 2/3: step 'flaky' failed: rate limited on attempt 2; \
                            attempt 3/3: step 'flaky' failed: rate limited on attempt 3";
    let flaky = &result.step_history[0];
    assert_eq!(flaky.status, RunStatus::Failed);
    assert_eq!(flaky.attempts, 3);
    assert_eq!(flaky.error.as_deref(), Some(attempts_message));
    assert_eq!(flaky.output, None);

    capture.assert_contract();
    let run = capture.run();
    assert_eq!(run.str("status"), "failed");
    assert_eq!(run.str("error"), message);
    let span = capture.step("flaky");
    assert_eq!(span.str("status"), "failed");
    assert_eq!(span.u64("attempts"), 3);
    assert_eq!(span.str("error"), attempts_message);
    assert!(capture.steps_named("after").is_empty());
    assert_eq!(capture.child_names(&run), ["flaky"]);
}

#[tokio::test(start_paused = true)]
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
    // a completed step notes the attempts that failed before it succeeded
    let note = "attempt 1/4: step 'flaky' failed: rate limited on attempt 1";
    assert_eq!(result.step_history[0].error.as_deref(), Some(note));
    assert!(!result.step_history[0].fallback_taken);
    assert_eq!(result.error, None);
    assert!(result.step_error.is_none());
    capture.assert_contract();
    let span = capture.step("flaky");
    assert_eq!(span.str("status"), "completed");
    assert_eq!(span.u64("attempts"), 2);
    assert_eq!(span.str("error"), note);
    assert!(!span.bool("fallback_taken"));
    assert!(!capture.run().has("error"));
}

#[tokio::test(start_paused = true)]
async fn without_retries_one_attempt_is_made() {
    let calls = Arc::new(AtomicU32::new(0));
    let flujo = Flujo::new("retries", Pipeline::new(flaky(1, calls.clone())));
    let result = common::checked(flujo.run(1)).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(result.step_history[0].attempts, 1);
    // one attempt: the error as it is, not numbered
    assert_eq!(
        result.step_history[0].error.as_deref(),
        Some("step 'flaky' failed: rate limited on attempt 1")
    );
}

#[derive(Debug, thiserror::Error)]
#[error("lookup failed")]
struct LookupError(#[source] std::io::Error);

#[tokio::test(start_paused = true)]
async fn any_error_type_converts_and_keeps_its_sources() {
    let check = |error: BoxError, expected: &'static str| async move {
        let failing = step("lookup", move |_: (), _cx: StepContext<()>| {
            let message = error.to_string();
            let error: BoxError = if message == "lookup failed" {
                Box::new(LookupError(std::io::Error::other("disk gone")))
            } else {
                message.into()
            };
            async move { Err::<(), _>(StepError::from_boxed(error)) }
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

    // `?` on a std error, no annotation.
    let parse = step("parse", |text: String, _cx: StepContext<()>| async move {
        let n: u32 = text.parse()?;
        Ok(n)
    });
    let flujo = Flujo::new("errors", Pipeline::new(parse));
    let result = common::checked(flujo.run("x".to_owned())).await;
    assert_eq!(
        result.error.as_deref(),
        Some("step 'parse' failed: invalid digit found in string")
    );
}

/// A step failing `failures` times with the errors `fail(call)` makes, counting its calls.
fn failing_with(
    failures: u32,
    calls: Arc<AtomicU32>,
    fail: fn(u32) -> StepError,
) -> flujo_runner::Step<u32, u32, ()> {
    step("call_model", move |n: u32, _cx: StepContext<()>| {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        async move {
            if call <= failures {
                return Err(fail(call));
            }
            Ok(n)
        }
    })
}

fn transient_or_timeout(error: &StepError) -> bool {
    error.is_transient() || error.is_timeout()
}

#[tokio::test(start_paused = true)]
async fn retry_if_retries_transient_errors() {
    let calls = Arc::new(AtomicU32::new(0));
    let model = failing_with(2, calls.clone(), |call| {
        StepError::new(format!("429 on call {call}")).transient()
    })
    .max_retries(3)
    .retry_if(transient_or_timeout);
    let result = common::checked(Flujo::new("predicate", Pipeline::new(model)).run(7)).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    assert_eq!(result.step_history[0].attempts, 3);
}

#[tokio::test(start_paused = true)]
async fn retry_if_stops_at_an_error_it_refuses() {
    let calls = Arc::new(AtomicU32::new(0));
    let model = failing_with(5, calls.clone(), |call| {
        if call == 1 {
            StepError::new("503 overloaded").transient()
        } else {
            StepError::new("400 bad request: prompt too long")
        }
    })
    .max_retries(3)
    .retry_if(transient_or_timeout);
    let capture = Capture::new();
    let result = Flujo::new("predicate", Pipeline::new(model))
        .run(7)
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the refused error is not retried"
    );
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        result.error.as_deref(),
        Some("step 'call_model' failed: 400 bad request: prompt too long")
    );
    let step_error = result.step_error.expect("the error value");
    assert!(!step_error.is_transient());
    let recorded = "attempt 1/4: step 'call_model' failed: 503 overloaded; \
                    attempt 2/4: step 'call_model' failed: 400 bad request: prompt too long";
    assert_eq!(result.step_history[0].attempts, 2);
    assert_eq!(result.step_history[0].error.as_deref(), Some(recorded));
    capture.assert_contract();
    assert_eq!(capture.step("call_model").str("error"), recorded);
    assert_eq!(capture.step("call_model").u64("attempts"), 2);
}

#[tokio::test(start_paused = true)]
async fn retry_if_sees_timeouts() {
    let calls = Arc::new(AtomicU32::new(0));
    let slow_then_fast = {
        let calls = calls.clone();
        step("slow_model", move |n: u32, _cx: StepContext<()>| {
            let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                if call == 1 {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                }
                Ok(n)
            }
        })
    }
    .timeout(Duration::from_secs(1))
    .max_retries(1)
    .retry_if(|error: &StepError| error.is_timeout());
    let result =
        common::checked(Flujo::new("predicate", Pipeline::new(slow_then_fast)).run(7)).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        result.step_history[0].error.as_deref(),
        Some("attempt 1/2: step 'slow_model' timed out after 1s")
    );

    // the same step refusing timeouts fails on the first one
    calls.store(0, Ordering::SeqCst);
    let refusing = failing_with(0, Arc::default(), |_| StepError::new("unused"))
        .timeout(Duration::from_secs(1))
        .max_retries(3)
        .retry_if(|error: &StepError| !error.is_timeout());
    let never_ends = step("never_ends", |n: u32, _cx: StepContext<()>| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok(n)
    })
    .timeout(Duration::from_secs(1))
    .max_retries(3)
    .retry_if(|error: &StepError| !error.is_timeout());
    let result =
        common::checked(Flujo::new("predicate", Pipeline::new(refusing).then(never_ends)).run(7))
            .await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.step_history[1].attempts, 1);
    assert!(result.step_error.expect("a timeout").is_timeout());
}
