//! An injected clock: every recorded time and every id's time come from it, durations do not.

mod common;

use common::Capture;
use flujo_runner::{format_timestamp, step, Clock, Flujo, OffsetClock, Pipeline, StepContext};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use tracing::instrument::WithSubscriber;

fn id_time(id: &str) -> OffsetDateTime {
    let (secs, nanos) = uuid::Uuid::parse_str(id)
        .expect("a uuid")
        .get_timestamp()
        .expect("a v7 id")
        .to_unix();
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
        .expect("a time")
}

fn two_steps() -> Pipeline<u32, u32, ()> {
    let first = step("first", |n: u32, _: StepContext<()>| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok(n + 1)
    });
    let second = step(
        "second",
        |n: u32, _: StepContext<()>| async move { Ok(n * 2) },
    );
    Pipeline::new(first).then(second)
}

#[tokio::test]
async fn a_clock_set_back_90_days_stamps_the_run_its_steps_and_their_ids() {
    let clock = Arc::new(OffsetClock::new(time::Duration::days(-90)));
    let expected = clock.now();
    let capture = Capture::new();
    let result = Flujo::new("clocked", two_steps())
        .with_clock(clock.clone())
        .run(1)
        .with_subscriber(capture.dispatch())
        .await;
    assert!(result.is_completed());
    let close = |time: OffsetDateTime| (time - expected).abs() < time::Duration::seconds(30);
    assert!(close(result.start_time), "{}", result.start_time);
    assert!(close(id_time(&result.run_id)), "{}", result.run_id);
    // the id's time is the start time, to the millisecond
    assert_eq!(
        id_time(&result.run_id).unix_timestamp_nanos() / 1_000_000,
        result.start_time.unix_timestamp_nanos() / 1_000_000
    );
    let run = capture.run();
    assert_eq!(run.str("start_time"), format_timestamp(result.start_time));
    assert_eq!(run.str("end_time"), format_timestamp(result.end_time));
    // the duration is the monotonic clock's: the first step slept 20 ms
    assert!(result.duration >= Duration::from_millis(20));
    assert!(run.u64("duration_ms") >= 20);
    for name in ["first", "second"] {
        let span = capture.step(name);
        let start = span.str("start_time");
        assert!(start >= run.str("start_time"), "{name} {start}");
        assert!(span.str("end_time") <= run.str("end_time"));
        assert!(close(id_time(span.str("step_run_id"))), "{name}");
    }
    assert!(capture.step("first").str("step_run_id") < capture.step("second").str("step_run_id"));
}

#[tokio::test]
async fn moving_the_clock_between_runs_keeps_ids_in_the_clocks_order() {
    let clock = Arc::new(OffsetClock::new(time::Duration::days(-30)));
    let flujo = Flujo::new("clocked", two_steps()).with_clock(clock.clone());
    let mut ids = Vec::new();
    for days_back in [30, 20, 10, 0] {
        clock.set_offset(time::Duration::days(-days_back));
        // through a capturing dispatcher, as every run in these tests (see `common::checked`)
        ids.push(common::checked(flujo.run(1)).await.run_id);
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted);
    let now = OffsetDateTime::now_utc();
    let days: Vec<i64> = ids
        .iter()
        .map(|id| (now - id_time(id)).whole_days())
        .collect();
    assert_eq!(days, [30, 20, 10, 0]);
}
