//! The settings of the nearest `flujo.toml`, read once per process: redaction keys, the payload
//! cap, and the file as loaded, for the state URI (`recording`).
//!
//! Redaction fails closed: when the file does not parse, or its `[redaction]` settings hold a
//! key flujo does not know, what the user meant to hide is unknown, so every run records no
//! value at all ([`Redaction::everything`]) until the file is fixed. Other unknown keys cost a
//! warning with the key they probably meant, so a file written for a newer flujo still works.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use flujo_runner::Redaction;
use flujo_trace_core::{ConfigError, FlujoToml, StateSetting, UnknownKey};

/// What a `flujo.toml` sets for runners, read once per process.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    pub(crate) redaction: Redaction,
    pub(crate) payload_cap: Option<usize>,
    /// The nearest `flujo.toml` and what loading it gave; `None` when there is none.
    nearest_file: Option<(PathBuf, Result<FlujoToml, ConfigError>)>,
}

impl Settings {
    /// Where this process records its runs (`FLUJO_STATE_URI`, then `state_uri` of the file
    /// read here, then the default), or that it records nothing.
    pub(crate) fn state(&self) -> Result<StateSetting, ConfigError> {
        flujo_trace_core::resolve_state_setting(
            self.nearest_file
                .as_ref()
                .map(|(file, loaded)| (file.as_path(), loaded.as_ref())),
        )
    }

    /// The nearest `flujo.toml` as loaded, when there is one and it parses.
    #[cfg_attr(not(feature = "otlp"), allow(dead_code))]
    pub(crate) fn toml(&self) -> Option<(&Path, &FlujoToml)> {
        let (file, loaded) = self.nearest_file.as_ref()?;
        Some((file.as_path(), loaded.as_ref().ok()?))
    }
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// What the fail-closed warnings add: what is recorded meanwhile.
const RECORDING_NO_VALUES: &str = "until then every run records no value: each input, output, \
     context and error is stored as \"[REDACTED]\" (steps, statuses and timings are recorded as \
     usual)";

/// The settings of the `flujo.toml` nearest the current directory (defaults when there is none).
/// Problems are reported once on stderr: a file that does not parse, or an unknown key under
/// `[redaction]`, makes every run record no value (see the module docs).
pub(crate) fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| {
        let Some(file) = std::env::current_dir()
            .ok()
            .and_then(|cwd| flujo_trace_core::find_flujo_toml(&cwd))
        else {
            return Settings::default();
        };
        let (settings, warnings) = settings_of(&file);
        for warning in warnings {
            eprintln!("flujo: warning: {warning}");
        }
        settings
    })
}

/// The settings of `file`, and the warnings to print about it.
fn settings_of(file: &Path) -> (Settings, Vec<String>) {
    let loaded = flujo_trace_core::load_flujo_toml(file);
    let (mut settings, warnings) = match &loaded {
        Ok(toml) => settings_of_toml(file, toml),
        Err(error) => {
            let settings = Settings {
                redaction: Redaction::everything(),
                ..Settings::default()
            };
            (settings, vec![format!("{error}; {RECORDING_NO_VALUES}")])
        }
    };
    settings.nearest_file = Some((file.to_owned(), loaded));
    (settings, warnings)
}

/// The settings of `toml`, loaded from `file`, and the warnings to print about it.
fn settings_of_toml(file: &Path, toml: &FlujoToml) -> (Settings, Vec<String>) {
    let (about_redaction, others): (Vec<&UnknownKey>, Vec<&UnknownKey>) = toml
        .unknown_keys()
        .iter()
        .partition(|key| concerns_redaction(key));
    let mut warnings = Vec::new();
    if !others.is_empty() {
        warnings.push(format!(
            "{}: {}; ignored: fix the key, or remove it if it is meant for a newer flujo",
            file.display(),
            list(&others)
        ));
    }
    let mut settings = from_toml(toml);
    if !about_redaction.is_empty() {
        settings.redaction = Redaction::everything();
        warnings.push(format!(
            "{}: {}: the redaction settings cannot be read, fix the key (or remove it); {RECORDING_NO_VALUES}",
            file.display(),
            list(&about_redaction)
        ));
    }
    (settings, warnings)
}

/// Whether an unknown key is (probably) a redaction setting: a key of `[redaction]`, or one
/// that probably meant `redaction` or one of its keys (`[redactions]`, a top-level
/// `extra_keys`).
fn concerns_redaction(key: &UnknownKey) -> bool {
    let is_redaction = |path: &str| path == "redaction" || path.starts_with("redaction.");
    is_redaction(&key.key) || key.did_you_mean.is_some_and(is_redaction)
}

fn list(keys: &[&UnknownKey]) -> String {
    keys.iter()
        .map(|key| key.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn from_toml(toml: &FlujoToml) -> Settings {
    let redaction = if toml.redaction.enabled == Some(false) {
        Redaction::disabled()
    } else {
        let base = match &toml.redaction.keys {
            Some(keys) => Redaction::default().with_keys(keys),
            None => Redaction::default(),
        };
        base.with_extra_keys(&toml.redaction.extra_keys)
    };
    Settings {
        redaction,
        payload_cap: toml
            .storage
            .payload_cap_bytes
            .map(|bytes| usize::try_from(bytes).unwrap_or(usize::MAX)),
        nearest_file: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings_of_text(text: &str) -> (Settings, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("flujo.toml");
        std::fs::write(&file, text).unwrap();
        let result = settings_of(&file);
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            text,
            "never rewritten"
        );
        result
    }

    #[test]
    fn a_file_that_does_not_parse_redacts_everything() {
        let (settings, warnings) = settings_of_text(
            "[redaction]\nextra_keys = [\"ssn\"\n[storage]\npayload_cap_bytes = 5\n",
        );
        assert_eq!(settings.redaction, Redaction::everything());
        assert_eq!(settings.payload_cap, None);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("is not a valid flujo.toml")
                && warnings[0].contains("line 3")
                && warnings[0].contains("every run records no value"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn unknown_redaction_keys_redact_everything_and_others_only_warn() {
        for text in [
            "[redaction]\nextra_key = [\"ssn\"]\n",
            "extra_keys = [\"ssn\"]\n",
            "[redactions]\nextra_keys = [\"ssn\"]\n",
        ] {
            let (settings, warnings) = settings_of_text(text);
            assert_eq!(settings.redaction, Redaction::everything(), "{text}");
            assert_eq!(warnings.len(), 1, "{text}: {warnings:?}");
            assert!(
                warnings[0].contains("(did you mean `redaction")
                    && warnings[0].contains("the redaction settings cannot be read"),
                "{}",
                warnings[0]
            );
        }
        let (settings, warnings) = settings_of_text(
            "stat_uri = \"x.db\"\n[redaction]\nextra_keys = [\"ssn\"]\n[storage]\npayload_cap_bytes = 5\n",
        );
        assert_eq!(
            settings.redaction,
            Redaction::default().with_extra_keys(["ssn"])
        );
        assert_eq!(settings.payload_cap, Some(5));
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].ends_with(
                "flujo.toml: unknown key `stat_uri` (did you mean `state_uri`?); ignored: fix \
                 the key, or remove it if it is meant for a newer flujo"
            ),
            "{}",
            warnings[0]
        );
    }
}
