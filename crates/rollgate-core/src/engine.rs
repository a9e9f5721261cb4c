//! The gate decision engine: after a change, decide from observations and the time whether to
//! keep waiting, promote, or roll back.
//!
//! Pure: no I/O, no clock. The runner polls the node, turns what it saw into an [`Observation`]
//! stamped with the time elapsed since the change, and calls [`GateEngine::step`]. The same
//! engine verifies a rollback: the baseline must pass the same gates.
//!
//! Rules (product.md, steps 4 and 5):
//! - readiness (every readiness entry, and the encryption-key and mark-price probes) must turn
//!   green before `readiness_deadline`; 421/503 and refused connections are tolerated as
//!   start-up until then, a plain failure after readiness was once green is not;
//! - each progression signal must move within its window, counted from the first sample taken
//!   once readiness is green; when the baseline itself was idle, the idle policy decides and the
//!   verdict says so;
//! - dependencies must stay healthy (one failed poll is tolerated as noise, two in a row fail);
//! - a fault absent from the baseline (status pointer or log line) fails at once.
//!
//! A failed gate is final: once the engine has said roll back it never says anything else, so
//! no sequence of observations promotes past a failed gate (property-tested below).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::{IdlePolicy, ProgressionMode};
use crate::units::format_duration;
use crate::vocab::{GateResult, Verdict};

/// What the engine is asked to verify.
#[derive(Debug, Clone)]
pub struct GatePlan {
    pub readiness_deadline: Duration,
    /// Names of readiness checks (readiness entries and probes) that must turn green.
    pub readiness: Vec<String>,
    pub progression: Vec<ProgressionGate>,
    pub idle_policy: IdlePolicy,
    /// Names of dependency checks that must stay healthy.
    pub dependencies: Vec<String>,
    /// Faults present in the baseline (`pointer=value`): not new, so not failures.
    pub baseline_faults: BTreeSet<String>,
    /// Consecutive failed polls of one dependency that fail its gate.
    pub dependency_failures: u32,
    /// Every readiness check must stay green this long after all turned green before the
    /// engine promotes (the `stable` gate).
    pub min_healthy: Duration,
}

#[derive(Debug, Clone)]
pub struct ProgressionGate {
    pub name: String,
    pub mode: ProgressionMode,
    pub window: Duration,
    /// The baseline did not move this signal while it was sampled.
    pub baseline_idle: bool,
    /// The baseline's rate, for the record.
    pub baseline_rate_per_s: Option<f64>,
}

/// One probe's reading.
#[derive(Debug, Clone, PartialEq)]
pub enum Reading {
    Pass(String),
    /// Expected while a component starts (421 `NotAcceptingRequests`, 503, connection refused).
    Transient(String),
    Fail(String),
}

impl Reading {
    fn detail(&self) -> &str {
        match self {
            Reading::Pass(d) | Reading::Transient(d) | Reading::Fail(d) => d,
        }
    }
}

/// Everything one poll saw, stamped with the time since the change.
#[derive(Debug, Clone, Default)]
pub struct Observation {
    pub at: Duration,
    pub readiness: BTreeMap<String, Reading>,
    /// The current value of each progression signal; `None` when it could not be read.
    pub progression: BTreeMap<String, Option<Value>>,
    pub dependencies: BTreeMap<String, Reading>,
    /// Faults present now, as `pointer=value`.
    pub faults: BTreeSet<String>,
    /// Log lines since the change that matched a fault pattern.
    pub log_faults: Vec<String>,
    /// Components the runtime reports as exited or restarting, with the runtime's detail.
    pub crashed: BTreeMap<String, String>,
}

/// The engine's answer after an observation.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Keep polling; the gates still pending and the earliest deadline.
    Wait {
        pending: Vec<String>,
        deadline: Duration,
    },
    /// Every gate passed (some may be inconclusive under the idle policy).
    Promote { gates: Vec<GateResult> },
    /// A gate failed.
    RollBack {
        gates: Vec<GateResult>,
        reason: String,
    },
}

impl Decision {
    pub fn is_final(&self) -> bool {
        !matches!(self, Decision::Wait { .. })
    }
}

