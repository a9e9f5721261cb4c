//! Builders for test records.

use std::collections::BTreeMap;

use rollgate_core::baseline::{Baseline, LayerValue};
use rollgate_core::vocab::{CheckGroup, CheckResult, CheckStatus, LayerKind, Mode};
use rollgate_journal::NewRollout;

pub fn baseline(id: &str) -> Baseline {
    let mut layers = BTreeMap::new();
    layers.insert(
        "operator-image".to_string(),
        image("rollgate-sim/operator:v1.0.0", "sha256:aaaa"),
    );
    Baseline {
        id: id.to_string(),
        node: "node0".into(),
        created_at: "2026-11-28T04:22:10Z".into(),
        mode: Mode::LocalnetLoopback,
        layers,
        metadata: None,
        sgx: None,
        readiness: BTreeMap::from([(
            "operator".to_string(),
            serde_json::json!({"health": "Healthy"}),
        )]),
        faults: vec![],
        log_faults: vec![],
        progression: vec![],
        idle: false,
        checks: vec![CheckResult {
            name: "postgres".into(),
            group: CheckGroup::Prerequisites,
            status: CheckStatus::Pass,
            detail: "2 databases".into(),
            latency_ms: 3,
            observed: serde_json::Value::Null,
        }],
        storage: BTreeMap::new(),
        trends: None,
        monitoring: None,
    }
}

pub fn image(value: &str, digest: &str) -> LayerValue {
    LayerValue {
        kind: LayerKind::Image,
        value: value.into(),
        digest: Some(digest.into()),
    }
}

pub fn rollout(id: &str, baseline_id: Option<&str>) -> NewRollout {
    NewRollout {
        id: id.to_string(),
        layer: "operator-image".into(),
        from: Some(image("rollgate-sim/operator:v1.0.0", "sha256:aaaa")),
        to: "rollgate-sim/operator:v1.1.0".into(),
        baseline_id: baseline_id.map(str::to_string),
        started_at: "2026-11-28T04:22:11Z".into(),
        plan: Some(serde_json::json!({"layer": "operator-image", "restart": ["operator"]})),
    }
}
