//! The state-URI resolver: argument, `FLUJO_STATE_URI`, nearest `flujo.toml`, default; and a
//! `flujo.toml` is only ever read, never created or rewritten.

use std::path::Path;

use flujo_trace_sqlite::{
    load_flujo_toml, resolve_state_path_in, Error, FlujoToml, StatePath, StateSource,
};

fn resolve(explicit: Option<&str>, env: Option<&str>, cwd: &Path) -> StatePath {
    resolve_state_path_in(explicit, env, cwd).unwrap()
}

#[test]
fn default_is_flujo_ops_db_in_the_current_directory() {
    let dir = tempfile::tempdir().unwrap();
    let state = resolve(None, None, dir.path());
    assert_eq!(state.path, dir.path().join("flujo_ops.db"));
    assert_eq!(state.source, StateSource::Default);
    assert!(
        !dir.path().join("flujo.toml").exists(),
        "nothing is created"
    );
}

#[test]
fn argument_beats_env_beats_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flujo.toml"), "state_uri = \"file.db\"\n").unwrap();
    let state = resolve(Some("sqlite:///arg.db"), Some("env.db"), dir.path());
    assert_eq!(
        (state.path, state.source),
        (dir.path().join("arg.db"), StateSource::Argument)
    );
    let state = resolve(None, Some("sqlite:////abs/env.db"), dir.path());
    assert_eq!(
        (state.path, state.source),
        ("/abs/env.db".into(), StateSource::Env)
    );
    let state = resolve(None, Some(""), dir.path());
    assert_eq!(
        state.path,
        dir.path().join("file.db"),
        "an empty env value is unset"
    );
    assert_eq!(
        state.source,
        StateSource::File(dir.path().join("flujo.toml"))
    );
}

#[test]
fn nearest_flujo_toml_wins_and_its_paths_are_relative_to_it() {
    let root = tempfile::tempdir().unwrap();
    let project = root.path().join("project");
    let deep = project.join("a/b");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(root.path().join("flujo.toml"), "state_uri = \"outer.db\"\n").unwrap();
    std::fs::write(
        project.join("flujo.toml"),
        "state_uri = \"sqlite:///data/ops.db\"\n",
    )
    .unwrap();
    let state = resolve(None, None, &deep);
    assert_eq!(state.path, project.join("data/ops.db"));
    assert_eq!(state.source, StateSource::File(project.join("flujo.toml")));
    assert_eq!(
        state.source.to_string(),
        format!("state_uri in {}", project.join("flujo.toml").display())
    );
}

#[test]
fn flujo_toml_without_state_uri_falls_through_to_the_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("flujo.toml"),
        "[redaction]\nkeys = [\"api_key\"]\n",
    )
    .unwrap();
    let state = resolve(None, None, dir.path());
    assert_eq!(state.source, StateSource::Default);
}

#[test]
fn unknown_keys_are_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo.toml");
    std::fs::write(
        &path,
        "state_uri = \"x.db\"\npayload_cap = 1024\n[future]\nthing = true\n",
    )
    .unwrap();
    let config: FlujoToml = load_flujo_toml(&path).unwrap();
    assert_eq!(config.state_uri.as_deref(), Some("x.db"));
    let unknown: Vec<String> = config
        .unknown_keys()
        .iter()
        .map(|k| k.to_string())
        .collect();
    assert_eq!(
        unknown,
        [
            "unknown key `future`",
            "unknown key `payload_cap` (did you mean `storage.payload_cap_bytes`?)"
        ]
    );
}

#[test]
fn broken_flujo_toml_is_an_error_naming_the_file_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo.toml");
    for broken in [
        "state_uri = [1, 2]\n",
        "state_uri = \"unterminated\n",
        "= nothing\n",
    ] {
        std::fs::write(&path, broken).unwrap();
        let error = resolve_state_path_in(None, None, dir.path()).unwrap_err();
        let Error::Config { message } = &error else {
            panic!("{error:?}");
        };
        assert!(
            message.starts_with(&format!("{} is not a valid flujo.toml: ", path.display())),
            "{message}"
        );
        assert!(message.contains("line 1"), "{message}");
        assert!(!message.ends_with('.'), "{message}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            broken,
            "never rewritten"
        );
    }
}

#[test]
fn missing_flujo_toml_is_never_created() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flujo.toml");
    let error = load_flujo_toml(&path).unwrap_err();
    assert!(matches!(error, Error::Config { .. }), "{error:?}");
    assert!(!path.exists());
}

#[test]
fn bad_uris_name_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let message = |result: Result<StatePath, Error>| match result {
        Err(Error::Config { message }) => message,
        other => panic!("{other:?}"),
    };
    let from_arg = message(resolve_state_path_in(Some("mysql://x"), None, dir.path()));
    assert!(
        from_arg.starts_with("--state-uri \"mysql://x\" uses the unsupported scheme"),
        "{from_arg}"
    );
    let from_env = message(resolve_state_path_in(None, Some("sqlite:///"), dir.path()));
    assert!(
        from_env.starts_with("FLUJO_STATE_URI=\"sqlite:///\" names no file"),
        "{from_env}"
    );
    std::fs::write(
        dir.path().join("flujo.toml"),
        "state_uri = \"redis://cache\"\n",
    )
    .unwrap();
    let from_file = message(resolve_state_path_in(None, None, dir.path()));
    assert!(
        from_file.contains("in ") && from_file.contains("flujo.toml uses the unsupported scheme"),
        "{from_file}"
    );
}

#[test]
fn off_is_no_database_to_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("flujo.toml"), "state_uri = \"OFF\"\n").unwrap();
    for (explicit, env, source) in [
        (Some("off"), None, "--state-uri"),
        (None, Some(" off "), "FLUJO_STATE_URI"),
        (None, None, "state_uri in "),
    ] {
        match resolve_state_path_in(explicit, env, dir.path()) {
            Err(Error::Config { message }) => assert!(
                message.starts_with(&format!("recording is off ({source}"))
                    && message.contains("no database to read"),
                "{message}"
            ),
            other => panic!("{explicit:?} {env:?}: {other:?}"),
        }
    }
    // a file named off is a path
    let path = resolve(None, Some("./off"), dir.path());
    assert_eq!(path.path, dir.path().join("./off"));
}
