//! Any string survives the spans: control characters, terminal escapes, unusual Unicode and very
//! long lines are recorded as valid JSON text that reads back to the exact string.

mod common;

use common::Capture;
use flujo_runner::{step, Flujo, Pipeline, RunStatus, StepContext};
use serde_json::{json, Value};
use tracing::instrument::WithSubscriber;

fn hostile_strings() -> Vec<String> {
    vec![
        "nul \0 byte".to_owned(),
        "\x1b[2J\x1b[H\x1b]0;pwned\x07 terminal escapes".to_owned(),
        "right-to-left \u{202E}txt.exe\u{202C} override".to_owned(),
        "emoji 👩‍👩‍👧 with zero-width joiners and 🇺🇳 flags".to_owned(),
        "combining e\u{301} a\u{30A}\u{325} marks".to_owned(),
        "bom \u{FEFF} line separator \u{2028} paragraph \u{2029} end".to_owned(),
        "quotes \" and backslashes \\ and \"api_key\": \"not a key\"".to_owned(),
        "\r\n\t\u{7f}\u{85}".to_owned(),
        "x".repeat(1 << 20),
    ]
}

#[tokio::test]
async fn any_string_goes_through_spans_as_valid_json() {
    let echo = step("echo", |text: String, _cx: StepContext<()>| async move {
        Ok(text)
    });
    let flujo = Flujo::new("strings", Pipeline::new(echo));
    for text in hostile_strings() {
        let capture = Capture::new();
        let result = flujo
            .run(text.clone())
            .with_subscriber(capture.dispatch())
            .await;
        assert_eq!(result.status, RunStatus::Completed);
        assert_eq!(result.output.as_deref(), Some(text.as_str()));
        capture.assert_contract();
        let step = capture.step("echo");
        for (span, field) in [
            (&step, "input"),
            (&step, "output"),
            (&capture.run(), "input"),
            (&capture.run(), "output"),
        ] {
            assert_eq!(span.json(field), text.as_str(), "{field}");
            let raw = span.str(field);
            assert!(
                !raw.chars().any(|c| c < ' '),
                "{field}: control characters are escaped in the JSON text"
            );
        }
        assert!(!step.has("error"), "{:?}", step.get("error"));
    }
}

#[tokio::test]
async fn keys_written_with_escapes_are_still_redacted() {
    let echo = step("echo", |value: Value, _cx: StepContext<()>| async move {
        Ok(value)
    });
    let input = json!({"X\u{0}Api\u{1b}Key": "sk-1", "note\u{0}": "kept"});
    let capture = Capture::new();
    Flujo::new("keys", Pipeline::new(echo))
        .run(input)
        .with_subscriber(capture.dispatch())
        .await;
    capture.assert_contract();
    assert_eq!(
        capture.step("echo").json("input"),
        json!({"X\u{0}Api\u{1b}Key": "[REDACTED]", "note\u{0}": "kept"})
    );
}
