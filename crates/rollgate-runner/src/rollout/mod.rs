//! Steps 3 to 5 (and 6 through [`crate::bake`]): change one layer, restart only what it needs,
//! gate the result, then promote it or roll back to the baseline and re-verify that baseline.
//!
//! Every action is preceded by an intent record and followed by an outcome record in the
//! journal, so [`Runner::resume`] can finish any rollout whose process died, whatever step it
//! died in. Driver actions are idempotent (`apply` and `restore` write desired state, `restart`
//! recreates), which is what makes redoing a step after a crash safe.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rollgate_core::baseline::{Baseline, LayerValue, ProgressionRate};
use rollgate_core::config::{Component, Config, Layer};
use rollgate_core::engine::{Decision, GateEngine, GatePlan, ProgressionGate, numeric};
use rollgate_core::vocab::{CheckGroup, GateResult, Outcome, Verdict};
use rollgate_journal::{Lock, NewRollout};
use rollgate_runtime::{DriverOutput, RuntimeDriver};
use serde_json::{Value, json};

use crate::errors::RunnerError;
use crate::journal::{JournalHandle, crash_point, fail_point};
use crate::observe::Observer;
use crate::progress::Progress;
use crate::report::{RollbackRecord, RolloutReport, StepRecord, Timings};

pub mod config_files;
mod forward;
mod resume;
mod rollback;
mod snapshot;

pub use resume::recorded_bake;

/// What the CLI and `serve` drive: one node's configuration, runtime, journal and progress sink.
#[derive(Clone)]
pub struct Runner {
    pub config: Arc<Config>,
    pub driver: Arc<dyn RuntimeDriver>,
    pub journal: JournalHandle,
    pub progress: Arc<dyn Progress>,
    /// The webhook: told when a rollout starts and how it ended; never blocks the rollout.
    pub notifier: crate::notify::Notifier,
}

/// Options of one rollout.
#[derive(Debug, Clone, Default)]
pub struct RolloutOptions {
    /// The bake period; `None` uses `[rollout].bake`.
    pub bake: Option<Duration>,
    /// A plan this rollout is one step of.
    pub plan: Option<Value>,
}

/// The steps of a rollout, as journaled.
pub mod step {
    pub const FREEZE: &str = "freeze_baseline";
    /// Stop the layer's components and snapshot its databases (layers with `snapshot`).
    pub const SNAPSHOT: &str = "snapshot";
    pub const APPLY: &str = "apply";
    pub const RESTART: &str = "restart";
    pub const VERIFY: &str = "verify";
    pub const BAKE: &str = "bake";
    pub const PROMOTE: &str = "promote";
    /// Stop the components and restore the databases from the snapshot (layers with `snapshot`).
    pub const ROLLBACK_RESTORE_DATA: &str = "rollback_restore_data";
    pub const ROLLBACK_RESTORE: &str = "rollback_restore";
    pub const ROLLBACK_RESTART: &str = "rollback_restart";
    pub const ROLLBACK_VERIFY: &str = "rollback_verify";
    /// `[alertmanager] silence`: the restart's silence was created (before `restart`).
    pub const SILENCE: &str = "silence";
    /// The rollout's silences were expired (after verify, or before the rollout finishes).
    pub const UNSILENCE: &str = "unsilence";
    /// Every step in the order a rollout that rolls back passes through them.
    pub const ALL: [&str; 11] = [
        FREEZE,
        SNAPSHOT,
        APPLY,
        RESTART,
        VERIFY,
        BAKE,
        PROMOTE,
        ROLLBACK_RESTORE_DATA,
        ROLLBACK_RESTORE,
        ROLLBACK_RESTART,
        ROLLBACK_VERIFY,
    ];
}

/// The node lock while a rollout, rollback or resume runs, with its heartbeat refreshed every
/// [`HEARTBEAT`] (so `status` shows a holder that is alive and working). Dropping it releases
/// the lock at once: the heartbeat task only holds a weak reference.
struct HeldLock {
    _guard: Arc<std::sync::Mutex<rollgate_journal::LockGuard>>,
    beat: tokio::task::JoinHandle<()>,
}

/// How often a holder refreshes the lock's heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(5);

