//! The command driver: environment passing, verification of restores, failures, timeouts.

use std::time::{Duration, Instant, SystemTime};

use rollgate_core::baseline::LayerValue;
use rollgate_core::config::Runtime;
use rollgate_core::vocab::LayerKind;
use rollgate_runtime::{CommandDriver, DriverError, RunStatus, RuntimeDriver};

use crate::support::config;

const APPLY: &str = r#"printf '%s' "$ROLLGATE_VALUE" > value.out; printf '%s|%s|%s|%s' "$ROLLGATE_LAYER" "$ROLLGATE_KIND" "$ROLLGATE_COMPONENTS" "${ROLLGATE_DIGEST:-none}" > meta.out; printf '%s' "$ROLLGATE_VALUE" > "current-$ROLLGATE_LAYER""#;

fn driver(
    dir: &std::path::Path,
    apply: &str,
    restart: &str,
    timeout: &str,
) -> (CommandDriver, rollgate_core::config::Config) {
    let runtime = format!(
        r#"[runtime]
driver = "command"

[runtime.command]
current = 'cat "current-$ROLLGATE_LAYER"'
apply = '''{apply}'''
restart = '''{restart}'''
logs = 'printf "%s since %s" "$ROLLGATE_COMPONENT" "$ROLLGATE_SINCE"'
timeout = "{timeout}"
"#
    );
    let cfg = config(dir, &runtime);
    let Runtime::Command(c) = &cfg.runtime else {
        panic!("not a command runtime")
    };
    (CommandDriver::new(c.clone(), &cfg), cfg)
}

#[tokio::test]
async fn value_reaches_the_command_unchanged_and_is_never_executed() {
    let dir = tempfile::tempdir().unwrap();
    let (d, cfg) = driver(dir.path(), APPLY, "true", "10s");
    let evil = r#"v1 with spaces "double" 'single' ; touch pwned1 && $(touch pwned2) `touch pwned3` $HOME \n"#;
    let out = d
        .apply(cfg.layer("app-binary").unwrap(), evil)
        .await
        .unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("value.out")).unwrap(),
        evil
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("meta.out")).unwrap(),
        "app-binary|binary|app-svc other|none"
    );
    for f in ["pwned1", "pwned2", "pwned3"] {
        assert!(
            !dir.path().join(f).exists(),
            "{f} was created: the value was executed"
        );
    }
    // `current` reads it back; it is not a file, so there is no digest.
    let v = d.current(cfg.layer("app-binary").unwrap()).await.unwrap();
    assert_eq!(
        v,
        LayerValue {
            kind: LayerKind::Binary,
            value: evil.trim().to_string(),
            digest: None
        }
    );
}

#[tokio::test]
async fn config_layer_is_hashed_and_restore_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (d, cfg) = driver(dir.path(), APPLY, "true", "10s");
    let layer = cfg.layer("app-config").unwrap();
    std::fs::write(dir.path().join("a.toml"), "x = 1\n").unwrap();
    std::fs::write(dir.path().join("b.toml"), "x = 2\n").unwrap();
    std::fs::write(dir.path().join("current-app-config"), "a.toml\n").unwrap();

    let before = d.current(layer).await.unwrap();
    assert_eq!(before.value, "a.toml");
    let want = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"x = 1\n"))
    );
    assert_eq!(before.digest.as_deref(), Some(want.as_str()));

    d.apply(layer, "b.toml").await.unwrap();
    let after = d.current(layer).await.unwrap();
    assert_eq!(after.value, "b.toml");
    assert_ne!(after.digest, before.digest);

    let out = d.restore(layer, &before).await.unwrap();
    assert!(out.command.starts_with("apply: "));
    assert!(
        std::fs::read_to_string(dir.path().join("meta.out"))
            .unwrap()
            .ends_with(before.digest.as_deref().unwrap())
    );
    assert_eq!(d.current(layer).await.unwrap(), before);

    // The file behind the recorded path changed: the restore cannot be exact and says so.
    std::fs::write(dir.path().join("a.toml"), "x = 3\n").unwrap();
    let err = d.restore(layer, &before).await.unwrap_err();
    assert!(matches!(err, DriverError::Restore { .. }), "{err}");
    assert!(err.to_string().contains("app-config"), "{err}");
}

#[tokio::test]
async fn failure_names_the_command_and_carries_redacted_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let (d, cfg) = driver(
        dir.path(),
        "echo connecting to postgres://app:hunter2@db/x >&2; echo boom >&2; exit 3",
        "true",
        "10s",
    );
    let err = d
        .apply(cfg.layer("app-image").unwrap(), "v2")
        .await
        .unwrap_err();
    let DriverError::Failed {
        command,
        unit,
        output,
    } = &err
    else {
        panic!("{err}")
    };
    assert!(command.contains("exit 3"), "{command}");
    assert_eq!(unit, "layer app-image");
    assert_eq!(output.exit_code, Some(3));
    assert_eq!(
        output.stderr,
        "connecting to postgres://app:****@db/x\nboom\n"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("status 3") && msg.contains("boom") && !msg.contains("hunter2"),
        "{msg}"
    );
}

#[tokio::test]
async fn timeout_kills_the_command_and_keeps_its_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let (d, cfg) = driver(
        dir.path(),
        APPLY,
        "echo restarting $ROLLGATE_COMPONENTS >&2; sleep 30",
        "1s",
    );
    let comps: Vec<_> = ["app", "other"]
        .iter()
        .map(|c| cfg.components[*c].clone())
        .collect();
    let started = Instant::now();
    let err = d.restart(&comps).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let DriverError::Timeout { output, after, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(*after, Duration::from_secs(1));
    assert_eq!(output.stderr, "restarting app-svc other\n");
    assert_eq!(output.exit_code, None);
    assert!(err.to_string().contains("timed out after 1s"), "{err}");
}

#[tokio::test]
async fn restart_state_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let (d, cfg) = driver(
        dir.path(),
        APPLY,
        r#"printf '%s' "$ROLLGATE_COMPONENTS" > restarted.out"#,
        "10s",
    );
    let app = cfg.components["app"].clone();
    d.restart(std::slice::from_ref(&app)).await.unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("restarted.out")).unwrap(),
        "app-svc"
    );
    assert_eq!(d.state(&app).await.unwrap().status, RunStatus::Unknown);
    let since = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    assert_eq!(
        d.logs_since(&app, since).await.unwrap(),
        "app-svc since 2023-11-14T22:13:20.000Z"
    );
    assert_eq!(d.name(), "command");
    assert_eq!(
        rollgate_runtime::driver_for(&cfg).unwrap().name(),
        "command"
    );
}
