//! The gate decision engine: after a change, decide from observations and the time whether to
//! keep waiting, promote, or roll back.
//!
//! Pure: no I/O, no clock. The runner polls the node, turns what it saw into an [`Observation`]
//! stamped with the time elapsed since the change, and calls [`GateEngine::step`]. The same
//! engine verifies a rollback: the baseline must pass the same gates.
//!
//! Rules (product.md, steps 4 and 5):
//! - readiness (every readiness entry, and the encryption-key and mark-price probes) must turn
//!   green by `readiness_deadline`; 421/503 and refused connections are tolerated as start-up
//!   until then, a plain failure only before the check was first green, and a check never
//!   observed fails at the deadline. Once green, a check fails after `dependency_failures`
//!   consecutive non-passing polls (default 2: one blip, e.g. a timeout, is tolerated; the gate
//!   is pending while it lasts, so the engine never promotes during one);
//! - `stable`: readiness must hold for `min_healthy` from the poll on which every check was
//!   green; a tolerated blip does not restart the hold;
//! - each progression signal must move within its window, counted from the poll on which
//!   readiness was all green and compared with the first value read after it; when the baseline
//!   itself was idle, the idle policy decides and the verdict says so. A signal that could not be
//!   read when its window closes (never since readiness, or not since its last value) fails
//!   *unreadable after readiness*, whatever the idle policy. `increases` compares counters
//!   exactly, whatever their size ([`crate::facts::increased`]);
//! - dependencies must stay healthy (`dependency_failures` failed polls in a row fail, fewer are
//!   tolerated as noise); a dependency not observed once by `readiness_deadline` fails then;
//! - a fault absent from the baseline (status pointer or log line) fails at once;
//! - each analysis gate (`[[analysis]]`, [`crate::analysis`]) is measured from the poll on which
//!   readiness was all green, every `interval` ([`GateEngine::analysis_due`]); it fails as soon as
//!   its failed measurements pass `failure_limit`, and is decided when the `stable` hold ends
//!   and it was measured at least once (inconclusive past `inconclusive_limit`, else passed).
//!   It adds no time of its own: the hold is its window;
//! - with the operator's Prometheus frozen in the baseline ([`crate::monitoring`]), `rules` is
//!   judged on the last measurement when the hold ends (every rule healthy at freeze still is,
//!   every rule with series still has them: Prometheus needs a scrape and an evaluation after
//!   the restart, so earlier measurements are recorded, not judged), and `alerts` fails when a
//!   new alert for this node is firing on two measurements in a row (the restart's own alerts
//!   resolve at the next evaluation).
//!
//! Liveness: the engine decides by [`GateEngine::hard_deadline`] (`readiness_deadline` + the
//! longest progression window + `min_healthy`). Every pending gate has its own deadline below
//! that bound; a gate still pending on an observation at or after it (a blip that has not
//! resolved) fails as *not decided by its deadline*. [`GateEngine::next_deadline`] never exceeds
//! the bound, and a runner whose observations stop arriving calls [`GateEngine::expire`].
//!
//! A failed gate is final: once the engine has said roll back it never says anything else, so
//! no sequence of observations promotes past a failed gate, and every sequence polled at least
//! every second is decided by the bound (both property-tested below).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::analysis::{Sampled, Tally};
use crate::config::{Analysis, IdlePolicy, ProgressionMode};
use crate::monitoring::{MonitoringRecord, new_alerts, rule_regressions};
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
    /// Consecutive failed polls of one dependency, or of a readiness check once it was green,
    /// that fail its gate (fewer are tolerated as noise; 0 is read as 1).
    pub dependency_failures: u32,
    /// Every readiness check must stay green this long after all turned green before the
    /// engine promotes (the `stable` gate).
    pub min_healthy: Duration,
    /// PromQL analysis gates, measured during the `stable` hold.
    pub analysis: Vec<Analysis>,
    /// The operator's Prometheus at freeze: with it, the `rules` gate (and `alerts`, with
    /// `alert_gate`) compare what Prometheus says after the change.
    pub monitoring: Option<MonitoringRecord>,
    /// Judge new firing alerts (`[prometheus] alert_selectors` is set).
    pub alert_gate: bool,
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
    /// Analysis measurements taken with this poll (only those [`GateEngine::analysis_due`]
    /// asked for; a measurement before readiness is ignored).
    pub analysis: BTreeMap<String, Sampled>,
    /// What the operator's Prometheus said now (only when [`GateEngine::monitoring_due`]), or
    /// why it could not be asked.
    pub monitoring: Option<Result<MonitoringRecord, String>>,
}

