//! `rollgate resume`: finish an interrupted rollout from what its journal recorded.

use super::*;

impl Runner {
    /// `rollgate resume`: finish an interrupted rollout. Before the change it ends as refused
    /// (nothing changed); after it, when the new value is in place it is restarted and
    /// re-verified (promote or roll back), otherwise the baseline is restored and re-verified.
    pub async fn resume(&self) -> Result<RolloutReport, RunnerError> {
        let mut result = self.resume_steps().await;
        self.attach_snapshots(&mut result).await;
        self.prune_after_promotion(&result).await;
        self.notify_finished(&result);
        result
    }

    pub(super) async fn resume_steps(&self) -> Result<RolloutReport, RunnerError> {
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
        let mut rec = Recorder::new(
            &self.journal,
            &self.progress,
            interrupted.rollout_id.clone(),
        );
        // The interrupted run may have left a silence (journaled or not): the rollout's finish
        // expires every silence of it, found by its comment.
        if crate::silence::enabled(&self.config) {
            rec.silence = Some(self.config.clone());
        }
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
        if !kinds.contains(step::APPLY) && !kinds.contains(step::SNAPSHOT) {
            let reason = "interrupted before the change; nothing was changed".to_string();
            rec.finish(Outcome::Refused, &reason).await?;
            drop(lock);
            return Ok(self.resume_report(&rec, &detail, Outcome::Refused, reason, None));
        }
        rec.changed = true;
        let in_rollback = kinds.iter().any(|k| k.starts_with("rollback_"));
        // What the interrupted run already decided stands: a recorded failure is never
        // re-verified (a flaky second look must not promote a version that failed once).
        let recorded_failure = detail.steps.iter().find(|s| {
            s.ok == Some(false)
                && [
                    step::SNAPSHOT,
                    step::APPLY,
                    step::RESTART,
                    step::VERIFY,
                    step::BAKE,
                ]
                .contains(&s.kind.as_str())
        });
        let promote = detail.steps.iter().rev().find(|s| s.kind == step::PROMOTE);
        // A container gone mid-`up` cannot be read: that is "not the new value", and the way
        // out is the restore path with the recorded value.
        let current = self.driver.current(&layer).await;
        let current_is_new = current.as_ref().is_ok_and(|c| reads_as(c, &detail.to));
        let opts = RolloutOptions {
            bake: recorded_bake(&detail),
            plan: detail.plan.clone(),
        };
        let mut observer = Observer::new(
            self.config.clone(),
            self.driver.clone(),
            self.components_of(&[&layer]),
        )
        .map_err(RunnerError::Internal)?;
        let why = if let (false, Some(failed)) = (in_rollback, recorded_failure) {
            let summary = failed
                .outcome
                .as_ref()
                .and_then(|o| o.get("summary"))
                .and_then(Value::as_str)
                .unwrap_or("failed");
            format!(
                "recorded before the interruption: {} failed: {summary}",
                failed.kind
            )
        } else if let (false, Some(p), true) = (in_rollback, promote, current_is_new) {
            // Every gate had passed: finish the promotion with the value that was verified.
            let report = self
                .finish_promotion(&mut rec, &detail, &layer, &baseline, p)
                .await;
            drop(lock);
            return report;
        } else if !in_rollback && current_is_new {
            let report = self
                .change_and_gate(&mut rec, &layer, &detail.to, &baseline, true, &opts)
                .await;
            drop(lock);
            return report;
        } else if in_rollback {
            "resumed an interrupted rollback".to_string()
        } else if !kinds.contains(step::APPLY) {
            // Stopped while the database snapshot was taken: nothing was applied, but the
            // components may be stopped; the rollback starts them and re-verifies the baseline.
            "interrupted while the database snapshot was taken; nothing was applied".to_string()
        } else {
            format!(
                "interrupted after the change; {} reads {}, not {}",
                layer.name,
                match &current {
                    Ok(c) => c.display(),
                    Err(e) => format!("nothing readable ({})", rollgate_probe::errors::chain(e)),
                },
                detail.to
            )
        };
        let report = self
            .roll_back(
                &mut rec,
                &[&layer],
                &baseline,
                &detail.to,
                why,
                vec![],
                Timings::default(),
                &mut observer,
            )
            .await?;
        drop(lock);
        Ok(report)
    }

    /// The promote step's intent was written (every gate had passed) but not its outcome: write
    /// the promoted baseline now, from the value the gates verified, unless one already was.
    async fn finish_promotion(
        &self,
        rec: &mut Recorder,
        detail: &rollgate_journal::RolloutDetail,
        layer: &Layer,
        baseline: &Baseline,
        promote: &rollgate_journal::StepRecord,
    ) -> Result<RolloutReport, RunnerError> {
        let promoted_id = match promote
            .outcome
            .as_ref()
            .and_then(|o| o.get("baseline_id"))
            .and_then(Value::as_str)
        {
            Some(id) => id.to_string(),
            None => {
                let verified = promote
                    .intent
                    .get("verified")
                    .cloned()
                    .and_then(|v| serde_json::from_value::<LayerValue>(v).ok());
                let verified = match verified {
                    Some(v) => v,
                    None => self
                        .driver
                        .current(layer)
                        .await
                        .map_err(RunnerError::Driver)?,
                };
                let b = promoted_from(baseline, layer, &verified);
                let p = b.clone();
                self.journal
                    .call(move |j| {
                        j.insert_baseline(&p)?;
                        j.mark_known_good(&p.id)
                    })
                    .await?;
                if promote.ok.is_none() {
                    let (sid, id) = (promote.step_id, b.id.clone());
                    self.journal
                        .call(move |j| {
                            j.record_outcome(
                                sid,
                                true,
                                json!({"summary": format!("baseline {id} is known-good (finished by resume)"), "baseline_id": id}),
                            )
                        })
                        .await?;
                }
                b.id
            }
        };
        let reason = format!(
            "{} = {} verified: every gate passed before the interruption; promotion finished by resume",
            layer.name, detail.to
        );
        rec.finish(Outcome::Promoted, &reason).await?;
        let mut report = self.resume_report(rec, detail, Outcome::Promoted, reason, None);
        report.promoted_baseline_id = Some(promoted_id);
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
            snapshots: vec![],
        }
    }
}

/// The `--bake` the interrupted rollout was started with (recorded in its freeze intent).
pub fn recorded_bake(detail: &rollgate_journal::RolloutDetail) -> Option<Duration> {
    detail
        .steps
        .iter()
        .find(|s| s.kind == step::FREEZE)
        .and_then(|s| s.intent.get("bake_s"))
        .and_then(Value::as_f64)
        .filter(|b| b.is_finite() && *b >= 0.0)
        .map(Duration::from_secs_f64)
}
