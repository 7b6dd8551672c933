//! A secret seen under a secret key never reaches the database, wherever else the run records
//! it later: quoted in a step's error (and so the run's), passed on under a key that names no
//! secret, or kept in the context. The file's bytes (database and `-wal`) are searched.

use flujo::{step, Flujo, Pipeline, SqliteLayer, StepContext, StepError};
use serde::{Deserialize, Serialize};
use tracing::instrument::WithSubscriber;
use tracing_subscriber::layer::SubscriberExt;

#[derive(Serialize)]
struct Request {
    user: String,
    api_key: String,
    password: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct Call {
    user: String,
    header: String,
    login: String,
}

#[derive(Default, Serialize)]
struct Ctx {
    last_header: String,
}

const KEY: &str = "sk-live-abcdef1234567890ZYXW";
/// Not token-shaped, and JSON-escaped differently from its raw form.
const PASSWORD: &str = "plain\"horse-staple";

#[tokio::test]
async fn secrets_quoted_in_later_errors_outputs_and_context_are_not_in_the_database_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("flujo_ops.db");
    let subscriber = tracing_subscriber::registry().with(SqliteLayer::open(&db).unwrap());
    let prepare = step("prepare", |r: Request, cx: StepContext<Ctx>| async move {
        let header = format!("Bearer {}", r.api_key);
        cx.update(|c| c.last_header = header.clone())?;
        Ok::<_, StepError>(Call {
            user: r.user,
            header,
            login: r.password,
        })
    });
    let call = step("call", |c: Call, _: StepContext<Ctx>| async move {
        Err::<(), _>(StepError::new(format!(
            "invalid key \"{}\" (login {:?})",
            c.header, c.login
        )))
    });
    let flujo = Flujo::new("scrubbed", Pipeline::new(prepare).then(call));
    let result = flujo
        .run(Request {
            user: "ana".into(),
            api_key: KEY.into(),
            password: PASSWORD.into(),
        })
        .with_subscriber(subscriber)
        .await;
    assert!(!result.is_completed());
    let error = result.error.as_deref().unwrap();
    assert!(error.contains(KEY), "the caller's error is whole: {error}");

    let escaped = r#"plain\"horse-staple"#;
    for needle in [KEY, "abcdef1234567890ZYXW", PASSWORD, escaped] {
        for file in [db.clone(), dir.path().join("flujo_ops.db-wal")] {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} is in {}",
                file.display()
            );
        }
    }
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let (status, run_error, context): (String, String, String) = conn
        .query_row(
            "SELECT status, error_blob, final_context_blob FROM runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(status, "failed");
    assert_eq!(
        run_error,
        r#"step 'call' failed: invalid key "Bearer [REDACTED]" (login "[REDACTED]")"#
    );
    assert_eq!(context, r#"{"last_header":"Bearer [REDACTED]"}"#);
    let call_input: String = conn
        .query_row(
            "SELECT input_blob FROM steps WHERE step_name = 'call'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        call_input,
        r#"{"user":"ana","header":"Bearer [REDACTED]","login":"[REDACTED]"}"#
    );
}
