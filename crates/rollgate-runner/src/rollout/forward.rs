//! The forward path: freeze, apply, restart, verify, bake, promote.

use super::*;

impl Runner {
    /// `rollgate rollout LAYER=VALUE`: the full procedure.
    pub async fn rollout(
        &self,
        layer_name: &str,
        value: &str,
        opts: &RolloutOptions,
    ) -> Result<RolloutReport, RunnerError> {
        let mut result = self.rollout_steps(layer_name, value, opts).await;
        self.attach_snapshots(&mut result).await;
        self.prune_after_promotion(&result).await;
        self.notify_finished(&result);
        result
    }

    pub(super) async fn rollout_steps(
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
        // A `config` layer's PATH becomes the stored address of its new content.
        let staged = self.stage_config(&layer, value).await?;
        let value = staged.as_str();
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

        let mut rec = Recorder::new(&self.journal, &self.progress, new_id("r"));
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
            .intent(
                step::FREEZE,
                json!({"layer": layer.name, "bake_s": opts.bake.map(|b| b.as_secs_f64())}),
            )
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
    pub(super) async fn change_and_gate(
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
            .await;
        let forward = match forward {
            Ok(f) => f,
            // The journal failed after the node may have changed: never leave it on an
            // unverified value. Roll back without the journal; the outcome is exit 5.
            Err(e) if rec.changed => {
                rec.soft(Err::<(), _>(e));
                let reason = rec.journal_error.clone().unwrap_or_default();
                Forward::Failed {
                    reason,
                    gates: vec![],
                }
            }
            Err(e) => return Err(e),
        };
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
    pub(super) async fn forward(
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
            // Layers that migrate: stop, snapshot (the components start again with the restart).
            if let Some(reason) = self
                .take_snapshots(rec, layer, baseline, &components, timings)
                .await?
            {
                return Ok(Forward::Failed {
                    reason,
                    gates: vec![],
                });
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
        let verify_window = GateEngine::new(gate_plan(&self.config, baseline)).hard_deadline()
            + deadline_grace(self.config.rollout.poll_interval);
        self.silence_restart(rec, verify_window).await?;
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
                // The readiness deadline counts from here: an image pull or a slow stop inside
                // the driver's restart must not eat into it.
                observer.restart_returned();
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

        // Read back what runs: the layer must read as the requested value before any gate can
        // pass. An apply that "succeeded" without effect fails here and is rolled back.
        let (applied_gate, verified) = self.read_back(layer, value).await;
        let Some(verified) = verified else {
            rec.gates(std::slice::from_ref(&applied_gate)).await?;
            return Ok(Forward::Failed {
                reason: format!("{}: {}", applied_gate.name, applied_gate.detail),
                gates: vec![applied_gate],
            });
        };

        // Steps 4 and 5: the gates (they stop at the kill switch themselves).
        let mut plan = gate_plan(&self.config, baseline);
        // Unreadable logs hold the gates like a dependency: never blind.
        plan.dependencies.extend(observer.log_gate_keys());
        let s = rec.intent(step::VERIFY, json!({"readiness_deadline_s": plan.readiness_deadline.as_secs_f64(), "gates": plan_names(&plan)})).await?;
        let decision = self.run_gates(observer, plan, "verify").await;
        timings.change_to_decision = Some(observer.elapsed().as_millis() as u64);
        let (mut gates, failure) = match decision {
            Decision::Promote { gates } => (gates, None),
            Decision::RollBack { gates, reason } => (gates, Some(reason)),
            Decision::Wait { .. } => unreachable!("run_gates returns a final decision"),
        };
        gates.insert(0, applied_gate);
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

        // Verify is decided: the alerts speak again. The bake is never silenced.
        rec.end_silence().await;

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
        // What was verified is what is promoted: the layer must still read as the value the
        // gates passed on (nobody changed it during verify or the bake).
        let (still, now) = self.read_back(layer, value).await;
        if !now.as_ref().is_some_and(|n| same_value(n, &verified)) {
            let detail = format!(
                "{} changed while it was verified: verified {}, now {}",
                layer.name,
                verified.display(),
                now.map(|n| n.display()).unwrap_or(still.detail)
            );
            return Ok(Forward::Failed {
                reason: format!("promote: {detail}"),
                gates,
            });
        }
        let s = rec
            .intent(
                step::PROMOTE,
                json!({"layer": layer.name, "to": value, "verified": verified}),
            )
            .await?;
        let promoted = self.promoted_baseline(baseline, layer, &verified, observer, &gates, trends);
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

    /// The promoted state as a baseline: the starting baseline with the new layer value and
    /// what the gates observed.
    pub(super) fn promoted_baseline(
        &self,
        baseline: &Baseline,
        layer: &Layer,
        verified: &LayerValue,
        observer: &Observer,
        gates: &[GateResult],
        trends: Option<rollgate_core::baseline::Trends>,
    ) -> Baseline {
        let mut b = promoted_from(baseline, layer, verified);
        // What the bake measured on the new value is the new baseline's norm; without a bake
        // the old trends are the best there is.
        if trends.is_some() {
            b.trends = trends;
        }
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
        b
    }
}
