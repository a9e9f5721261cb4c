//! The way back: restore the baseline, restart, re-verify it; requested rollbacks.

use super::*;

impl Runner {
    /// A rollback the operator asked for (`rollgate rollback`, or its resumption): restore,
    /// re-verify, and finish the journal record.
    pub(super) async fn requested_rollback(
        &self,
        rec: &mut Recorder,
        layers: &[&Layer],
        baseline: &Baseline,
        what: &str,
    ) -> Result<(Outcome, String, RollbackRecord), RunnerError> {
        let record = self.restore_and_verify(rec, layers, baseline).await?;
        let outcome = record.outcome();
        let reason = format!("{what} to baseline {}: {}", baseline.id, record.reason);
        let finished = rec.finish(outcome, &reason).await;
        rec.soft(finished);
        Ok((outcome, reason, record))
    }

    /// Restore every given layer to the baseline, restart their components, and re-verify the
    /// baseline with the same gates.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn roll_back(
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
        let finished = rec.finish(outcome, &full_reason).await;
        rec.soft(finished);
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

    /// Restore every layer to its recorded value, restart their components and verify the
    /// baseline with the same gates. A failed restore is reported at once (nothing is known to
    /// run, so waiting out the gates proves nothing). The journal is written on the way but a
    /// failed write never stops the rollback; it makes the outcome "rollback failed".
    pub(super) async fn restore_and_verify(
        &self,
        rec: &mut Recorder,
        layers: &[&Layer],
        baseline: &Baseline,
    ) -> Result<RollbackRecord, RunnerError> {
        let mut record = self.restore_and_verify_steps(rec, layers, baseline).await?;
        if let Some(e) = &rec.journal_error {
            record.verified = false;
            record.reason = format!(
                "{}; but {e}: the journal does not hold this rollback, check the node by hand",
                record.reason
            );
        }
        Ok(record)
    }

    async fn restore_and_verify_steps(
        &self,
        rec: &mut Recorder,
        layers: &[&Layer],
        baseline: &Baseline,
    ) -> Result<RollbackRecord, RunnerError> {
        let components = self.components_of(layers);
        // The data first, with the components stopped: the baseline's version must find the
        // baseline's rows when it starts.
        if let Some(reason) = self.restore_snapshots(rec, &components).await {
            return Ok(failed_restore(rec, "restore_data", reason, Value::Null).await);
        }
        let targets: Vec<(Layer, LayerValue)> = layers
            .iter()
            .filter_map(|l| {
                baseline
                    .layers
                    .get(&l.name)
                    .map(|v| ((*l).clone(), v.clone()))
            })
            .collect();
        let s = rec.soft_intent(step::ROLLBACK_RESTORE, json!({"baseline_id": baseline.id, "layers": targets.iter().map(|(l, v)| json!({"layer": l.name, "to": v})).collect::<Vec<_>>()})).await;
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
        rec.soft_outcome(
            step::ROLLBACK_RESTORE,
            s,
            restore_error.is_none(),
            json!({"summary": restore_error.clone().unwrap_or_else(|| format!("restored {}", targets.iter().map(|(l, _)| l.name.as_str()).collect::<Vec<_>>().join(", "))), "outputs": outputs}),
        )
        .await;
        if let Some(reason) = restore_error {
            // Exit 5 now: restarting and waiting out the gates on an unknown state proves nothing.
            let evidence = json!({"outputs": outputs});
            return Ok(failed_restore(rec, "restore", reason, evidence).await);
        }

        let mut observer =
            Observer::new(self.config.clone(), self.driver.clone(), components.clone())
                .map_err(RunnerError::Internal)?
                .against(baseline);
        let s = rec
            .soft_intent(
                step::ROLLBACK_RESTART,
                json!({"components": components.iter().map(|c| &c.name).collect::<Vec<_>>()}),
            )
            .await;
        observer.mark_change().await;
        let restart = self.driver.restart(&components).await;
        observer.restart_returned();
        observer.logs_from(SystemTime::now());
        let restart_error = restart
            .as_ref()
            .err()
            .map(|e| format!("restart failed: {}", rollgate_probe::errors::chain(e)));
        rec.soft_outcome(
            step::ROLLBACK_RESTART,
            s,
            restart_error.is_none(),
            json!({"summary": restart_error.clone().unwrap_or_else(|| format!("restarted {}", names(&components))), "output": restart.as_ref().map(output_json).unwrap_or(Value::Null)}),
        )
        .await;

        let s = rec
            .soft_intent(step::ROLLBACK_VERIFY, json!({"baseline_id": baseline.id}))
            .await;
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
        let mut plan = gate_plan(&self.config, baseline);
        plan.dependencies.extend(observer.log_gate_keys());
        // Analysis gates judge a change: right after a rollback their range queries still
        // cover the rolled-back version, and a Prometheus outage must not turn a restored
        // baseline into `rollback_failed`. The restored node is judged by its own gates.
        plan.analysis.clear();
        plan.monitoring = None;
        let decision = self.run_gates(&mut observer, plan, "rollback").await;
        let (engine_gates, failure) = match decision {
            Decision::Promote { gates } => (gates, None),
            Decision::RollBack { gates, reason } => (gates, Some(reason)),
            Decision::Wait { .. } => unreachable!("run_gates returns a final decision"),
        };
        gates.extend(engine_gates);
        let failure = restart_error
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
        let r = rec.gates(&gates).await;
        rec.soft(r);
        rec.soft_outcome(
            step::ROLLBACK_VERIFY,
            s,
            verified,
            json!({"summary": reason, "gates": gates, "verified": verified}),
        )
        .await;
        Ok(RollbackRecord {
            verified,
            gates,
            reason,
        })
    }

    /// `rollgate rollback [--to ID]`: restore the baseline the latest rollout started from (or
    /// the one named) for every layer that differs from it, and re-verify it.
    pub async fn rollback(&self, to: Option<&str>) -> Result<RolloutReport, RunnerError> {
        let result = self.rollback_steps(to).await;
        self.notify_finished(&result);
        result
    }

    pub(super) async fn rollback_steps(
        &self,
        to: Option<&str>,
    ) -> Result<RolloutReport, RunnerError> {
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
            // A layer that cannot be read (its container vanished mid-`up`) is restored too:
            // the recorded value is the way back, whatever runs now.
            match self.driver.current(layer).await {
                Ok(now) if same_value(&now, recorded) => {}
                _ => changed.push(layer.clone()),
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
        let mut rec = Recorder::new(&self.journal, &self.progress, new_id("r"));
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
            snapshot: None,
            files: vec![],
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
}

/// A restore (of the layers, or of the data) failed: the rollback stops here as failed (exit
/// 5), with one failed gate naming why.
async fn failed_restore(
    rec: &mut Recorder,
    name: &str,
    reason: String,
    evidence: Value,
) -> RollbackRecord {
    let gate = GateResult {
        name: name.into(),
        verdict: Verdict::Fail,
        detail: reason.clone(),
        evidence,
    };
    let r = rec.gates(std::slice::from_ref(&gate)).await;
    rec.soft(r);
    RollbackRecord {
        verified: false,
        gates: vec![gate],
        reason,
    }
}
