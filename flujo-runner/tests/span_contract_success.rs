//! A successful run: the run span and its step spans follow the contract, field by field.

mod common;

use common::Capture;
use flujo_runner::{step, Flujo, Pipeline, RunStatus, StepContext, Usage};
use serde::Serialize;
use serde_json::json;
use tracing::instrument::WithSubscriber;

#[derive(Debug, Default, Serialize)]
struct Ctx {
    seen: u32,
}

#[derive(Debug, Clone, Serialize)]
struct Ticket {
    id: u32,
    text: String,
}

fn triage() -> Flujo<Ticket, String, Ctx> {
    let classify = step(
        "classify",
        |ticket: Ticket, cx: StepContext<Ctx>| async move {
            cx.add_usage(Usage {
                tokens: 120,
                cost_usd: 0.25,
            });
            cx.update(|c| c.seen += 1)?;
            Ok(if ticket.text.contains("invoice") {
                "billing"
            } else {
                "general"
            })
        },
    );
    let draft = step(
        "draft",
        |category: &'static str, cx: StepContext<Ctx>| async move {
            cx.add_usage(Usage {
                tokens: 30,
                cost_usd: 0.5,
            });
            cx.update(|c| c.seen += 1)?;
            Ok(format!("re: {category}"))
        },
    );
    Flujo::new("triage", Pipeline::new(classify).then(draft)).with_pipeline_version("2")
}

#[tokio::test]
async fn run_and_step_spans_follow_the_contract() {
    let capture = Capture::new();
    let ticket = Ticket {
        id: 7,
        text: "my invoice".to_owned(),
    };
    let result = triage()
        .run(ticket)
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.status, RunStatus::Completed);
    capture.assert_contract();

    let run = capture.run();
    assert_eq!(run.parent, None);
    assert_eq!(run.str("run_id"), result.run_id);
    assert_eq!(run.str("pipeline_name"), "triage");
    assert_eq!(run.str("pipeline_version"), "2");
    assert_eq!(run.json("input"), json!({"id": 7, "text": "my invoice"}));
    assert_eq!(run.str("status"), "completed");
    assert_eq!(run.json("output"), json!("re: billing"));
    assert_eq!(run.json("final_context"), json!({"seen": 2}));
    assert_eq!(run.u64("total_tokens"), 150);
    assert_eq!(run.f64("total_cost_usd"), 0.75);
    assert_eq!(
        run.str("start_time"),
        flujo_runner::format_timestamp(result.start_time)
    );
    assert_eq!(
        run.str("end_time"),
        flujo_runner::format_timestamp(result.end_time)
    );

    assert_eq!(capture.child_names(&run), ["classify", "draft"]);
    let classify = capture.step("classify");
    assert_eq!(classify.parent, Some(run.seq));
    assert_eq!(classify.str("run_id"), result.run_id);
    assert_eq!(classify.u64("step_index"), 0);
    assert_eq!(classify.str("step_kind"), "step");
    assert_eq!(
        classify.json("input"),
        json!({"id": 7, "text": "my invoice"})
    );
    assert_eq!(classify.json("output"), json!("billing"));
    assert_eq!(classify.str("status"), "completed");
    assert_eq!(classify.u64("attempts"), 1);
    assert!(!classify.bool("fallback_taken"));
    assert_eq!(classify.u64("tokens"), 120);
    assert_eq!(classify.f64("cost_usd"), 0.25);
    assert!(!classify.has("error"));
    assert!(!classify.has("parent_step_run_id"));

    let draft = capture.step("draft");
    assert_eq!(draft.u64("step_index"), 1);
    assert_eq!(draft.json("input"), json!("billing"));
    assert_eq!(draft.json("output"), json!("re: billing"));
    assert!(classify.str("step_run_id") < draft.str("step_run_id"));
    assert!(classify.closed_at < draft.closed_at);
    assert!(draft.closed_at < run.closed_at);

    let history: Vec<_> = result.step_history.iter().map(|s| &s.step_run_id).collect();
    assert_eq!(
        history,
        [classify.str("step_run_id"), draft.str("step_run_id")]
    );
}

#[tokio::test]
async fn the_result_mirrors_the_spans() {
    let flujo = triage();
    let result = common::checked(flujo.run(Ticket {
        id: 1,
        text: "hello".to_owned(),
    }))
    .await;
    assert_eq!(result.status, RunStatus::Completed);
    assert_eq!(result.output.as_deref(), Some("re: general"));
    assert_eq!(result.error, None);
    assert_eq!(result.pipeline_name, "triage");
    assert_eq!(result.pipeline_version, "2");
    assert_eq!(result.final_context.seen, 2);
    assert_eq!(result.total_tokens, 150);
    assert_eq!(result.total_cost_usd, 0.75);
    common::assert_uuid_v7(&result.run_id);
    assert!(result.start_time <= result.end_time);
    let names: Vec<_> = result
        .step_history
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(names, ["classify", "draft"]);
    let classify = &result.step_history[0];
    assert_eq!(classify.index, 0);
    assert_eq!(classify.input, json!({"id": 1, "text": "hello"}));
    assert_eq!(classify.output, Some(json!("general")));
    assert_eq!(classify.attempts, 1);
    assert_eq!(result.step_history[1].index, 1);

    let json = serde_json::to_value(&result).unwrap();
    assert_eq!(json["status"], "completed");
    assert_eq!(json["step_history"][0]["kind"], "step");
    assert_eq!(json["step_history"][0]["status"], "completed");
    assert!(json["duration_ms"].is_u64());
    common::assert_timestamp(json["start_time"].as_str().unwrap());
    common::assert_timestamp(json["end_time"].as_str().unwrap());
}

#[test]
fn default_version_is_latest_and_statuses_are_lowercase() {
    let flujo = Flujo::new(
        "p",
        Pipeline::new(step(
            "s",
            |n: u32, _cx: StepContext<()>| async move { Ok(n) },
        )),
    );
    assert_eq!(flujo.version(), "latest");
    let check = |status: RunStatus, text: &str| {
        assert_eq!(status.to_string(), text);
        assert_eq!(serde_json::to_value(status).unwrap(), json!(text));
    };
    check(RunStatus::Running, "running");
    check(RunStatus::Completed, "completed");
    check(RunStatus::Failed, "failed");
    check(RunStatus::Cancelled, "cancelled");
    check(RunStatus::Paused, "paused");
}
