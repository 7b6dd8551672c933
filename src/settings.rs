//! The runner-side settings of the nearest `flujo.toml`: redaction keys and the payload cap.

use std::sync::OnceLock;

use flujo_runner::Redaction;
use flujo_trace_sqlite::FlujoToml;

/// What a `flujo.toml` sets for runners, read once per process.
#[derive(Debug, Default)]
pub(crate) struct Settings {
    pub(crate) redaction: Redaction,
    pub(crate) payload_cap: Option<usize>,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

/// The settings of the `flujo.toml` nearest the current directory (defaults when there is none;
/// a file that does not parse is reported once on stderr, and the defaults are used).
pub(crate) fn settings() -> &'static Settings {
    SETTINGS.get_or_init(|| {
        let Some(file) = std::env::current_dir()
            .ok()
            .and_then(|cwd| flujo_trace_sqlite::find_flujo_toml(&cwd))
        else {
            return Settings::default();
        };
        match flujo_trace_sqlite::load_flujo_toml(&file) {
            Ok(toml) => from_toml(&toml),
            Err(error) => {
                eprintln!("flujo: warning: {error}; using the default redaction and payload cap");
                Settings::default()
            }
        }
    })
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
    }
}
