//! The failing step's error reaches the caller of `run` as a value: the user's own type (by
//! `downcast_ref`), its `source()`, and what made it (a timeout, a panic), through control flow
//! and fallbacks; `?` works in a step on any std error with no annotation.

mod common;

use flujo_runner::{
    loop_until, parallel, step, Flujo, Pipeline, RunStatus, StepContext, StepError,
};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
#[error("crm lookup for {customer} failed")]
struct CrmError {
    customer: String,
    #[source]
    cause: std::io::Error,
}

fn lookup() -> flujo_runner::Step<String, u64, ()> {
    step(
        "lookup",
        |customer: String, _cx: StepContext<()>| async move {
            if customer.is_empty() {
                // `?` on a std error, no annotation anywhere
                let id: u64 = customer.parse()?;
                return Ok(id);
            }
            Err(CrmError {
                customer,
                cause: std::io::Error::other("connection reset"),
            })?
        },
    )
}

#[tokio::test]
async fn the_callers_error_type_comes_back() {
    let flujo = Flujo::new("crm", Pipeline::new(lookup()));
    let result = common::checked(flujo.run("kim@unknown.test".to_owned())).await;
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(
        result.error.as_deref(),
        Some("step 'lookup' failed: crm lookup for kim@unknown.test failed: connection reset")
    );
    let error = result.step_error.expect("the failing step's error");
    let crm = error
        .downcast_ref::<CrmError>()
        .expect("the user's own type");
    assert_eq!(crm.customer, "kim@unknown.test");
    let source = error.source().expect("its source");
    assert_eq!(source.to_string(), "connection reset");
    assert!(source.downcast_ref::<std::io::Error>().is_some());
    assert!(!error.is_timeout() && !error.is_panic() && !error.is_transient());

    let result = common::checked(flujo.run(String::new())).await;
    let error = result.step_error.expect("a parse error");
    assert!(error.downcast_ref::<std::num::ParseIntError>().is_some());
    assert_eq!(
        result.error.as_deref(),
        Some("step 'lookup' failed: cannot parse integer from empty string")
    );
}

#[tokio::test]
async fn a_completed_run_has_no_error_value() {
    let ok = step("ok", |n: u32, _cx: StepContext<()>| async move { Ok(n) });
    let result = common::checked(Flujo::new("ok", Pipeline::new(ok)).run(1)).await;
    assert_eq!(result.status, RunStatus::Completed);
    assert!(result.step_error.is_none());
}

#[tokio::test]
async fn the_value_passes_through_control_flow_unchanged() {
    let inner = Pipeline::new(step(
        "first",
        |s: String, _cx: StepContext<()>| async move { Ok(s) },
    ))
    .then(lookup())
    .into_step("inner");
    let fan_out = parallel("fan_out").branch(inner);
    let flujo = Flujo::new("nested", Pipeline::new(fan_out));
    let result = common::checked(flujo.run("ana@example.com".to_owned())).await;
    let error = result.step_error.expect("the nested step's error");
    assert_eq!(
        error
            .downcast_ref::<CrmError>()
            .map(|e| e.customer.as_str()),
        Some("ana@example.com")
    );

    // a control-flow step's own failure: its message as the error
    let body = step("body", |n: u32, _cx: StepContext<()>| async move { Ok(n) });
    let never = loop_until("never", body, |_: &u32, _: &()| false).max_iterations(2);
    let result = common::checked(Flujo::new("loop", Pipeline::new(never)).run(1)).await;
    let error = result.step_error.expect("the loop's error");
    assert!(error.downcast_ref::<CrmError>().is_none());
    assert_eq!(Some(error.to_string()), result.error);
}

#[tokio::test(start_paused = true)]
async fn timeouts_panics_and_fallbacks_say_what_failed() {
    let slow = step("slow", |n: u32, _cx: StepContext<()>| async move {
        tokio::time::sleep(Duration::from_secs(10)).await;
        Ok(n)
    })
    .timeout(Duration::from_secs(1));
    let result = common::checked(Flujo::new("t", Pipeline::new(slow)).run(1)).await;
    let error = result.step_error.expect("a timeout");
    assert!(error.is_timeout());
    assert_eq!(error.to_string(), "timed out after 1s");

    let boom = step("boom", |n: u32, _cx: StepContext<()>| async move {
        if n > 0 {
            panic!("index {n} out of range");
        }
        Ok(n)
    });
    let result = common::checked(Flujo::new("p", Pipeline::new(boom)).run(3)).await;
    let error = result.step_error.expect("a panic");
    assert!(error.is_panic());
    assert_eq!(error.to_string(), "index 3 out of range");

    let primary = step("primary", |_: u32, _cx: StepContext<()>| async move {
        Err::<u32, _>(StepError::new("primary down"))
    });
    let backup = step("backup", |_: u32, _cx: StepContext<()>| async move {
        Err::<u32, _>(StepError::new("backup down").transient())
    });
    let result =
        common::checked(Flujo::new("f", Pipeline::new(primary.fallback(backup))).run(1)).await;
    let error = result.step_error.expect("the fallback's error");
    assert_eq!(error.to_string(), "backup down");
    assert!(error.is_transient());
}
