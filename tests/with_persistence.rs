//! `Flujo::with_persistence` changes whether runs are recorded and nothing else: every other
//! setting of the runner survives it, whatever order the settings are made in.

use flujo::{step, Flujo, Persistence, Pipeline, Redaction, StepContext};

fn flujo() -> Flujo<u32, u32> {
    let echo = step("echo", |n: u32, _cx: StepContext<()>| async move { Ok(n) });
    Flujo::new("settings", Pipeline::new(echo))
}

#[test]
fn persistence_changes_only_the_observer() {
    let configured = flujo()
        .with_pipeline_version("7")
        .with_redaction(Redaction::default().with_extra_keys(["ssn"]));
    let before = format!("{configured:?}");
    assert!(before.contains("observer: true"), "{before}");
    assert!(before.contains("pipeline_version: \"7\""), "{before}");
    assert!(before.contains("ssn"), "{before}");

    let disabled = configured.clone().with_persistence(Persistence::Disabled);
    assert_eq!(
        format!("{disabled:?}"),
        before.replace("observer: true", "observer: false"),
        "only the observer changed"
    );
    let enabled_again = disabled.with_persistence(Persistence::Default);
    assert_eq!(format!("{enabled_again:?}"), before);
    assert_eq!(enabled_again.version(), "7");
    assert_eq!(enabled_again.name(), "settings");

    // settings made after persistence stick too
    let later = flujo()
        .with_persistence(Persistence::Disabled)
        .with_pipeline_version("8");
    assert_eq!(later.version(), "8");
    assert!(format!("{later:?}").contains("observer: false"));
}

#[test]
#[allow(deprecated)]
fn the_old_setter_names_still_work() {
    let old = flujo()
        .pipeline_version("7")
        .redaction(Redaction::disabled())
        .persistence(Persistence::Disabled);
    let new = flujo()
        .with_pipeline_version("7")
        .with_redaction(Redaction::disabled())
        .with_persistence(Persistence::Disabled);
    assert_eq!(format!("{old:?}"), format!("{new:?}"));
}
