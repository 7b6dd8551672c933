//! What one run records of its values: the [`Redaction`] by key, then scrubbing of the values
//! seen under secret keys earlier in the run and of well-known token shapes, in every JSON
//! field and every error the run's spans record.

use crate::json::NotSerialisable;
use crate::redaction::{Redaction, REDACTED};
use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;
use serde_json::Value;
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, LazyLock, Mutex};

/// What an `error` is recorded as under [`Redaction::everything`].
pub(crate) const REDACTED_ERROR: &str = "[REDACTED] (no value or error text of this run is \
    recorded: its redaction is Redaction::everything(), which flujo uses while flujo.toml's \
    [redaction] settings cannot be read; see the warning it printed)";

/// The redaction of one run, and the secret values it has seen so far.
pub(crate) struct RunRedaction {
    redaction: Redaction,
    seen: Mutex<Seen>,
}

/// The values redacted under secret keys so far, each as it is and as JSON escapes it.
#[derive(Default)]
struct Seen {
    /// Distinct values as they were redacted (at most `Redaction::MAX_REMEMBERED`).
    values: HashSet<String>,
    /// Finds any form of any value; `None` when no value was seen, or a value was added since.
    matcher: Option<Arc<AhoCorasick>>,
}

impl RunRedaction {
    pub(crate) fn new(redaction: Redaction) -> Self {
        RunRedaction {
            redaction,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// The span text of a value made into JSON: redacted by key, then scrubbed.
    pub(crate) fn json_text_of_value(&self, value: &Value) -> String {
        if self.redaction.redacts_everything() {
            return everything_redacted();
        }
        // A `Value` always serialises (its map keys are strings, its numbers finite).
        let text = value.to_string();
        if !self.redaction.may_hold_secrets(&text) {
            return self.scrub_json(text);
        }
        let mut redacted = value.clone();
        self.redact(&mut redacted);
        self.scrub_json(redacted.to_string())
    }

    /// The span text of a value serialised to `text`, redacted by key and scrubbed; `to_value`
    /// makes the value again when the text holds a secret key.
    pub(crate) fn json_text(
        &self,
        text: String,
        to_value: impl FnOnce() -> Result<Value, NotSerialisable>,
    ) -> (String, Option<NotSerialisable>) {
        if self.redaction.redacts_everything() {
            return (everything_redacted(), None);
        }
        if !self.redaction.may_hold_secrets(&text) {
            return (self.scrub_json(text), None);
        }
        match to_value() {
            Ok(mut json) => {
                self.redact(&mut json);
                (self.scrub_json(json.to_string()), None)
            }
            // It serialised once and not twice: record nothing of it rather than risk a secret.
            Err(error) => (everything_redacted(), Some(error)),
        }
    }

    /// The span text of an error: scrubbed, or the fixed note under `Redaction::everything`.
    pub(crate) fn error_text<'a>(&self, error: &'a str) -> Cow<'a, str> {
        if self.redaction.redacts_everything() {
            return Cow::Borrowed(REDACTED_ERROR);
        }
        if !self.redaction.is_enabled() {
            return Cow::Borrowed(error);
        }
        scrub_str(error, self.matcher().as_deref())
    }

    /// Redacts by key and remembers what was redacted.
    fn redact(&self, value: &mut Value) {
        let mut replaced = Vec::new();
        self.redaction.redact(value, &mut replaced);
        if replaced.is_empty() {
            return;
        }
        let mut seen = crate::context::lock(&self.seen);
        for text in replaced {
            if seen.values.len() >= Redaction::MAX_REMEMBERED {
                break;
            }
            if seen.values.insert(text) {
                seen.matcher = None;
            }
        }
    }

    /// The matcher of the values seen so far, built when they changed; `None` when there are
    /// none.
    fn matcher(&self) -> Option<Arc<AhoCorasick>> {
        let mut seen = crate::context::lock(&self.seen);
        if seen.values.is_empty() {
            return None;
        }
        if seen.matcher.is_none() {
            let mut forms: Vec<String> = Vec::with_capacity(seen.values.len() * 2);
            for value in &seen.values {
                let quoted = Value::String(value.clone()).to_string();
                let escaped = &quoted[1..quoted.len() - 1];
                if escaped != value {
                    forms.push(escaped.to_owned());
                }
                forms.push(value.clone());
            }
            // Leftmost-longest, so a value that contains another is replaced whole.
            let matcher = AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&forms)
                .expect("an automaton of a bounded number of remembered values builds");
            seen.matcher = Some(Arc::new(matcher));
        }
        seen.matcher.clone()
    }

    /// JSON text with the seen values and token shapes scrubbed from its strings (keys
    /// included) and numbers; the text itself when it holds neither, so text with no secret is
    /// serde_json's, byte for byte.
    fn scrub_json(&self, text: String) -> String {
        if !self.redaction.is_enabled() {
            return text;
        }
        let matcher = self.matcher();
        let seen_value = matcher.as_ref().is_some_and(|m| m.is_match(&text));
        if !seen_value && !may_hold_token(&text) {
            return text;
        }
        let Ok(mut value) = serde_json::from_str::<Value>(&text) else {
            // Not JSON we wrote: record nothing of it.
            return everything_redacted();
        };
        // Rewritten only when something was scrubbed: a parsed text is not always written back
        // the same (a number beyond 64 bits).
        if scrub_value(&mut value, matcher.as_deref()) {
            value.to_string()
        } else {
            text
        }
    }
}

