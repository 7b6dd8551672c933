//! Values under secret keys reach every layer as `"[REDACTED]"`, at any depth, in every JSON
//! field of the spans; the results returned to the caller keep the real values.

mod common;

use common::Capture;
use flujo_runner::{step, Flujo, Pipeline, Redaction, RunStatus, StepContext, StepError};
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

/// A context whose field names no secret, so only scrubbing keeps a secret out of it.
#[derive(Debug, Default, serde::Serialize)]
struct LastUsed {
    last_used: String,
}

const KEY: &str = "sk-live-abcdef1234567890XYZ";
/// Not token-shaped, and written differently by JSON (`\"`): only remembering it scrubs it.
const PASSWORD: &str = "correct\"horse-battery";

/// A run whose input holds two secrets under secret keys (and a short one), whose first step
/// passes them on under keys that name none, and whose second step fails quoting them.
fn leaky() -> Flujo<Value, Value, LastUsed> {
    let prepare = step(
        "prepare",
        |input: Value, cx: StepContext<LastUsed>| async move {
            let key = input["api_key"].as_str().unwrap().to_owned();
            let password = input["db"]["password"].as_str().unwrap().to_owned();
            cx.update(|c| c.last_used = format!("{key} / {password}"))?;
            Ok::<_, StepError>(json!({
                "header": format!("Bearer {key}"),
                "note": format!("logging in with {password}"),
                "fruit": "banana",
            }))
        },
    );
    let call = step(
        "call",
        |request: Value, _: StepContext<LastUsed>| async move {
            let password = request["note"]
                .as_str()
                .unwrap()
                .trim_start_matches("logging in with ");
            Err::<Value, _>(StepError::new(format!(
                "invalid key \"{}\" for password {password:?}",
                request["header"].as_str().unwrap()
            )))
        },
    );
    Flujo::new("leaky", Pipeline::new(prepare).then(call))
}

fn leaky_input() -> Value {
    json!({"api_key": KEY, "db": {"user": "ada", "password": PASSWORD}, "pin": "a"})
}

#[tokio::test]
async fn values_under_secret_keys_are_scrubbed_from_every_later_text_of_the_run() {
    let capture = Capture::new();
    let result = leaky()
        .run(leaky_input())
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.status, RunStatus::Failed);
    capture.assert_contract();
    let escaped_password = &json!(PASSWORD).to_string()[1..PASSWORD.len() + 2];
    assert_eq!(escaped_password, r#"correct\"horse-battery"#);
    let (run, prepare, call) = (capture.run(), capture.step("prepare"), capture.step("call"));
    for span in [&run, &prepare, &call] {
        for (field, value) in &span.fields {
            if let common::FieldValue::Str(text) = value {
                for secret in [KEY, PASSWORD, escaped_password, "abcdef1234567890"] {
                    assert!(
                        !text.contains(secret),
                        "{} {field} leaks {secret}: {text}",
                        span.name
                    );
                }
            }
        }
    }
    assert_eq!(
        prepare.json("output"),
        json!({"header": "Bearer [REDACTED]", "note": "logging in with [REDACTED]", "fruit": "banana"}),
        "scrubbed inside strings; the 1-character pin blanks no `a`"
    );
    assert_eq!(call.json("input"), prepare.json("output"));
    assert_eq!(
        call.str("error"),
        r#"step 'call' failed: invalid key "Bearer [REDACTED]" for password "[REDACTED]""#,
        "the raw and the JSON-escaped form are scrubbed"
    );
    assert_eq!(run.str("error"), call.str("error"));
    assert_eq!(
        run.json("final_context"),
        json!({"last_used": "[REDACTED] / [REDACTED]"})
    );

    // The caller's own data is untouched.
    let error = result.error.as_deref().unwrap();
    assert!(
        error.contains(KEY) && error.contains(r#"correct\"horse"#),
        "{error}"
    );
    assert_eq!(
        result.final_context.last_used,
        format!("{KEY} / {PASSWORD}")
    );
    assert_eq!(
        result.step("prepare").unwrap().output.as_ref().unwrap()["header"],
        format!("Bearer {KEY}")
    );
}

#[tokio::test]
async fn token_shapes_are_scrubbed_from_any_recorded_string() {
    const AWS: &str = "AKIAIOSFODNN7EXAMPLE";
    const GITHUB: &str = "ghp_abcdefghijklmnopqrstuvwxyz0123456789";
    const JWT: &str =
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    let shout = step("shout", |prompt: String, _: StepContext<()>| async move {
        Ok::<_, StepError>(format!("{prompt} and {GITHUB}"))
    });
    let fail = step("fail", |_: String, _: StepContext<()>| async move {
        Err::<String, _>(StepError::new(format!("session {JWT} expired")))
    });
    let flujo = Flujo::new("tokens", Pipeline::new(shout).then(fail));
    let prompt = format!("deploy with {AWS}");

    let capture = Capture::new();
    let result = flujo
        .run(prompt.clone())
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.status, RunStatus::Failed);
    capture.assert_contract();
    let (run, shout_span) = (capture.run(), capture.step("shout"));
    assert_eq!(run.json("input"), "deploy with [REDACTED]");
    assert_eq!(
        shout_span.json("output"),
        "deploy with [REDACTED] and [REDACTED]"
    );
    assert_eq!(
        capture.step("fail").str("error"),
        "step 'fail' failed: session [REDACTED] expired"
    );
    assert_eq!(
        run.str("error"),
        "step 'fail' failed: session [REDACTED] expired"
    );
    assert!(
        result.error.unwrap().contains(JWT),
        "the caller's error is whole"
    );

    // Disabled redaction records them as they are.
    let capture = Capture::new();
    flujo
        .clone()
        .with_redaction(Redaction::disabled())
        .run(prompt)
        .with_subscriber(capture.dispatch())
        .await;
    assert!(capture.run().str("input").contains(AWS));
    assert!(capture.step("shout").str("output").contains(GITHUB));
    assert!(capture.run().str("error").contains(JWT));
}

#[tokio::test]
async fn redaction_everything_records_the_structure_and_no_value() {
    let capture = Capture::new();
    let result = leaky()
        .with_redaction(Redaction::everything())
        .run(json!({"user": "ada", "api_key": KEY, "db": {"password": PASSWORD}}))
        .with_subscriber(capture.dispatch())
        .await;
    assert_eq!(result.status, RunStatus::Failed);
    capture.assert_contract();
    let (run, prepare, call) = (capture.run(), capture.step("prepare"), capture.step("call"));
    for (span, fields) in [
        (&run, &["input", "final_context"][..]),
        (&prepare, &["input", "output"][..]),
        (&call, &["input"][..]),
    ] {
        for field in fields {
            assert_eq!(span.str(field), "\"[REDACTED]\"", "{} {field}", span.name);
        }
    }
    for span in [&run, &call] {
        let error = span.str("error");
        assert!(
            error.starts_with("[REDACTED] (") && error.contains("Redaction::everything()"),
            "{error}"
        );
        assert!(
            !error.contains("ada") && !error.contains("Bearer"),
            "{error}"
        );
    }
    // The structure is recorded as usual.
    assert_eq!(prepare.str("status"), "completed");
    assert_eq!(call.str("status"), "failed");
    assert_eq!(run.str("status"), "failed");
    assert_eq!(run.str("pipeline_name"), "leaky");
    assert_eq!(call.u64("attempts"), 1);
    // And the caller's data is whole.
    assert!(result.error.unwrap().contains(KEY));
}
