//! A value that fails to serialise (serde error or panicking `Serialize`) is recorded as a
//! placeholder plus an `error` on its step or run, never a panic or a failure: the value itself
//! flows on.

mod common;

use common::Capture;
use flujo_runner::{step, Flujo, Pipeline, RunStatus, StepContext, StepError};
use serde::{Serialize, Serializer};
use std::collections::HashMap;
use tracing::instrument::WithSubscriber;
use tracing::Dispatch;

/// A map serde_json refuses: its keys are not strings.
type Pairs = HashMap<(u8, u8), u8>;

fn pairs() -> Pairs {
    HashMap::from([((1, 2), 3)])
}

/// Panics when serialised.
#[derive(Debug, Default, Clone)]
struct Explosive(u32);

impl Serialize for Explosive {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        panic!("explosive {} serialised", self.0)
    }
}

const PLACEHOLDER: &str = "<not serialisable as JSON: key must be a string>";

#[tokio::test]
async fn an_output_that_cannot_be_serialised_is_an_error_on_a_completed_step() {
    let make = step("make", |n: u8, _cx: StepContext<()>| async move {
        Ok(HashMap::from([((n, n), n)]))
    });
    let count = step("count", |map: Pairs, _cx: StepContext<()>| async move {
        Ok(map.len())
    });
    let capture = Capture::new();
    let result = Flujo::new("maps", Pipeline::new(make).then(count))
        .run(7)
        .with_subscriber(capture.dispatch())
        .await;
    capture.assert_contract();

    let message = "output of step 'make' could not be serialised as JSON and was recorded as \
                   a placeholder: key must be a string (make its Serialize implementation \
                   succeed to record it)";
    assert_eq!(result.status, RunStatus::Completed, "the value flowed on");
    assert_eq!(result.output, Some(1));
    assert_eq!(result.error, None);
    let make = result.step("make").unwrap();
    assert_eq!(make.status, RunStatus::Completed);
    assert_eq!(make.error.as_deref(), Some(message));
    assert_eq!(make.output, Some(PLACEHOLDER.into()));
    assert!(!make.fallback_taken);
    let count = result.step("count").unwrap();
    assert_eq!(count.input, PLACEHOLDER);
    assert_eq!(
        count.error.as_deref(),
        Some(
            message
                .replace("output of step 'make'", "input of step 'count'")
                .as_str()
        )
    );

    let span = capture.step("make");
    assert_eq!(span.str("status"), "completed");
    assert_eq!(span.str("error"), message);
    assert_eq!(span.json("output"), PLACEHOLDER);
    assert!(!span.bool("fallback_taken"));
    assert!(!capture.run().has("error"));
}

#[tokio::test]
async fn a_run_input_that_cannot_be_serialised_is_an_error_on_the_run_span() {
    let count = step("count", |map: Pairs, _cx: StepContext<()>| async move {
        Ok(map.len())
    });
    let capture = Capture::new();
    let result = Flujo::new("maps", Pipeline::new(count))
        .run(pairs())
        .with_subscriber(capture.dispatch())
        .await;
    capture.assert_contract();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(
        result.error, None,
        "the result's error is for failures only"
    );

    let run = capture.run();
    assert_eq!(run.str("status"), "completed");
    assert_eq!(run.json("input"), PLACEHOLDER);
    assert_eq!(run.json("output"), 1);
    assert!(run
        .str("error")
        .starts_with("input of pipeline 'maps' could not be serialised as JSON"));
    assert!(run.str("error").contains("key must be a string"));
}

#[tokio::test]
async fn a_failed_step_keeps_its_failure_first_and_the_run_error_unchanged() {
    let fail = step("fail", |_: Pairs, _cx: StepContext<()>| async move {
        Err::<(), _>(StepError::new("no route"))
    });
    let capture = Capture::new();
    let result = Flujo::new("maps", Pipeline::new(fail))
        .run(pairs())
        .with_subscriber(capture.dispatch())
        .await;
    capture.assert_contract();
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        result.error.as_deref(),
        Some("step 'fail' failed: no route")
    );
    let step_error = result.step("fail").unwrap().error.clone().unwrap();
    assert!(
        step_error.starts_with("step 'fail' failed: no route; input of step 'fail' could not"),
        "{step_error}"
    );
    assert_eq!(capture.step("fail").str("error"), step_error);
    let run_error = capture.run().str("error").to_owned();
    assert!(
        run_error.starts_with("step 'fail' failed: no route; input of pipeline 'maps' could not"),
        "{run_error}"
    );
}

#[tokio::test]
async fn a_panicking_serialize_is_recorded_not_raised() {
    let arm = step("arm", |n: u32, cx: StepContext<Explosive>| async move {
        cx.update(|c| c.0 = n)?;
        Ok(Explosive(n))
    });
    let defuse = step(
        "defuse",
        |e: Explosive, _cx: StepContext<Explosive>| async move { Ok(e.0 + 1) },
    );
    let capture = Capture::new();
    let result = Flujo::new("bombs", Pipeline::new(arm).then(defuse))
        .run(4)
        .with_subscriber(capture.dispatch())
        .await;
    capture.assert_contract();
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output, Some(5));
    assert_eq!(result.final_context.0, 4);

    let arm = capture.step("arm");
    assert_eq!(arm.str("status"), "completed");
    assert_eq!(
        arm.json("output"),
        "<not serialisable as JSON: its Serialize implementation panicked: explosive 4 serialised>"
    );
    assert!(arm
        .str("error")
        .contains("output of step 'arm' could not be serialised as JSON"));
    assert!(capture
        .step("defuse")
        .str("error")
        .contains("input of step 'defuse' could not be serialised as JSON"));
    let run = capture.run();
    assert!(run.str("final_context").contains("explosive 4 serialised"));
    assert!(run
        .str("error")
        .starts_with("final context of pipeline 'bombs' could not be serialised as JSON"));
}

#[test]
fn nothing_panics_without_a_subscriber_either() {
    let arm = step("arm", |n: u32, _cx: StepContext<()>| async move {
        Ok(Explosive(n))
    });
    let flujo = Flujo::new("bombs", Pipeline::new(arm));
    let result = tracing::dispatcher::with_default(&Dispatch::none(), || flujo.run_blocking(1));
    assert_eq!(result.status, RunStatus::Completed);
    assert!(result
        .step("arm")
        .unwrap()
        .error
        .as_deref()
        .unwrap()
        .contains("panicked"));
}