/// A whole JSON field under `Redaction::everything`.
fn everything_redacted() -> String {
    Value::String(REDACTED.to_owned()).to_string()
}

/// Scrubs the strings (keys included) and numbers of `value`; whether anything changed.
fn scrub_value(value: &mut Value, matcher: Option<&AhoCorasick>) -> bool {
    match value {
        Value::String(text) => match scrub_str(text, matcher) {
            Cow::Owned(scrubbed) => {
                *text = scrubbed;
                true
            }
            Cow::Borrowed(_) => false,
        },
        Value::Number(number) => {
            let holds_seen = matcher.is_some_and(|m| m.is_match(&number.to_string()));
            if holds_seen {
                *value = Value::String(REDACTED.to_owned());
            }
            holds_seen
        }
        Value::Object(map) => {
            let needs_new_keys = map
                .keys()
                .any(|key| matches!(scrub_str(key, matcher), Cow::Owned(_)));
            if needs_new_keys {
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(key, child)| (scrub_str(&key, matcher).into_owned(), child))
                    .collect();
            }
            map.values_mut().fold(needs_new_keys, |changed, child| {
                scrub_value(child, matcher) | changed
            })
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |changed, item| scrub_value(item, matcher) | changed),
        Value::Null | Value::Bool(_) => false,
    }
}

/// `text` with the seen values (found by `matcher`) and the token shapes replaced.
fn scrub_str<'a>(text: &'a str, matcher: Option<&AhoCorasick>) -> Cow<'a, str> {
    let mut text = Cow::Borrowed(text);
    if let Some(matcher) = matcher.filter(|m| m.is_match(&*text)) {
        let replaced = matcher.replace_all(&text, &vec![REDACTED; matcher.patterns_len()]);
        text = Cow::Owned(replaced);
    }
    if may_hold_token(&text) {
        if let Cow::Owned(replaced) = TOKENS.replace_all(&text, |caps: &regex::Captures<'_>| {
            format!(
                "{}{REDACTED}",
                caps.name("scheme").map_or("", |scheme| scheme.as_str())
            )
        }) {
            text = Cow::Owned(replaced);
        }
    }
    text
}

/// The literals every token shape starts with (ASCII case ignored): text with none of them holds
/// no token, and is not searched with [`TOKENS`].
const TOKEN_PREFIXES: &[&str] = &[
    "bearer",
    "sk-",
    "sk_",
    "rk_",
    "akia",
    "asia",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "eyj",
    "-----begin",
];

/// Finds any of [`TOKEN_PREFIXES`].
static TOKEN_PREFIX: LazyLock<AhoCorasick> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build(TOKEN_PREFIXES)
        .expect("the token prefixes build")
});

/// The well-known token shapes; a `Bearer` match keeps its scheme (group `scheme`).
static TOKENS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"(?P<scheme>\b(?i:bearer)\s+)[A-Za-z0-9\-._~+/]{12,}=*",
        r"|\bsk-[A-Za-z0-9_\-]{16,}",
        r"|\b[sr]k_(?:live|test)_[A-Za-z0-9]{16,}",
        r"|\b(?:AKIA|ASIA)[A-Z0-9]{16}\b",
        r"|\bgh[pousr]_[A-Za-z0-9]{36,}",
        r"|\bgithub_pat_[A-Za-z0-9_]{22,}",
        r"|\bxox[abposr]-[A-Za-z0-9\-]{10,}",
        r"|\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}",
        r"|-----BEGIN[A-Z ]*PRIVATE KEY-----(?s:.*?)(?:-----END[A-Z ]*PRIVATE KEY-----|\z)",
    ))
    .expect("the token shapes compile")
});

