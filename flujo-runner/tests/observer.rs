//! The `RunObserver` hook: `before_run` before the run span opens, `after_run` after it closed,
//! and `run()` returns only once `after_run` completed.

mod common;

use common::Capture;
use flujo_runner::{step, Flujo, Pipeline, RunObserver, RunStatus, StepContext, StepError};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tracing::instrument::WithSubscriber;

/// Records what it saw of the capture at each call.
struct EventLog {
    capture: Capture,
    log: Mutex<Vec<String>>,
}

impl RunObserver for EventLog {
    fn before_run(&self) {
        let spans = self.capture.spans().len();
        self.log
            .lock()
            .unwrap()
            .push(format!("before: {spans} spans"));
    }

    fn after_run<'a>(&'a self, run_id: &'a str) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let run = self.capture.run();
            let closed = run.closed_at.is_some();
            let status = run.str("status").to_owned();
            assert_eq!(run.str("run_id"), run_id);
            // A barrier that takes a while: run() must wait for it.
            tokio::time::sleep(Duration::from_millis(50)).await;
            self.log
                .lock()
                .unwrap()
                .push(format!("after: closed={closed} status={status}"));
        })
    }
}

fn flujo(observer: Arc<EventLog>, fail: bool) -> Flujo<u32, u32> {
    let work = step("work", move |n: u32, _cx: StepContext<()>| async move {
        if fail {
            return Err(StepError::new("nope"));
        }
        Ok(n + 1)
    });
    Flujo::new("observed", Pipeline::new(work)).with_observer(observer)
}

#[tokio::test(start_paused = true)]
async fn after_run_runs_after_the_run_span_closed_and_before_run_returns() {
    for fail in [false, true] {
        let capture = Capture::new();
        let observer = Arc::new(EventLog {
            capture: capture.clone(),
            log: Mutex::default(),
        });
        let result = flujo(observer.clone(), fail)
            .run(1)
            .with_subscriber(capture.dispatch())
            .await;
        let status = if fail { "failed" } else { "completed" };
        assert_eq!(result.status.as_str(), status);
        assert_eq!(
            *observer.log.lock().unwrap(),
            [
                "before: 0 spans".to_owned(),
                format!("after: closed=true status={status}"),
            ]
        );
        capture.assert_contract();
    }
}

#[test]
fn run_blocking_calls_the_observer_too() {
    let capture = Capture::new();
    let observer = Arc::new(EventLog {
        capture: capture.clone(),
        log: Mutex::default(),
    });
    let result = tracing::dispatcher::with_default(&capture.dispatch(), || {
        flujo(observer.clone(), false).run_blocking(1)
    });
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(observer.log.lock().unwrap().len(), 2);
    capture.assert_contract();
}
