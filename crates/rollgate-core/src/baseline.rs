//! The frozen baseline: a complete, addressable record of a node known (or claimed) to be good.
//!
//! A baseline is what a rollout starts from and what a rollback restores and re-verifies. It is
//! immutable once written to the journal; only its `known_good` promotion is recorded apart.
//! `rollgate baseline show ID --format json` prints this struct:
//!
//! ```json
//! {"id": "b-20261128T042210Z-1a2b", "node": "node0", "created_at": "2026-11-28T04:22:10Z",
//!  "mode": "localnet.loopback",
//!  "layers": {"operator-image": {"kind": "image", "value": "rollgate-sim/operator:v1.0.0",
//!                                 "digest": "sha256:…"}},
//!  "metadata": {"path": "/opt/dexlabs/ethereum/addresses.json", "owner": "deployment-service",
//!               "uid": 998, "sha256": "…"},
//!  "sgx": {"build": {"SGX_DEBUG": "0", "SGX_PRERELEASE": "1"}, "runtime": {…}, "report_type": "SELF"},
//!  "readiness": {"operator": {…raw /v2/status…}, "kyc": {…}},
//!  "faults": [], "progression": [{"name": "requestIndex", "first": 10, "last": 52,
//!  "window_ms": 10000, "rate_per_s": 4.2, "idle": false}], "idle": false,
//!  "checks": [ …CheckResult… ], "storage": {"postgres:node0": 8192000}}
//! ```

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use crate::vocab::{CheckResult, LayerKind, Mode};

/// The value of one layer as the runtime driver reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerValue {
    pub kind: LayerKind,
    /// What the operator names: an image reference, a binary path or version, a config file.
    pub value: String,
    /// What pins it exactly: an image digest (`sha256:…`) or a file's SHA-256. Restores use it.
    #[serde(default)]
    pub digest: Option<String>,
}

impl LayerValue {
    /// Short human form: `value (digest prefix)`.
    pub fn display(&self) -> String {
        match &self.digest {
            Some(d) => {
                let short = d.strip_prefix("sha256:").unwrap_or(d);
                format!("{} ({})", self.value, &short[..short.len().min(12)])
            }
            None => self.value.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetadataRecord {
    pub path: String,
    pub owner: Option<String>,
    pub uid: Option<u32>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SgxRecord {
    pub build: BTreeMap<String, String>,
    pub runtime: BTreeMap<String, String>,
    pub report_type: String,
}

/// A progression signal sampled over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressionRate {
    pub name: String,
    pub first: serde_json::Value,
    pub last: serde_json::Value,
    pub window_ms: u64,
    /// Increase per second for numeric signals; changes per second otherwise.
    pub rate_per_s: f64,
    /// True when the signal did not move within the window.
    pub idle: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub id: String,
    pub node: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub mode: Mode,
    pub layers: BTreeMap<String, LayerValue>,
    pub metadata: Option<MetadataRecord>,
    pub sgx: Option<SgxRecord>,
    /// Raw readiness outputs by readiness entry name.
    pub readiness: BTreeMap<String, serde_json::Value>,
    /// Faults present when frozen, as `pointer=value`.
    pub faults: Vec<String>,
    pub progression: Vec<ProgressionRate>,
    /// True when any progression signal was idle (recorded, and judged by the idle policy).
    pub idle: bool,
    /// Every check run while freezing, with its latency and observation.
    pub checks: Vec<CheckResult>,
    /// Storage sizes in bytes: `postgres:<db>` database sizes, `disk:<path>` free bytes.
    pub storage: BTreeMap<String, u64>,
}
