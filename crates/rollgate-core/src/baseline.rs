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
//!  "faults": [], "log_faults": ["operator: WARN cache refresh took #ms"],
//!  "progression": [{"name": "requestIndex", "first": 10, "last": 52,
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
    /// The fault-matching lines (`[faults].log_patterns`) the components logged shortly before
    /// the freeze, normalised (timestamps, numbers and ids replaced by `#`): the gates fail only
    /// on lines not in this set. Empty in baselines recorded before it existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_faults: Vec<String>,
    pub progression: Vec<ProgressionRate>,
    /// True when any progression signal was idle (recorded, and judged by the idle policy).
    pub idle: bool,
    /// Every check run while freezing, with its latency and observation.
    pub checks: Vec<CheckResult>,
    /// Storage sizes in bytes: `postgres:<db>` database sizes, `disk:<path>` free bytes.
    pub storage: BTreeMap<String, u64>,
    /// What the bake period compares against, sampled while freezing (`docs/bake.md`). Absent
    /// in baselines recorded before it existed; the bake then judges those signals by the
    /// `bake.no_data` policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trends: Option<Trends>,
    /// The operator's Prometheus at freeze: its rules' health and series counts, this node's
    /// firing alerts ([`crate::monitoring`]). Absent without `[prometheus]`, when it could not
    /// be asked, and in baselines recorded before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<crate::monitoring::MonitoringRecord>,
}

/// The baseline's behaviour over its sampling window, in the same cadence and units the bake
/// samples in, so the two compare directly:
///
/// ```json
/// {"window_ms": 10000, "interval_ms": 500,
///  "latency_ms": {"readiness:operator": [1.2, 0.9, …]},
///  "requests": {"readiness:operator": {"total": 20, "errors": 0, "unavailable": 0}},
///  "storage": {"postgres:node0": {"first": 8192000, "last": 8245248, "samples": 20,
///              "growth_bytes_per_s": 5300.0}},
///  "progression": {"requestIndex": {"samples": 20, "changes": 19, "first": 10, "last": 48,
///                  "rate_per_s": 3.9}},
///  "alert_document": null, "metric_names": ["operator_up", …],
///  "metric_labels": {"operator_dependency_up": ["dependency"]}}
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Trends {
    pub window_ms: u64,
    pub interval_ms: u64,
    /// Successful probe latencies in milliseconds, by endpoint (`readiness:NAME`,
    /// `probe:encryption-key`, `probe:mark-price`, `alerts`).
    #[serde(default)]
    pub latency_ms: BTreeMap<String, Vec<f64>>,
    #[serde(default)]
    pub requests: BTreeMap<String, RequestCounts>,
    /// By the keys of [`Baseline::storage`].
    #[serde(default)]
    pub storage: BTreeMap<String, StorageTrend>,
    /// By progression signal name.
    #[serde(default)]
    pub progression: BTreeMap<String, ProgressionTrend>,
    /// The `[alerts].url` document when it is not one of the readiness outputs.
    #[serde(default)]
    pub alert_document: Option<serde_json::Value>,
    /// Every metric name `[alerts].metrics_urls` exported.
    #[serde(default)]
    pub metric_names: Vec<String>,
    /// The label keys seen on each exported metric's series (the alert contract's labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metric_labels: BTreeMap<String, Vec<String>>,
}

/// Requests to one endpoint and how many failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    /// Any failure: refused, timed out, non-2xx, not JSON where JSON was expected.
    pub errors: u64,
    /// Of `errors`, how many answered 421 `NotAcceptingRequests` or 503.
    pub unavailable: u64,
}

/// One storage measure over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageTrend {
    /// The measured value (a database size, a filesystem's free bytes) at both ends.
    pub first: u64,
    pub last: u64,
    pub samples: usize,
    /// Bytes per second being used up: a database's growth, a filesystem's loss of free space
    /// (least-squares slope over every sample). `None` with fewer than two samples.
    pub growth_bytes_per_s: Option<f64>,
}

/// One progression signal over a window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressionTrend {
    pub samples: usize,
    /// Consecutive samples that differed.
    pub changes: u64,
    pub first: serde_json::Value,
    pub last: serde_json::Value,
    /// Increase per second (`increases`) or changes per second (`changes`).
    pub rate_per_s: f64,
}
