//! Shared helpers: configurations written to a temporary directory.

use std::path::Path;

use rollgate_core::config::{Config, MapEnv, load_str};

/// A minimal configuration with the given `[runtime]` tables, components `app` (service
/// `app-svc`) and `other`, and one layer of each kind.
pub fn config(dir: &Path, runtime: &str) -> Config {
    let text = format!(
        r#"
[node]
name = "test"
mode = "localnet.loopback"
app_config = "{dir}"
deployment_metadata = "addresses.json"
deployment_metadata_owner = "root"
state_dir = "{dir}/state"

{runtime}

[components.app]
service = "app-svc"

[components.other]

[layers.app-config]
kind = "config"
components = ["app"]

[layers.app-binary]
kind = "binary"
components = ["app", "other"]

[layers.app-image]
kind = "image"
components = ["app"]
"#,
        dir = dir.display()
    );
    let path = dir.join("rollgate.toml");
    std::fs::write(&path, &text).unwrap();
    load_str(&path, &text, &MapEnv::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// Whether a Docker engine answers. Under `CI=true` a missing engine fails the test instead of
/// skipping it, so CI can never pass by silently testing nothing.
pub fn docker_available(test: &str) -> bool {
    let ok = std::process::Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("{test}: Docker is required under CI=true but `docker info` failed");
        }
        eprintln!("{test}: skipped, no Docker engine (set CI=true to make this a failure)");
    }
    ok
}

/// A name no other test run uses: Compose projects and image repositories.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}{}x{nanos:x}", std::process::id())
}

/// Run a command synchronously and return stdout; panics with stderr on failure. For fixtures
/// and cleanup only, never for the code under test.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
