//! The state-URI resolver of `flujo-trace-core`, with this crate's [`Error`]: what the lens and
//! this crate's users call. The resolution itself lives in the core, once.

use std::path::Path;

pub use flujo_trace_core::{
    find_flujo_toml, FlujoToml, RedactionToml, StatePath, StateSetting, StateSource, StorageToml,
    UnknownKey, CONFIG_FILE_NAME, DEFAULT_STATE_URI, STATE_URI_ENV, STATE_URI_OFF,
};

use crate::Error;

/// [`flujo_trace_core::resolve_state_path`]: the state database from `explicit`,
/// `FLUJO_STATE_URI`, the nearest `flujo.toml` and the default; `off` is an [`Error::Config`].
pub fn resolve_state_path(explicit: Option<&str>) -> Result<StatePath, Error> {
    Ok(flujo_trace_core::resolve_state_path(explicit)?)
}

/// [`flujo_trace_core::resolve_state_path_in`]: [`resolve_state_path`] with the environment
/// value and the current directory given explicitly. An empty `env` value counts as unset.
pub fn resolve_state_path_in(
    explicit: Option<&str>,
    env: Option<&str>,
    cwd: &Path,
) -> Result<StatePath, Error> {
    Ok(flujo_trace_core::resolve_state_path_in(explicit, env, cwd)?)
}

/// [`flujo_trace_core::load_flujo_toml`]: reads a `flujo.toml`, never creating or rewriting it.
pub fn load_flujo_toml(path: &Path) -> Result<FlujoToml, Error> {
    Ok(flujo_trace_core::load_flujo_toml(path)?)
}
