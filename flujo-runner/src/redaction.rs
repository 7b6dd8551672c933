//! `Redaction`: which JSON keys hold secrets, and how their values are kept out of the spans.

use serde_json::Value;
use std::fmt;
use std::sync::Arc;

/// What a secret value is recorded as.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Words that, ending a key after a secret word, make it a measure rather than a secret:
/// `token_count`, `promptTokenCount`, `password_length`.
const MEASURE_WORDS: &[&str] = &["count", "length", "limit"];

/// Which values are replaced by `"[REDACTED]"` in the text the spans record (step `input`,
/// `output` and `error`, run `input`, `output`, `error` and `final_context`), so that no layer
/// (SQLite, OpenTelemetry, logs) ever sees them. The values a run returns ([`PipelineResult`],
/// [`StepResult`]) are the caller's own data and are never redacted.
///
/// A value is redacted when its key, at any depth of the JSON, names a secret. Keys and the
/// configured names are compared as words: split at any character that is not an ASCII letter
/// or digit (`_`, `-`, `.`, space, ...) and at camelCase boundaries, compared ignoring ASCII
/// case. A key names a secret when the words of a configured name appear in it, in a row:
///
/// - `api_key` matches `api_key`, `API_KEY`, `X-Api-Key`, `apiKey`, `openai_api_key`,
///   `OPENAI_API_KEY`; `token` matches `token`, `access_token`, `githubToken`, `token_secret`.
/// - Words are whole: `token` does not match `tokens`, `total_tokens` or `max_tokens` (usage
///   counts), and `auth` does not match `author` or `oauth`. Run-together words are one word:
///   `apikey` is matched by the name `apikey`, not by `api_key`.
/// - A key ending in `count`, `length` or `limit` after the matched words is a measure, not a
///   secret: `token_count`, `promptTokenCount`, `password_length` are kept.
/// - A `null` is kept (it reveals nothing, and says that no secret was given); any other value,
///   objects and arrays included, becomes the string `"[REDACTED]"`.
///
/// Beyond keys, while redaction is enabled, two things are scrubbed (replaced by `[REDACTED]`)
/// from every text a run records after they are seen, JSON and errors alike (in JSON, inside
/// strings, keys included, and a number holding one becomes `"[REDACTED]"`, so it stays JSON):
///
/// - The values redacted under a secret key earlier in the same run (the run's input is
///   recorded first): strings of at least [`MIN_SCRUBBED_CHARS`](Redaction::MIN_SCRUBBED_CHARS)
///   characters and numbers written with at least as many, the leaves of a redacted object or
///   array included, as they are and as JSON escapes them. A shorter value (`"password": "a"`)
///   is only redacted under its key, so that it does not blank every `a`. A value recorded
///   before its key was first seen (in an earlier step's output, say) cannot be scrubbed; a run
///   remembers at most [`MAX_REMEMBERED`](Redaction::MAX_REMEMBERED) values (later ones are
///   still redacted under their keys).
/// - Well-known token shapes, wherever they are: `Bearer` tokens (12 characters or more; the
///   word `Bearer` is kept), `sk-...` keys (16 characters or more after `sk-`), `sk_live_...`,
///   `rk_test_...` keys, AWS access key ids (`AKIA...`, `ASIA...`), GitHub tokens (`ghp_...`,
///   `github_pat_...`), Slack tokens (`xoxb-...`), JWTs (`eyJ...`, three dot-separated parts)
///   and PEM private key blocks (`-----BEGIN ... PRIVATE KEY-----`, to their end).
///
/// A secret in any other shape, under a key that names none, is recorded as it is. Checking
/// costs one scan of the JSON text for its keys, one for token prefixes and, once secrets were
/// seen, one for them; the JSON is parsed and rewritten only when a scan finds something, and
/// nothing is done at all for a span no subscriber records.
///
/// [`Redaction::everything`] records no value at all: every JSON field is `"[REDACTED]"` and
/// every `error` a fixed note; the `flujo` facade uses it when `flujo.toml`'s redaction settings
/// cannot be read.
///
/// ```
/// use flujo_runner::Redaction;
///
/// let standard = Redaction::default();
/// assert!(standard.is_secret_key("OPENAI_API_KEY"));
/// assert!(!standard.is_secret_key("max_tokens"));
///
/// let custom = Redaction::default().with_extra_keys(["ssn"]);
/// assert!(custom.is_secret_key("customer_ssn"));
///
/// let from_config = Redaction::disabled().with_keys(vec!["iban".to_owned()]);
/// assert!(from_config.is_secret_key("IBAN") && !from_config.is_secret_key("password"));
/// assert!(!Redaction::disabled().is_enabled());
/// ```
///
/// [`PipelineResult`]: crate::PipelineResult
/// [`StepResult`]: crate::StepResult
#[derive(Clone, PartialEq, Eq)]
pub struct Redaction {
    names: Arc<[SecretName]>,
    /// Every value is redacted, whatever its key.
    everything: bool,
}

