//! A test entry that only does something in a child process (when its parent test set an
//! environment variable) must not count as a passing test: it is `#[ignore]`d, and its parent
//! runs it with `--ignored --exact`. A test that returns early depending on the environment is a
//! test that skips itself silently. This reads every integration test of the workspace.

use std::path::{Path, PathBuf};

/// The `.rs` files under the workspace's `tests/` directories (the root crate's and each
/// member's), support modules included.
fn test_sources() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join("tests")];
    for entry in std::fs::read_dir(root).unwrap() {
        let path = entry.unwrap().path();
        if path.join("Cargo.toml").is_file() && path.join("tests").is_dir() {
            dirs.push(path.join("tests"));
        }
    }
    let mut files = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The test functions of `source`: (name, attribute lines, the first lines of the body, joined).
fn tests_in(source: &str) -> Vec<(String, Vec<String>, String)> {
    let lines: Vec<&str> = source.lines().collect();
    let mut tests = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let line = line.trim();
        let Some(rest) = line
            .strip_prefix("fn ")
            .or_else(|| line.strip_prefix("async fn "))
        else {
            continue;
        };
        let attributes: Vec<String> = lines[..i]
            .iter()
            .rev()
            .map(|l| l.trim())
            .take_while(|l| l.starts_with("#[") || l.starts_with("///"))
            .filter(|l| l.starts_with("#["))
            .map(str::to_owned)
            .collect();
        if !attributes
            .iter()
            .any(|a| a == "#[test]" || a.starts_with("#[tokio::test"))
        {
            continue;
        }
        let name = rest.split('(').next().unwrap().to_owned();
        let body = lines[i + 1..(i + 5).min(lines.len())]
            .iter()
            .map(|l| l.trim())
            .collect::<Vec<_>>()
            .join(" ");
        tests.push((name, attributes, body));
    }
    tests
}

/// Whether a body starts by skipping itself depending on an environment variable: `let ... =
/// env::var...(..) else { return; }` (unless set) or `if env::var...(..).is_some() { return; }`
/// (when set).
fn skips_by_environment(body: &str) -> Option<&'static str> {
    let first = body.split(';').next().unwrap_or("");
    if !first.contains("env::var") {
        return None;
    }
    if first.contains("else {") && body.contains("else { return; }") {
        Some("returns early unless an environment variable is set")
    } else if first.contains(".is_some() {") && body.contains(".is_some() { return; }") {
        Some("returns early when an environment variable is set")
    } else {
        None
    }
}

#[test]
fn child_process_entries_are_ignored_and_run_by_their_parent() {
    let files = test_sources();
    assert!(
        files.iter().any(|f| f.ends_with("tests/crash.rs")),
        "found no test sources: {files:?}"
    );
    let mut children = 0;
    let mut faults = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).unwrap();
        for (name, attributes, body) in tests_in(&source) {
            let ignored = attributes.iter().any(|a| a.starts_with("#[ignore"));
            if body.contains("std::env::var") && body.contains(".expect(") && ignored {
                children += 1;
                let invocation = format!("[\"{name}\",\"--exact\",\"--ignored\"");
                let compact: String = source.split_whitespace().collect();
                if !compact.contains(&invocation) {
                    faults.push(format!(
                        "{}: {name} is ignored but not run with {invocation}",
                        file.display()
                    ));
                }
                continue;
            }
            if let Some(how) = skips_by_environment(&body) {
                faults.push(format!(
                    "{}: {name} {how}: a test that skips itself; a child entry is \
                     #[ignore = \"child process of ...\"], run with --exact --ignored, and its \
                     parent needs no early return",
                    file.display()
                ));
            }
        }
    }
    assert!(faults.is_empty(), "{}", faults.join("\n"));
    assert!(children >= 5, "found {children} child entries");
}

#[test]
fn the_check_tells_skipping_entries_apart() {
    let skipping = "/// x\n#[test]\nfn child() {\n    let Some(dir) = std::env::var_os(\"X\") else {\n        return;\n    };\n    work(dir);\n}\n";
    let tests = tests_in(skipping);
    assert_eq!(tests.len(), 1);
    assert!(
        skips_by_environment(&tests[0].2).is_some(),
        "{:?}",
        tests[0]
    );
    let parent = "#[tokio::test]\nasync fn parent() {\n    if std::env::var_os(\"X\").is_some() {\n        return;\n    }\n}\n";
    let tests = tests_in(parent);
    assert!(
        skips_by_environment(&tests[0].2).is_some(),
        "{:?}",
        tests[0]
    );
    let reexec = "#[test]\nfn both() {\n    if let Ok(path) = std::env::var(CHILD) {\n        child(path.as_ref());\n        return;\n    }\n}\n";
    let tests = tests_in(reexec);
    assert_eq!(
        skips_by_environment(&tests[0].2),
        None,
        "does the child's work"
    );
}
