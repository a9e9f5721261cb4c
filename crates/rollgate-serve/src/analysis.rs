//! What a rollout's decision record means, shared by the report, the timeline, the status page
//! and the metrics: which phase each gate verdict belongs to, which gate decided, and the cause
//! label of the outcome.

use std::time::SystemTime;

use rollgate_core::vocab::{Outcome, Verdict};
use rollgate_journal::{GateRecord, RolloutDetail, StepRecord};
use serde_json::Value;

use crate::html::{epoch_secs, parse_ts};

/// The steps that restart something: gate evidence times (`samples`, `green_at_s`) count from
/// the change they follow.
pub fn is_restart(kind: &str) -> bool {
    kind == "restart" || kind == "rollback_restart"
}

pub fn is_rollback(kind: &str) -> bool {
    kind.starts_with("rollback_")
}

/// One gate verdict placed in its rollout.
#[derive(Debug, Clone)]
pub struct PhasedGate<'a> {
    pub gate: &'a GateRecord,
    /// When it was recorded (epoch seconds).
    pub at: Option<f64>,
    /// The step it was recorded in (`verify`, `bake`, `rollback_verify`); `verify` when the
    /// record has no steps.
    pub phase: String,
    /// When the change it judges was made (the preceding restart's intent), epoch seconds.
    pub anchor: Option<f64>,
}

impl PhasedGate<'_> {
    pub fn in_rollback(&self) -> bool {
        is_rollback(&self.phase)
    }
}

/// A rollout's record, read once.
#[derive(Debug)]
pub struct Analysis<'a> {
    pub detail: &'a RolloutDetail,
    pub gates: &'a [PhasedGate<'a>],
    /// The failed gate that decided to roll back (verify or bake phase).
    pub failing: Option<&'a PhasedGate<'a>>,
    /// The first failed forward step (apply, restart, verify, bake, …).
    pub failed_step: Option<&'a StepRecord>,
    /// The first failed gate of the rollback's re-verification.
    pub rollback_failing: Option<&'a PhasedGate<'a>>,
}

fn ts(s: &str) -> Option<f64> {
    parse_ts(s).map(epoch_secs)
}

/// Steps that record gate verdicts.
fn records_gates(kind: &str) -> bool {
    kind == "verify"
        || kind == "bake"
        || kind == "rollback_verify"
        || kind.contains("verify")
        || kind.contains("bake")
}

/// Place every gate of `d` in its phase: the last gate-recording step (`verify`, `bake`,
/// `rollback_verify`) that began before it was recorded; its anchor is the last restart before
/// that step.
pub fn phase_gates(d: &RolloutDetail) -> Vec<PhasedGate<'_>> {
    let steps: Vec<(f64, &StepRecord)> = d
        .steps
        .iter()
        .filter_map(|s| ts(&s.intent_at).map(|t| (t, s)))
        .collect();
    d.gates
        .iter()
        .map(|g| {
            let at = ts(&g.at);
            let step = at.and_then(|at| {
                let before = |(t, _): &&(f64, &StepRecord)| *t <= at + 1e-3;
                steps
                    .iter()
                    .rev()
                    .filter(before)
                    .find(|(_, s)| records_gates(&s.kind))
                    .or_else(|| steps.iter().rev().find(before))
            });
            let phase = step
                .map(|(_, s)| s.kind.clone())
                .unwrap_or_else(|| "verify".to_string());
            let anchor = step.and_then(|(t0, _)| {
                steps
                    .iter()
                    .rev()
                    .find(|(t, s)| *t <= *t0 && is_restart(&s.kind))
                    .map(|(t, _)| *t)
            });
            PhasedGate {
                gate: g,
                at,
                phase,
                anchor,
            }
        })
        .collect()
}

