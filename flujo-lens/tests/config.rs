//! Which database the lens reads: `--state-uri`, then `FLUJO_STATE_URI`, then `state_uri` in the
//! nearest `flujo.toml`, then `./flujo_ops.db`.

mod common;

use common::*;

/// A fixture database at `path` holding only run `n`.
fn database_with_run(path: &std::path::Path, n: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let conn = create_v2(path);
    insert_run(
        &conn,
        &Run {
            run_id: run_id(n),
            pipeline_name: format!("pipeline-{n}"),
            pipeline_version: "v".into(),
            status: "completed".into(),
            start_time: time(10, 0, 0, 0),
            ..Run::default()
        },
    );
}

fn listed_run(env: &flujo_lens::Environment, extra: &[&str]) -> String {
    let mut args = vec!["lens", "list", "-o", "jsonl"];
    args.extend_from_slice(extra);
    let outcome = lens_in(env, &args);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    let value: serde_json::Value = serde_json::from_str(outcome.stdout.trim()).unwrap();
    value["pipeline_name"].as_str().unwrap().to_owned()
}

#[test]
fn resolution_order() {
    let root = tempfile::tempdir().unwrap();
    let cwd = root.path().join("project/src");
    std::fs::create_dir_all(&cwd).unwrap();
    database_with_run(&cwd.join("flujo_ops.db"), 1);
    database_with_run(&root.path().join("project/data/ops.db"), 2);
    database_with_run(&root.path().join("env.db"), 3);
    database_with_run(&root.path().join("arg.db"), 4);

    let mut env = environment(&cwd);
    assert_eq!(
        listed_run(&env, &[]),
        "pipeline-1",
        "default: ./flujo_ops.db"
    );

    // flujo.toml in a parent directory, its relative path taken from the file's directory
    std::fs::write(
        root.path().join("project/flujo.toml"),
        "# other tools' keys are fine\n[tool]\nx = 1\n",
    )
    .unwrap();
    assert_eq!(
        listed_run(&env, &[]),
        "pipeline-1",
        "a flujo.toml without state_uri"
    );
    std::fs::write(
        root.path().join("project/flujo.toml"),
        "state_uri = \"sqlite:///data/ops.db\"\nredact = [\"api_key\"]\n",
    )
    .unwrap();
    assert_eq!(listed_run(&env, &[]), "pipeline-2");

    env.state_uri = Some(format!(
        "sqlite:///{}",
        root.path().join("env.db").display()
    ));
    assert_eq!(
        listed_run(&env, &[]),
        "pipeline-3",
        "FLUJO_STATE_URI beats flujo.toml"
    );

    let arg = root.path().join("arg.db").display().to_string();
    assert_eq!(listed_run(&env, &["--state-uri", &arg]), "pipeline-4");
    let lens_level = lens_in(&env, &["lens", "--state-uri", &arg, "list", "-o", "jsonl"]);
    assert!(
        lens_level.stdout.contains("pipeline-4"),
        "--state-uri before the command too"
    );

    env.state_uri = Some(String::new());
    assert_eq!(
        listed_run(&env, &[]),
        "pipeline-2",
        "an empty FLUJO_STATE_URI is unset"
    );
}

#[test]
fn relative_state_uri_is_relative_to_the_current_directory() {
    let root = tempfile::tempdir().unwrap();
    database_with_run(&root.path().join("sub/ops.db"), 5);
    let mut env = environment(root.path());
    env.state_uri = Some("sqlite:///sub/ops.db".into());
    assert_eq!(listed_run(&env, &[]), "pipeline-5");
    env.state_uri = Some("sub/ops.db".into());
    assert_eq!(listed_run(&env, &[]), "pipeline-5");
}