#[derive(Debug, Clone, Default)]
struct ReadinessTrack {
    green_at: Option<Duration>,
    last: Option<Reading>,
    failed: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct ProgressionTrack {
    first: Option<(Duration, Value)>,
    last: Option<(Duration, Value)>,
    moved_at: Option<Duration>,
    samples: Vec<(u64, Value)>,
    unreadable: u32,
}

#[derive(Debug, Clone, Default)]
struct DependencyTrack {
    consecutive_failures: u32,
    last: Option<Reading>,
    failed: Option<String>,
}

/// The state of every gate after the observations so far.
#[derive(Debug, Clone)]
pub struct GateEngine {
    plan: GatePlan,
    readiness: BTreeMap<String, ReadinessTrack>,
    all_green_at: Option<Duration>,
    progression: BTreeMap<String, ProgressionTrack>,
    dependencies: BTreeMap<String, DependencyTrack>,
    new_faults: BTreeSet<String>,
    log_faults: Vec<String>,
    crashed: BTreeMap<String, String>,
    now: Duration,
    polls: u32,
    final_decision: Option<Decision>,
}

impl GateEngine {
    pub fn new(plan: GatePlan) -> GateEngine {
        GateEngine {
            readiness: plan
                .readiness
                .iter()
                .map(|n| (n.clone(), ReadinessTrack::default()))
                .collect(),
            progression: plan
                .progression
                .iter()
                .map(|p| (p.name.clone(), ProgressionTrack::default()))
                .collect(),
            dependencies: plan
                .dependencies
                .iter()
                .map(|n| (n.clone(), DependencyTrack::default()))
                .collect(),
            plan,
            all_green_at: None,
            new_faults: BTreeSet::new(),
            log_faults: Vec::new(),
            crashed: BTreeMap::new(),
            now: Duration::ZERO,
            polls: 0,
            final_decision: None,
        }
    }

    pub fn plan(&self) -> &GatePlan {
        &self.plan
    }

    /// Fold one observation into the gates and decide.
    pub fn step(&mut self, obs: &Observation) -> Decision {
        if let Some(done) = &self.final_decision {
            return done.clone();
        }
        self.now = self.now.max(obs.at);
        self.polls += 1;
        let now = self.now;

        // Readiness.
        for (name, track) in self.readiness.iter_mut() {
            let reading = obs
                .readiness
                .get(name)
                .cloned()
                .unwrap_or(Reading::Transient("not observed".into()));
            match &reading {
                Reading::Pass(_) => {
                    track.green_at.get_or_insert(now);
                }
                Reading::Transient(d) | Reading::Fail(d) if track.green_at.is_some() => {
                    track
                        .failed
                        .get_or_insert_with(|| format!("was green, then: {d}"));
                }
                Reading::Fail(d) if now >= self.plan.readiness_deadline => {
                    track.failed.get_or_insert_with(|| d.clone());
                }
                _ => {}
            }
            track.last = Some(reading);
        }
        if self.all_green_at.is_none()
            && self
                .readiness
                .values()
                .all(|t| t.green_at.is_some() && t.failed.is_none())
        {
            self.all_green_at = Some(now);
        }
        if self.all_green_at.is_none() && now >= self.plan.readiness_deadline {
            for track in self.readiness.values_mut() {
                if track.green_at.is_none() {
                    let last = track
                        .last
                        .as_ref()
                        .map(|r| r.detail().to_string())
                        .unwrap_or_default();
                    track.failed.get_or_insert_with(|| {
                        format!(
                            "not green within {}: {last}",
                            format_duration(self.plan.readiness_deadline)
                        )
                    });
                }
            }
        }

        // Progression: sampled only once the node is ready, so start-up time does not count.
        if self.all_green_at.is_some() {
            for gate in &self.plan.progression {
                let track = self.progression.get_mut(&gate.name).expect("tracked");
                match obs.progression.get(&gate.name).cloned().flatten() {
                    Some(v) => {
                        if track.samples.len() < 256 {
                            track.samples.push((now.as_millis() as u64, v.clone()));
                        }
                        match &track.first {
                            None => track.first = Some((now, v.clone())),
                            Some((_, first))
                                if track.moved_at.is_none() && moved(gate.mode, first, &v) =>
                            {
                                track.moved_at = Some(now);
                            }
                            _ => {}
                        }
                        track.last = Some((now, v));
                    }
                    None => track.unreadable += 1,
                }
            }
        }

        // Dependencies.
        for (name, track) in self.dependencies.iter_mut() {
            let Some(reading) = obs.dependencies.get(name) else {
                continue;
            };
            match reading {
                Reading::Pass(_) => track.consecutive_failures = 0,
                Reading::Transient(d) | Reading::Fail(d) => {
                    track.consecutive_failures += 1;
                    if track.consecutive_failures >= self.plan.dependency_failures.max(1) {
                        track.failed.get_or_insert_with(|| d.clone());
                    }
                }
            }
            track.last = Some(reading.clone());
        }

        // Faults.
        for f in &obs.faults {
            if !self.plan.baseline_faults.contains(f) {
                self.new_faults.insert(f.clone());
            }
        }
        for line in &obs.log_faults {
            if self.log_faults.len() < 20 && !self.log_faults.contains(line) {
                self.log_faults.push(line.clone());
            }
        }

        for (component, detail) in &obs.crashed {
            self.crashed
                .entry(component.clone())
                .or_insert_with(|| detail.clone());
        }

        let decision = self.decide();
        if decision.is_final() {
            self.final_decision = Some(decision.clone());
        }
        decision
    }