/// One configured name, as given and as its lowercase words.
#[derive(PartialEq, Eq)]
struct SecretName {
    name: String,
    words: Vec<String>,
}

impl Redaction {
    /// The names redacted by default.
    pub const DEFAULT_KEYS: &'static [&'static str] = &[
        "api_key",
        "apikey",
        "password",
        "passwd",
        "passphrase",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "authorization",
        "auth",
        "cookie",
        "private_key",
        "credential",
        "credentials",
    ];

    /// The shortest value, in characters, that is remembered under a secret key and scrubbed
    /// from the rest of the run's texts.
    pub const MIN_SCRUBBED_CHARS: usize = 8;

    /// How many distinct values one run remembers for scrubbing; later ones are still redacted
    /// under their keys.
    pub const MAX_REMEMBERED: usize = 1024;

    /// Redacts nothing.
    pub fn disabled() -> Self {
        Redaction {
            names: Arc::from(Vec::new()),
            everything: false,
        }
    }

    /// Redacts every value: each JSON field of the spans is recorded as `"[REDACTED]"` and each
    /// `error` as a fixed note, so a run records only its structure (names, statuses, times,
    /// attempts, usage). For when what must be hidden is not known, e.g. a `flujo.toml` whose
    /// `[redaction]` settings cannot be read. [`with_keys`](Redaction::with_keys) leaves this
    /// mode.
    pub fn everything() -> Self {
        Redaction {
            everything: true,
            ..Redaction::disabled()
        }
    }

    /// This redaction with `keys` as its names, replacing the current ones (an empty list
    /// disables it; [`everything`](Redaction::everything) ends). A name with no letter or digit
    /// matches nothing and is ignored.
    pub fn with_keys<I>(self, keys: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        Redaction::disabled().with_extra_keys(keys)
    }

    /// This redaction with `keys` added to its names.
    pub fn with_extra_keys<I>(self, keys: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut names: Vec<SecretName> = self
            .names
            .iter()
            .map(|name| SecretName {
                name: name.name.clone(),
                words: name.words.clone(),
            })
            .collect();
        for key in keys {
            let key = key.as_ref();
            let words: Vec<String> = words(key).map(str::to_ascii_lowercase).collect();
            if words.is_empty() || names.iter().any(|name| name.words == words) {
                continue;
            }
            names.push(SecretName {
                name: key.to_owned(),
                words,
            });
        }
        Redaction {
            names: names.into(),
            everything: self.everything,
        }
    }

    /// The names, as given.
    pub fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.names.iter().map(|name| name.name.as_str())
    }

    /// Whether anything is redacted: a name is configured, or [`everything`](Redaction::everything).
    pub fn is_enabled(&self) -> bool {
        self.everything || !self.names.is_empty()
    }

    /// Whether a value under `key` is redacted.
    pub fn is_secret_key(&self, key: &str) -> bool {
        self.everything || self.is_secret(key, &mut Vec::new())
    }

    /// Whether every value is redacted ([`Redaction::everything`]).
    pub(crate) fn redacts_everything(&self) -> bool {
        self.everything
    }

    /// `is_secret_key`, with a buffer for the key's words.
    fn is_secret<'k>(&self, key: &'k str, key_words: &mut Vec<&'k str>) -> bool {
        if self.names.is_empty() {
            return false;
        }
        key_words.clear();
        key_words.extend(words(key));
        let n = key_words.len();
        let ends_in_measure = key_words
            .last()
            .is_some_and(|last| MEASURE_WORDS.iter().any(|m| last.eq_ignore_ascii_case(m)));
        self.names.iter().any(|name| {
            let m = name.words.len();
            (0..=n.saturating_sub(m)).any(|start| {
                let end = start + m;
                end <= n
                    && key_words[start..end]
                        .iter()
                        .zip(&name.words)
                        .all(|(word, secret)| word.eq_ignore_ascii_case(secret))
                    && !(end < n && ends_in_measure)
            })
        })
    }

    /// Whether the JSON text `json` (as `serde_json::to_string` writes it) has a key that names
    /// a secret. Scans the text once, allocating only for keys written with escapes.
    pub(crate) fn may_hold_secrets(&self, json: &str) -> bool {
        if self.names.is_empty() {
            return false;
        }
        let bytes = json.as_bytes();
        let mut key_words = Vec::new();
        let mut at = 0;
        while let Some(offset) = bytes[at..].iter().position(|&b| b == b'"') {
            let start = at + offset + 1;
            let mut end = start;
            let mut escaped = false;
            loop {
                match bytes.get(end) {
                    // Not text serde_json wrote: treat it as holding a secret.
                    None => return true,
                    Some(b'\\') => {
                        escaped = true;
                        end += 2;
                    }
                    Some(b'"') => break,
                    Some(_) => end += 1,
                }
            }
            at = end + 1;
            if bytes.get(at) != Some(&b':') {
                continue;
            }
            let is_secret = if escaped {
                match serde_json::from_str::<String>(&json[start - 1..=end]) {
                    Ok(key) => self.is_secret(&key, &mut Vec::new()),
                    Err(_) => true,
                }
            } else {
                self.is_secret(&json[start..end], &mut key_words)
            };
            if is_secret {
                return true;
            }
        }
        false
    }

    /// Replaces, at any depth, every non-null value under a secret key with `"[REDACTED]"`, and
    /// pushes onto `replaced` the texts it held that are long enough to be scrubbed elsewhere
    /// (strings and numbers, at any depth; not the keys of a redacted object).
    pub(crate) fn redact(&self, value: &mut Value, replaced: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map.iter_mut() {
                    if !child.is_null() && self.is_secret_key(key) {
                        let child = std::mem::replace(child, Value::String(REDACTED.to_owned()));
                        scrubbable_texts(child, replaced);
                    } else {
                        self.redact(child, replaced);
                    }
                }
            }
            Value::Array(items) => items
                .iter_mut()
                .for_each(|item| self.redact(item, replaced)),
            _ => {}
        }
    }
}

