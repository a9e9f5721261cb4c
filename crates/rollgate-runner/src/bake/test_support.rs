//! Shared fixtures of the bake's unit tests.

use std::path::Path;

use rollgate_core::baseline::{Baseline, StorageTrend, Trends};
use rollgate_core::config::{Config, MapEnv, load_str};
use rollgate_core::vocab::GateResult;
use serde_json::json;

pub(crate) const CONFIG: &str = r#"
[node]
name = "n"
mode = "localnet.loopback"
app_config = "/tmp/app"
deployment_metadata = "ethereum/addresses.json"
deployment_metadata_owner = "root"
enclave = false
state_dir = "/tmp/state"

[dependencies]
postgres = { url = "postgres://u@127.0.0.1/postgres", databases = ["node0"] }

[[headroom.disk]]
path = "/data"
min_free = "1GiB"

[headroom.database]
max_growth_during_window = "2GiB"

[readiness.operator]
url = "http://127.0.0.1:8080/v2/status"
expect = [ { pointer = "/health", equals = "Healthy" } ]

[[progression]]
name = "requestIndex"
url = "http://127.0.0.1:8080/v2/status"
pointer = "/lastRequest/requestIndex"
window = "10s"

[alerts]
fields = ["/health", "/lastTx"]

[runtime]
driver = "command"

[runtime.command]
current = "true"
apply = "true"
restart = "true"

[layers.operator-image]
kind = "image"
components = ["operator"]
"#;

/// A configuration from `text` (e.g. [`CONFIG`] with edits); panics on an invalid one.
pub(crate) fn config_from(text: &str) -> Config {
    load_str(
        Path::new("/etc/rollgate/rollgate.toml"),
        text,
        &MapEnv::default(),
    )
    .unwrap()
}

pub(crate) fn config() -> Config {
    load_str(
        Path::new("/etc/rollgate/rollgate.toml"),
        CONFIG,
        &MapEnv::default(),
    )
    .unwrap()
}

pub(crate) fn baseline(trends: Option<Trends>) -> Baseline {
    serde_json::from_value(json!({
        "id": "b-1", "node": "n", "created_at": "2026-11-28T04:22:10Z", "mode": "localnet.loopback",
        "layers": {}, "metadata": null, "sgx": null,
        "readiness": {"operator": {"health": "Healthy", "lastTx": "0xab"}},
        "faults": [], "progression": [], "idle": false, "checks": [], "storage": {},
        "trends": trends,
    }))
    .unwrap()
}

pub(crate) fn storage(growth: f64, first: u64, last: u64) -> StorageTrend {
    StorageTrend {
        first,
        last,
        samples: 20,
        growth_bytes_per_s: Some(growth),
    }
}

pub(crate) fn trends(window_ms: u64) -> Trends {
    Trends {
        window_ms,
        interval_ms: 500,
        ..Trends::default()
    }
}

pub(crate) fn find<'a>(gates: &'a [GateResult], name: &str) -> &'a GateResult {
    gates
        .iter()
        .find(|g| g.name == name)
        .unwrap_or_else(|| panic!("no {name} in {gates:#?}"))
}
