//! The in-memory types of the journal API: what callers pass in and get back.
//!
//! These are separate from the persisted rows (`format`): the file format is versioned and
//! migrated, these types may change with the code. Their JSON forms are what `rollgate status`,
//! `history` and `show` print with `--format json`.

use rollgate_core::baseline::LayerValue;
use rollgate_core::vocab::{Mode, Outcome, Verdict};
use serde::{Deserialize, Serialize};

/// The identity of a step within the journal (the row id, increasing across all rollouts).
pub type StepId = i64;

/// A rollout about to start.
#[derive(Debug, Clone, PartialEq)]
pub struct NewRollout {
    pub id: String,
    pub layer: String,
    /// The layer's value before the change, when it could be read.
    pub from: Option<LayerValue>,
    /// The requested value.
    pub to: String,
    pub baseline_id: Option<String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// The validated plan, for `show`.
    pub plan: Option<serde_json::Value>,
}

/// A baseline in a listing, newest first:
///
/// ```json
/// {"id": "b-20261128T042210Z-1a2b", "node": "node0", "created_at": "2026-11-28T04:22:10Z",
///  "mode": "localnet.loopback", "known_good": true, "known_good_at": "2026-11-28T04:40:02.113Z"}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BaselineSummary {
    pub id: String,
    pub node: String,
    pub created_at: String,
    pub mode: Mode,
    pub known_good: bool,
    /// When it was last marked known-good.
    pub known_good_at: Option<String>,
}

/// What the journal says now, rebuilt from the file on every open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalState {
    pub schema_version: u32,
    /// A rollout that has no finish. Seen by a process about to start a rollout, it was
    /// interrupted (a crash) and must be resumed; while a live process holds the lock it may
    /// still be running ([`crate::Lock::status`] tells which).
    pub interrupted: Option<UnfinishedRollout>,
    pub last_known_good: Option<BaselineSummary>,
    /// The most recently finished rollout.
    pub last_finished: Option<HistoryEntry>,
}

/// A rollout without a finish and where it stopped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnfinishedRollout {
    pub rollout_id: String,
    pub layer: String,
    pub from: Option<LayerValue>,
    pub to: String,
    pub baseline_id: Option<String>,
    pub started_at: String,
    pub steps: u32,
    pub last_step: Option<StepSummary>,
}

impl UnfinishedRollout {
    /// True when the last step's intent was written but not its outcome: the action may or
    /// may not have happened, and `resume` must find out.
    pub fn stopped_at_intent(&self) -> bool {
        self.last_step.as_ref().is_some_and(|s| !s.outcome_recorded)
    }
}

/// The last step of an unfinished rollout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepSummary {
    pub step_id: StepId,
    pub kind: String,
    pub intent: serde_json::Value,
    pub intent_at: String,
    pub outcome_recorded: bool,
    pub ok: Option<bool>,
}

/// One line of `rollgate history --format json`:
///
/// ```json
/// {"rollout_id": "r-20261128T042210Z-9c1d", "started_at": "2026-11-28T04:22:10Z",
///  "layer": "operator-image", "from": "rollgate-sim/operator:v1.0.0",
///  "to": "rollgate-sim/operator:v1.1.0", "outcome": "promoted",
///  "finished_at": "2026-11-28T04:33:12.500Z", "baseline_id": "b-20261128T042210Z-1a2b"}
/// ```
///
/// `outcome` is `null` while the rollout is unfinished (running or interrupted).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub rollout_id: String,
    pub started_at: String,
    pub layer: String,
    pub from: Option<String>,
    pub to: String,
    pub outcome: Option<Outcome>,
    pub finished_at: Option<String>,
    pub baseline_id: Option<String>,
}

/// `rollgate history --format json`: `{"rollouts": [HistoryEntry…]}`, newest first
/// (`History::from(journal.history(limit)?)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    pub rollouts: Vec<HistoryEntry>,
}

impl From<Vec<HistoryEntry>> for History {
    fn from(rollouts: Vec<HistoryEntry>) -> History {
        History { rollouts }
    }
}

/// A child process's output as stored beside its step (the runtime's `DriverOutput`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DriverOutputRecord {
    pub command: String,
    pub stdout: String,
    pub stderr: String,
    pub exit_code: Option<i32>,
    pub duration_ms: u64,
}

/// One step of a rollout's decision record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    pub step_id: StepId,
    pub kind: String,
    pub intent: serde_json::Value,
    pub intent_at: String,
    /// `None` while only the intent is written.
    pub ok: Option<bool>,
    pub outcome: Option<serde_json::Value>,
    pub outcome_at: Option<String>,
    pub driver_outputs: Vec<DriverOutputRecord>,
}

/// One gate verdict of a rollout, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateRecord {
    pub name: String,
    pub verdict: Verdict,
    pub detail: String,
    pub evidence: serde_json::Value,
    pub at: String,
}

/// `rollgate show ID --format json`: one rollout's full decision record.
///
/// ```json
/// {"rollout_id": "r-…", "layer": "operator-image",
///  "from": {"kind": "image", "value": "rollgate-sim/operator:v1.0.0", "digest": "sha256:…"},
///  "to": "rollgate-sim/operator:v1.1.0", "baseline_id": "b-…",
///  "started_at": "…", "finished_at": "…", "outcome": "rolled_back",
///  "reason": "gate progression:requestIndex failed", "plan": {…},
///  "steps": [{"step_id": 1, "kind": "apply", "intent": {…}, "intent_at": "…", "ok": true,
///             "outcome": {…}, "outcome_at": "…", "driver_outputs": [{"command": "…", …}]}],
///  "gates": [{"name": "progression:requestIndex", "verdict": "fail", "detail": "…",
///             "evidence": {…}, "at": "…"}]}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RolloutDetail {
    pub rollout_id: String,
    pub layer: String,
    pub from: Option<LayerValue>,
    pub to: String,
    pub baseline_id: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub outcome: Option<Outcome>,
    pub reason: Option<String>,
    pub plan: Option<serde_json::Value>,
    pub steps: Vec<StepRecord>,
    pub gates: Vec<GateRecord>,
}
