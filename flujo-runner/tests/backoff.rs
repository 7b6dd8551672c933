//! Backoff: a retried step waits before each retry (exponential with jitter and a cap by
//! default, fixed, or none), the waits count in its recorded duration, and a step without
//! retries never waits. Timed on tokio's paused clock, so the waits are exact.

mod common;

use common::Capture;
use flujo_runner::{step, Backoff, Flujo, Pipeline, RunStatus, Step, StepContext, StepError};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use tracing::instrument::WithSubscriber;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A step failing its first `failures` attempts, noting when each attempt started.
fn flaky(failures: usize, starts: Arc<Mutex<Vec<Instant>>>) -> Step<u32, u32, ()> {
    step("flaky", move |n: u32, _cx: StepContext<()>| {
        let call = {
            let mut starts = starts.lock().unwrap();
            starts.push(Instant::now());
            starts.len()
        };
        async move {
            if call <= failures {
                return Err(StepError::new(format!("503 on attempt {call}")));
            }
            Ok(n)
        }
    })
}

/// Runs `step` once (recorded by a capture); returns the result, the waits between attempts
/// and the step's recorded `duration_ms`.
async fn waits_of(
    step: Step<u32, u32, ()>,
    starts: &Arc<Mutex<Vec<Instant>>>,
) -> (flujo_runner::PipelineResult<u32, ()>, Vec<Duration>, u64) {
    let capture = Capture::new();
    let result = Flujo::new("backoff", Pipeline::new(step))
        .run(1)
        .with_subscriber(capture.dispatch())
        .await;
    capture.assert_contract();
    let starts = starts.lock().unwrap().clone();
    let waits = starts.windows(2).map(|w| w[1] - w[0]).collect();
    (result, waits, capture.step("flaky").u64("duration_ms"))
}

#[tokio::test(start_paused = true)]
async fn exponential_waits_double_and_count_in_the_duration() {
    let starts = Arc::default();
    let step = flaky(3, Arc::clone(&starts))
        .max_retries(3)
        .backoff(Backoff::exponential(ms(100)).with_jitter(0.0));
    let (result, waits, duration_ms) = waits_of(step, &starts).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(waits, [ms(100), ms(200), ms(400)]);
    assert_eq!(
        result.step_history[0].duration,
        ms(700),
        "the waits are the step's time"
    );
    assert_eq!(duration_ms, 700);
    assert_eq!(result.duration, ms(700));
}

#[tokio::test(start_paused = true)]
async fn the_cap_bounds_each_wait() {
    let starts = Arc::default();
    let step = flaky(4, Arc::clone(&starts)).max_retries(4).backoff(
        Backoff::exponential(ms(100))
            .with_max_delay(ms(250))
            .with_jitter(0.0),
    );
    let (_, waits, duration_ms) = waits_of(step, &starts).await;
    assert_eq!(waits, [ms(100), ms(200), ms(250), ms(250)]);
    assert_eq!(duration_ms, 800);
}

#[tokio::test(start_paused = true)]
async fn the_default_waits_are_jittered_within_their_bounds() {
    // default: min(200 ms * 2^(n-1), 10 s), less up to half of it
    let starts = Arc::default();
    let step = flaky(7, Arc::clone(&starts)).max_retries(7);
    let (result, waits, duration_ms) = waits_of(step, &starts).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.step_history[0].attempts, 8);
    let nominal = [200, 400, 800, 1600, 3200, 6400, 10_000].map(ms);
    assert_eq!(waits.len(), nominal.len());
    for (wait, nominal) in waits.iter().zip(nominal) {
        assert!(
            nominal / 2 <= *wait && *wait <= nominal,
            "wait {wait:?} outside [{:?}, {nominal:?}]",
            nominal / 2
        );
    }
    let total: Duration = waits.iter().sum();
    assert_eq!(duration_ms, total.as_millis() as u64);
}

#[tokio::test(start_paused = true)]
async fn fixed_and_no_backoff() {
    let starts = Arc::default();
    let step = flaky(2, Arc::clone(&starts))
        .max_retries(2)
        .backoff(Backoff::fixed(ms(300)));
    let (_, waits, duration_ms) = waits_of(step, &starts).await;
    assert_eq!(waits, [ms(300), ms(300)]);
    assert_eq!(duration_ms, 600);

    let starts = Arc::default();
    let step = flaky(2, Arc::clone(&starts))
        .max_retries(2)
        .backoff(Backoff::none());
    let (result, waits, duration_ms) = waits_of(step, &starts).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(waits, [Duration::ZERO, Duration::ZERO]);
    assert_eq!(duration_ms, 0);
}

#[tokio::test(start_paused = true)]
async fn no_wait_after_the_last_attempt_nor_without_retries() {
    // fails every attempt: 2 waits between 3 attempts, none after the last
    let starts = Arc::default();
    let step = flaky(10, Arc::clone(&starts))
        .max_retries(2)
        .backoff(Backoff::fixed(ms(300)));
    let (result, waits, duration_ms) = waits_of(step, &starts).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(waits, [ms(300), ms(300)]);
    assert_eq!(duration_ms, 600);

    let starts = Arc::default();
    let (result, waits, duration_ms) = waits_of(flaky(10, Arc::clone(&starts)), &starts).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert!(waits.is_empty());
    assert_eq!(duration_ms, 0);
    assert_eq!(result.duration, Duration::ZERO);
}

#[test]
fn outside_tokio_retries_happen_without_waiting() {
    let starts = Arc::default();
    let step = flaky(2, Arc::clone(&starts)).max_retries(2);
    let flujo = Flujo::new("backoff", Pipeline::new(step));
    let result = futures::executor::block_on(common::checked(flujo.run(1)));
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.step_history[0].attempts, 3);
}