impl<'a> Analysis<'a> {
    /// `gates` must come from [`phase_gates`] of the same record.
    pub fn new(detail: &'a RolloutDetail, gates: &'a [PhasedGate<'a>]) -> Analysis<'a> {
        let failing = gates
            .iter()
            .find(|g| g.gate.verdict == Verdict::Fail && !g.in_rollback());
        let rollback_failing = gates
            .iter()
            .find(|g| g.gate.verdict == Verdict::Fail && g.in_rollback());
        let failed_step = detail
            .steps
            .iter()
            .find(|s| s.ok == Some(false) && !is_rollback(&s.kind));
        Analysis {
            detail,
            gates,
            failing,
            failed_step,
            rollback_failing,
        }
    }

    /// The cause label of the outcome, as `rollgate_rollouts_total{cause}` shows it:
    /// the deciding gate (`progression:requestIndex`, `bake:faults`, …), `step:<kind>` when a
    /// step failed without a gate, `kill_switch` when `rollgate freeze` stopped it, `requested`
    /// for `rollgate rollback`, `preflight` for a refused start, `interrupted`, `none` for a
    /// promotion, `unfinished`.
    pub fn cause(&self) -> String {
        let d = self.detail;
        let kill_switch = self
            .failing
            .is_some_and(|g| g.gate.name == rollgate_runner::killswitch::GATE)
            || d.reason
                .as_deref()
                .is_some_and(|r| r.starts_with("kill switch"));
        if kill_switch && d.outcome.is_some_and(|o| o != Outcome::Promoted) {
            return "kill_switch".into();
        }
        match d.outcome {
            None => "unfinished".into(),
            Some(Outcome::Promoted) => "none".into(),
            Some(Outcome::Refused) => {
                if d.steps
                    .iter()
                    .any(|s| s.kind == "freeze_baseline" && s.ok == Some(false))
                {
                    "preflight".into()
                } else {
                    "interrupted".into()
                }
            }
            Some(Outcome::RolledBack | Outcome::RollbackFailed) => {
                if let Some(g) = self.failing {
                    g.gate.name.clone()
                } else if let Some(s) = self.failed_step {
                    format!("step:{}", s.kind)
                } else if requested_rollback(d) {
                    "requested".into()
                } else if d
                    .reason
                    .as_deref()
                    .is_some_and(|r| r.contains("interrupted"))
                {
                    "interrupted".into()
                } else {
                    "other".into()
                }
            }
        }
    }

    /// One sentence: where and why it stopped.
    pub fn headline(&self) -> String {
        let d = self.detail;
        match d.outcome {
            Some(Outcome::Promoted) => format!(
                "{} = {} verified and promoted: every gate passed",
                d.layer, d.to
            ),
            None => match d.steps.last() {
                Some(s) => format!("unfinished: last step {} ({})", s.kind, step_state(s)),
                None => "unfinished: no step recorded".into(),
            },
            Some(o) => {
                let why = if let Some(g) = self.failing {
                    format!(
                        "gate {} failed in {}: {}",
                        g.gate.name, g.phase, g.gate.detail
                    )
                } else if let Some(s) = self.failed_step {
                    format!(
                        "step {} failed: {}",
                        s.kind,
                        summary_of(s).unwrap_or_default()
                    )
                } else {
                    d.reason.clone().unwrap_or_default()
                };
                let what = match o {
                    Outcome::RolledBack => "rolled back",
                    Outcome::RollbackFailed => "rollback FAILED",
                    Outcome::Refused => "refused",
                    Outcome::Promoted => "promoted",
                };
                format!("{what}: {why}")
            }
        }
    }
}

pub fn requested_rollback(d: &RolloutDetail) -> bool {
    d.plan
        .as_ref()
        .and_then(|p| p.get("requested_rollback"))
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

pub fn step_state(s: &StepRecord) -> &'static str {
    match s.ok {
        Some(true) => "ok",
        Some(false) => "failed",
        None => "intent written, no outcome",
    }
}

/// The `summary` a step outcome carries, when it has one.
pub fn summary_of(s: &StepRecord) -> Option<String> {
    s.outcome
        .as_ref()?
        .get("summary")?
        .as_str()
        .map(str::to_string)
}

/// Seconds between two journal timestamps, or since `from` when `to` is `None`.
pub fn seconds_between(from: &str, to: Option<&str>, now: SystemTime) -> Option<f64> {
    let a = ts(from)?;
    let b = match to {
        Some(t) => ts(t)?,
        None => epoch_secs(now),
    };
    Some((b - a).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_journal::GateRecord;
    use serde_json::json;

    fn detail(
        outcome: Option<Outcome>,
        reason: &str,
        steps: Vec<(&str, Option<bool>)>,
        gates: Vec<(&str, Verdict)>,
    ) -> RolloutDetail {
        let at = |i: usize| format!("2026-11-28T04:00:{:02}Z", i * 2);
        RolloutDetail {
            rollout_id: "r-1".into(),
            layer: "operator-image".into(),
            from: None,
            to: "v2".into(),
            baseline_id: None,
            started_at: at(0),
            finished_at: outcome.map(|_| at(29)),
            outcome,
            reason: Some(reason.into()),
            plan: None,
            steps: steps
                .into_iter()
                .enumerate()
                .map(|(i, (kind, ok))| StepRecord {
                    step_id: i as i64 + 1,
                    kind: kind.into(),
                    intent: json!({}),
                    intent_at: at(i + 1),
                    ok,
                    outcome: ok.map(|_| json!({"summary": format!("{kind} done")})),
                    outcome_at: ok.map(|_| at(i + 1)),
                    driver_outputs: vec![],
                })
                .collect(),
            gates: gates
                .into_iter()
                .map(|(name, verdict)| GateRecord {
                    name: name.into(),
                    verdict,
                    detail: "d".into(),
                    evidence: json!({}),
                    at: "2026-11-28T04:00:09Z".into(),
                })
                .collect(),
        }
    }

    fn cause(d: &RolloutDetail) -> String {
        let gates = phase_gates(d);
        Analysis::new(d, &gates).cause()
    }

    #[test]
    fn causes_and_phases() {
        let forward = vec![
            ("freeze_baseline", Some(true)),
            ("apply", Some(true)),
            ("restart", Some(true)),
            ("verify", Some(false)),
        ];
        let d = detail(
            Some(Outcome::RolledBack),
            "x",
            forward.clone(),
            vec![
                ("readiness:operator", Verdict::Pass),
                ("progression:requestIndex", Verdict::Fail),
            ],
        );
        assert_eq!(cause(&d), "progression:requestIndex");
        let gates = phase_gates(&d);
        assert!(gates.iter().all(|g| g.phase == "verify"), "{gates:?}");
        assert!(
            gates.iter().all(|g| g.anchor.is_some()),
            "anchored at the restart"
        );

        let d = detail(
            Some(Outcome::RolledBack),
            "apply failed",
            vec![("freeze_baseline", Some(true)), ("apply", Some(false))],
            vec![],
        );
        assert_eq!(cause(&d), "step:apply");
        let d = detail(
            Some(Outcome::Refused),
            "not ready",
            vec![("freeze_baseline", Some(false))],
            vec![],
        );
        assert_eq!(cause(&d), "preflight");
        let d = detail(Some(Outcome::Promoted), "ok", forward.clone(), vec![]);
        assert_eq!(cause(&d), "none");
        let d = detail(None, "", forward.clone(), vec![]);
        assert_eq!(cause(&d), "unfinished");
        let d = detail(
            Some(Outcome::RolledBack),
            "kill switch: node frozen by alice",
            forward.clone(),
            vec![("kill_switch", Verdict::Fail)],
        );
        assert_eq!(cause(&d), "kill_switch");
        let d = detail(
            Some(Outcome::Refused),
            "kill switch: node frozen by alice",
            vec![("freeze_baseline", Some(true))],
            vec![],
        );
        assert_eq!(cause(&d), "kill_switch");
    }
}