/// Monitoring is asked at most this often.
const MONITORING_EVERY: Duration = Duration::from_secs(1);

/// What the `rules` and `alerts` gates saw.
#[derive(Debug, Clone, Default)]
struct MonitoringTrack {
    last_at: Option<Duration>,
    /// The last measurement: rule regressions, or why Prometheus could not be asked.
    last: Option<Result<Vec<String>, String>>,
    measured: u32,
    answered: u32,
    /// Consecutive measurements on which each new alert was firing.
    alert_streak: BTreeMap<String, u32>,
    alert_failed: Option<String>,
    history: Vec<Value>,
}

/// The engine's answer after an observation.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Keep polling; the gates still pending and when they will have been decided
    /// ([`GateEngine::next_deadline`], never later than [`GateEngine::hard_deadline`]).
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
    /// Non-passing polls in a row since the check was last green.
    consecutive_failures: u32,
    failed: Option<String>,
}

#[derive(Debug, Clone, Default)]
struct ProgressionTrack {
    first: Option<(Duration, Value)>,
    last: Option<(Duration, Value)>,
    moved_at: Option<Duration>,
    samples: Vec<(u64, Value)>,
    unreadable: u32,
    /// Polls since the last value was read on which the signal could not be read.
    unreadable_run: u32,
}

#[derive(Debug, Clone, Default)]
struct DependencyTrack {
    consecutive_failures: u32,
    last: Option<Reading>,
    /// The gate's detail once it failed.
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
    analysis: BTreeMap<String, Tally>,
    monitoring: MonitoringTrack,
    now: Duration,
    polls: u32,
    /// Set by [`GateEngine::expire`] (or an observation past the hard deadline): every gate
    /// still pending has failed, not decided by its deadline.
    expired_at: Option<Duration>,
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
            analysis: plan
                .analysis
                .iter()
                .map(|a| (a.name.clone(), Tally::default()))
                .collect(),
            monitoring: MonitoringTrack::default(),
            plan,
            all_green_at: None,
            new_faults: BTreeSet::new(),
            log_faults: Vec::new(),
            crashed: BTreeMap::new(),
            now: Duration::ZERO,
            polls: 0,
            expired_at: None,
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
        self.polls = self.polls.saturating_add(1);
        let now = self.now;
        let deadline = self.plan.readiness_deadline;
        let tolerance = self.plan.dependency_failures.max(1);