impl HeldLock {
    fn new(guard: rollgate_journal::LockGuard) -> HeldLock {
        let guard = Arc::new(std::sync::Mutex::new(guard));
        let weak = Arc::downgrade(&guard);
        let beat = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(HEARTBEAT);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(guard) = weak.upgrade() else { return };
                if let Ok(mut g) = guard.lock() {
                    // A failed heartbeat write is cosmetic: the lock itself is the flock.
                    let _ = g.heartbeat();
                }
            }
        });
        HeldLock {
            _guard: guard,
            beat,
        }
    }
}

impl Drop for HeldLock {
    fn drop(&mut self) {
        self.beat.abort();
    }
}

/// The node lock held by a command that must not run beside a rollout or after an interrupted
/// one (`baseline freeze`): released when dropped.
pub struct NodeLock {
    _held: HeldLock,
}

/// How the forward path of a rollout ended.
enum Forward {
    /// Promoted, or refused before anything changed.
    Done(Box<RolloutReport>),
    /// Stopped: roll back.
    Failed {
        reason: String,
        gates: Vec<GateResult>,
    },
}

/// One rollout in progress: its id, its journal steps and timings.
struct Recorder {
    journal: JournalHandle,
    progress: Arc<dyn Progress>,
    rollout_id: String,
    steps: Vec<StepRecord>,
    started: Instant,
    /// The apply (or snapshot) intent was recorded: the node may have changed (or its
    /// components be stopped), so any way out of this rollout goes through the rollback.
    changed: bool,
    /// The first journal write that failed while the rollback ran on without it: the outcome
    /// is then "rollback failed" (exit 5) whatever the gates said, because the record is not.
    journal_error: Option<String>,
    /// Set while the rollout may have a live Alertmanager silence ([`crate::silence`]): the
    /// configuration to expire it with, before verify's end or the rollout's finish.
    silence: Option<Arc<Config>>,
}

impl Recorder {
    fn new(journal: &JournalHandle, progress: &Arc<dyn Progress>, rollout_id: String) -> Recorder {
        Recorder {
            journal: journal.clone(),
            progress: progress.clone(),
            rollout_id,
            steps: Vec::new(),
            started: Instant::now(),
            changed: false,
            journal_error: None,
            silence: None,
        }
    }

    /// Expire this rollout's silences, when it may have one (the `unsilence` step). Never
    /// fails the rollout: a silence left over ends by itself at its end time.
    async fn end_silence(&mut self) {
        let Some(config) = self.silence.take() else {
            return;
        };
        let s = self.soft_intent(step::UNSILENCE, json!({})).await;
        match crate::silence::expire(&config, &self.rollout_id).await {
            Ok(ids) => {
                self.soft_outcome(
                    step::UNSILENCE,
                    s,
                    true,
                    json!({"summary": format!("expired {} silence(s)", ids.len()), "ids": ids}),
                )
                .await
            }
            Err(e) => {
                tracing::warn!(rollout = %self.rollout_id, "could not expire the restart's silence: {e}");
                self.soft_outcome(
                    step::UNSILENCE,
                    s,
                    false,
                    json!({"summary": format!("could not expire the silence (it ends by itself at its end time): {e}")}),
                )
                .await
            }
        }
    }

    async fn intent(
        &mut self,
        kind: &'static str,
        detail: Value,
    ) -> Result<(i64, Instant), RunnerError> {
        self.progress.step(kind, &detail.to_string());
        fail_point(kind, "intent")?;
        let id = self.rollout_id.clone();
        let step_id = self
            .journal
            .call(move |j| j.record_intent(&id, kind, detail))
            .await?;
        if kind == step::APPLY || kind == step::SNAPSHOT {
            self.changed = true;
        }
        crash_point(kind, "intent");
        Ok((step_id, Instant::now()))
    }

    async fn outcome(
        &mut self,
        kind: &'static str,
        step: (i64, Instant),
        ok: bool,
        detail: Value,
    ) -> Result<(), RunnerError> {
        let summary = detail
            .get("summary")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        self.steps.push(StepRecord {
            kind: kind.to_string(),
            ok,
            ms: step.1.elapsed().as_millis() as u64,
            detail: summary,
        });
        fail_point(kind, "outcome")?;
        self.journal
            .call(move |j| j.record_outcome(step.0, ok, detail))
            .await?;
        crash_point(kind, "outcome");
        Ok(())
    }