    fn decide(&self) -> Decision {
        let gates = self.gates();
        if let Some(failed) = gates.iter().find(|g| g.verdict == Verdict::Fail) {
            return Decision::RollBack {
                reason: format!("{}: {}", failed.name, failed.detail),
                gates,
            };
        }
        let pending: Vec<String> = gates
            .iter()
            .filter(|g| is_pending(g))
            .map(|g| g.name.clone())
            .collect();
        if pending.is_empty() {
            return Decision::Promote { gates };
        }
        Decision::Wait {
            pending,
            deadline: self.next_deadline(),
        }
    }

    /// The bound by which the engine always decides (TEMPORARY, replaced by the engine work).
    pub fn hard_deadline(&self) -> Duration {
        self.plan.readiness_deadline
            + self
                .plan
                .progression
                .iter()
                .map(|p| p.window)
                .max()
                .unwrap_or_default()
            + self.plan.min_healthy
    }

    /// Fail every gate still undecided at `now` (TEMPORARY, replaced by the engine work).
    pub fn expire(&mut self, now: Duration) -> Decision {
        if let Some(done) = &self.final_decision {
            return done.clone();
        }
        let gates = self.gates();
        let d = Decision::RollBack {
            reason: format!("gates undecided at {}", fmt_secs(now)),
            gates,
        };
        self.final_decision = Some(d.clone());
        d
    }

    /// The latest time by which the pending gates must be decided.
    fn next_deadline(&self) -> Duration {
        match self.all_green_at {
            None => self.plan.readiness_deadline,
            Some(g) => {
                g + self
                    .plan
                    .progression
                    .iter()
                    .map(|p| p.window)
                    .max()
                    .unwrap_or_default()
                    .max(self.plan.min_healthy)
            }
        }
    }

