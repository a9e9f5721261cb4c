//! The decision record of a rollout, rollback or resume, as printed with `--format json`.
//!
//! ```json
//! {"rollout_id": "r-20261128T043512Z-7c1e", "outcome": "rolled_back",
//!  "layer": "operator-image", "from": "rollgate-sim/operator:v1.0.0 (3f2a9c1b0d4e)",
//!  "to": "rollgate-sim/operator:v1.1.0-stall-request", "baseline_id": "b-20261128T043500Z-91aa",
//!  "gates": [{"name": "progression:requestIndex", "verdict": "fail",
//!             "detail": "healthy but not progressing: requestIndex did not increase in 5s (stayed at 0)",
//!             "evidence": {…}}],
//!  "reason": "progression:requestIndex: healthy but not progressing: …",
//!  "rollback": {"verified": true, "gates": [ … ], "reason": "baseline re-verified"},
//!  "promoted_baseline_id": null, "steps": [{"kind": "apply", "ok": true, "ms": 812}, …],
//!  "timings_ms": {"total": 14210, "change_to_decision": 6120, "decision_to_verified": 4010}}
//! ```
//! The first seven fields are the contract of product.md; the rest are additions.

use rollgate_core::ExitCode;
use rollgate_core::vocab::{GateResult, Outcome};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RolloutReport {
    pub rollout_id: String,
    pub outcome: Outcome,
    pub layer: String,
    pub from: Option<String>,
    pub to: String,
    pub baseline_id: Option<String>,
    pub gates: Vec<GateResult>,
    pub reason: String,
    #[serde(default)]
    pub rollback: Option<RollbackRecord>,
    #[serde(default)]
    pub promoted_baseline_id: Option<String>,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
    #[serde(default)]
    pub timings_ms: Timings,
    /// Extension: the database snapshots this rollout took (layers with `snapshot`), with
    /// where they are and until when they are kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<rollgate_journal::SnapshotRecord>,
}

/// The rollback part of a decision record: the baseline's re-verification.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RollbackRecord {
    pub verified: bool,
    pub gates: Vec<GateResult>,
    pub reason: String,
}

impl RollbackRecord {
    /// `rolled_back` when the baseline re-verified green, else `rollback_failed`.
    pub fn outcome(&self) -> Outcome {
        if self.verified {
            Outcome::RolledBack
        } else {
            Outcome::RollbackFailed
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub kind: String,
    pub ok: bool,
    pub ms: u64,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Timings {
    pub total: u64,
    /// From the change (restart) to the gate decision.
    pub change_to_decision: Option<u64>,
    /// From the decision to roll back to the baseline verified.
    pub decision_to_verified: Option<u64>,
    /// From the change to the baseline verified again (rolled-back rollouts).
    pub change_to_verified: Option<u64>,
    /// How long the restart(s) of the changed components took.
    pub restart: Option<u64>,
    /// Extension: how long stopping the components and taking the database snapshot took
    /// (the downtime a snapshot adds to a rollout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<u64>,
}

impl RolloutReport {
    /// The documented exit code of this outcome.
    pub fn exit_code(&self) -> ExitCode {
        match self.outcome {
            Outcome::Promoted => ExitCode::Success,
            Outcome::RolledBack => ExitCode::RolledBack,
            Outcome::RollbackFailed => ExitCode::RollbackFailed,
            Outcome::Refused => ExitCode::NotReady,
        }
    }
}
