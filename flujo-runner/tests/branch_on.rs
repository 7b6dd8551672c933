//! `branch_on`: runs the branch its key picks, the default otherwise, and fails clearly without.

mod common;

use common::Capture;
use flujo_runner::{branch_on, step, Flujo, Pipeline, RunStatus, StepContext};
use tracing::instrument::WithSubscriber;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
enum Category {
    Billing,
    Tech,
    Refund,
}

#[derive(Default, serde::Serialize)]
struct Ctx {
    vip: bool,
}

fn reply(name: &'static str) -> flujo_runner::Step<Category, String, Ctx> {
    step(
        name,
        move |category: Category, _cx: StepContext<Ctx>| async move {
            Ok(format!("{name}: {category:?}"))
        },
    )
}

fn route(with_default: bool) -> Flujo<Category, String, Ctx> {
    let route = branch_on(
        "route",
        |category: &Category, c: &Ctx| {
            if c.vip {
                None
            } else {
                Some(*category)
            }
        },
    )
    .branch(Some(Category::Billing), reply("billing"))
    .branch(Some(Category::Tech), reply("tech"))
    .branch(None, reply("vip"));
    let route = if with_default {
        route.otherwise(reply("general"))
    } else {
        route
    };
    Flujo::new("branches", Pipeline::new(route))
}

#[tokio::test]
async fn the_key_picks_the_branch() {
    let check = |category, vip, expected: &'static str| async move {
        let result = common::checked(route(false).run_with_context(category, Ctx { vip })).await;
        assert_eq!(result.output.as_deref(), Some(expected));
        let children = &result.step_history[0].children;
        assert_eq!(children.len(), 1, "exactly one branch runs");
        assert_eq!(children[0].index, 0);
    };
    check(Category::Billing, false, "billing: Billing").await;
    check(Category::Tech, false, "tech: Tech").await;
    check(Category::Refund, true, "vip: Refund").await;
}

#[tokio::test]
async fn an_unknown_key_runs_the_default() {
    let result = common::checked(route(true).run(Category::Refund)).await;
    assert_eq!(result.output.as_deref(), Some("general: Refund"));
}

#[tokio::test]
async fn an_unknown_key_without_default_fails_with_a_clear_message() {
    let capture = Capture::new();
    let result = route(false)
        .run(Category::Refund)
        .with_subscriber(capture.dispatch())
        .await;
    let message = "step 'route' has no branch for key Some(Refund) and no default: \
                   add a branch for it or an otherwise step";
    assert_eq!(result.status, RunStatus::Failed);
    assert_eq!(result.error.as_deref(), Some(message));
    assert!(result.step_history[0].children.is_empty());
    capture.assert_contract();
    let span = capture.step("route");
    assert_eq!(span.str("step_kind"), "branch");
    assert_eq!(span.str("status"), "failed");
    assert_eq!(span.str("error"), message);
    assert!(capture.children(&span).is_empty());
}
