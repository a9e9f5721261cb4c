//! Configurations and observers for the tests.

use std::path::Path;
use std::sync::Arc;

use rollgate_core::baseline::Baseline;
use rollgate_core::config::{Config, MapEnv, load_str};
use rollgate_runner::observe::Observer;

/// A configuration with component `app` (service `app-svc`) in layer `app-image`, the given
/// `[runtime]` tables and fault line patterns `ERROR` and `WARN`.
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

[layers.app-image]
kind = "image"
components = ["app"]

[faults]
log_patterns = ["ERROR", "WARN"]

[rollout]
baseline_window = "1s"
poll_interval = "250ms"
"#,
        dir = dir.display()
    );
    let path = dir.join("rollgate.toml");
    std::fs::write(&path, &text).unwrap();
    load_str(&path, &text, &MapEnv::default()).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// An observer of `app` through the configured driver, against `baseline` when given.
pub fn observer(config: &Config, baseline: Option<&Baseline>) -> Observer {
    let config = Arc::new(config.clone());
    let driver = rollgate_runtime::driver_for(&config).unwrap();
    let app = config.components["app"].clone();
    let o = Observer::new(config, driver, vec![app]).unwrap();
    match baseline {
        Some(b) => o.against(b),
        None => o,
    }
}

/// A baseline recorded with these normalised fault lines (built from JSON, as stored).
pub fn baseline_with_log_faults(lines: &[&str]) -> Baseline {
    serde_json::from_value(serde_json::json!({
        "id": "b-test", "node": "test", "created_at": "2026-12-01T00:00:00Z",
        "mode": "localnet.loopback", "layers": {}, "metadata": null, "sgx": null,
        "readiness": {}, "faults": [], "log_faults": lines, "progression": [], "idle": false,
        "checks": [], "storage": {}
    }))
    .unwrap()
}