/// The texts of a redacted value, at any depth, that are long enough to be scrubbed.
fn scrubbable_texts(value: Value, texts: &mut Vec<String>) {
    let mut push = |text: String| {
        if text.chars().count() >= Redaction::MIN_SCRUBBED_CHARS {
            texts.push(text);
        }
    };
    match value {
        Value::String(text) => push(text),
        Value::Number(number) => push(number.to_string()),
        // Keys are names (`username`), not secrets.
        Value::Object(map) => map
            .into_iter()
            .for_each(|(_, child)| scrubbable_texts(child, texts)),
        Value::Array(items) => items
            .into_iter()
            .for_each(|item| scrubbable_texts(item, texts)),
        Value::Null | Value::Bool(_) => {}
    }
}

impl Default for Redaction {
    /// Redacts [`Redaction::DEFAULT_KEYS`].
    fn default() -> Self {
        Redaction::disabled().with_keys(Redaction::DEFAULT_KEYS)
    }
}

impl fmt::Debug for Redaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("Redaction");
        if self.everything {
            debug.field("everything", &true);
        }
        debug
            .field("keys", &self.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The words of a key: split at every ASCII character that is not a letter or a digit, before
/// an uppercase letter that follows a lowercase letter or a digit (`apiKey`), and before the
/// last uppercase letter of a run followed by a lowercase one (`APIKey`). Other characters
/// belong to words.
fn words(key: &str) -> impl Iterator<Item = &str> {
    let bytes = key.as_bytes();
    let mut at = 0;
    std::iter::from_fn(move || {
        while at < bytes.len() && is_separator(bytes[at]) {
            at += 1;
        }
        if at == bytes.len() {
            return None;
        }
        let start = at;
        at += 1;
        while at < bytes.len() && !is_separator(bytes[at]) {
            let (previous, current) = (bytes[at - 1], bytes[at]);
            let next = bytes.get(at + 1).copied();
            let camel = current.is_ascii_uppercase()
                && (previous.is_ascii_lowercase()
                    || previous.is_ascii_digit()
                    || (previous.is_ascii_uppercase()
                        && next.is_some_and(|b| b.is_ascii_lowercase())));
            if camel {
                break;
            }
            at += 1;
        }
        Some(&key[start..at])
    })
}

fn is_separator(byte: u8) -> bool {
    byte.is_ascii() && !byte.is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_words(key: &str, expected: &[&str]) {
        assert_eq!(words(key).collect::<Vec<_>>(), expected, "{key}");
    }

    #[test]
    fn keys_split_into_words() {
        check_words("api_key", &["api", "key"]);
        check_words("X-Api-Key", &["X", "Api", "Key"]);
        check_words("apiKey", &["api", "Key"]);
        check_words("APIKey", &["API", "Key"]);
        check_words("OpenAIApiKey", &["Open", "AI", "Api", "Key"]);
        check_words("oauth2Token", &["oauth2", "Token"]);
        check_words("OPENAI_API_KEY", &["OPENAI", "API", "KEY"]);
        check_words("__a..b  ", &["a", "b"]);
        check_words("clé_secrète", &["clé", "secrète"]);
        check_words("", &[]);
        check_words("-_-", &[]);
    }

    fn check_secret(key: &str, expected: bool) {
        assert_eq!(Redaction::default().is_secret_key(key), expected, "{key}");
    }

    #[test]
    fn the_default_names_match_secrets_and_not_usage() {
        for key in [
            "api_key",
            "API_KEY",
            "apiKey",
            "ApiKey",
            "apikey",
            "X-Api-Key",
            "x-api-key",
            "openai_api_key",
            "OPENAI_API_KEY",
            "password",
            "Password",
            "db_password",
            "password_confirmation",
            "passwd",
            "secret",
            "client_secret",
            "clientSecret",
            "aws_secret_access_key",
            "token",
            "access_token",
            "accessToken",
            "refresh_token",
            "id_token",
            "github_token",
            "token_secret",
            "Authorization",
            "proxy-authorization",
            "auth",
            "auth_header",
            "Cookie",
            "Set-Cookie",
            "private_key",
            "privateKey",
            "credentials",
        ] {
            check_secret(key, true);
        }
        for key in [
            "tokens",
            "total_tokens",
            "max_tokens",
            "prompt_tokens",
            "completion_tokens",
            "input_tokens",
            "outputTokens",
            "token_count",
            "promptTokenCount",
            "password_length",
            "author",
            "authors",
            "oauth",
            "keyboard",
            "key",
            "secretary",
            "passwords_match_policy_x",
            "tokenizer",
            "",
        ] {
            check_secret(key, false);
        }
    }

    #[test]
    fn keys_replace_or_extend_the_names() {
        let custom = Redaction::default().with_keys(["SSN", "bank account", "", "--"]);
        assert_eq!(custom.keys().collect::<Vec<_>>(), ["SSN", "bank account"]);
        assert!(custom.is_secret_key("customer_ssn"));
        assert!(custom.is_secret_key("bankAccount"));
        assert!(!custom.is_secret_key("password"));
        let extended =
            Redaction::default().with_extra_keys(vec!["ssn".to_owned(), "token".to_owned()]);
        assert_eq!(extended.keys().count(), Redaction::DEFAULT_KEYS.len() + 1);
        assert!(extended.is_secret_key("ssn") && extended.is_secret_key("password"));
        assert!(!Redaction::disabled().is_secret_key("password"));
        assert!(Redaction::default().with_keys(Vec::<String>::new()) == Redaction::disabled());
    }

    fn check_scan(json: &str, expected: bool) {
        assert_eq!(
            Redaction::default().may_hold_secrets(json),
            expected,
            "{json}"
        );
    }

    #[test]
    fn the_scan_finds_secret_keys_only_where_keys_are() {
        check_scan(r#"{"api_key":"x"}"#, true);
        check_scan(r#"[1,{"a":{"Password":null}}]"#, true);
        check_scan(r#"{"a\u0020token":1}"#, true);
        check_scan(r#"{"to\"ken":1}"#, false);
        check_scan(r#"{"max_tokens":1,"note":"token: password"}"#, false);
        check_scan(r#"["password","token"]"#, false);
        check_scan(r#""api_key:""#, false);
        check_scan(r#"{"text":"\"password\":"}"#, false);
        check_scan(r#"{"unterminated"#, true);
        check_scan("", false);
        assert!(!Redaction::disabled().may_hold_secrets(r#"{"password":"x"}"#));
    }

    #[test]
    fn values_under_secret_keys_are_replaced_at_any_depth() {
        let mut value = serde_json::json!({
            "user": "ada",
            "password": "hunter2",
            "config": {"openai_api_key": "sk-1", "max_tokens": 512, "auth": {"user": "a", "pass": "b"}},
            "headers": [{"Authorization": "Bearer x"}, {"Accept": "json"}],
            "refresh_token": null,
            "tokens": [1, 2]
        });
        let mut replaced = Vec::new();
        Redaction::default().redact(&mut value, &mut replaced);
        assert_eq!(
            value,
            serde_json::json!({
                "user": "ada",
                "password": "[REDACTED]",
                "config": {"openai_api_key": "[REDACTED]", "max_tokens": 512, "auth": "[REDACTED]"},
                "headers": [{"Authorization": "[REDACTED]"}, {"Accept": "json"}],
                "refresh_token": null,
                "tokens": [1, 2]
            })
        );
        // What the redacted values held, from 8 characters up: of "hunter2", "sk-1",
        // "Bearer x", "a" and "b", only "Bearer x".
        assert_eq!(replaced, ["Bearer x"]);
        let mut value = serde_json::json!({"secret": {"long_key_name": [12345678, 1234567, true, "long enough"]}});
        let mut replaced = Vec::new();
        Redaction::default().redact(&mut value, &mut replaced);
        assert_eq!(replaced, ["12345678", "long enough"]);
    }

    #[test]
    fn everything_redacts_every_key_until_keys_replace_it() {
        let everything = Redaction::everything();
        assert!(everything.is_enabled() && everything.redacts_everything());
        assert!(everything.is_secret_key("user") && everything.is_secret_key(""));
        let extended = Redaction::everything().with_extra_keys(["ssn"]);
        assert!(extended.redacts_everything() && extended.is_secret_key("user"));
        let replaced = Redaction::everything().with_keys(["ssn"]);
        assert!(!replaced.redacts_everything() && !replaced.is_secret_key("user"));
        assert!(!Redaction::default().redacts_everything());
        assert_eq!(
            format!("{everything:?}"),
            "Redaction { everything: true, keys: [] }"
        );
    }
}
