//! Hostile data end to end: strings with NUL bytes, terminal escape sequences and unusual
//! Unicode survive the trip runner -> layer -> database -> `flujo lens`; table output escapes
//! control characters so a step's output cannot rewrite the user's terminal; filter arguments
//! are data, never SQL; and secrets never reach the database.

use std::process::Command;

use flujo::{step, Flujo, Pipeline, SqliteLayer, StepContext};
use serde::Serialize;
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

const NASTY: &str = "nul:\0 esc:\x1b[2J\x1b]0;pwned\x07 bell:\x07 cr:\r rtl:\u{202e}gnp.exe emoji:\u{1f469}\u{200d}\u{1f52c} e\u{301}";

#[derive(Serialize)]
struct Request {
    prompt: String,
    api_key: String,
    headers: std::collections::BTreeMap<String, String>,
    auth: Auth,
}

#[derive(Serialize)]
struct Auth {
    password: String,
    user: String,
}

fn lens(db: &std::path::Path, args: &[&str]) -> (i32, Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_flujo"))
        .args(args)
        .env("FLUJO_STATE_URI", db)
        .env("COLUMNS", "200")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn hostile_strings_survive_and_never_reach_the_terminal_raw() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let subscriber = tracing_subscriber::registry().with(SqliteLayer::open(&db).unwrap());
    let echo = step("echo", |r: Request, _: StepContext<()>| async move {
        Ok(format!("{}|{}", r.prompt, r.auth.user))
    });
    let flujo = Flujo::new("hostile", Pipeline::new(echo));
    let request = Request {
        prompt: NASTY.to_owned(),
        api_key: "sk-live-123456".to_owned(),
        headers: [
            ("Authorization".to_owned(), "Bearer abc".to_owned()),
            ("Accept".to_owned(), "text/plain".to_owned()),
        ]
        .into(),
        auth: Auth {
            password: "hunter2".to_owned(),
            user: "ana".to_owned(),
        },
    };
    let result = flujo.run(request).with_subscriber(subscriber).await;
    assert!(result.is_completed(), "{:?}", result.error);
    let expected_output = format!("{NASTY}|ana");
    assert_eq!(result.output.as_deref(), Some(expected_output.as_str()));

    // JSON output carries every value whole and exact
    let (code, out, err) = lens(&db, &["lens", "show", &result.run_id, "-o", "json"]);
    assert_eq!(code, 0, "{err}");
    let shown: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let text = shown.to_string();
    let step = &shown["steps"].as_array().expect("steps array")[0];
    assert_eq!(
        step["output"].as_str(),
        Some(expected_output.as_str()),
        "the output survives whole, NUL and all"
    );
    assert!(text.contains("pwned"), "{text}");

    // secrets were redacted before they left the instrumented thread
    for secret in ["sk-live-123456", "hunter2", "Bearer abc"] {
        assert!(!text.contains(secret), "{secret} reached the lens: {text}");
        let raw = std::fs::read(&db).unwrap();
        let wal = std::fs::read(dir.path().join("flujo_ops.db-wal")).unwrap_or_default();
        let needle = secret.as_bytes();
        for bytes in [&raw, &wal] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{secret} is in the database file"
            );
        }
    }
    assert!(text.contains("[REDACTED]"), "{text}");

    // table output: no raw control characters at all, whatever the values held
    for args in [
        vec!["lens", "show", "latest"],
        vec!["lens", "show", "latest", "--full"],
        vec!["lens", "list"],
    ] {
        let (code, out, err) = lens(&db, &args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let controls: Vec<u8> = out
            .iter()
            .copied()
            .filter(|b| (*b < 0x20 && *b != b'\n') || *b == 0x7f)
            .collect();
        assert!(
            controls.is_empty(),
            "{args:?} wrote raw control bytes {controls:?}"
        );
        assert!(
            !String::from_utf8_lossy(&out).contains('\u{202e}'),
            "{args:?} wrote a raw RTL override"
        );
    }
}

#[tokio::test]
async fn filter_arguments_are_data_never_sql() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let subscriber = tracing_subscriber::registry().with(SqliteLayer::open(&db).unwrap());
    let id = step("id", |x: u32, _: StepContext<()>| async move { Ok(x) });
    Flujo::new("real", Pipeline::new(id))
        .run(1)
        .with_subscriber(subscriber)
        .await;

    for pipeline in [
        "x' OR 1=1 --",
        "real' --",
        "%",
        "real%",
        "' UNION SELECT * FROM steps --",
    ] {
        let (code, out, err) = lens(&db, &["lens", "list", "--pipeline", pipeline, "-o", "json"]);
        assert_eq!(
            code,
            1,
            "{pipeline:?} matched something: {}",
            String::from_utf8_lossy(&out)
        );
        assert!(
            err.contains("no runs") || String::from_utf8_lossy(&out).contains("\"runs\":[]"),
            "{pipeline:?}: {err}"
        );
    }
    for run in ["' OR 1=1 --", "%", "_"] {
        let (code, _, err) = lens(&db, &["lens", "show", run]);
        assert_ne!(code, 0, "{run:?} found a run");
        assert!(!err.is_empty());
    }
    let (code, _, err) = lens(&db, &["lens", "list", "--pipeline", "real"]);
    assert_eq!(code, 0, "{err}");
}