    /// The rollback does not stop at a journal write that fails: it restores the node all the
    /// same. The failure is kept (the rollout then ends as "rollback failed") and logged.
    fn soft<T>(&mut self, result: Result<T, RunnerError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                let detail = format!(
                    "journal write failed: {}",
                    rollgate_probe::errors::chain(&e)
                );
                tracing::error!(rollout = %self.rollout_id, "{detail}; continuing the rollback");
                self.journal_error.get_or_insert(detail);
                None
            }
        }
    }

    /// [`Recorder::intent`] on the way back: a failed write is kept, never stops the rollback.
    async fn soft_intent(&mut self, kind: &'static str, detail: Value) -> (i64, Instant) {
        let r = self.intent(kind, detail).await;
        self.soft(r).unwrap_or((-1, Instant::now()))
    }

    /// [`Recorder::outcome`] on the way back (see [`Recorder::soft_intent`]).
    async fn soft_outcome(
        &mut self,
        kind: &'static str,
        step: (i64, Instant),
        ok: bool,
        detail: Value,
    ) {
        if step.0 < 0 {
            // The intent was never written: there is no step row to complete.
            self.steps.push(StepRecord {
                kind: kind.to_string(),
                ok,
                ms: step.1.elapsed().as_millis() as u64,
                detail: detail
                    .get("summary")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            });
            return;
        }
        let r = self.outcome(kind, step, ok, detail).await;
        self.soft(r);
    }

    async fn gates(&self, gates: &[GateResult]) -> Result<(), RunnerError> {
        let id = self.rollout_id.clone();
        let gates = gates.to_vec();
        self.journal
            .call(move |j| {
                for g in &gates {
                    j.record_gate(&id, g)?;
                }
                Ok(())
            })
            .await
    }

    async fn finish(&mut self, outcome: Outcome, reason: &str) -> Result<(), RunnerError> {
        self.end_silence().await;
        fail_point("finish", "outcome")?;
        let id = self.rollout_id.clone();
        let reason = reason.to_string();
        self.journal
            .call(move |j| j.finish_rollout(&id, outcome, &reason))
            .await?;
        crash_point("finish", "outcome");
        Ok(())
    }
}

/// How long past the engine's hard deadline the runner still waits for a decision: two polls,
/// and at least five seconds (one slow probe answer).
pub fn deadline_grace(poll: Duration) -> Duration {
    (poll * 2).max(Duration::from_secs(5))
}

/// How long the gate loop sleeps. Polls keep a fixed period (an observation's own duration is
/// not added to it). The engine's next deadline (a window closing, the `stable` hold) is read
/// at the start of an observation, which then takes `took` (the dependency checks): when the
/// next period's poll would start less than that before the deadline, the poll waits for the
/// deadline instead, so the deciding observation is the next one, not the one after it.
fn next_wake(
    poll_started: Duration,
    poll: Duration,
    deadline: Duration,
    now: Duration,
    took: Duration,
) -> Duration {
    let next_poll = poll_started + poll;
    let wake = if deadline > next_poll && deadline <= next_poll + took {
        deadline + Duration::from_millis(5)
    } else if deadline > now {
        next_poll.min(deadline + Duration::from_millis(5))
    } else {
        next_poll
    };
    wake.saturating_sub(now).max(Duration::from_millis(20))
}