    /// The verdict of every gate now; pending gates are `inconclusive` with `"pending": true` in
    /// their evidence.
    pub fn gates(&self) -> Vec<GateResult> {
        let mut out = Vec::new();
        for (name, t) in &self.readiness {
            let (verdict, detail) = match (&t.failed, t.green_at) {
                (Some(f), _) => (Verdict::Fail, f.clone()),
                (None, Some(at)) => (Verdict::Pass, format!("green after {}", fmt_secs(at))),
                (None, None) => (
                    Verdict::Inconclusive,
                    format!(
                        "waiting ({} of {} deadline used): {}",
                        fmt_secs(self.now),
                        format_duration(self.plan.readiness_deadline),
                        t.last
                            .as_ref()
                            .map(|r| r.detail())
                            .unwrap_or("not observed yet")
                    ),
                ),
            };
            out.push(GateResult {
                name: format!("readiness:{name}"),
                verdict,
                detail,
                evidence: json!({
                    "deadline_s": self.plan.readiness_deadline.as_secs_f64(),
                    "green_at_s": t.green_at.map(|d| d.as_secs_f64()),
                    "last": t.last.as_ref().map(|r| r.detail()),
                    "pending": verdict == Verdict::Inconclusive,
                }),
            });
        }
        for gate in &self.plan.progression {
            out.push(self.progression_gate(gate));
        }
        for (name, t) in &self.dependencies {
            let (verdict, detail) = match (&t.failed, &t.last) {
                (Some(f), _) => (
                    Verdict::Fail,
                    format!(
                        "failed {} polls in a row: {f}",
                        t.consecutive_failures.max(1)
                    ),
                ),
                (None, Some(Reading::Pass(d))) => (Verdict::Pass, d.clone()),
                (None, Some(r)) => (
                    Verdict::Inconclusive,
                    format!("one failed poll (tolerated once): {}", r.detail()),
                ),
                (None, None) => (Verdict::Inconclusive, "not observed yet".into()),
            };
            let pending = verdict == Verdict::Inconclusive;
            out.push(GateResult {
                // Names that carry their own kind (`environment:sgx-flags`) are kept as given.
                name: if name.contains(':') { name.clone() } else { format!("dependency:{name}") },
                verdict,
                detail,
                evidence: json!({"consecutive_failures": t.consecutive_failures, "pending": pending}),
            });
        }
        out.push(self.stable_gate());
        for (component, detail) in &self.crashed {
            out.push(GateResult {
                name: format!("component:{component}"),
                verdict: Verdict::Fail,
                detail: format!("{component} is not running: {detail}"),
                evidence: json!({"runtime": detail}),
            });
        }
        let fault_detail = if self.new_faults.is_empty() && self.log_faults.is_empty() {
            format!(
                "no new fault (baseline had {})",
                self.plan.baseline_faults.len()
            )
        } else {
            let mut parts: Vec<String> = self
                .new_faults
                .iter()
                .map(|f| format!("new fault {f}"))
                .collect();
            parts.extend(self.log_faults.iter().take(3).map(|l| format!("log: {l}")));
            parts.join("; ")
        };
        out.push(GateResult {
            name: "faults".into(),
            verdict: if self.new_faults.is_empty() && self.log_faults.is_empty() {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            detail: fault_detail,
            evidence: json!({
                "new_faults": self.new_faults,
                "log_lines": self.log_faults,
                "baseline_faults": self.plan.baseline_faults,
            }),
        });
        out
    }

    /// `stable`: readiness held green for `min_healthy` after it first was all green. A
    /// readiness check that goes red meanwhile fails its own gate; this one only waits.
    fn stable_gate(&self) -> GateResult {
        let hold = self.plan.min_healthy;
        let held = self
            .all_green_at
            .map(|g| self.now.saturating_sub(g))
            .unwrap_or_default();
        let readiness_failed = self.readiness.values().any(|t| t.failed.is_some());
        let (verdict, detail) = match self.all_green_at {
            _ if readiness_failed => (Verdict::Fail, "readiness did not hold".to_string()),
            Some(_) if held >= hold => (
                Verdict::Pass,
                format!("readiness held for {} (min_healthy)", fmt_secs(held)),
            ),
            Some(_) => (
                Verdict::Inconclusive,
                format!(
                    "readiness held for {} of {}",
                    fmt_secs(held),
                    format_duration(hold)
                ),
            ),
            None => (Verdict::Inconclusive, "waiting for readiness".to_string()),
        };
        GateResult {
            name: "stable".into(),
            verdict,
            detail,
            evidence: json!({
                "min_healthy_s": hold.as_secs_f64(),
                "held_s": held.as_secs_f64(),
                "pending": verdict == Verdict::Inconclusive,
            }),
        }
    }

    fn progression_gate(&self, gate: &ProgressionGate) -> GateResult {
        let t = &self.progression[&gate.name];
        let name = format!("progression:{}", gate.name);
        let verb = match gate.mode {
            ProgressionMode::Increases => "increase",
            ProgressionMode::Changes => "change",
        };
        let elapsed = match (&t.first, self.all_green_at) {
            (Some((t0, _)), _) => self.now.saturating_sub(*t0),
            _ => Duration::ZERO,
        };
        let evidence = |pending: bool, policy: Option<&str>| {
            json!({
                "window_s": gate.window.as_secs_f64(),
                "first": t.first.as_ref().map(|(_, v)| v),
                "last": t.last.as_ref().map(|(_, v)| v),
                "moved_after_s": t.moved_at.zip(t.first.as_ref()).map(|(m, (t0, _))| m.saturating_sub(*t0).as_secs_f64()),
                "samples": t.samples,
                "unreadable_polls": t.unreadable,
                "baseline_idle": gate.baseline_idle,
                "baseline_rate_per_s": gate.baseline_rate_per_s,
                "idle_policy": policy,
                "pending": pending,
            })
        };
        if let (Some(moved), Some((t0, first)), Some((_, last))) = (t.moved_at, &t.first, &t.last) {
            return GateResult {
                name,
                verdict: Verdict::Pass,
                detail: format!(
                    "{} moved from {} to {} within {}",
                    gate.name,
                    first,
                    last,
                    fmt_secs(moved.saturating_sub(*t0))
                ),
                evidence: evidence(false, None),
            };
        }
        if t.first.is_none() || elapsed < gate.window {
            let detail = match &t.first {
                None => "waiting for readiness before sampling".to_string(),
                Some((_, v)) => format!(
                    "waiting for {} to {verb} from {v} ({} of {} window)",
                    gate.name,
                    fmt_secs(elapsed),
                    format_duration(gate.window)
                ),
            };
            return GateResult {
                name,
                verdict: Verdict::Inconclusive,
                detail,
                evidence: evidence(true, None),
            };
        }
        let stayed = t
            .first
            .as_ref()
            .map(|(_, v)| v.to_string())
            .unwrap_or_default();
        let rate = gate
            .baseline_rate_per_s
            .map(|r| format!("; baseline rate {r:.2}/s"))
            .unwrap_or_default();
        if gate.baseline_idle {
            let policy = self.plan.idle_policy;
            let verdict = match policy {
                IdlePolicy::Fail => Verdict::Fail,
                IdlePolicy::Inconclusive => Verdict::Inconclusive,
                IdlePolicy::Pass => Verdict::Pass,
            };
            return GateResult {
                name,
                verdict,
                detail: format!(
                    "{} did not {verb} in {} (stayed at {stayed}); the baseline was idle too, idle_progression = {} decides",
                    gate.name,
                    format_duration(gate.window),
                    policy.as_str()
                ),
                evidence: evidence(false, Some(policy.as_str())),
            };
        }
        GateResult {
            name,
            verdict: Verdict::Fail,
            detail: format!(
                "healthy but not progressing: {} did not {verb} in {} (stayed at {stayed}){rate}",
                gate.name,
                format_duration(gate.window)
            ),
            evidence: evidence(false, None),
        }
    }
}

fn is_pending(g: &GateResult) -> bool {
    g.verdict == Verdict::Inconclusive
        && g.evidence
            .get("pending")
            .and_then(Value::as_bool)
            .unwrap_or(false)
}

fn fmt_secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// A numeric reading of a progression value: numbers, decimal strings and `0x` hex strings.
pub fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let s = s.trim();
            match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
                Some(hex) if !hex.is_empty() && hex.len() <= 16 => {
                    u64::from_str_radix(hex, 16).ok().map(|n| n as f64)
                }
                Some(_) => None,
                None => s.parse().ok(),
            }
        }
        _ => None,
    }
}

/// Whether a signal moved from `first` to `now` under `mode`.
pub fn moved(mode: ProgressionMode, first: &Value, now: &Value) -> bool {
    match mode {
        ProgressionMode::Changes => first != now,
        ProgressionMode::Increases => match (numeric(first), numeric(now)) {
            (Some(a), Some(b)) => b > a,
            _ => false,
        },
    }
}

/// The pure form: every observation folded in order; the decision after the last.
pub fn decide(plan: &GatePlan, observations: &[Observation], now: Duration) -> Decision {
    let mut engine = GateEngine::new(plan.clone());
    let mut last = None;
    for o in observations.iter().filter(|o| o.at <= now) {
        last = Some(engine.step(o));
    }
    last.unwrap_or_else(|| Decision::Wait {
        pending: plan.readiness.clone(),
        deadline: plan.readiness_deadline,
    })
}

#[cfg(test)]
mod tests;
