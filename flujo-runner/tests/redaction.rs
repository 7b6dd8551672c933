//! Values under secret keys reach every layer as `"[REDACTED]"`, at any depth, in every JSON
//! field of the spans; the results returned to the caller keep the real values.

mod common;

use common::Capture;
use flujo_runner::{step, Flujo, Pipeline, Redaction, RunStatus, StepContext};
use serde_json::{json, Value};
use tracing::instrument::WithSubscriber;

/// A context holding a secret, so `final_context` has one too.
#[derive(Debug, Default, serde::Serialize)]
struct Ctx {
    session: Session,
}

#[derive(Debug, Default, serde::Serialize)]
struct Session {
    user: String,
    #[serde(rename = "accessToken")]
    access_token: String,
    total_tokens: u64,
}

fn request() -> Value {
    json!({
        "model": "gpt",
        "max_tokens": 512,
        "tokens": 3,
        "OPENAI_API_KEY": "sk-input",
        "headers": [
            {"name": "X-Api-Key", "X-Api-Key": "sk-header"},
            {"Authorization": "Bearer abc", "Accept": "json"}
        ],
        "db": {"user": "ada", "Password": "hunter2", "credentials": {"nested": "all of it"}},
        "refresh_token": null
    })
}

/// A one-step pipeline echoing its input with a secret added, and storing one in the context.
fn echo() -> Flujo<Value, Value, Ctx> {
    let call = step(
        "call",
        |mut input: Value, cx: StepContext<Ctx>| async move {
            input["response"] = json!({"total_tokens": 40, "session_token": "tok-out"});
            cx.update(|c| {
                c.session = Session {
                    user: "ada".to_owned(),
                    access_token: "tok-context".to_owned(),
                    total_tokens: 40,
                }
            })?;
            Ok(input)
        },
    );
    Flujo::new("secrets", Pipeline::new(call))
}

/// `text` holds none of the secrets this file uses.
fn assert_no_secret(field: &str, text: &str) {
    for secret in [
        "sk-input",
        "sk-header",
        "Bearer abc",
        "hunter2",
        "all of it",
        "tok-out",
        "tok-context",
    ] {
        assert!(!text.contains(secret), "{field} leaks {secret}: {text}");
    }
}

#[tokio::test]
async fn every_json_field_of_the_spans_is_redacted_and_results_are_not() {
    let capture = Capture::new();
    let result = echo()
        .run(request())
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.status, RunStatus::Completed);
    capture.assert_contract();

    let redacted_request = json!({
        "model": "gpt",
        "max_tokens": 512,
        "tokens": 3,
        "OPENAI_API_KEY": "[REDACTED]",
        "headers": [
            {"name": "X-Api-Key", "X-Api-Key": "[REDACTED]"},
            {"Authorization": "[REDACTED]", "Accept": "json"}
        ],
        "db": {"user": "ada", "Password": "[REDACTED]", "credentials": "[REDACTED]"},
        "refresh_token": null
    });
    let mut redacted_response = redacted_request.clone();
    redacted_response["response"] = json!({"total_tokens": 40, "session_token": "[REDACTED]"});
    let redacted_context =
        json!({"session": {"user": "ada", "accessToken": "[REDACTED]", "total_tokens": 40}});

    let run = capture.run();
    let call = capture.step("call");
    assert_eq!(run.json("input"), redacted_request);
    assert_eq!(call.json("input"), redacted_request);
    assert_eq!(call.json("output"), redacted_response);
    assert_eq!(run.json("output"), redacted_response);
    assert_eq!(run.json("final_context"), redacted_context);
    for span in [&run, &call] {
        for (field, value) in &span.fields {
            if let common::FieldValue::Str(text) = value {
                assert_no_secret(field, text);
            }
        }
    }

    // The caller's own data is untouched.
    let step = result.step("call").unwrap();
    assert_eq!(step.input, request());
    assert_eq!(step.input["db"]["Password"], "hunter2");
    assert_eq!(
        step.output.as_ref().unwrap()["response"]["session_token"],
        "tok-out"
    );
    assert_eq!(result.output.unwrap()["OPENAI_API_KEY"], "sk-input");
    assert_eq!(result.final_context.session.access_token, "tok-context");
}

#[tokio::test]
async fn disabled_redaction_records_every_value() {
    let capture = Capture::new();
    let result = echo()
        .with_redaction(Redaction::disabled())
        .run(request())
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.status, RunStatus::Completed);
    capture.assert_contract();
    assert_eq!(capture.run().json("input"), request());
    assert_eq!(capture.step("call").json("input"), request());
    assert_eq!(
        capture.run().json("final_context")["session"]["accessToken"],
        "tok-context"
    );
}

#[tokio::test]
async fn custom_keys_replace_or_extend_the_standard_list() {
    let input = json!({"iban": "DE89 3704", "password": "hunter2", "Customer-SSN": "078-05"});

    let capture = Capture::new();
    echo()
        .with_redaction(Redaction::default().with_keys(vec!["IBAN".to_owned(), "ssn".to_owned()]))
        .run(input.clone())
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(
        capture.step("call").json("input"),
        json!({"iban": "[REDACTED]", "password": "hunter2", "Customer-SSN": "[REDACTED]"})
    );

    let capture = Capture::new();
    echo()
        .with_redaction(Redaction::default().with_extra_keys(["iban"]))
        .run(input)
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(
        capture.step("call").json("input"),
        json!({"iban": "[REDACTED]", "password": "[REDACTED]", "Customer-SSN": "078-05"})
    );
}

#[derive(Clone, serde::Serialize)]
struct Usage {
    zeta: &'static str,
    total_tokens: u64,
    max_tokens: u64,
    note: &'static str,
}

#[tokio::test]
async fn text_without_secret_keys_is_recorded_as_serde_json_writes_it() {
    let usage = Usage {
        zeta: "first",
        total_tokens: 7,
        max_tokens: 9,
        note: "the password and api_key are in values, not keys",
    };
    let count = step("count", |u: Usage, _cx: StepContext<()>| async move {
        Ok(u.total_tokens)
    });
    let capture = Capture::new();
    Flujo::new("usage", Pipeline::new(count))
        .run(usage.clone())
        .with_subscriber(capture.dispatch())
        .await;
    capture.assert_contract();
    // Byte for byte, field order included: nothing was parsed or rewritten.
    assert_eq!(
        capture.run().str("input"),
        serde_json::to_string(&usage).unwrap()
    );
    assert_eq!(capture.run().str("output"), "7");
}
