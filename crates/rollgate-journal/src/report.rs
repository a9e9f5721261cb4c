//! What `rollgate status`, `history` and `show` print, in JSON and for humans.
//!
//! The CLI reads the journal (and, for `status`, the runtime driver and the lock), builds these
//! documents and prints them; the shapes live here so they are tested beside the journal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rollgate_core::baseline::LayerValue;
use serde::{Deserialize, Serialize};

use crate::lock::LockStatus;
use crate::model::{
    BaselineSummary, History, HistoryEntry, JournalState, RolloutDetail, UnfinishedRollout,
};

/// A layer's current value, or why it could not be read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LayerStatus {
    Value(LayerValue),
    Error { error: String },
}

/// `rollgate status --format json`:
///
/// ```json
/// {"node": "node0",
///  "layers": {"operator-image": {"kind": "image", "value": "rollgate-sim/operator:v1.0.0", "digest": "sha256:…"},
///             "operator-config": {"error": "layer `operator-config` of kind config is not supported by the compose driver"}},
///  "lock": {"state": "held", "holder": {"pid": 4242, "start_time": 918273, "boot_id": "…", "since": "…", "heartbeat": "…"}},
///  "active_rollout": {"rollout_id": "r-…", "layer": "operator-image", "from": {…}, "to": "…",
///                     "baseline_id": "b-…", "started_at": "…", "steps": 3,
///                     "last_step": {"step_id": 3, "kind": "restart", "intent": {…}, "intent_at": "…",
///                                   "outcome_recorded": false, "ok": null},
///                     "interrupted": true, "stopped_at_intent": true},
///  "last_known_good": {"id": "b-…", "node": "node0", "created_at": "…", "mode": "localnet.loopback",
///                      "known_good": true, "known_good_at": "…"},
///  "last_rollout": {…HistoryEntry…}}
/// ```
///
/// `interrupted` is true when no live process holds the lock: `rollgate resume` must finish it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub node: String,
    pub layers: BTreeMap<String, LayerStatus>,
    pub lock: LockStatus,
    pub active_rollout: Option<ActiveStatus>,
    pub last_known_good: Option<BaselineSummary>,
    pub last_rollout: Option<HistoryEntry>,
    /// The kill switch when set (`rollgate freeze`): `{"reason", "frozen_at", "by"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen: Option<serde_json::Value>,
    /// Database snapshots not dropped yet, newest first ([`crate::SnapshotRecord`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub snapshots: Vec<crate::SnapshotRecord>,
}

/// The unfinished rollout as `status` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActiveStatus {
    #[serde(flatten)]
    pub rollout: UnfinishedRollout,
    /// No live process holds the lock: the rollout was interrupted.
    pub interrupted: bool,
    /// Its last step's intent has no outcome.
    pub stopped_at_intent: bool,
}

impl StatusReport {
    pub fn new(
        node: &str,
        layers: BTreeMap<String, LayerStatus>,
        state: JournalState,
        lock: LockStatus,
    ) -> StatusReport {
        let held = matches!(lock, LockStatus::Held { .. });
        let active_rollout = state.interrupted.map(|rollout| ActiveStatus {
            interrupted: !held,
            stopped_at_intent: rollout.stopped_at_intent(),
            rollout,
        });
        StatusReport {
            node: node.to_string(),
            layers,
            lock,
            active_rollout,
            last_known_good: state.last_known_good,
            last_rollout: state.last_finished,
            frozen: None,
            snapshots: vec![],
        }
    }

    /// True when a new rollout would be refused with exit 6.
    pub fn busy(&self) -> bool {
        self.active_rollout.is_some() || matches!(self.lock, LockStatus::Held { .. })
    }

    pub fn to_human(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "node {}", self.node);
        let _ = writeln!(s, "\nlayers:");
        let width = self.layers.keys().map(String::len).max().unwrap_or(0);
        for (name, l) in &self.layers {
            let v = match l {
                LayerStatus::Value(v) => format!("{} {}", v.kind.as_str(), v.display()),
                LayerStatus::Error { error } => format!("unreadable: {error}"),
            };
            let _ = writeln!(s, "  {name:width$}  {v}");
        }
        let _ = writeln!(s);
        if let Some(f) = &self.frozen {
            let field = |k: &str| f.get(k).and_then(|v| v.as_str()).unwrap_or("?");
            let _ = writeln!(
                s,
                "FROZEN by {} since {}: {} (no rollout starts; `rollgate unfreeze` releases)",
                field("by"),
                field("frozen_at"),
                field("reason")
            );
        }
        match &self.lock {
            LockStatus::Free => {
                let _ = writeln!(s, "lock: free");
            }
            LockStatus::Held { holder } => {
                let _ = writeln!(
                    s,
                    "lock: held by pid {} since {} (heartbeat {})",
                    holder.pid, holder.since, holder.heartbeat
                );
            }
            LockStatus::Stale { holder, reason } => {
                let _ = writeln!(
                    s,
                    "lock: stale, pid {} since {}: {reason}; the next rollout reclaims it",
                    holder.pid, holder.since
                );
            }
        }
        match &self.active_rollout {
            None => {
                let _ = writeln!(s, "active rollout: none");
            }
            Some(a) => {
                let r = &a.rollout;
                let state = if a.interrupted {
                    "INTERRUPTED (run `rollgate resume`)"
                } else {
                    "running"
                };
                let _ = writeln!(s, "active rollout: {} {state}", r.rollout_id);
                let from = r
                    .from
                    .as_ref()
                    .map(LayerValue::display)
                    .unwrap_or_else(|| "?".into());
                let _ = writeln!(
                    s,
                    "  {} {from} -> {} (started {})",
                    r.layer, r.to, r.started_at
                );
                if let Some(step) = &r.last_step {
                    let outcome = match step.ok {
                        None => "intent written, no outcome".to_string(),
                        Some(true) => "done".to_string(),
                        Some(false) => "failed".to_string(),
                    };
                    let _ = writeln!(
                        s,
                        "  step {} of {}: {} ({outcome}) at {}",
                        step.step_id, r.steps, step.kind, step.intent_at
                    );
                }
            }
        }
        match &self.last_known_good {
            None => {
                let _ = writeln!(s, "last known-good baseline: none");
            }
            Some(b) => {
                let at = b.known_good_at.as_deref().unwrap_or("?");
                let _ = writeln!(
                    s,
                    "last known-good baseline: {} (frozen {}, known-good since {at})",
                    b.id, b.created_at
                );
            }
        }
        if let Some(h) = &self.last_rollout {
            let _ = writeln!(
                s,
                "last rollout: {} {} -> {}: {}",
                h.rollout_id,
                h.layer,
                h.to,
                outcome_word(h)
            );
        }
        for snap in &self.snapshots {
            let _ = writeln!(
                s,
                "snapshot: {} of {} ({}, {}){}",
                snap.id,
                snap.database,
                snap.method,
                snap.state,
                snap.keep_until
                    .as_deref()
                    .map(|k| format!(", kept until {k}"))
                    .unwrap_or_default()
            );
        }
        s
    }
}

