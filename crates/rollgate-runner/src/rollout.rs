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
use crate::journal::{JournalHandle, crash_point};
use crate::observe::Observer;
use crate::progress::Progress;
use crate::report::{RollbackRecord, RolloutReport, StepRecord, Timings};

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
    pub const APPLY: &str = "apply";
    pub const RESTART: &str = "restart";
    pub const VERIFY: &str = "verify";
    pub const BAKE: &str = "bake";
    pub const PROMOTE: &str = "promote";
    pub const ROLLBACK_RESTORE: &str = "rollback_restore";
    pub const ROLLBACK_RESTART: &str = "rollback_restart";
    pub const ROLLBACK_VERIFY: &str = "rollback_verify";
    /// Every step in the order a rollout that rolls back passes through them.
    pub const ALL: [&str; 9] = [
        FREEZE,
        APPLY,
        RESTART,
        VERIFY,
        BAKE,
        PROMOTE,
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
}

impl Recorder {
    async fn intent(
        &mut self,
        kind: &'static str,
        detail: Value,
    ) -> Result<(i64, Instant), RunnerError> {
        self.progress.step(kind, &detail.to_string());
        let id = self.rollout_id.clone();
        let step_id = self
            .journal
            .call(move |j| j.record_intent(&id, kind, detail))
            .await?;
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
        self.journal
            .call(move |j| j.record_outcome(step.0, ok, detail))
            .await?;
        self.steps.push(StepRecord {
            kind: kind.to_string(),
            ok,
            ms: step.1.elapsed().as_millis() as u64,
            detail: summary,
        });
        crash_point(kind, "outcome");
        Ok(())
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

    async fn finish(&self, outcome: Outcome, reason: &str) -> Result<(), RunnerError> {
        let id = self.rollout_id.clone();
        let reason = reason.to_string();
        self.journal
            .call(move |j| j.finish_rollout(&id, outcome, &reason))
            .await?;
        crash_point("finish", "outcome");
        Ok(())
    }
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

    /// `rollgate rollout LAYER=VALUE`: the full procedure.
    pub async fn rollout(
        &self,
        layer_name: &str,
        value: &str,
        opts: &RolloutOptions,
    ) -> Result<RolloutReport, RunnerError> {
        let result = self.rollout_steps(layer_name, value, opts).await;
        self.notify_finished(&result);
        result
    }

    async fn rollout_steps(
        &self,
        layer_name: &str,
        value: &str,
        opts: &RolloutOptions,
    ) -> Result<RolloutReport, RunnerError> {
        let layer = self.layer(layer_name)?;
        let value = value.trim();
        if value.is_empty() {
            return Err(RunnerError::Usage(format!(
                "no value given for layer `{layer_name}`"
            )));
        }
        // The lock first: a live rollout is "busy"; an unfinished one whose process is gone was
        // interrupted and must be resumed. Both exit 6.
        let lock = self.lock().await?;
        self.refuse_if_interrupted().await?;
        self.refuse_if_frozen()?;
        let current = self
            .driver
            .current(&layer)
            .await
            .map_err(RunnerError::Driver)?;
        if current.value == value {
            return Err(RunnerError::Usage(format!(
                "layer `{layer_name}` already has value {value}: nothing to change"
            )));
        }

        let mut rec = Recorder {
            journal: self.journal.clone(),
            progress: self.progress.clone(),
            rollout_id: new_id("r"),
            steps: Vec::new(),
            started: Instant::now(),
        };
        let new = NewRollout {
            id: rec.rollout_id.clone(),
            layer: layer.name.clone(),
            from: Some(current.clone()),
            to: value.to_string(),
            baseline_id: None,
            started_at: now_rfc3339(),
            plan: opts.plan.clone(),
        };
        self.journal.call(move |j| j.begin_rollout(&new)).await?;
        self.notifier.notify(crate::notify::Event::started(
            &self.config.node.name,
            &rec.rollout_id,
            &layer.name,
            Some(&current.value),
            value,
        ));

        // Steps 1 and 2: every check, then the frozen baseline. Nothing has changed yet.
        let s = rec
            .intent(step::FREEZE, json!({"layer": layer.name}))
            .await?;
        let frozen = crate::baseline::freeze(&self.config, self.driver.as_ref()).await;
        let baseline = match frozen {
            Ok(b) => b,
            Err(refused) => {
                let reason = format!("not ready, nothing was changed: {refused}");
                rec.outcome(
                    step::FREEZE,
                    s,
                    false,
                    json!({"summary": reason, "refused": refused.to_string()}),
                )
                .await?;
                rec.finish(Outcome::Refused, &reason).await?;
                drop(lock);
                return Ok(self.report(
                    &rec,
                    Outcome::Refused,
                    &layer,
                    Some(&current),
                    value,
                    None,
                    vec![],
                    reason,
                    None,
                    None,
                    Timings::default(),
                ));
            }
        };
        let b = baseline.clone();
        let rid = rec.rollout_id.clone();
        self.journal
            .call(move |j| {
                j.insert_baseline(&b)?;
                j.set_baseline(&rid, &b.id)
            })
            .await?;
        rec.outcome(
            step::FREEZE,
            s,
            true,
            json!({"summary": format!("baseline {}", baseline.id), "baseline_id": baseline.id}),
        )
        .await?;

        let report = self
            .change_and_gate(&mut rec, &layer, value, &baseline, false, opts)
            .await;
        drop(lock);
        report
    }

    /// Steps 3 to 6 from "apply" on; shared by `rollout` and `resume`. With `applied`, the new
    /// value is known to be in place and only the restart and the gates are redone. Every way
    /// forward can stop with a failure; all of them roll back here, in one place.
    async fn change_and_gate(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        value: &str,
        baseline: &Baseline,
        applied: bool,
        opts: &RolloutOptions,
    ) -> Result<RolloutReport, RunnerError> {
        let components = self.components_of(&[layer]);
        let mut observer =
            Observer::new(self.config.clone(), self.driver.clone(), components.clone())
                .map_err(RunnerError::Internal)?
                .against(baseline)
                .with_kill_switch();
        let mut timings = Timings::default();
        let forward = self
            .forward(
                rec,
                layer,
                value,
                baseline,
                applied,
                opts,
                &mut observer,
                &mut timings,
            )
            .await?;
        match forward {
            Forward::Done(report) => Ok(*report),
            Forward::Failed { reason, gates } => {
                self.roll_back(
                    rec,
                    &[layer],
                    baseline,
                    value,
                    reason,
                    gates,
                    timings,
                    &mut observer,
                )
                .await
            }
        }
    }

    /// Apply, restart, verify, bake and promote, stopping at the first failure (a failed step or
    /// gate, or the kill switch at a step boundary).
    #[allow(clippy::too_many_arguments)]
    async fn forward(
        &self,
        rec: &mut Recorder,
        layer: &Layer,
        value: &str,
        baseline: &Baseline,
        applied: bool,
        opts: &RolloutOptions,
        observer: &mut Observer,
        timings: &mut Timings,
    ) -> Result<Forward, RunnerError> {
        let from = baseline.layers.get(&layer.name).cloned();
        let components = observer.components().to_vec();
        let frozen = |observer: &Observer, mut gates: Vec<GateResult>| {
            observer.frozen().map(|f| {
                gates.push(f.as_gate());
                Forward::Failed {
                    reason: f.stop_reason(),
                    gates,
                }
            })
        };

        if !applied {
            // Nothing has changed yet: a freeze now refuses the rollout.
            if let Some(f) = observer.frozen() {
                let reason = format!("{}; nothing was changed", f.stop_reason());
                rec.gates(&[f.as_gate()]).await?;
                rec.finish(Outcome::Refused, &reason).await?;
                return Ok(Forward::Done(Box::new(self.report(
                    rec,
                    Outcome::Refused,
                    layer,
                    from.as_ref(),
                    value,
                    Some(&baseline.id),
                    vec![f.as_gate()],
                    reason,
                    None,
                    None,
                    *timings,
                ))));
            }
            let s = rec
                .intent(
                    step::APPLY,
                    json!({"layer": layer.name, "from": from, "to": value}),
                )
                .await?;
            match self.driver.apply(layer, value).await {
                Ok(out) => rec.outcome(step::APPLY, s, true, json!({"summary": format!("{} set to {value}", layer.name), "output": output_json(&out)})).await?,
                Err(e) => {
                    let reason = format!("apply failed: {}", rollgate_probe::errors::chain(&e));
                    rec.outcome(step::APPLY, s, false, json!({"summary": reason})).await?;
                    return Ok(Forward::Failed { reason, gates: vec![] });
                }
            }
        }

        if let Some(stop) = frozen(observer, vec![]) {
            return Ok(stop);
        }
        let s = rec
            .intent(
                step::RESTART,
                json!({"components": components.iter().map(|c| &c.name).collect::<Vec<_>>()}),
            )
            .await?;
        observer.mark_change().await;
        let restart_started = Instant::now();
        match self.driver.restart(&components).await {
            Ok(out) => {
                timings.restart = Some(restart_started.elapsed().as_millis() as u64);
                rec.outcome(step::RESTART, s, true, json!({"summary": format!("restarted {}", names(&components)), "output": output_json(&out)})).await?;
            }
            Err(e) => {
                let reason = format!("restart failed: {}", rollgate_probe::errors::chain(&e));
                rec.outcome(step::RESTART, s, false, json!({"summary": reason}))
                    .await?;
                return Ok(Forward::Failed {
                    reason,
                    gates: vec![],
                });
            }
        }

        // Steps 4 and 5: the gates (they stop at the kill switch themselves).
        let plan = gate_plan(&self.config, baseline);
        let s = rec.intent(step::VERIFY, json!({"readiness_deadline_s": plan.readiness_deadline.as_secs_f64(), "gates": plan_names(&plan)})).await?;
        let decision = self.run_gates(observer, plan, "verify").await;
        timings.change_to_decision = Some(observer.elapsed().as_millis() as u64);
        let (mut gates, failure) = match decision {
            Decision::Promote { gates } => (gates, None),
            Decision::RollBack { gates, reason } => (gates, Some(reason)),
            Decision::Wait { .. } => unreachable!("run_gates returns a final decision"),
        };
        rec.gates(&gates).await?;
        rec.outcome(
            step::VERIFY,
            s,
            failure.is_none(),
            json!({"summary": failure.clone().unwrap_or_else(|| "every gate passed".into()), "gates": gates}),
        )
        .await?;
        if let Some(reason) = failure {
            return Ok(Forward::Failed { reason, gates });
        }

        // Step 6: the bake period (it stops at the kill switch itself).
        let bake = opts.bake.unwrap_or(self.config.rollout.bake);
        let mut trends = None;
        if !bake.is_zero() {
            let s = rec
                .intent(step::BAKE, json!({"duration_s": bake.as_secs_f64()}))
                .await?;
            let verdict = crate::bake::bake(
                &self.config,
                baseline,
                observer,
                bake,
                self.progress.as_ref(),
            )
            .await;
            rec.gates(&verdict.gates).await?;
            trends = verdict.trends.clone();
            let failed = verdict.failed().cloned();
            gates.extend(verdict.gates.clone());
            rec.outcome(
                step::BAKE,
                s,
                failed.is_none(),
                json!({"summary": failed.as_ref().map(|g| format!("{}: {}", g.name, g.detail)).unwrap_or_else(|| "bake passed".into()), "gates": verdict.gates}),
            )
            .await?;
            if let Some(g) = failed {
                let reason = if g.name == crate::killswitch::GATE {
                    format!("kill switch: {}", g.detail)
                } else {
                    format!("bake: {}: {}", g.name, g.detail)
                };
                return Ok(Forward::Failed { reason, gates });
            }
        }

        // Promote: the new state becomes the known-good baseline, unless the node was frozen
        // in the meantime.
        if let Some(stop) = frozen(observer, gates.clone()) {
            return Ok(stop);
        }
        let s = rec
            .intent(step::PROMOTE, json!({"layer": layer.name, "to": value}))
            .await?;
        let promoted = self
            .promoted_baseline(baseline, layer, observer, &gates, trends)
            .await?;
        let p = promoted.clone();
        self.journal
            .call(move |j| {
                j.insert_baseline(&p)?;
                j.mark_known_good(&p.id)
            })
            .await?;
        rec.outcome(step::PROMOTE, s, true, json!({"summary": format!("baseline {} is known-good", promoted.id), "baseline_id": promoted.id})).await?;
        let reason = format!("{} = {value} verified: every gate passed", layer.name);
        rec.finish(Outcome::Promoted, &reason).await?;
        timings.total = rec.started.elapsed().as_millis() as u64;
        Ok(Forward::Done(Box::new(self.report(
            rec,
            Outcome::Promoted,
            layer,
            from.as_ref(),
            value,
            Some(&baseline.id),
            gates,
            reason,
            None,
            Some(promoted.id),
            *timings,
        ))))
    }

    /// Poll and decide until the engine gives a final decision.
    async fn run_gates(&self, observer: &mut Observer, plan: GatePlan, phase: &str) -> Decision {
        let poll = self.config.rollout.poll_interval;
        let mut engine = GateEngine::new(plan);
        loop {
            if let Some(f) = observer.frozen() {
                let mut gates = engine.gates();
                gates.push(f.as_gate());
                return Decision::RollBack {
                    gates,
                    reason: f.stop_reason(),
                };
            }
            let obs = observer.observe().await;
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
            tokio::time::sleep(poll).await;
        }
    }

    /// A rollback the operator asked for (`rollgate rollback`, or its resumption): restore,
    /// re-verify, and finish the journal record.
    async fn requested_rollback(
        &self,
        rec: &mut Recorder,
        layers: &[&Layer],
        baseline: &Baseline,
        what: &str,
    ) -> Result<(Outcome, String, RollbackRecord), RunnerError> {
        let record = self.restore_and_verify(rec, layers, baseline).await?;
        let outcome = record.outcome();
        let reason = format!("{what} to baseline {}: {}", baseline.id, record.reason);
        rec.finish(outcome, &reason).await?;
        Ok((outcome, reason, record))
    }

    /// Restore every given layer to the baseline, restart their components, and re-verify the
    /// baseline with the same gates.
    #[allow(clippy::too_many_arguments)]
    async fn roll_back(
        &self,
        rec: &mut Recorder,
        layers: &[&Layer],
        baseline: &Baseline,
        value: &str,
        reason: String,
        gates: Vec<GateResult>,
        mut timings: Timings,
        observer: &mut Observer,
    ) -> Result<RolloutReport, RunnerError> {
        let decided_at = Instant::now();
        let change_elapsed = observer.elapsed();
        let record = self.restore_and_verify(rec, layers, baseline).await?;
        timings.decision_to_verified = Some(decided_at.elapsed().as_millis() as u64);
        timings.change_to_verified =
            Some((change_elapsed + decided_at.elapsed()).as_millis() as u64);
        let outcome = record.outcome();
        let full_reason = if record.verified {
            format!(
                "{reason}; rolled back to baseline {} and re-verified it",
                baseline.id
            )
        } else {
            format!(
                "{reason}; rollback to baseline {} FAILED verification: {}",
                baseline.id, record.reason
            )
        };
        rec.finish(outcome, &full_reason).await?;
        timings.total = rec.started.elapsed().as_millis() as u64;
        let layer = layers[0];
        let from = baseline.layers.get(&layer.name).cloned();
        Ok(self.report(
            rec,
            outcome,
            layer,
            from.as_ref(),
            value,
            Some(&baseline.id),
            gates,
            full_reason,
            Some(record),
            None,
            timings,
        ))
    }

    async fn restore_and_verify(
        &self,
        rec: &mut Recorder,
        layers: &[&Layer],
        baseline: &Baseline,
    ) -> Result<RollbackRecord, RunnerError> {
        let components = self.components_of(layers);
        let targets: Vec<(Layer, LayerValue)> = layers
            .iter()
            .filter_map(|l| {
                baseline
                    .layers
                    .get(&l.name)
                    .map(|v| ((*l).clone(), v.clone()))
            })
            .collect();
        let s = rec.intent(step::ROLLBACK_RESTORE, json!({"baseline_id": baseline.id, "layers": targets.iter().map(|(l, v)| json!({"layer": l.name, "to": v})).collect::<Vec<_>>()})).await?;
        let mut restore_error = None;
        let mut outputs = Vec::new();
        for (layer, recorded) in &targets {
            match self.driver.restore(layer, recorded).await {
                Ok(out) => outputs.push(output_json(&out)),
                Err(e) => {
                    restore_error = Some(format!(
                        "restore of {} failed: {}",
                        layer.name,
                        rollgate_probe::errors::chain(&e)
                    ));
                    break;
                }
            }
        }
        rec.outcome(
            step::ROLLBACK_RESTORE,
            s,
            restore_error.is_none(),
            json!({"summary": restore_error.clone().unwrap_or_else(|| format!("restored {}", targets.iter().map(|(l, _)| l.name.as_str()).collect::<Vec<_>>().join(", "))), "outputs": outputs}),
        )
        .await?;

        let mut observer =
            Observer::new(self.config.clone(), self.driver.clone(), components.clone())
                .map_err(RunnerError::Internal)?
                .against(baseline);
        let s = rec
            .intent(
                step::ROLLBACK_RESTART,
                json!({"components": components.iter().map(|c| &c.name).collect::<Vec<_>>()}),
            )
            .await?;
        observer.mark_change().await;
        let restart = self.driver.restart(&components).await;
        observer.logs_from(SystemTime::now());
        let restart_error = restart
            .as_ref()
            .err()
            .map(|e| format!("restart failed: {}", rollgate_probe::errors::chain(e)));
        rec.outcome(
            step::ROLLBACK_RESTART,
            s,
            restart_error.is_none(),
            json!({"summary": restart_error.clone().unwrap_or_else(|| format!("restarted {}", names(&components))), "output": restart.as_ref().map(output_json).unwrap_or(Value::Null)}),
        )
        .await?;

        let s = rec
            .intent(step::ROLLBACK_VERIFY, json!({"baseline_id": baseline.id}))
            .await?;
        let mut gates = Vec::new();
        // The layers must read back as exactly the recorded values.
        for (layer, recorded) in &targets {
            gates.push(match self.driver.current(layer).await {
                Ok(now) if same_value(&now, recorded) => GateResult {
                    name: format!("restored:{}", layer.name),
                    verdict: Verdict::Pass,
                    detail: format!("{} is back on {}", layer.name, recorded.display()),
                    evidence: json!({"recorded": recorded, "current": now}),
                },
                Ok(now) => GateResult {
                    name: format!("restored:{}", layer.name),
                    verdict: Verdict::Fail,
                    detail: format!(
                        "{} reads {} but the baseline recorded {}",
                        layer.name,
                        now.display(),
                        recorded.display()
                    ),
                    evidence: json!({"recorded": recorded, "current": now}),
                },
                Err(e) => GateResult {
                    name: format!("restored:{}", layer.name),
                    verdict: Verdict::Fail,
                    detail: format!(
                        "cannot read {}: {}",
                        layer.name,
                        rollgate_probe::errors::chain(&e)
                    ),
                    evidence: Value::Null,
                },
            });
        }
        let decision = self
            .run_gates(&mut observer, gate_plan(&self.config, baseline), "rollback")
            .await;
        let (engine_gates, failure) = match decision {
            Decision::Promote { gates } => (gates, None),
            Decision::RollBack { gates, reason } => (gates, Some(reason)),
            Decision::Wait { .. } => unreachable!("run_gates returns a final decision"),
        };
        gates.extend(engine_gates);
        let failure = restore_error
            .or(restart_error)
            .or_else(|| {
                gates
                    .iter()
                    .find(|g| g.name.starts_with("restored:") && g.verdict == Verdict::Fail)
                    .map(|g| g.detail.clone())
            })
            .or(failure);
        let verified = failure.is_none();
        let reason = failure
            .unwrap_or_else(|| format!("baseline {} re-verified: every gate passed", baseline.id));
        rec.gates(&gates).await?;
        rec.outcome(
            step::ROLLBACK_VERIFY,
            s,
            verified,
            json!({"summary": reason, "gates": gates, "verified": verified}),
        )
        .await?;
        Ok(RollbackRecord {
            verified,
            gates,
            reason,
        })
    }

    /// The promoted state as a baseline: the starting baseline with the new layer value and
    /// what the gates observed.
    async fn promoted_baseline(
        &self,
        baseline: &Baseline,
        layer: &Layer,
        observer: &Observer,
        gates: &[GateResult],
        trends: Option<rollgate_core::baseline::Trends>,
    ) -> Result<Baseline, RunnerError> {
        let mut b = baseline.clone();
        // What the bake measured on the new value is the new baseline's norm; without a bake
        // the old trends are the best there is.
        if trends.is_some() {
            b.trends = trends;
        }
        b.id = new_id("b");
        b.created_at = now_rfc3339();
        let value = self
            .driver
            .current(layer)
            .await
            .map_err(RunnerError::Driver)?;
        b.layers.insert(layer.name.clone(), value);
        for (name, doc) in &observer.last_readiness {
            b.readiness.insert(name.clone(), doc.clone());
        }
        let rates: Vec<ProgressionRate> = self
            .config
            .progression
            .iter()
            .filter_map(|p| rate_from_gate(p, gates))
            .collect();
        if !rates.is_empty() {
            b.idle = rates.iter().any(|r| r.idle);
            b.progression = rates;
        }
        Ok(b)
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
        }
    }

