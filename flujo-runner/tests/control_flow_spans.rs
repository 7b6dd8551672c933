//! Control-flow steps: kinds, names, indices and nesting of their spans and results.

mod common;

use common::Capture;
use flujo_runner::{
    branch_on, loop_until, map_over, parallel, step, Flujo, Pipeline, RunStatus, StepContext,
    StepError, StepKind, StepResult,
};
use serde_json::json;
use tracing::instrument::WithSubscriber;

#[derive(Default, serde::Serialize)]
struct Ctx {
    rounds: u32,
}

fn add(name: &str, k: u32) -> flujo_runner::Step<u32, u32, Ctx> {
    step(name, move |n: u32, _cx: StepContext<Ctx>| async move {
        Ok(n + k)
    })
}

fn tree(result: &StepResult) -> serde_json::Value {
    json!({
        "name": result.name,
        "kind": result.kind.as_str(),
        "index": result.index,
        "children": result.children.iter().map(tree).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn every_step_kind_nests_under_its_parent() {
    let counted = step("count", |n: u32, cx: StepContext<Ctx>| async move {
        cx.update(|c| c.rounds += 1)?;
        Ok(n + 1)
    });
    let refine = loop_until("refine", counted, |_: &u32, c: &Ctx| c.rounds == 2).max_iterations(5);
    let route = branch_on("route", |n: &u32, _: &Ctx| n.is_multiple_of(2))
        .branch(true, add("even", 100))
        .branch(false, add("odd", 1000));
    let fan_out = parallel("fan_out")
        .branch(add("left", 1))
        .branch(add("right", 2))
        .combine(|outputs: Vec<u32>| vec![outputs[0], outputs[1], 3]);
    let each = map_over(
        "each",
        Pipeline::new(add("inc", 1))
            .then(add("inc_again", 1))
            .into_step("item"),
        2,
    );
    let sum = step("sum", |ns: Vec<u32>, _cx: StepContext<Ctx>| async move {
        Ok(ns.iter().sum::<u32>())
    });
    let pipeline = Pipeline::new(refine)
        .then(route)
        .then(fan_out)
        .then(each)
        .then(sum);
    let capture = Capture::new();
    let result = Flujo::new("kinds", pipeline)
        .run(0)
        .with_subscriber(capture.dispatch())
        .await;

    // 0 -> refine (2 rounds) 2 -> route (even) 102 -> fan_out [103, 104, 3] -> each [105, 106, 5]
    assert_eq!(result.status, RunStatus::Completed, "{:?}", result.error);
    assert_eq!(result.output, Some(216));
    capture.assert_contract();

    let history: Vec<_> = result.step_history.iter().map(tree).collect();
    let leaf = |name: &str, kind: &str, index: u64| json!({"name": name, "kind": kind, "index": index, "children": []});
    let item = |index: u64| {
        json!({"name": "item", "kind": "pipeline", "index": index, "children": [
            leaf("inc", "step", 0), leaf("inc_again", "step", 1),
        ]})
    };
    assert_eq!(
        json!(history),
        json!([
            {"name": "refine", "kind": "loop", "index": 0, "children": [leaf("count", "step", 0), leaf("count", "step", 1)]},
            {"name": "route", "kind": "branch", "index": 1, "children": [leaf("even", "step", 0)]},
            {"name": "fan_out", "kind": "parallel", "index": 2, "children": [leaf("left", "step", 0), leaf("right", "step", 1)]},
            {"name": "each", "kind": "map", "index": 3, "children": [item(0), item(1), item(2)]},
            leaf("sum", "step", 4),
        ])
    );
    // A pipeline used as a step is of kind `pipeline`.
    assert!(result.step("item").is_some());
    assert_eq!(result.step("item").unwrap().kind, StepKind::Pipeline);

    let run = capture.run();
    assert_eq!(
        capture.child_names(&run),
        ["refine", "route", "fan_out", "each", "sum"]
    );

    let refine = capture.step("refine");
    assert_eq!(refine.str("step_kind"), "loop");
    assert_eq!(refine.json("input"), json!(0));
    assert_eq!(refine.json("output"), json!(2));
    let iterations = capture.children(&refine);
    assert_eq!(iterations.len(), 2);
    for (i, iteration) in iterations.iter().enumerate() {
        assert_eq!(iteration.str("step_name"), "count");
        assert_eq!(iteration.u64("step_index"), i as u64);
        assert_eq!(iteration.json("input"), json!(i));
        assert_eq!(
            iteration.str("parent_step_run_id"),
            refine.str("step_run_id")
        );
    }

    let route = capture.step("route");
    assert_eq!(route.str("step_kind"), "branch");
    assert_eq!(capture.child_names(&route), ["even"]);
    assert!(capture.steps_named("odd").is_empty());

    let fan_out = capture.step("fan_out");
    assert_eq!(fan_out.str("step_kind"), "parallel");
    assert_eq!(fan_out.json("output"), json!([103, 104, 3]));
    assert_eq!(capture.child_names(&fan_out), ["left", "right"]);
    assert_eq!(capture.step("right").u64("step_index"), 1);

    let each = capture.step("each");
    assert_eq!(each.str("step_kind"), "map");
    assert_eq!(each.json("input"), json!([103, 104, 3]));
    assert_eq!(each.json("output"), json!([105, 106, 5]));
    let items = capture.children(&each);
    assert_eq!(items.len(), 3);
    for item in &items {
        assert_eq!(item.str("step_kind"), "pipeline");
        assert_eq!(capture.child_names(item), ["inc", "inc_again"]);
    }
    let mut indices: Vec<_> = items.iter().map(|s| s.u64("step_index")).collect();
    indices.sort();
    assert_eq!(indices, [0, 1, 2]);
    assert_eq!(capture.step("sum").u64("step_index"), 4);
}

#[tokio::test]
async fn a_failing_child_fails_every_enclosing_step_with_its_message() {
    let failing = step("deep", |_: u32, _cx: StepContext<Ctx>| async move {
        Err::<u32, _>(StepError::new("bad input"))
    });
    let inner = Pipeline::new(add("first", 1))
        .then(failing)
        .into_step("inner");
    let outer = loop_until("outer", inner, |_: &u32, _: &Ctx| true).max_iterations(2);
    let capture = Capture::new();
    let result = Flujo::new("nested", Pipeline::new(outer))
        .run(1)
        .with_subscriber(capture.dispatch())
        .await;
    let message = "step 'deep' failed: bad input";
    assert_eq!(result.error.as_deref(), Some(message));
    capture.assert_contract();
    for name in ["deep", "inner", "outer"] {
        assert_eq!(capture.step(name).str("status"), "failed", "{name}");
        assert_eq!(capture.step(name).str("error"), message, "{name}");
    }
    assert_eq!(capture.step("first").str("status"), "completed");
    assert_eq!(capture.run().str("error"), message);
}
