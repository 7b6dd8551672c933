//! Inputs, outputs and context are serialised for the spans only when a subscriber is
//! interested; the result's `step_history` values are made once and reused by the spans.

mod common;

use common::Capture;
use flujo_runner::{step, Flujo, Pipeline, RunStatus, StepContext};
use serde::{Serialize, Serializer};
use std::sync::atomic::{AtomicUsize, Ordering};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::{filter, Layer, Registry};

static INPUT: AtomicUsize = AtomicUsize::new(0);
static OUTPUT: AtomicUsize = AtomicUsize::new(0);
static CONTEXT: AtomicUsize = AtomicUsize::new(0);

/// Serialises as its number, counting each serialisation in its counter.
struct Counted(u32, &'static AtomicUsize);

impl Serialize for Counted {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.1.fetch_add(1, Ordering::SeqCst);
        serializer.serialize_u32(self.0)
    }
}

impl Default for Counted {
    fn default() -> Self {
        Counted(0, &CONTEXT)
    }
}

/// Runs a one-step pipeline under `dispatch`; returns the serialisations of input, output and
/// context.
fn serialisations(dispatch: &Dispatch) -> (usize, usize, usize) {
    for counter in [&INPUT, &OUTPUT, &CONTEXT] {
        counter.store(0, Ordering::SeqCst);
    }
    let echo = step(
        "echo",
        |input: Counted, cx: StepContext<Counted>| async move {
            cx.update(|c| c.0 += 1)?;
            Ok(Counted(input.0 + 1, &OUTPUT))
        },
    );
    let flujo = Flujo::new("lazy", Pipeline::new(echo));
    let result =
        tracing::dispatcher::with_default(dispatch, || flujo.run_blocking(Counted(1, &INPUT)));
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.step_history[0].input, 1);
    assert_eq!(result.step_history[0].output, Some(2.into()));
    (
        INPUT.load(Ordering::SeqCst),
        OUTPUT.load(Ordering::SeqCst),
        CONTEXT.load(Ordering::SeqCst),
    )
}

// One test, so no other test of this binary runs (and serialises) concurrently.
#[test]
fn spans_serialise_only_when_enabled() {
    // Nobody listening: only the step_history values are made.
    assert_eq!(serialisations(&Dispatch::none()), (1, 1, 0));

    // A subscriber whose only layer filters flujo out.
    let capture = Capture::new();
    let not_flujo = Dispatch::new(
        Registry::default().with(
            capture
                .clone()
                .with_filter(filter::filter_fn(|m| m.target() != "flujo")),
        ),
    );
    assert_eq!(serialisations(&not_flujo), (1, 1, 0));
    assert!(capture.spans().is_empty());

    // Listening: the run span adds its input, output and context; steps reuse their values.
    let capture = Capture::new();
    assert_eq!(serialisations(&capture.dispatch()), (2, 2, 1));
    capture.assert_contract();
    assert_eq!(capture.run().str("input"), "1");
    assert_eq!(capture.run().str("output"), "2");
    assert_eq!(capture.run().str("final_context"), "1");
    assert_eq!(capture.step("echo").str("output"), "2");
}