    /// `rollgate rollback [--to ID]`: restore the baseline the latest rollout started from (or
    /// the one named) for every layer that differs from it, and re-verify it.
    pub async fn rollback(&self, to: Option<&str>) -> Result<RolloutReport, RunnerError> {
        let result = self.rollback_steps(to).await;
        self.notify_finished(&result);
        result
    }

    async fn rollback_steps(&self, to: Option<&str>) -> Result<RolloutReport, RunnerError> {
        let lock = self.lock().await?;
        self.refuse_if_interrupted().await?;
        let baseline = match to {
            Some(id) => {
                let id2 = id.to_string();
                self.journal
                    .call(move |j| j.baseline(&id2))
                    .await?
                    .ok_or_else(|| RunnerError::NotFound(format!("no baseline `{id}`")))?
            }
            None => {
                let latest = self.journal.call(|j| j.history(1)).await?;
                let from_latest = latest.first().and_then(|r| r.baseline_id.clone());
                let id = match from_latest {
                    Some(id) => id,
                    None => self
                        .journal
                        .call(|j| j.last_known_good())
                        .await?
                        .map(|b| b.id)
                        .ok_or_else(|| {
                            RunnerError::NotFound(
                                "no rollout or known-good baseline to roll back to".into(),
                            )
                        })?,
                };
                let id2 = id.clone();
                self.journal
                    .call(move |j| j.baseline(&id2))
                    .await?
                    .ok_or_else(|| RunnerError::NotFound(format!("no baseline `{id}`")))?
            }
        };
        let mut changed = Vec::new();
        for (name, recorded) in &baseline.layers {
            let Some(layer) = self.config.layer(name) else {
                continue;
            };
            let now = self
                .driver
                .current(layer)
                .await
                .map_err(RunnerError::Driver)?;
            if !same_value(&now, recorded) {
                changed.push(layer.clone());
            }
        }
        let label = if changed.is_empty() {
            "(none changed)".to_string()
        } else {
            changed
                .iter()
                .map(|l| l.name.clone())
                .collect::<Vec<_>>()
                .join(",")
        };
        let mut rec = Recorder {
            journal: self.journal.clone(),
            progress: self.progress.clone(),
            rollout_id: new_id("r"),
            steps: Vec::new(),
            started: Instant::now(),
        };
        let new = NewRollout {
            id: rec.rollout_id.clone(),
            layer: label.clone(),
            from: None,
            to: format!("baseline {}", baseline.id),
            baseline_id: Some(baseline.id.clone()),
            started_at: now_rfc3339(),
            plan: Some(json!({"requested_rollback": true})),
        };
        self.journal.call(move |j| j.begin_rollout(&new)).await?;
        let refs: Vec<&Layer> = changed.iter().collect();
        // With nothing changed this still restarts nothing and re-verifies the baseline.
        let (outcome, reason, record) = self
            .requested_rollback(&mut rec, &refs, &baseline, "requested rollback")
            .await?;
        drop(lock);
        let pseudo = Layer {
            name: label,
            kind: rollgate_core::vocab::LayerKind::Image,
            components: vec![],
        };
        let mut report = self.report(
            &rec,
            outcome,
            &pseudo,
            None,
            &format!("baseline {}", baseline.id),
            Some(&baseline.id),
            vec![],
            reason,
            Some(record),
            None,
            Timings::default(),
        );
        report.from = None;
        Ok(report)
    }

