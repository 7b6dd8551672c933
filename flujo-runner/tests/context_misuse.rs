//! Misusing a `StepContext` is an error with a message, never a deadlock or a panic: `update`
//! (or `read`) inside another's closure, and a context kept and used after its run.

mod common;

use flujo_runner::{step, Flujo, Pipeline, RunStatus, StepContext};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default, serde::Serialize)]
struct Ctx {
    count: u32,
}

#[tokio::test]
async fn a_nested_call_is_an_error_and_the_context_stays_usable() {
    let nested = step("nested", |n: u32, cx: StepContext<Ctx>| async move {
        let inner = cx.read(|c| {
            let inner = cx.update(|c| c.count += 1);
            (c.count, inner)
        })?;
        let (count, inner) = inner;
        assert_eq!(count, 0);
        let error = inner.expect_err("update inside read is refused");
        assert!(
            error.to_string().contains(
                "is in use by an enclosing StepContext::read or update on this thread: return \
                 what you need from the first call, then make the second"
            ),
            "{error}"
        );
        let read_in_update = cx.update(|_| cx.read(|c| c.count).is_err())?;
        assert!(read_in_update, "read inside update is refused too");
        // after the refused calls, the context works again
        cx.update(|c| c.count += n)?;
        Ok(cx.read(|c| c.count)?)
    });
    let result = common::checked(Flujo::new("nested", Pipeline::new(nested)).run(5)).await;
    assert_eq!(result.status, RunStatus::Completed, "{:?}", result.error);
    assert_eq!(result.output, Some(5));
    assert_eq!(result.final_context.count, 5);
}

#[tokio::test]
async fn a_nested_call_propagated_with_question_mark_fails_the_step_with_its_message() {
    let nested = step("nested", |_: u32, cx: StepContext<Ctx>| async move {
        cx.read(|_| cx.update(|c| c.count += 1))??;
        Ok(1u32)
    });
    let result = common::checked(Flujo::new("nested", Pipeline::new(nested)).run(5)).await;
    assert_eq!(result.status, RunStatus::Failed);
    let error = result.error.unwrap();
    assert!(
        error.starts_with("step 'nested' failed: the context of run "),
        "{error}"
    );
    assert!(
        error.contains("is in use by an enclosing StepContext::read"),
        "{error}"
    );
    assert!(result
        .step_error
        .unwrap()
        .downcast_ref::<flujo_runner::ContextError>()
        .is_some());
}

#[tokio::test]
async fn a_context_used_after_its_run_is_an_error() {
    let kept: Arc<Mutex<Option<StepContext<Ctx>>>> = Arc::default();
    let keep = {
        let kept = kept.clone();
        step("keep", move |n: u32, cx: StepContext<Ctx>| {
            *kept.lock().unwrap() = Some(cx.clone());
            async move {
                cx.update(|c| c.count += 1)?;
                Ok(n)
            }
        })
    };
    let result = common::checked(Flujo::new("kept", Pipeline::new(keep)).run(1)).await;
    assert_eq!(result.status, RunStatus::Completed);
    let cx = kept
        .lock()
        .unwrap()
        .take()
        .expect("the step kept its context");
    let error = cx.update(|c| c.count += 1).expect_err("the run has ended");
    assert_eq!(
        error.to_string(),
        format!(
            "run {} has ended and returned its context: a StepContext cannot be used after its \
             run",
            result.run_id
        )
    );
    assert!(cx.read(|c| c.count).is_err());
    assert_eq!(
        result.final_context.count, 1,
        "the returned context is the run's"
    );
}

#[test]
fn other_threads_wait_for_the_lock_and_are_not_refused() {
    let shared = step("shared", |n: u32, cx: StepContext<Ctx>| async move {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let cx = cx.clone();
                std::thread::spawn(move || {
                    for _ in 0..100 {
                        cx.update(|c| c.count += 1)
                            .expect("another thread only waits");
                    }
                })
            })
            .collect();
        for _ in 0..100 {
            cx.update(|c| c.count += 1)?;
        }
        for thread in threads {
            thread.join().unwrap();
        }
        Ok(n)
    });
    let result = Flujo::new("threads", Pipeline::new(shared)).run_blocking(1);
    assert_eq!(result.status, RunStatus::Completed, "{:?}", result.error);
    assert_eq!(result.final_context.count, 500);
}