        // Readiness.
        for (name, track) in self.readiness.iter_mut() {
            let reading = obs
                .readiness
                .get(name)
                .cloned()
                .unwrap_or(Reading::Transient("not observed".into()));
            match &reading {
                Reading::Pass(_) => {
                    track.consecutive_failures = 0;
                    if track.green_at.is_none() {
                        if now <= deadline {
                            track.green_at = Some(now);
                        } else {
                            // Green only after the deadline: too late (and it keeps every
                            // later window inside the engine's bound).
                            track.failed.get_or_insert_with(|| {
                                format!(
                                    "not green within {}: green only at {}",
                                    format_duration(deadline),
                                    fmt_secs(now)
                                )
                            });
                        }
                    }
                }
                Reading::Transient(d) | Reading::Fail(d) if track.green_at.is_some() => {
                    track.consecutive_failures = track.consecutive_failures.saturating_add(1);
                    if track.consecutive_failures >= tolerance {
                        let n = track.consecutive_failures;
                        track.failed.get_or_insert_with(|| {
                            if n == 1 {
                                format!("was green, then: {d}")
                            } else {
                                format!("was green, then failed {n} polls in a row: {d}")
                            }
                        });
                    }
                }
                Reading::Fail(d) if now >= deadline => {
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
                let Some(track) = self.progression.get_mut(&gate.name) else {
                    continue;
                };
                match obs.progression.get(&gate.name).cloned().flatten() {
                    Some(v) => {
                        track.unreadable_run = 0;
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
                    None => {
                        track.unreadable = track.unreadable.saturating_add(1);
                        track.unreadable_run = track.unreadable_run.saturating_add(1);
                    }
                }
            }
        }

        // Dependencies.
        for (name, track) in self.dependencies.iter_mut() {
            if let Some(reading) = obs.dependencies.get(name) {
                match reading {
                    Reading::Pass(_) => track.consecutive_failures = 0,
                    Reading::Transient(d) | Reading::Fail(d) => {
                        track.consecutive_failures = track.consecutive_failures.saturating_add(1);
                        if track.consecutive_failures >= tolerance {
                            let n = track.consecutive_failures;
                            track
                                .failed
                                .get_or_insert_with(|| format!("failed {n} polls in a row: {d}"));
                        }
                    }
                }
                track.last = Some(reading.clone());
            } else if track.last.is_none() && now >= deadline {
                // Observed every n-th poll is fine; never observed at all is not.
                track.failed.get_or_insert_with(|| {
                    format!(
                        "not observed within the {} readiness deadline",
                        format_duration(deadline)
                    )
                });
            }
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

        // Analysis: measured only once the node is ready.
        if self.all_green_at.is_some() {
            for gate in &self.plan.analysis {
                if let (Some(sampled), Some(tally)) = (
                    obs.analysis.get(&gate.name),
                    self.analysis.get_mut(&gate.name),
                ) {
                    tally.add(gate, now, sampled);
                }
            }
        }

        // The operator's Prometheus: measured only once the node is ready.
        if let (Some(base), Some(seen), Some(_)) =
            (&self.plan.monitoring, &obs.monitoring, self.all_green_at)
        {
            let t = &mut self.monitoring;
            t.measured = t.measured.saturating_add(1);
            t.last_at = Some(now);
            match seen {
                Ok(rec) => {
                    t.answered = t.answered.saturating_add(1);
                    let regressions = rule_regressions(base, rec);
                    let alerts = if self.plan.alert_gate {
                        new_alerts(base, rec)
                    } else {
                        Vec::new()
                    };
                    t.alert_streak.retain(|a, _| alerts.contains(a));
                    for a in &alerts {
                        let n = t.alert_streak.entry(a.clone()).or_default();
                        *n = n.saturating_add(1);
                        if *n >= 2 {
                            t.alert_failed.get_or_insert_with(|| {
                                format!("new alert firing on 2 measurements in a row: {a}")
                            });
                        }
                    }
                    if t.history.len() < 120 {
                        t.history.push(json!({"at_s": now.as_secs_f64(), "rule_regressions": regressions, "new_alerts": alerts}));
                    }
                    t.last = Some(Ok(regressions));
                }
                Err(e) => {
                    if t.history.len() < 120 {
                        t.history
                            .push(json!({"at_s": now.as_secs_f64(), "error": e}));
                    }
                    t.last = Some(Err(e.clone()));
                }
            }
        }

        let mut decision = self.decide();
        if !decision.is_final() && now >= self.hard_deadline() {
            // Only a blip that has not resolved can still be pending here: not decided in time.
            self.expired_at = Some(now);
            decision = self.decide();
        }
        if decision.is_final() {
            self.final_decision = Some(decision.clone());
        }
        decision
    }

    /// The analysis gates to measure with an observation taken at `now`: none before readiness
    /// was all green or after a final decision; then each gate never measured, or measured
    /// `interval` or more before `now`.
    pub fn analysis_due(&self, now: Duration) -> Vec<String> {
        if self.all_green_at.is_none() || self.final_decision.is_some() {
            return Vec::new();
        }
        self.plan
            .analysis
            .iter()
            .filter(|g| {
                self.analysis
                    .get(&g.name)
                    .is_some_and(|t| t.due(g.interval, now))
            })
            .map(|g| g.name.clone())
            .collect()
    }

    /// Whether to ask the operator's Prometheus with an observation taken at `now`: with a
    /// frozen monitoring record, once readiness was all green, at most every second.
    pub fn monitoring_due(&self, now: Duration) -> bool {
        self.plan.monitoring.is_some()
            && self.all_green_at.is_some()
            && self.final_decision.is_none()
            && self
                .monitoring
                .last_at
                .is_none_or(|t| now.saturating_sub(t) >= MONITORING_EVERY)
    }

    /// The time since the change by which the engine always decides, given observations at
    /// least every poll interval: `readiness_deadline` + the longest progression window +
    /// `min_healthy`. An observation at or after it gets a final decision.
    pub fn hard_deadline(&self) -> Duration {
        self.plan
            .readiness_deadline
            .saturating_add(self.longest_window())
            .saturating_add(self.plan.min_healthy)
    }

    fn longest_window(&self) -> Duration {
        self.plan
            .progression
            .iter()
            .map(|p| p.window)
            .max()
            .unwrap_or_default()
    }

    /// Give up waiting: for a runner whose observations stopped arriving (a poll that hangs).
    /// Call it once the time since the change has passed the latest [`Decision::Wait`]'s
    /// deadline (at most [`GateEngine::hard_deadline`]) plus a grace of a poll interval and an
    /// observation's own timeout. Every gate still pending fails as *not decided by its
    /// deadline* and the engine rolls back; `now` is only recorded (it does not let `stable`
    /// or a window pass unobserved). After a final decision, returns that decision unchanged.
    pub fn expire(&mut self, now: Duration) -> Decision {
        if let Some(done) = &self.final_decision {
            return done.clone();
        }
        self.expired_at = Some(now.max(self.now));
        let decision = match self.decide() {
            // Unreachable (a pending gate always remains after a Wait), but never promote here.
            Decision::Promote { gates } | Decision::RollBack { gates, .. }
                if !gates.iter().any(|g| g.verdict == Verdict::Fail) =>
            {
                Decision::RollBack {
                    reason: "gates not decided by their deadline".into(),
                    gates,
                }
            }
            Decision::Wait { .. } => Decision::RollBack {
                reason: "gates not decided by their deadline".into(),
                gates: self.gates(),
            },
            d => d,
        };
        self.final_decision = Some(decision.clone());
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

    /// The time by which the gates pending now will have been decided, given observations:
    /// the readiness deadline until readiness is green, then the end of the longest window and
    /// of the `stable` hold (or the readiness deadline, for a dependency not observed yet).
    /// Past that, only a blip can keep a gate pending, and the bound applies. Never later than
    /// [`GateEngine::hard_deadline`].
    pub fn next_deadline(&self) -> Duration {
        let hard = self.hard_deadline();
        let deadline = self.plan.readiness_deadline;
        let due = match self.all_green_at {
            None => deadline,
            Some(g) => {
                let mut due = g.saturating_add(self.longest_window().max(self.plan.min_healthy));
                if self
                    .dependencies
                    .values()
                    .any(|t| t.last.is_none() && t.failed.is_none())
                {
                    due = due.max(deadline);
                }
                due
            }
        };
        if self.now >= due { hard } else { due.min(hard) }
    }

    /// The verdict of every gate now; pending gates are `inconclusive` with `"pending": true` in
    /// their evidence.
    pub fn gates(&self) -> Vec<GateResult> {
        let mut out = Vec::new();
        let tolerance = self.plan.dependency_failures.max(1);
        for (name, t) in &self.readiness {
            let (verdict, detail) = match (&t.failed, t.green_at) {
                (Some(f), _) => (Verdict::Fail, f.clone()),
                (None, Some(at)) if t.consecutive_failures > 0 => (
                    Verdict::Inconclusive,
                    format!(
                        "green after {}, then {} failed poll(s) in a row (fails at {tolerance}): {}",
                        fmt_secs(at),
                        t.consecutive_failures,
                        t.last.as_ref().map(|r| r.detail()).unwrap_or_default()
                    ),
                ),
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
                    "consecutive_failures": t.consecutive_failures,
                    "pending": verdict == Verdict::Inconclusive,
                }),
            });
        }
        for gate in &self.plan.progression {
            out.push(self.progression_gate(gate));
        }
        for (name, t) in &self.dependencies {
            let (verdict, detail) = match (&t.failed, &t.last) {
                (Some(f), _) => (Verdict::Fail, f.clone()),
                (None, Some(Reading::Pass(d))) => (Verdict::Pass, d.clone()),
                (None, Some(r)) => (
                    Verdict::Inconclusive,
                    format!(
                        "{} failed poll(s) in a row (fails at {tolerance}): {}",
                        t.consecutive_failures,
                        r.detail()
                    ),
                ),
                (None, None) => (
                    Verdict::Inconclusive,
                    format!(
                        "not observed yet (fails if not observed within {})",
                        format_duration(self.plan.readiness_deadline)
                    ),
                ),
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
        for gate in &self.plan.analysis {
            out.push(self.analysis_gate(gate));
        }
        out.extend(self.monitoring_gates());
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
        if let Some(at) = self.expired_at {
            for g in out.iter_mut().filter(|g| is_pending(g)) {
                g.verdict = Verdict::Fail;
                g.detail = format!(
                    "not decided by its deadline (given up at {}, bound {}): {}",
                    fmt_secs(at),
                    fmt_secs(self.hard_deadline()),
                    g.detail
                );
                if let Some(e) = g.evidence.as_object_mut() {
                    e.insert("pending".into(), json!(false));
                    e.insert("expired_at_s".into(), json!(at.as_secs_f64()));
                }
            }
        }
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

    /// `rules` and `alerts` (see the module doc), when the baseline has a monitoring record.
    fn monitoring_gates(&self) -> Vec<GateResult> {
        let Some(base) = &self.plan.monitoring else {
            return Vec::new();
        };
        let t = &self.monitoring;
        let closed = self
            .all_green_at
            .is_some_and(|g| self.now.saturating_sub(g) >= self.plan.min_healthy);
        let evidence = |pending: bool| {
            json!({
                "baseline_rules": base.rules.len(),
                "baseline_firing": base.firing,
                "measured": t.measured,
                "measurements": t.history,
                "pending": pending,
            })
        };
        let waiting = |what: &str| GateResult {
            name: what.into(),
            verdict: Verdict::Inconclusive,
            detail: if self.all_green_at.is_none() {
                "waiting for readiness before asking Prometheus".into()
            } else {
                format!(
                    "asking Prometheus until the {} hold ends",
                    format_duration(self.plan.min_healthy)
                )
            },
            evidence: evidence(true),
        };
        let mut out = Vec::new();
        out.push(match (&t.last, closed) {
            (Some(Ok(regressions)), true) if regressions.is_empty() => GateResult {
                name: "rules".into(),
                verdict: Verdict::Pass,
                detail: format!(
                    "{} rule(s): every rule healthy at freeze still is, every rule with series still has them",
                    base.rules.len()
                ),
                evidence: evidence(false),
            },
            (Some(Ok(regressions)), true) => GateResult {
                name: "rules".into(),
                verdict: Verdict::Fail,
                detail: regressions.iter().take(3).cloned().collect::<Vec<_>>().join("; "),
                evidence: evidence(false),
            },
            (Some(Err(e)), true) => GateResult {
                name: "rules".into(),
                verdict: Verdict::Inconclusive,
                detail: format!("rule health unknown: Prometheus could not be asked: {e}"),
                evidence: evidence(false),
            },
            _ => waiting("rules"),
        });
        if self.plan.alert_gate {
            let once: Vec<&String> = t.alert_streak.keys().collect();
            out.push(match &t.alert_failed {
                Some(f) => GateResult {
                    name: "alerts".into(),
                    verdict: Verdict::Fail,
                    detail: f.clone(),
                    evidence: evidence(false),
                },
                None if !closed || t.measured == 0 => waiting("alerts"),
                None if !once.is_empty() => GateResult {
                    name: "alerts".into(),
                    verdict: Verdict::Inconclusive,
                    detail: format!(
                        "new alert firing on the last measurement (fails on 2 in a row): {}",
                        once.iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    evidence: evidence(true),
                },
                None if t.answered == 0 => GateResult {
                    name: "alerts".into(),
                    verdict: Verdict::Inconclusive,
                    detail: format!(
                        "firing alerts unknown: Prometheus could not be asked: {}",
                        match &t.last {
                            Some(Err(e)) => e.as_str(),
                            _ => "",
                        }
                    ),
                    evidence: evidence(false),
                },
                None => GateResult {
                    name: "alerts".into(),
                    verdict: Verdict::Pass,
                    detail: format!(
                        "no new firing alert for this node ({} firing at freeze)",
                        base.firing.len()
                    ),
                    evidence: evidence(false),
                },
            });
        }
        out
    }

    /// `analysis:NAME`: its window is the `stable` hold (from all green, `min_healthy` long).
    fn analysis_gate(&self, gate: &Analysis) -> GateResult {
        let untracked = Tally::default();
        let t = self.analysis.get(&gate.name).unwrap_or(&untracked);
        let closed = self
            .all_green_at
            .is_some_and(|g| self.now.saturating_sub(g) >= self.plan.min_healthy);
        let name = format!("analysis:{}", gate.name);
        match t.verdict(gate, closed) {
            Some((verdict, detail)) => GateResult {
                name,
                verdict,
                detail,
                evidence: t.evidence(gate, false),
            },
            None => GateResult {
                name,
                verdict: Verdict::Inconclusive,
                detail: match (&t.last, self.all_green_at) {
                    (_, None) => "waiting for readiness before measuring".to_string(),
                    (None, Some(_)) => "waiting for a first measurement".to_string(),
                    (Some(j), Some(_)) => format!(
                        "{} measurement(s) so far, {} failed (limit {}); last: {}",
                        t.measured, t.failed, gate.failure_limit, j.detail
                    ),
                },
                evidence: t.evidence(gate, true),
            },
        }
    }

    fn progression_gate(&self, gate: &ProgressionGate) -> GateResult {
        let untracked = ProgressionTrack::default();
        let t = self.progression.get(&gate.name).unwrap_or(&untracked);
        let name = format!("progression:{}", gate.name);
        let verb = match gate.mode {
            ProgressionMode::Increases => "increase",
            ProgressionMode::Changes => "change",
        };
        // The window runs from readiness, read or not: a signal that cannot be read does not
        // hold the decision back.
        let elapsed = self
            .all_green_at
            .map(|g| self.now.saturating_sub(g))
            .unwrap_or_default();
        let evidence = |pending: bool, policy: Option<&str>| {
            json!({
                "window_s": gate.window.as_secs_f64(),
                "first": t.first.as_ref().map(|(_, v)| v),
                "last": t.last.as_ref().map(|(_, v)| v),
                "moved_after_s": t.moved_at.zip(t.first.as_ref()).map(|(m, (t0, _))| m.saturating_sub(*t0).as_secs_f64()),
                "samples": t.samples,
                "unreadable_polls": t.unreadable,
                "unreadable_now": t.unreadable_run,
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
        if self.all_green_at.is_none() || elapsed < gate.window {
            let detail = match &t.first {
                None if self.all_green_at.is_none() => {
                    "waiting for readiness before sampling".to_string()
                }
                None => format!(
                    "waiting for a first reading of {} ({} unreadable poll(s), {} of {} window)",
                    gate.name,
                    t.unreadable,
                    fmt_secs(elapsed),
                    format_duration(gate.window)
                ),
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
        // The window closed without movement. A signal that cannot be read is not idle: no
        // policy passes it.
        match &t.first {
            None => {
                return GateResult {
                    name,
                    verdict: Verdict::Fail,
                    detail: format!(
                        "unreadable after readiness: {} could not be read in its {} window ({} polls)",
                        gate.name,
                        format_duration(gate.window),
                        t.unreadable
                    ),
                    evidence: evidence(false, None),
                };
            }
            Some(_) if t.unreadable_run > 0 => {
                let last = t
                    .last
                    .as_ref()
                    .map(|(at, v)| format!("{v} at {}", fmt_secs(*at)))
                    .unwrap_or_default();
                return GateResult {
                    name,
                    verdict: Verdict::Fail,
                    detail: format!(
                        "unreadable after readiness: {} last read {last}, then unreadable for {} poll(s) to the end of its {} window",
                        gate.name,
                        t.unreadable_run,
                        format_duration(gate.window)
                    ),
                    evidence: evidence(false, None),
                };
            }
            Some(_) => {}
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

/// An `f64` reading of a progression value (numbers, decimal and `0x` hex strings), for rates
/// and plots; comparisons use [`moved`], which is exact.
pub use crate::facts::numeric;

/// Whether a signal moved from `first` to `now` under `mode`: `changes` by any difference,
/// `increases` by an exact comparison of counters of any size ([`crate::facts::increased`]).
pub fn moved(mode: ProgressionMode, first: &Value, now: &Value) -> bool {
    match mode {
        ProgressionMode::Changes => first != now,
        ProgressionMode::Increases => crate::facts::increased(first, now),
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