    /// `rollgate resume`: finish an interrupted rollout. Before the change it ends as refused
    /// (nothing changed); after it, when the new value is in place it is restarted and
    /// re-verified (promote or roll back), otherwise the baseline is restored and re-verified.
    pub async fn resume(&self) -> Result<RolloutReport, RunnerError> {
        let result = self.resume_steps().await;
        self.notify_finished(&result);
        result
    }

    async fn resume_steps(&self) -> Result<RolloutReport, RunnerError> {
        let state = self.journal.call(|j| j.state()).await?;
        let Some(interrupted) = state.interrupted else {
            return Err(RunnerError::NotFound(
                "no interrupted rollout to resume".into(),
            ));
        };
        let lock = self.lock().await?;
        let id = interrupted.rollout_id.clone();
        let detail = self
            .journal
            .call(move |j| j.rollout(&id))
            .await?
            .ok_or_else(|| {
                RunnerError::Internal(format!("rollout {} vanished", interrupted.rollout_id))
            })?;
        let mut rec = Recorder {
            journal: self.journal.clone(),
            progress: self.progress.clone(),
            rollout_id: interrupted.rollout_id.clone(),
            steps: Vec::new(),
            started: Instant::now(),
        };
        let requested_rollback = detail
            .plan
            .as_ref()
            .and_then(|p| p.get("requested_rollback"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let kinds: BTreeSet<String> = detail.steps.iter().map(|s| s.kind.clone()).collect();
        let baseline = match &detail.baseline_id {
            Some(bid) => {
                let b = bid.clone();
                self.journal.call(move |j| j.baseline(&b)).await?
            }
            None => None,
        };
        let Some(baseline) = baseline else {
            let reason =
                "interrupted before the baseline was frozen; nothing was changed".to_string();
            rec.finish(Outcome::Refused, &reason).await?;
            drop(lock);
            return Ok(self.resume_report(&rec, &detail, Outcome::Refused, reason, None));
        };

        if requested_rollback {
            let layers: Vec<Layer> = detail
                .layer
                .split(',')
                .filter_map(|n| self.config.layer(n).cloned())
                .collect();
            let refs: Vec<&Layer> = layers.iter().collect();
            let (outcome, reason, record) = self
                .requested_rollback(&mut rec, &refs, &baseline, "resumed requested rollback")
                .await?;
            drop(lock);
            return Ok(self.resume_report(&rec, &detail, outcome, reason, Some(record)));
        }

        let layer = self.layer(&detail.layer)?;
        if !kinds.contains(step::APPLY) {
            let reason = "interrupted before the change; nothing was changed".to_string();
            rec.finish(Outcome::Refused, &reason).await?;
            drop(lock);
            return Ok(self.resume_report(&rec, &detail, Outcome::Refused, reason, None));
        }
        let in_rollback = kinds.iter().any(|k| k.starts_with("rollback_"));
        let current = self
            .driver
            .current(&layer)
            .await
            .map_err(RunnerError::Driver)?;
        let mut observer = Observer::new(
            self.config.clone(),
            self.driver.clone(),
            self.components_of(&[&layer]),
        )
        .map_err(RunnerError::Internal)?;
        let report = if !in_rollback && current.value == detail.to {
            self.change_and_gate(
                &mut rec,
                &layer,
                &detail.to,
                &baseline,
                true,
                &RolloutOptions::default(),
            )
            .await?
        } else {
            let why = if in_rollback {
                "resumed an interrupted rollback".to_string()
            } else {
                format!(
                    "interrupted after the change; {} reads {}, not {}",
                    layer.name,
                    current.display(),
                    detail.to
                )
            };
            self.roll_back(
                &mut rec,
                &[&layer],
                &baseline,
                &detail.to,
                why,
                vec![],
                Timings::default(),
                &mut observer,
            )
            .await?
        };
        drop(lock);
        Ok(report)
    }

    fn resume_report(
        &self,
        rec: &Recorder,
        detail: &rollgate_journal::RolloutDetail,
        outcome: Outcome,
        reason: String,
        rollback: Option<RollbackRecord>,
    ) -> RolloutReport {
        RolloutReport {
            rollout_id: rec.rollout_id.clone(),
            outcome,
            layer: detail.layer.clone(),
            from: detail.from.as_ref().map(LayerValue::display),
            to: detail.to.clone(),
            baseline_id: detail.baseline_id.clone(),
            gates: vec![],
            reason,
            rollback,
            promoted_baseline_id: None,
            steps: rec.steps.clone(),
            timings_ms: Timings {
                total: rec.started.elapsed().as_millis() as u64,
                ..Timings::default()
            },
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