fn outcome_word(h: &HistoryEntry) -> &'static str {
    h.outcome.map(|o| o.as_str()).unwrap_or("unfinished")
}

/// `rollgate history` for humans: one line per rollout, newest first.
pub fn history_human(history: &History) -> String {
    if history.rollouts.is_empty() {
        return "no rollouts recorded\n".into();
    }
    let rows: Vec<[String; 6]> = history
        .rollouts
        .iter()
        .map(|h| {
            [
                h.rollout_id.clone(),
                h.started_at.clone(),
                h.layer.clone(),
                h.from.clone().unwrap_or_else(|| "-".into()),
                h.to.clone(),
                outcome_word(h).to_string(),
            ]
        })
        .collect();
    table(
        &["ROLLOUT", "STARTED", "LAYER", "FROM", "TO", "OUTCOME"],
        &rows,
    )
}

fn table<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = header.map(str::len);
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == N {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:w$}  ");
            }
        }
        l.trim_end().to_string() + "\n"
    };
    let mut s = line(header.to_vec());
    for r in rows {
        s.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    s
}

/// `rollgate show ID` for humans: the decision record, step by step, then the gates.
pub fn show_human(d: &RolloutDetail) -> String {
    let mut s = String::new();
    let outcome = d.outcome.map(|o| o.as_str()).unwrap_or("unfinished");
    let _ = writeln!(s, "rollout {}: {outcome}", d.rollout_id);
    let from = d
        .from
        .as_ref()
        .map(LayerValue::display)
        .unwrap_or_else(|| "?".into());
    let _ = writeln!(s, "  layer     {}", d.layer);
    let _ = writeln!(s, "  from      {from}");
    let _ = writeln!(s, "  to        {}", d.to);
    let _ = writeln!(s, "  baseline  {}", d.baseline_id.as_deref().unwrap_or("-"));
    let _ = writeln!(s, "  started   {}", d.started_at);
    let _ = writeln!(s, "  finished  {}", d.finished_at.as_deref().unwrap_or("-"));
    if let Some(r) = &d.reason {
        let _ = writeln!(s, "  reason    {r}");
    }
    let _ = writeln!(s, "\nsteps:");
    if d.steps.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for step in &d.steps {
        let mark = match step.ok {
            Some(true) => "ok",
            Some(false) => "FAILED",
            None => "NO OUTCOME",
        };
        let _ = writeln!(
            s,
            "  {:>3} {:<12} {mark:<10} {}",
            step.step_id, step.kind, step.intent_at
        );
        let _ = writeln!(s, "      intent:  {}", compact(&step.intent));
        if let Some(o) = &step.outcome {
            let _ = writeln!(s, "      outcome: {}", compact(o));
        }
        for out in &step.driver_outputs {
            let code = out
                .exit_code
                .map(|c| c.to_string())
                .unwrap_or_else(|| "killed".into());
            let _ = writeln!(
                s,
                "      $ {}  (exit {code}, {} ms)",
                out.command, out.duration_ms
            );
            for line in out
                .stderr
                .lines()
                .rev()
                .take(5)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                let _ = writeln!(s, "        | {line}");
            }
        }
    }
    let _ = writeln!(s, "\ngates:");
    if d.gates.is_empty() {
        let _ = writeln!(s, "  none");
    }
    for g in &d.gates {
        let _ = writeln!(
            s,
            "  {:<13} {}: {}",
            g.verdict.as_str().to_uppercase(),
            g.name,
            g.detail
        );
        if !g.evidence.is_null() {
            let _ = writeln!(s, "      evidence: {}", compact(&g.evidence));
        }
    }
    s
}

/// A JSON value on one line, shortened for the terminal (the JSON output has it whole).
fn compact(v: &serde_json::Value) -> String {
    rollgate_core::text::shorten(&v.to_string(), 200)
}