/// The cheap check before [`TOKENS`]: whether `text` has a token prefix at all.
fn may_hold_token(text: &str) -> bool {
    TOKEN_PREFIX.is_match(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of each token shape, as it appears in text, and what it is scrubbed to.
    const TOKENS_FOUND: &[(&str, &str)] = &[
        (
            "invalid key \"Bearer sk-live-abcdef1234567890\"",
            "invalid key \"Bearer [REDACTED]\"",
        ),
        ("authorization: bearer abc.DEF-123_x==", "authorization: bearer [REDACTED]"),
        ("key sk-proj-Abcdefghijklmnop1234", "key [REDACTED]"),
        ("stripe sk_live_4eC39HqLyjWDarjtT1zdp7dc", "stripe [REDACTED]"),
        ("aws AKIAIOSFODNN7EXAMPLE.", "aws [REDACTED]."),
        ("sts ASIAY34FZKBOKMUTVV7A", "sts [REDACTED]"),
        (
            "gh ghp_abcdefghijklmnopqrstuvwxyz0123456789",
            "gh [REDACTED]",
        ),
        (
            "pat github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz",
            "pat [REDACTED]",
        ),
        ("slack xoxb-1234567890-abcdefghij", "slack [REDACTED]"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U end",
            "jwt [REDACTED] end",
        ),
        (
            "pem -----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY----- after",
            "pem [REDACTED] after",
        ),
        (
            "cut -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg",
            "cut [REDACTED]",
        ),
    ];

    #[test]
    fn token_shapes_are_scrubbed_and_every_one_has_a_prefix() {
        for (text, expected) in TOKENS_FOUND {
            assert!(may_hold_token(text), "{text}");
            assert_eq!(scrub_str(text, None), *expected, "{text}");
        }
    }

    #[test]
    fn text_without_tokens_is_kept() {
        for text in [
            "the bearer of bad news",
            "Bearer abc",
            "payable to the bearer instrument",
            "task-abcdefghijklmnopqrstuvwxyz",
            "sk-short",
            "AKIA is not enough",
            "ghp_short",
            "eyJ alone",
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----",
            "",
        ] {
            assert!(matches!(scrub_str(text, None), Cow::Borrowed(_)), "{text}");
        }
    }

    fn seen(values: &[&str]) -> RunRedaction {
        let run = RunRedaction::new(Redaction::default());
        let mut secrets = serde_json::Map::new();
        for (i, value) in values.iter().enumerate() {
            secrets.insert(format!("password_{i}"), Value::from(*value));
        }
        run.json_text_of_value(&Value::Object(secrets));
        run
    }

    #[test]
    fn seen_values_are_scrubbed_raw_and_escaped_and_whole() {
        let run = seen(&["hunter\"22-x", "abcdefgh", "abcdefghijkl", "a"]);
        assert_eq!(
            run.error_text("pw hunter\"22-x or \"hunter\\\"22-x\", abcdefghijklm, a"),
            "pw [REDACTED] or \"[REDACTED]\", [REDACTED]m, a"
        );
        // In JSON, only inside strings and numbers, so the text stays JSON.
        let text = run.json_text_of_value(&serde_json::json!({
            "note": "was hunter\"22-x",
            "abcdefgh": [1, "xabcdefghx"],
            "a": "banana"
        }));
        assert_eq!(
            text,
            r#"{"note":"was [REDACTED]","[REDACTED]":[1,"x[REDACTED]x"],"a":"banana"}"#
        );
    }

    #[test]
    fn json_with_a_token_prefix_but_no_token_is_kept_byte_for_byte() {
        let run = RunRedaction::new(Redaction::default());
        let text = r#"{"region":"Asia","big":340282366920938463463374607431768211455}"#;
        assert_eq!(run.scrub_json(text.to_owned()), text);
    }

    #[test]
    fn long_numbers_under_secret_keys_are_scrubbed_as_numbers() {
        let run = RunRedaction::new(Redaction::default());
        run.json_text_of_value(&serde_json::json!({"pin": 1234, "secret": 4111111111111111u64}));
        assert_eq!(
            run.json_text_of_value(&serde_json::json!({"card": 4111111111111111u64, "n": 1234})),
            r#"{"card":"[REDACTED]","n":1234}"#
        );
        assert_eq!(run.error_text("card 4111111111111111"), "card [REDACTED]");
    }

    #[test]
    fn disabled_and_everything() {
        let off = RunRedaction::new(Redaction::disabled());
        let token = "Bearer sk-live-abcdef1234567890";
        assert_eq!(off.error_text(token), token);
        assert_eq!(
            off.json_text_of_value(&Value::from(token)),
            Value::from(token).to_string()
        );
        let all = RunRedaction::new(Redaction::everything());
        assert_eq!(all.error_text("x"), REDACTED_ERROR);
        assert_eq!(
            all.json_text_of_value(&serde_json::json!({"a": 1})),
            "\"[REDACTED]\""
        );
        assert_eq!(
            all.json_text(String::from("1"), || Ok(Value::from(1))),
            ("\"[REDACTED]\"".to_owned(), None)
        );
    }

    #[test]
    fn at_most_max_remembered_values_are_kept() {
        let values: Vec<String> = (0..Redaction::MAX_REMEMBERED + 10)
            .map(|i| format!("secret-value-{i:05}"))
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let run = seen(&refs);
        assert_eq!(
            crate::context::lock(&run.seen).values.len(),
            Redaction::MAX_REMEMBERED
        );
    }
}