/// A new identifier: prefix, UTC time, and four random hex digits.
pub fn new_id(prefix: &str) -> String {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let compact: String = now.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let salt = (nanos ^ std::process::id().rotate_left(16)) & 0xffff;
    format!("{prefix}-{compact}-{salt:04x}")
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

fn output_json(out: &DriverOutput) -> Value {
    serde_json::to_value(out).unwrap_or(Value::Null)
}

impl Runner {
    fn components_of(&self, layers: &[&Layer]) -> Vec<Component> {
        let names: BTreeSet<&String> = layers.iter().flat_map(|l| l.components.iter()).collect();
        names
            .into_iter()
            .filter_map(|n| self.config.components.get(n).cloned())
            .collect()
    }

    fn layer(&self, name: &str) -> Result<Layer, RunnerError> {
        self.config.layer(name).cloned().ok_or_else(|| {
            RunnerError::Usage(format!(
                "unknown layer `{name}` (configured layers: {})",
                self.config
                    .layers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
    }

    async fn lock(&self) -> Result<HeldLock, RunnerError> {
        let dir = self.config.node.state_dir.clone();
        match tokio::task::spawn_blocking(move || Lock::acquire(&dir)).await {
            Ok(Ok(guard)) => Ok(HeldLock::new(guard)),
            Ok(Err(e)) => Err(RunnerError::Busy(rollgate_probe::errors::chain(&e))),
            Err(e) => Err(RunnerError::Internal(format!("lock task failed: {e}"))),
        }
    }

    async fn refuse_if_interrupted(&self) -> Result<(), RunnerError> {
        let state = self.journal.call(|j| j.state()).await?;
        if let Some(i) = state.interrupted {
            return Err(RunnerError::Busy(format!(
                "rollout {} was interrupted{}; run `rollgate resume` to finish it first",
                i.rollout_id,
                i.last_step
                    .as_ref()
                    .map(|s| format!(" at step {}", s.kind))
                    .unwrap_or_default()
            )));
        }
        Ok(())
    }

    /// Take the node lock for a command that records known-good state (`baseline freeze`):
    /// busy while a rollout runs, and refused while one is interrupted, so a value no gate has
    /// verified can never be marked known-good. Both exit 6.
    pub async fn exclusive(&self) -> Result<NodeLock, RunnerError> {
        let held = self.lock().await?;
        self.refuse_if_interrupted().await?;
        Ok(NodeLock { _held: held })
    }

    /// The interrupted rollout, as journaled, when there is one (`resume` continues its plan).
    pub async fn interrupted_rollout(
        &self,
    ) -> Result<Option<rollgate_journal::RolloutDetail>, RunnerError> {
        let state = self.journal.call(|j| j.state()).await?;
        let Some(i) = state.interrupted else {
            return Ok(None);
        };
        self.journal.call(move |j| j.rollout(&i.rollout_id)).await
    }

    /// Hand a finished rollout's decision record to the webhook.
    fn notify_finished(&self, result: &Result<RolloutReport, RunnerError>) {
        if let Ok(report) = result {
            self.notifier.notify(crate::notify::Event::finished(
                &self.config.node.name,
                report,
            ));
        }
    }

    /// Refuse (exit 6) while the kill switch is set.
    fn refuse_if_frozen(&self) -> Result<(), RunnerError> {
        match crate::killswitch::is_frozen(&self.config.node.state_dir) {
            Some(f) => Err(RunnerError::Busy(format!(
                "{}; `rollgate unfreeze` allows rollouts again",
                f.summary()
            ))),
            None => Ok(()),
        }
    }

    /// The `applied:LAYER` gate: the layer's value read back through the driver must be the
    /// requested one (by digest when the request is one). Returns the value that runs when it is.
    async fn read_back(&self, layer: &Layer, requested: &str) -> (GateResult, Option<LayerValue>) {
        let name = format!("applied:{}", layer.name);
        match self.driver.current(layer).await {
            Ok(now) if reads_as(&now, requested) => (
                GateResult {
                    name,
                    verdict: Verdict::Pass,
                    detail: format!("{} reads back as {}", layer.name, now.display()),
                    evidence: json!({"requested": requested, "current": now}),
                },
                Some(now),
            ),
            Ok(now) => (
                GateResult {
                    name,
                    verdict: Verdict::Fail,
                    detail: format!(
                        "the change had no effect: {} reads {} after the restart, not {requested}",
                        layer.name,
                        now.display()
                    ),
                    evidence: json!({"requested": requested, "current": now}),
                },
                None,
            ),
            Err(e) => (
                GateResult {
                    name,
                    verdict: Verdict::Fail,
                    detail: format!(
                        "cannot read {} back after the restart: {}",
                        layer.name,
                        rollgate_probe::errors::chain(&e)
                    ),
                    evidence: json!({"requested": requested}),
                },
                None,
            ),
        }
    }

    /// Poll and decide until the engine gives a final decision. The engine bounds its own
    /// waiting (it decides by its hard deadline); this loop enforces that bound on the wall
    /// clock too, plus [`deadline_grace`], so a poll that hangs (a driver command, a probe)
    /// cannot hold a rollout for ever: every gate still undecided then fails.
    async fn run_gates(&self, observer: &mut Observer, plan: GatePlan, phase: &str) -> Decision {
        let poll = self.config.rollout.poll_interval;
        let mut engine = GateEngine::new(plan);
        let limit = engine.hard_deadline() + deadline_grace(poll);
        loop {
            if let Some(f) = observer.frozen() {
                let mut gates = engine.gates();
                gates.push(f.as_gate());
                return Decision::RollBack {
                    gates,
                    reason: f.stop_reason(),
                };
            }
            let poll_started = observer.gate_clock();
            let left = limit.saturating_sub(poll_started);
            // The analysis queries due now ride along with the poll (and share its timeout).
            let due = engine.analysis_due(poll_started);
            let ask_prometheus = engine.monitoring_due(poll_started);
            let poll_once = async {
                let mut obs = observer.observe().await;
                obs.analysis = observer.measure(&due).await;
                if ask_prometheus {
                    obs.monitoring = Some(observer.monitoring().await);
                }
                obs
            };
            let obs = match tokio::time::timeout(left, poll_once).await {
                Ok(obs) => obs,
                Err(_) => return engine.expire(observer.gate_clock()),
            };
            let decision = engine.step(&obs);
            let deadline = match &decision {
                Decision::Wait { deadline, .. } => *deadline,
                _ => obs.at,
            };
            self.progress
                .gates(phase, obs.at, deadline, &engine.gates());
            if decision.is_final() {
                return decision;
            }
            let now = observer.gate_clock();
            if now >= limit {
                return engine.expire(now);
            }
            let took = now.saturating_sub(poll_started);
            tokio::time::sleep(next_wake(poll_started, poll, deadline, now, took)).await;
        }
    }

    /// Silence the restart in the operator's Alertmanager, when configured (the `silence`
    /// step): until the restart's budget and `verify_window` have passed. A silence that
    /// cannot be created is recorded and the rollout goes on.
    async fn silence_restart(
        &self,
        rec: &mut Recorder,
        verify_window: Duration,
    ) -> Result<(), RunnerError> {
        if !crate::silence::enabled(&self.config) {
            return Ok(());
        }
        let (detail, ends_at) = crate::silence::intent(&self.config, verify_window);
        let s = rec.intent(step::SILENCE, detail).await?;
        // From here the rollout may have a silence, even if the answer below is lost.
        rec.silence = Some(self.config.clone());
        match crate::silence::create(&self.config, &rec.rollout_id, &ends_at).await {
            Ok(id) => {
                rec.outcome(
                    step::SILENCE,
                    s,
                    true,
                    json!({"summary": format!("silence {id} until {ends_at}"), "id": id}),
                )
                .await
            }
            Err(e) => {
                tracing::warn!(rollout = %rec.rollout_id, "could not silence the restart: {e}");
                rec.outcome(
                    step::SILENCE,
                    s,
                    false,
                    json!({"summary": format!("could not silence the restart (it may page): {e}")}),
                )
                .await
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn report(
        &self,
        rec: &Recorder,
        outcome: Outcome,
        layer: &Layer,
        from: Option<&LayerValue>,
        to: &str,
        baseline_id: Option<&String>,
        gates: Vec<GateResult>,
        reason: String,
        rollback: Option<RollbackRecord>,
        promoted_baseline_id: Option<String>,
        mut timings: Timings,
    ) -> RolloutReport {
        if timings.total == 0 {
            timings.total = rec.started.elapsed().as_millis() as u64;
        }
        RolloutReport {
            rollout_id: rec.rollout_id.clone(),
            outcome,
            layer: layer.name.clone(),
            from: from.map(LayerValue::display),
            to: to.to_string(),
            baseline_id: baseline_id.cloned(),
            gates,
            reason,
            rollback,
            promoted_baseline_id,
            steps: rec.steps.clone(),
            timings_ms: timings,
            snapshots: vec![],
        }
    }
}

fn names(components: &[Component]) -> String {
    if components.is_empty() {
        return "nothing".into();
    }
    components
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The baseline a promotion writes: the starting one, new id and time, with the layer on the
/// value the gates verified.
fn promoted_from(baseline: &Baseline, layer: &Layer, verified: &LayerValue) -> Baseline {
    let mut b = baseline.clone();
    b.id = new_id("b");
    b.created_at = now_rfc3339();
    b.layers.insert(layer.name.clone(), verified.clone());
    b
}

/// Whether a layer reading is the value an operator asked for: the same reference, or the
/// same digest when the request is a digest (`sha256:…`) or pinned by one (`name@sha256:…`).
pub fn reads_as(now: &LayerValue, requested: &str) -> bool {
    let requested = requested.trim();
    if now.value == requested {
        return true;
    }
    let digest = requested
        .rsplit_once('@')
        .map(|(_, d)| d)
        .unwrap_or(requested);
    digest.starts_with("sha256:") && now.digest.as_deref() == Some(digest)
}

/// Two readings of a layer are the same value: same digest when both have one, else same value.
pub fn same_value(a: &LayerValue, b: &LayerValue) -> bool {
    match (&a.digest, &b.digest) {
        (Some(x), Some(y)) => x == y,
        _ => a.value == b.value,
    }
}

/// The gates a change (or a rollback) must pass, from the configuration and the baseline.
pub fn gate_plan(config: &Config, baseline: &Baseline) -> GatePlan {
    let mut readiness: Vec<String> = config.readiness.iter().map(|r| r.name.clone()).collect();
    readiness.extend(crate::checks::readiness_extra_names(config));
    let dependencies = baseline
        .checks
        .iter()
        .filter(|c| matches!(c.group, CheckGroup::Prerequisites | CheckGroup::Baseline))
        .map(|c| crate::observe::gate_key(c.group, &c.name))
        .collect();
    GatePlan {
        readiness_deadline: config.rollout.readiness_deadline,
        readiness,
        progression: config
            .progression
            .iter()
            .map(|p| {
                let rate = baseline.progression.iter().find(|r| r.name == p.name);
                ProgressionGate {
                    name: p.name.clone(),
                    mode: p.mode,
                    window: p.window,
                    baseline_idle: rate.map(|r| r.idle).unwrap_or(false),
                    baseline_rate_per_s: rate.map(|r| r.rate_per_s),
                }
            })
            .collect(),
        idle_policy: config.rollout.idle_progression,
        dependencies,
        baseline_faults: baseline.faults.iter().cloned().collect(),
        dependency_failures: 2,
        min_healthy: config.rollout.min_healthy,
        analysis: config.analysis.clone(),
        monitoring: config.prometheus.as_ref().and(baseline.monitoring.clone()),
        alert_gate: config
            .prometheus
            .as_ref()
            .is_some_and(|p| !p.alert_selectors.is_empty()),
    }
}

fn plan_names(plan: &GatePlan) -> Vec<String> {
    let mut v: Vec<String> = plan
        .readiness
        .iter()
        .map(|n| format!("readiness:{n}"))
        .collect();
    v.extend(
        plan.progression
            .iter()
            .map(|p| format!("progression:{}", p.name)),
    );
    v.extend(plan.dependencies.iter().cloned());
    v.push("stable".into());
    v.extend(plan.analysis.iter().map(|a| format!("analysis:{}", a.name)));
    if plan.monitoring.is_some() {
        v.push("rules".into());
    }
    if plan.monitoring.is_some() && plan.alert_gate {
        v.push("alerts".into());
    }
    v.push("faults".into());
    v
}

/// The rate a passed progression gate measured, from its samples `[[ms, value], …]`: units per
/// second for a counter (`increases`), changes per second for anything else (`changes`: a
/// transaction hash is not a number even when it happens to parse as hex).
fn rate_from_gate(
    p: &rollgate_core::config::Progression,
    gates: &[GateResult],
) -> Option<ProgressionRate> {
    let name = p.name.as_str();
    let g = gates
        .iter()
        .find(|g| g.name == format!("progression:{name}"))?;
    let samples = g.evidence.get("samples")?.as_array()?;
    let first = samples.first()?.as_array()?;
    let last = samples.last()?.as_array()?;
    let (t0, v0) = (first.first()?.as_u64()?, first.get(1)?.clone());
    let (t1, v1) = (last.first()?.as_u64()?, last.get(1)?.clone());
    let window_ms = t1.saturating_sub(t0);
    let window_s = window_ms as f64 / 1000.0;
    let rate = match p.mode {
        _ if window_ms == 0 => 0.0,
        rollgate_core::config::ProgressionMode::Increases => match (numeric(&v0), numeric(&v1)) {
            (Some(a), Some(b)) => (b - a) / window_s,
            _ => 0.0,
        },
        rollgate_core::config::ProgressionMode::Changes => {
            let values: Vec<&Value> = samples
                .iter()
                .filter_map(|s| s.as_array().and_then(|s| s.get(1)))
                .collect();
            values.windows(2).filter(|w| w[0] != w[1]).count() as f64 / window_s
        }
    };
    Some(ProgressionRate {
        name: name.to_string(),
        first: v0.clone(),
        last: v1.clone(),
        window_ms,
        rate_per_s: rate,
        idle: v0 == v1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollgate_core::config::{Progression, ProgressionMode};
    use std::time::Duration;

    fn signal(mode: ProgressionMode) -> Progression {
        Progression {
            name: "sig".into(),
            url: "http://127.0.0.1:1/".into(),
            pointer: "/x".into(),
            mode,
            window: Duration::from_secs(3),
        }
    }

    fn gate(samples: Value) -> GateResult {
        GateResult {
            name: "progression:sig".into(),
            verdict: Verdict::Pass,
            detail: String::new(),
            evidence: json!({ "samples": samples }),
        }
    }

    #[test]
    fn the_gate_loop_wakes_at_the_next_deadline_or_on_the_poll_period() {
        let ms = Duration::from_millis;
        let quick = ms(10);
        // A deadline inside the period is observed just after it.
        assert_eq!(
            next_wake(ms(10_000), ms(1000), ms(10_400), ms(10_100), quick),
            ms(305)
        );
        // Otherwise the period holds, whatever the observation took.
        assert_eq!(
            next_wake(ms(10_000), ms(1000), ms(30_000), ms(10_300), ms(300)),
            ms(700)
        );
        // Observations take 1 s: a poll at 11.0 s would read the node before a 11.3 s deadline
        // and decide nothing; it waits for the deadline instead.
        assert_eq!(
            next_wake(ms(10_000), ms(1000), ms(11_300), ms(11_000), ms(1000)),
            ms(305)
        );
        // A deadline already past, or a slow observation: a short pause, never zero.
        assert_eq!(
            next_wake(ms(10_000), ms(1000), ms(9_000), ms(11_500), quick),
            ms(20)
        );
    }

    #[test]
    fn counter_rate_is_units_per_second() {
        let g = gate(json!([[0, 10], [1000, 11], [2000, 14]]));
        let r = rate_from_gate(&signal(ProgressionMode::Increases), &[g]).unwrap();
        assert_eq!((r.window_ms, r.rate_per_s, r.idle), (2000, 2.0, false));
    }

    #[test]
    fn changing_value_rate_is_changes_per_second_even_when_it_parses_as_hex() {
        // As numbers these go down (0xff → 0x01); as a transaction hash they changed twice.
        let g = gate(json!([
            [0, "0xff"],
            [1000, "0xff"],
            [2000, "0xab"],
            [4000, "0x01"]
        ]));
        let r = rate_from_gate(&signal(ProgressionMode::Changes), &[g]).unwrap();
        assert_eq!((r.window_ms, r.rate_per_s, r.idle), (4000, 0.5, false));
        let still = gate(json!([[0, "0xff"], [1000, "0xff"]]));
        let r = rate_from_gate(&signal(ProgressionMode::Changes), &[still]).unwrap();
        assert_eq!((r.rate_per_s, r.idle), (0.0, true));
    }
}
